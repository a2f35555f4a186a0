"""rw.link: views shown in separate cells follow one selection and target (through the kernel)."""
import pytest

import resid_widgets as rw
from models_zoo import build, random_ids

T = 9


@pytest.fixture(scope="module")
def dec():
    return rw.decompose(build("llama"), random_ids(T))


def test_selection_and_target_follow_across_views(dec):
    grid, lens, bars = rw.StreamGrid(dec), rw.LogitLens(dec), rw.ContributionBars(dec)
    links = rw.link(grid, lens, bars)
    assert lens.selected == grid.selected and bars.position == grid.selected[1]
    lens.selected = (2, 4)  # a click in the lens
    assert grid.selected == (2, 4) and bars.position == 4
    bars.position = 6  # a token clicked in the bars' strip
    assert grid.selected == (2, 6) == lens.selected
    other = dec.token_text(int(random_ids(T)[3]))
    bars.target = other  # typed in the bars: computed for the other views too
    assert grid.target == other == lens.target
    assert lens._find_target(other) is not None
    for one in links:
        one.unlink()
    grid.selected = (1, 1)
    assert lens.selected == (2, 6)


def test_link_names_the_problem(dec):
    grid = rw.StreamGrid(dec)
    with pytest.raises(ValueError, match="two or more"):
        rw.link(grid)
    with pytest.raises(ValueError, match="linkable traits"):
        rw.link(grid, rw.LogitLens(dec), traits=("_data",))
    with pytest.raises(ValueError, match="different decompositions"):
        rw.link(grid, rw.LogitLens(rw.decompose(build("llama"), random_ids(T + 2))))
    with pytest.raises(TypeError, match="has no trait"):
        rw.link(grid, rw.BlockBudget(dec, drop=False))
