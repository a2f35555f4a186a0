"""The analysis views (BlockBudget, the MLP neuron breakdown of ContributionBars,
AttentionSources) on tiny random models: payloads, traits, figures, snapshot state."""
from __future__ import annotations

import math

import numpy as np
import pytest
import traitlets
import torch

import resid_widgets as rw
from models_zoo import build, random_ids
from resid_widgets.views.payload import decode_payload

T = 11


@pytest.fixture(scope="module")
def dec():
    return rw.decompose(build("llama"), random_ids(T))


# ----------------------------------------------------------------------------- BlockBudget

def test_block_budget_payload_matches_analysis(dec):
    w = rw.BlockBudget(dec, position=-1, k=5)
    d = w._data
    L = dec.n_layers
    assert d["n_layers"] == L and d["k"] == 5 and d["position"] == T - 1
    ids = decode_payload(d["top_ids"])
    probs = decode_payload(d["top_probs"])
    assert ids.shape == (L + 1, 5) and probs.shape == (L + 1, 5)
    ref = rw.analysis.block_budget(dec, position=-1, k=5)
    assert (ids == ref.top_ids.numpy()).all()
    np.testing.assert_allclose(probs, ref.top_probs.numpy(), rtol=1e-5)
    # default target: the model's top prediction; at k=L it is the top-1 token
    assert d["target_id"] == dec.top_prediction(T - 1) == int(ids[L, 0])
    assert len(d["target_prob"]) == L + 1 and d["target_rank"][L] == 0
    assert all(str(int(i)) in d["vocab"] for i in ids.flatten())
    # drop-one strip (real re-runs)
    ref_drop = rw.analysis.drop_one(dec, target=d["target_id"], position=-1)
    np.testing.assert_allclose(d["drop"]["effect"], ref_drop.effect.numpy(), atol=1e-5)
    # small: (L+1)*k ids + probs
    assert len(d["top_ids"]["data"]) + len(d["top_probs"]["data"]) == (L + 1) * 5 * 8


def test_block_budget_trait_and_python_api(dec):
    L = dec.n_layers
    w = rw.BlockBudget(dec, target=int(random_ids(T)[3]), position=4, k=3)
    assert w.budget == L and w.position == 4
    w.budget = 0
    assert w.top()[0][0] == w._data["vocab"][str(int(decode_payload(w._data["top_ids"])[0, 0]))]
    w.budget = -1
    assert w.budget == L
    with pytest.raises(traitlets.TraitError, match="outside 0.."):
        w.budget = L + 1
    p = w._data["target_prob"]
    assert all(0 <= x <= 1 for x in p)
    # k = L is the full model's own distribution
    ref = torch.softmax(dec.logits[4].double(), -1)[w._data["target_id"]]
    assert math.isclose(p[L], float(ref), rel_tol=1e-3)
    fig = w.figure()
    assert len(fig.data) == 2
    assert w._snapshot_state(1000) == {"_rw_static": True}


@pytest.mark.parametrize("bad", [math.nan, math.inf, 2.5, True, "3"])
def test_budget_layer_and_position_refuse_non_integers_clearly(dec, bad):
    """NaN/inf/2.5 name the trait and the range; True is not taken as 1; numpy integers are fine."""
    budget = rw.BlockBudget(dec, drop=False)
    with pytest.raises(traitlets.TraitError, match=r"budget must be a whole number of blocks k in 0\.\.n_layers"):
        budget.budget = bad
    sources = rw.AttentionSources(dec)
    with pytest.raises(traitlets.TraitError, match="layer must be a whole number .a layer index"):
        sources.layer = bad
    for view in (budget, sources, rw.StreamGrid(dec)):
        with pytest.raises(traitlets.TraitError, match="position must be a whole number .a token position"):
            view.position = bad
    budget.budget, sources.layer = np.int64(1), np.int32(0)
    assert (budget.budget, sources.layer) == (1, 0) and type(budget.budget) is int
    with pytest.raises(traitlets.TraitError, match=r"outside 0\.\.2 \(or -3\.\.-1 from the end\)"):
        budget.budget = -4


def test_block_budget_bad_input_shows_message(dec):
    with pytest.warns(RuntimeWarning):
        w = rw.BlockBudget(dec, position=99)
    assert "cannot show" in w._error


def test_block_budget_without_model_leaves_drop_out(dec):
    w = rw.BlockBudget(dec, drop=False)
    assert w._data["drop"] is None


# ----------------------------------------------------------------------------- MLP neuron breakdown

def test_bars_embed_top_neurons_of_the_default_target(dec):
    from resid_widgets.views.neurons import N_NEURONS

    w = rw.ContributionBars(dec)
    tid = w._targets[0]["id"]
    assert w._neurons == {}, "computed when an MLP bar is opened, not up front"
    entry = w._snapshot_state()["_neurons"][f"{tid}:{T - 1}"]
    L = dec.n_layers
    idx, dla, act = (decode_payload(entry[k]) for k in ("index", "dla", "act"))
    assert idx.shape == dla.shape == act.shape == (L, N_NEURONS)
    full = dec.neuron_dla(tid, T - 1)
    for l in range(L):
        # the largest |DLA| neurons of the layer, strongest first, values as in dec.neuron_dla
        ref = full[l].abs().topk(N_NEURONS).indices.numpy()
        assert list(idx[l]) == list(ref)
        np.testing.assert_allclose(dla[l], full[l, ref].numpy(), rtol=1e-5, atol=1e-7)
        assert len(entry["bs_top"][l]) == N_NEURONS and all(len(x) == 3 for x in entry["bs_top"][l])
    # agrees with dec.top_neurons on the most promoting neuron of a layer
    best = dec.top_neurons(tid, T - 1, n=1, layer=1)[0]
    if best.dla > 0 and best.dla >= float(-dla[1].min()):
        assert int(idx[1, 0]) == best.index
    # small: a few kB per (target, position)
    assert sum(len(entry[k]["data"]) for k in ("index", "dla", "act")) == 3 * 4 * L * N_NEURONS


def test_bars_neurons_message_and_snapshot(dec):
    w = rw.ContributionBars(dec)
    sent = []
    w.send = lambda c, buffers=None: sent.append(c)
    other = w._targets[1]
    w._on_custom(w, {"type": "neurons", "target": other["text"], "position": 3, "id": "q1"}, [])
    assert sent[-1]["ok"] is True and sent[-1]["key"] == f"{other['id']}:3"
    assert f"{other['id']}:3" in w._neurons
    # a token that was not precomputed becomes a target first
    w._on_custom(w, {"type": "neurons", "target": int(random_ids(T)[0]) , "position": -1, "id": "q2"}, [])
    assert sent[-1]["ok"] is True
    before = dict(w._neurons)
    snap = w._snapshot_state(2_000_000)
    for tp in w._targets:
        assert f"{tp['id']}:{w.selected[1]}" in snap["_neurons"]
    assert w._neurons.keys() == before.keys()  # the live widget is left as it was
    assert any("MLP neurons" in n for n in snap["__notes__"])


def test_dashboard_has_neuron_breakdown_grid_does_not(dec):
    assert rw.Dashboard(dec)._snapshot_state()["_neurons"]
    assert "_neurons" not in rw.StreamGrid(dec)._snapshot_state()


# ----------------------------------------------------------------------------- AttentionSources

def test_attention_sources_payload_matches_analysis(dec):
    w = rw.AttentionSources(dec, position=6)
    d = w._data
    L, H = dec.n_layers, d["n_heads"]
    ref = rw.analysis.attention_subvalues(dec, d["target_id"], 6)
    dla = decode_payload(d["dla"])
    assert dla.shape == (L, H, 7) and len(d["tokens"]) == 7
    np.testing.assert_allclose(dla, ref.dla[:, :, :7].numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(decode_payload(d["alpha"]), ref.alpha[:, :, :7].numpy(), atol=2e-3)
    # heads + output bias = the attention layer's DLA (the bars' attn.l)
    for l in range(L):
        assert math.isclose(float(dla[l].sum()) + d["bias_dla"][l], d["layer_dla"][l], rel_tol=1e-3, abs_tol=1e-5)
    assert d["target_id"] == dec.top_prediction(6)
    # default layer: the one whose attention moves the target most
    assert w.layer == int(np.argmax(np.abs(d["layer_dla"])))
    np.testing.assert_allclose(w.table(0), dla[0])


def test_attention_sources_layer_trait_and_figure(dec):
    w = rw.AttentionSources(dec, target=int(random_ids(T)[2]), layer=0)
    assert w.layer == 0
    w.layer = -1
    assert w.layer == dec.n_layers - 1
    with pytest.raises(traitlets.TraitError, match="outside 0.."):
        w.layer = dec.n_layers
    assert w.figure().data
    assert w._snapshot_state(10) == {"_rw_static": True}


# ----------------------------------------------------------------------------- position trait

@pytest.mark.parametrize("view", ["budget", "sources"])
def test_setting_position_recomputes_the_view(dec, view):
    make = (lambda **kw: rw.BlockBudget(dec, k=4, drop=False, **kw)) if view == "budget" \
        else (lambda **kw: rw.AttentionSources(dec, layer=1, **kw))
    w = make()
    assert w.position == T - 1 == w._data["position"]
    w.position = 3
    fresh = make(position=3)._data
    assert w.position == 3 and w._data["position"] == 3
    assert w._data["target_id"] == dec.top_prediction(3) == fresh["target_id"]
    key = "top_ids" if view == "budget" else "dla"
    np.testing.assert_array_equal(decode_payload(w._data[key]), decode_payload(fresh[key]))
    w.position = -2  # counted from the end, as everywhere in the package
    assert w.position == T - 2 == w._data["position"]
    with pytest.raises(Exception, match="outside the prompt"):
        w.position = T
    assert w.position == T - 2
    if view == "budget":
        assert w.budget == dec.n_layers  # the slider keeps its value
    else:
        assert w.layer == 1


def test_position_that_cannot_be_computed_keeps_the_view(dec, monkeypatch):
    w = rw.BlockBudget(dec, k=3, drop=False)
    before = dict(w._data)

    def broken(position):
        raise RuntimeError("no model here")

    monkeypatch.setattr(w, "_payload", broken)
    with pytest.warns(RuntimeWarning, match="cannot show position 2"):
        w.position = 2
    assert w.position == T - 1 and w._data == before and w._error == ""
