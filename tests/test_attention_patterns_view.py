"""rw.AttentionPatterns in Python: traits, per-layer payloads, rw.link, figure, snapshot budget."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import traitlets
import transformers as tf

import resid_widgets as rw
from models_zoo import COMMON, build, random_ids
from resid_widgets.views.attention_patterns import snapshot_patterns
from resid_widgets.views.payload import decode_payload

T = 11


@pytest.fixture(scope="module")
def dec():
    ids = random_ids(6, seed=4)
    return rw.decompose(build("llama"), torch.cat([ids, ids[:5]]))


def test_payload_holds_the_scores_and_the_shown_layer(dec):
    w = rw.AttentionPatterns(dec, layer=1, head=2, position=4)
    d = w._data
    L, H = dec.n_layers, dec.n_heads
    assert (d["n_layers"], d["n_heads"], d["T"]) == (L, H, T) and d["tokens"] == dec.tokens
    scores = rw.analysis.head_scores(dec)
    for kind in rw.analysis.SCORE_KINDS:
        np.testing.assert_allclose(decode_payload(d["scores"][kind]), scores.scores[kind].numpy(), rtol=1e-6)
    assert (w.layer, w.head, w.position) == (1, 2, 4)
    assert list(w._patterns) == ["1"] and w._patterns["1"]["format"] == "dense"
    np.testing.assert_allclose(decode_payload(w._patterns["1"]["values"]), scores.pattern(1).values.float().numpy())
    w.layer = 0  # only the shown layer travels
    assert list(w._patterns) == ["0"]
    assert w.scores is scores


def test_traits_are_checked(dec):
    w = rw.AttentionPatterns(dec)
    assert w.position == T - 1 and w.head == -1
    w.layer = -1
    assert w.layer == dec.n_layers - 1
    w.position = -2
    assert w.position == T - 2
    for name, bad, says in (("layer", dec.n_layers, "outside 0..1"), ("head", dec.n_heads, r"outside 0..3 \(-1"),
                            ("head", -2, "outside"), ("position", T, "outside the prompt")):
        with pytest.raises(traitlets.TraitError, match=says):
            setattr(w, name, bad)
    with pytest.raises(traitlets.TraitError, match="entropy"):
        w.score_kind = "entropy"


@pytest.mark.parametrize("bad", [math.nan, math.inf, 2.5, True, "3"])
def test_layer_head_and_position_refuse_non_integers_clearly(dec, bad):
    """As in the other views: the error names the trait and what to give; True is not taken as 1."""
    w = rw.AttentionPatterns(dec)
    for name, hint in (("layer", "a layer index"), ("head", "a head index; -1: no head opened"),
                       ("position", "a token position")):
        with pytest.raises(traitlets.TraitError, match=f"{name} must be a whole number .{hint}"):
            setattr(w, name, bad)
    w.layer, w.head, w.position = np.int64(1), np.int32(2), np.int16(3)
    assert (w.layer, w.head, w.position) == (1, 2, 3) and type(w.head) is int


def test_defaults_follow_the_scores():
    d1 = rw.decompose(build("gemma2"), torch.arange(3, 3 + T))  # nothing repeats
    w = rw.AttentionPatterns(d1)
    assert w.score_kind == "previous_token" and w._data["n_induction_positions"] == 0
    best = max(w.scores.rows, key=lambda r: r["previous_token"])
    assert w.layer == best["layer"]
    d2 = rw.decompose(build("gemma2"), torch.cat([torch.arange(3, 9), torch.arange(3, 9)]))
    w2 = rw.AttentionPatterns(d2)
    assert w2.score_kind == "induction"
    assert w2.layer == max(w2.scores.rows, key=lambda r: r["induction"])["layer"]


def test_a_decomposition_without_a_model_shows_a_message():
    from views_fixtures import view_decomposition

    dec = view_decomposition()
    dec.adapter = None  # what a TransformerLens model's Decomposition holds (backends/transformer_lens.py)
    with pytest.warns(RuntimeWarning, match="cannot show"):
        w = rw.AttentionPatterns(dec)
    assert "Hugging Face model" in w._error
    assert w._snapshot_state(1000) == {"_rw_static": True}


def test_figures(dec):
    w = rw.AttentionPatterns(dec, layer=1)
    fig = w.figure()  # no head opened: every head of the layer
    heat = [tr for tr in fig.data if tr.type == "heatmap"]
    assert len(heat) == dec.n_heads + 1
    np.testing.assert_allclose(np.array(heat[0].z[4][:5], dtype=float),
                               w.scores.pattern(1).dense()[0, 4, :5].numpy(), rtol=1e-6)
    assert heat[0].z[4][5] is None  # the causal mask is not a zero weight
    w.head, w.position = 3, 6
    fig = w.figure()
    assert len([tr for tr in fig.data if tr.type == "heatmap"]) == 2
    assert "destination row 6" in fig.layout.title.text and fig.layout.shapes
    fig.to_json()


def test_link_makes_the_selected_position_the_destination_row(dec):
    grid, pat, bars = rw.StreamGrid(dec), rw.AttentionPatterns(dec), rw.ContributionBars(dec)
    links = rw.link(grid, pat, bars)
    assert pat.position == grid.selected[1]
    grid.selected = (3, 4)
    assert pat.position == 4 and bars.position == 4
    pat.position = 7  # a row clicked in the pattern
    assert grid.selected == (3, 7) and bars.position == 7
    for one in links:
        one.unlink()
    dash = rw.Dashboard(dec)
    rw.link(pat, dash)  # the pattern may come first
    dash.selected = (2, 5)
    assert pat.position == 5
    pair = rw.link(rw.ContributionBars(dec), other := rw.AttentionPatterns(dec))
    pair[0].source[0].position = 3
    assert other.position == 3
    with pytest.raises(TypeError, match="has no trait"):
        rw.link(grid, pat, traits=("selected", "target"))
    with pytest.raises(ValueError, match="different decompositions"):
        rw.link(grid, rw.AttentionPatterns(rw.decompose(build("llama"), random_ids(T + 2))))


def test_snapshot_embeds_every_layer_within_the_budget(dec):
    w = rw.AttentionPatterns(dec, layer=1)
    scores = w.scores
    dense_bytes = sum(scores.pattern(l).nbytes() for l in range(dec.n_layers))
    full = w._snapshot_state(dense_bytes + 10)
    assert full["_rw_static"] and sorted(full["_patterns"]) == ["0", "1"]
    assert all(p["format"] == "dense" for p in full["_patterns"].values())
    assert "every weight" in full["_patterns_note"] and full["__notes__"]

    def size(patterns):
        return sum(len(a["data"]) for p in patterns.values() for a in p.values() if isinstance(a, dict))

    tight = dense_bytes // 2
    sparse, note = snapshot_patterns(scores, tight)
    assert sorted(sparse) == ["0", "1"] and size(sparse) <= tight
    assert all(p["format"] == "sparse" for p in sparse.values()) and "sparsified to" in note
    cap = sparse["0"]["k"]
    assert decode_payload(sparse["0"]["counts"]).max() <= cap < T
    # far too small: the shown layer first, the others listed as left out
    one = snapshot_patterns(scores, 5 * dec.n_heads * T + 8, first=1)  # one layer at 1 weight per row
    assert list(one[0]) == ["1"] and "layers 0 left out" in one[1]


def test_long_prompt_dashboard_and_patterns_snapshot_fits_its_budget(tmp_path):
    """1,024 tokens of a small random Llama: the patterns are sparsified to fit beside the
    dashboard, every layer is embedded, and the page says so."""
    torch.manual_seed(0)
    model = tf.LlamaForCausalLM(tf.LlamaConfig(**{**COMMON, "max_position_embeddings": 1024},
                                               num_key_value_heads=2)).eval()
    ids = torch.randint(1, COMMON["vocab_size"], (1024,), generator=torch.Generator().manual_seed(0))
    dec = rw.decompose(model, ids)
    pat = rw.AttentionPatterns(dec)
    assert pat.scores.sparsified and pat._patterns[str(pat.layer)]["format"] == "sparse"
    budget = 6_000_000
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "over the budget" warning
        path = rw.export_html([rw.Dashboard(dec), pat], tmp_path / "long.html", budget_bytes=budget)
    text = path.read_text(encoding="utf-8")
    assert len(text.encode()) <= budget
    assert "attention patterns: all 2 layers embedded, sparsified to" in text
