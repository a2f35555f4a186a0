"""The payloads of rw.PatchingGrid and rw.Compare, from real rw.patching results on tiny random
models: what the views show equals the result (and, for Compare's bars, each component's direct
logit attribution to the metric); bad input says what is wrong; closing frees the prompts."""
from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch
import traitlets

import resid_widgets as rw
from models_zoo import build, random_ids
from patching_fixtures import hook_resid_patching, logit_diff_ids
from resid_widgets.views.payload import decode_payload


@pytest.fixture(scope="module")
def model():
    return build("llama")


def _pair(model, seed=1, n=7):
    clean = random_ids(n, seed=seed)
    corrupt = clean.clone()
    corrupt[2] = (corrupt[2] + 5) % 97
    return rw.decompose(model, clean), rw.decompose(model, corrupt)


@pytest.fixture(scope="module")
def pair(model):
    return _pair(model)


@pytest.mark.parametrize("components, positions", [("resid", "each"), ("all", "each"), ("mlp", "all"),
                                                   ("heads", "each"), ("heads", "all")])
def test_patching_grid_shows_the_result(pair, components, positions):
    clean, corrupt = pair
    res = rw.patching(clean, corrupt, metric=rw.logit_diff(3, 4), components=components, positions=positions,
                      progress=False)
    grid = rw.PatchingGrid(res)
    d = grid._data
    raw = res.raw.numpy().reshape(d["R"], d["K"])
    np.testing.assert_array_equal(decode_payload(d["raw"]), raw.astype(np.float32))
    np.testing.assert_array_equal(grid.values(), res.values.numpy().reshape(d["R"], d["K"]).astype(np.float32))
    np.testing.assert_array_equal(grid.values("raw"), raw.astype(np.float32))
    assert (d["clean_value"], d["corrupt_value"]) == (res.clean_value, res.corrupt_value)
    assert d["metric"] == res.metric == "logit(3) − logit(4)"
    if positions == "each":
        assert d["column_kind"] == "token" and d["columns"] == list(corrupt.tokens)
    elif components == "heads":
        assert d["column_kind"] == "head" and d["columns"] == [f"H{h}" for h in range(clean.n_heads)]
    else:
        assert d["column_kind"] == "all" and d["K"] == 1
    assert len(d["labels"]) == d["R"]
    # the strongest cell is selected at first
    v = np.abs(np.nan_to_num(grid.values()))
    assert v[grid.selected] == v.max()
    fig = grid.figure()
    np.testing.assert_allclose(np.array(fig.data[0].z, dtype=float), grid.values(), rtol=1e-6)


def test_patching_grid_takes_any_result_with_the_documented_fields(model, pair):
    """A result made elsewhere (here: plain forward hooks) shows the same way."""
    clean, corrupt = pair
    res = hook_resid_patching(model, clean.token_ids, corrupt.token_ids, logit_diff_ids(3, 4))
    grid = rw.PatchingGrid(res)
    assert grid._data["labels"] == [f"resid_pre.{l}" for l in range(clean.n_layers)]
    assert grid._data["metric"] == "logit[3] − logit[4]"
    ours = rw.patching(clean, corrupt, metric=rw.logit_diff(3, 4), components="resid", progress=False)
    np.testing.assert_allclose(grid.values("raw"), ours.raw.numpy(), atol=1e-5)


def test_patching_grid_selection_and_scale_are_checked(pair):
    clean, corrupt = pair
    grid = rw.PatchingGrid(rw.patching(clean, corrupt, metric=rw.logit_diff(3, 4), components="resid", progress=False))
    grid.selected = (-1, -1)
    assert grid.selected == (clean.n_layers - 1, len(clean.tokens) - 1)
    with pytest.raises(traitlets.TraitError, match="outside the grid"):
        grid.selected = (clean.n_layers, 0)
    with pytest.raises(traitlets.TraitError):
        grid.scale = "log"
    with pytest.raises(ValueError, match="scale must be one of"):
        grid.values("log")


def test_a_result_that_does_not_fit_shows_why(pair):
    clean, corrupt = pair
    res = rw.patching(clean, corrupt, metric=rw.logit_diff(3, 4), components="resid", progress=False)
    res.labels = res.labels[:-1]
    with pytest.warns(RuntimeWarning, match="labels for"):
        grid = rw.PatchingGrid(res)
    assert "1 labels for 2 rows" in grid._error and grid._data == {}


def test_compare_bars_are_the_direct_logit_attribution_of_the_metric(pair):
    clean, corrupt = pair
    cmp = rw.Compare(clean, corrupt, metric=rw.logit_diff(3, 4), components="all")
    shares = cmp.contributions()
    for side, dec in (("clean", clean), ("corrupt", corrupt)):
        dla = (dec.dla_grid(3) - dec.dla_grid(4))[:, -1].numpy()
        np.testing.assert_allclose(shares[side], dla, rtol=1e-4, atol=1e-6)
        value = float(dec.logits[-1, 3] - dec.logits[-1, 4])
        d = cmp._data[side]
        assert d["value"] == pytest.approx(value, abs=1e-6)
        assert shares[side].astype(np.float64).sum() + d["rest"] == pytest.approx(value, abs=1e-5)
    np.testing.assert_array_equal(shares["difference"], shares["clean"] - shares["corrupt"])
    # the patching grid is rw.patching's, the grids' target the metric's first token
    ref = rw.patching(clean, corrupt, metric=rw.logit_diff(3, 4), components="all", progress=False)
    np.testing.assert_array_equal(decode_payload(cmp._data["patching"]["raw"]), ref.raw.numpy().astype(np.float32))
    assert cmp.target == clean.token_text(3)
    assert [t["id"] for t in cmp._data["clean"]["_targets"]][:2] == [3, 4]
    cmp.figure()


def test_compare_with_a_log_prob_metric_sums_to_it(pair):
    clean, corrupt = pair
    cmp = rw.Compare(clean, corrupt, metric=5, components="mlp")
    for side, dec in (("clean", clean), ("corrupt", corrupt)):
        d = cmp._data[side]
        assert d["value"] == pytest.approx(dec.logprob(5), abs=1e-5)
        assert cmp.contributions()[side].astype(np.float64).sum() + d["rest"] == pytest.approx(d["value"], abs=1e-5)
    assert cmp._data["metric"] == f"log p({clean.token_text(5)!r})"


def test_compare_shares_follow_a_final_soft_cap():
    """gemma2 caps its logits: the shares are the DLA weighted by the cap's slope."""
    model = build("gemma2")
    clean, corrupt = _pair(model)
    cmp = rw.Compare(clean, corrupt, metric=rw.logit_diff(3, 4), components="resid")
    cap = model.config.final_logit_softcapping
    z = clean.logits[-1]
    slope = 1 - (z / cap) ** 2
    expect = (clean.dla_grid(3)[:, -1] * slope[3] - clean.dla_grid(4)[:, -1] * slope[4]).numpy()
    np.testing.assert_allclose(cmp.contributions()["clean"], expect, rtol=1e-4, atol=1e-6)


def test_compare_selection_and_target_are_checked(pair):
    clean, corrupt = pair
    cmp = rw.Compare(clean, corrupt, metric=rw.logit_diff(3, 4), components="resid")
    C, T = len(clean.labels), len(clean.tokens)
    assert cmp.selected == (C - 1, T - 1)
    cmp.selected = (-2, -3)
    assert cmp.selected == (C - 2, T - 3)
    with pytest.raises(traitlets.TraitError, match="outside"):
        cmp.selected = (C, 0)
    with pytest.raises(traitlets.TraitError, match="outside the prompt"):
        cmp.selected = (0, T)
    with pytest.raises(traitlets.TraitError, match="not precomputed here"):
        cmp.target = clean.token_text(50)
    cmp.target = clean.token_text(4)
    with pytest.raises(traitlets.TraitError):
        cmp.grid_metric = "size"


def test_compare_refuses_prompts_that_do_not_pair(model, pair):
    clean, _ = pair
    shorter = rw.decompose(model, random_ids(5, seed=3))
    with pytest.raises(ValueError, match="same length.*7 tokens.*5"):
        rw.Compare(clean, shorter, metric=rw.logit_diff(3, 4))
    other = rw.decompose(build("qwen3"), clean.token_ids)
    with pytest.raises(ValueError, match="same model"):
        rw.Compare(clean, other, metric=rw.logit_diff(3, 4))


def test_compare_without_a_patching_grid_still_shows_the_rest(pair):
    clean, corrupt = pair
    with pytest.warns(RuntimeWarning, match="no patching grid"):
        cmp = rw.Compare(clean, corrupt, metric=rw.logit_diff(3, 4), components="everything")
    assert cmp._data["patching"] == {} and "components must be one of" in cmp._data["patching_error"]
    assert cmp.patching is None and cmp.contributions()["clean"].shape == (len(clean.labels),)


@pytest.mark.parametrize("make", [
    lambda c, k: rw.Compare(c, k, metric=rw.logit_diff(3, 4), components="resid"),
    lambda c, k: rw.PatchingGrid(rw.patching(c, k, metric=rw.logit_diff(3, 4), components="resid", progress=False)),
], ids=["Compare", "PatchingGrid"])
def test_closing_frees_the_prompts(model, make):
    clean, corrupt = _pair(model, seed=5)
    alive = [weakref.ref(clean), weakref.ref(corrupt)]
    view = make(clean, corrupt)
    view.figure()
    view.close()
    del clean, corrupt
    gc.collect()
    assert [a() for a in alive] == [None, None]
    with pytest.raises(RuntimeError, match="view was closed"):
        view.figure()


def test_snapshots_hold_everything_offline(pair):
    clean, corrupt = pair
    cmp = rw.Compare(clean, corrupt, metric=rw.logit_diff(3, 4), components="resid")
    html = rw.export_html([cmp, rw.PatchingGrid(cmp.patching)])
    assert html.count('"_rw_static":true') == 2
    assert "Nothing was left out of this snapshot" in html


# ----------------------------------------------------------------------------- Dashboard edit mode

def test_dashboard_edits_rerun_the_prompt(pair):
    clean, corrupt = pair
    dash = rw.Dashboard(corrupt, source=clean, target=3)
    assert dash.edits == [] and dash.edited is None and dash._can_patch
    dash.edits = [rw.Zero("mlp.1", positions=[-1]), {"kind": "project_out", "component": "attn.0",
                                                      "direction": {"target": 3}}]
    assert dash.edits[0] == {"kind": "zero", "component": "mlp.1", "head": None, "neuron": None, "positions": [-1]}
    reference = corrupt.edit(rw.Zero("mlp.1", positions=[-1]), rw.ProjectOut("attn.0", direction=corrupt.readout.unembed[3]))
    torch.testing.assert_close(dash.edited.logits, reference.logits)
    assert dash._edit_names == ["zero mlp.1 @ [-1]", "project out attn.0 along W_U[3]"]
    # the views show the edited run; the ghost is the original's own payload
    shown = decode_payload(dash._targets[0]["dla"])
    np.testing.assert_allclose(shown, reference.dla_grid(3).numpy(), rtol=1e-5, atol=1e-6)
    ghost = decode_payload(dash._original["targets"]["3"]["dla"])
    np.testing.assert_allclose(ghost, corrupt.dla_grid(3).numpy(), rtol=1e-5, atol=1e-6)
    dash.edits = []
    assert dash.edited is None and dash._original == {}
    np.testing.assert_allclose(decode_payload(dash._targets[0]["dla"]), corrupt.dla_grid(3).numpy(), rtol=1e-5,
                               atol=1e-6)


def test_dashboard_edits_are_checked(pair):
    clean, corrupt = pair
    dash = rw.Dashboard(corrupt)
    with pytest.raises(traitlets.TraitError, match="unknown component 'attn.9'"):
        dash.edits = [rw.Zero("attn.9")]
    with pytest.raises(traitlets.TraitError, match="head 99"):
        dash.edits = [{"kind": "zero", "component": "attn.0", "head": 99}]
    with pytest.raises(traitlets.TraitError, match="needs a second prompt.*source="):
        dash.edits = [{"kind": "patch", "component": "attn.0"}]
    with pytest.raises(traitlets.TraitError, match="kind must be one of"):
        dash.edits = [{"kind": "scale", "component": "attn.0"}]
    assert dash.edits == [] and dash.edited is None


def test_dashboard_of_an_edited_decomposition_shows_it_against_its_baseline(pair):
    clean, corrupt = pair
    patched = corrupt.edit(rw.Patch("attn.1", source=clean, positions=[-1]))
    dash = rw.Dashboard(patched, target=3)
    assert dash.edited is patched and dash.source is clean
    assert dash.edits == [{"kind": "patch", "component": "attn.1", "head": None, "neuron": None, "positions": [-1]}]
    np.testing.assert_allclose(decode_payload(dash._original["targets"]["3"]["dla"]), corrupt.dla_grid(3).numpy(),
                               rtol=1e-5, atol=1e-6)
    dash.edits = dash.edits + [rw.Zero("mlp.0")]  # adds to the baseline's edits
    torch.testing.assert_close(dash.edited.logits, patched.edit(rw.Zero("mlp.0")).logits)


def test_dashboard_snapshot_embeds_each_layers_zero_ablation(pair):
    clean, _ = pair
    dash = rw.Dashboard(clean, target=3)
    state = dash._snapshot_state(2_000_000)
    whatif = state["_whatif"]
    assert whatif["target"] == 3 and whatif["position"] == len(clean.tokens) - 1
    assert sorted(whatif["effects"]) == sorted(lab for lab in clean.labels if lab.startswith(("attn.", "mlp.")))
    for label, effect in whatif["effects"].items():
        zeroed = clean.edit(rw.Zero(label))
        np.testing.assert_allclose(decode_payload(effect["dla"]), zeroed.contributions(3, -1).numpy(), rtol=1e-5,
                                   atol=1e-6)
        assert effect["logit"] == pytest.approx(float(zeroed.logits[-1, 3]), abs=1e-5)
    assert any("other edits need the kernel" in n for n in state["__notes__"])
    dash.edits = [rw.Zero("mlp.0")]  # an edited run's snapshot holds no what-if of another run
    state = dash._snapshot_state(2_000_000)
    assert "_whatif" not in state and any("edited run" in n for n in state["__notes__"])


def test_dashboard_what_ifs_left_out_when_costly_and_on_request(pair, monkeypatch):
    from resid_widgets.views import edit_mode

    clean, _ = pair
    runs_tokens = 2 * clean.n_layers * len(clean.tokens)
    monkeypatch.setattr(edit_mode, "WHAT_IF_AUTO_TOKENS", runs_tokens - 1)  # this prompt is now "long"
    state = rw.Dashboard(clean, target=3)._snapshot_state(2_000_000)
    assert "_whatif" not in state
    note = next(n for n in state["__notes__"] if "zero-ablation effects left out" in n)
    assert "what_ifs=True" in note and f"{2 * clean.n_layers} zero-ablated runs of {len(clean.tokens)} tokens" in note
    assert "_whatif" in rw.Dashboard(clean, target=3, what_ifs=True)._snapshot_state(2_000_000)
    monkeypatch.setattr(edit_mode, "WHAT_IF_AUTO_TOKENS", runs_tokens)
    assert "_whatif" in rw.Dashboard(clean, target=3)._snapshot_state(2_000_000)
    state = rw.Dashboard(clean, target=3, what_ifs=False)._snapshot_state(2_000_000)
    assert "_whatif" not in state and any("what_ifs=False" in n for n in state["__notes__"])
    with pytest.raises(ValueError, match="what_ifs"):
        rw.Dashboard(clean, what_ifs="yes")


def test_closed_dashboard_frees_its_source_and_edits(model):
    clean, corrupt = _pair(model, seed=7)
    alive = [weakref.ref(clean), weakref.ref(corrupt)]
    dash = rw.Dashboard(corrupt, source=clean, edits=[rw.Patch("attn.0", source=clean)])
    edited = weakref.ref(dash.edited)
    dash.close()
    del clean, corrupt
    gc.collect()
    assert [a() for a in alive] == [None, None] and edited() is None
