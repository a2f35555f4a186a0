"""Python side of the views: payloads (binary, top-k only), synced traits, kernel messages,
snapshot state, figure(). The browser side is in tests/browser/."""

from __future__ import annotations

import numpy as np
import pytest
import traitlets

from resid_widgets.views import ContributionBars, Dashboard, LogitLens, StreamGrid
from resid_widgets.views import payload as P
from views_fixtures import view_decomposition

VIEWS = [StreamGrid, ContributionBars, LogitLens, Dashboard]
NAMES = {StreamGrid: "stream-grid", ContributionBars: "contribution-bars", LogitLens: "logit-lens", Dashboard: "dashboard"}


def _buffers(widget):
    from ipywidgets.widgets.widget import _remove_buffers

    _, paths, bufs = _remove_buffers(widget.get_state())
    return paths, bufs


@pytest.mark.parametrize("cls", VIEWS)
def test_view_state_is_binary_and_topk_only(cls, view_dec):
    w = cls(view_dec)
    assert w._rw_view == NAMES[cls]
    assert w._error == ""
    paths, bufs = _buffers(w)
    assert ["_arrays", "state_norm", "data"] in paths
    assert all(isinstance(b, (bytes, memoryview)) for b in bufs)
    # no JSON lists of numbers for the arrays, and never a full vocabulary row
    C, T, V = len(view_dec.labels), len(view_dec.tokens), view_dec.vocab_size
    for p in w._arrays.values():
        assert isinstance(p["data"], bytes)
        assert V not in p["shape"][-1:] or p["shape"][-1] == w._meta["k"]
    assert w._arrays["lens_ids"]["shape"] == [C, T, w._meta["k"]]
    assert w._arrays["lens_probs"]["dtype"] == "float16"
    total = sum(len(bytes(b)) for b in bufs)
    assert total < 50_000


def test_payload_round_trip_and_float16():
    x = np.array([[1.5, -2.25], [70000.0, 1e-8]], dtype=np.float32)
    p = P.array_payload(x, "float16")
    assert p["dtype"] == "float16" and p["shape"] == [2, 2] and len(p["data"]) == 8
    y = P.decode_payload(p)
    assert y[0, 0] == 1.5 and y[0, 1] == -2.25
    assert y[1, 0] == 65504.0, "clipped to the float16 range, not inf"
    q = P.array_payload(np.arange(6).reshape(2, 3), "int32")
    assert P.decode_payload(q).tolist() == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(ValueError):
        P.array_payload(x, "float64")


def test_display_token():
    assert P.display_token(" Paris") == "·Paris"
    assert P.display_token("ĠParis") == "·Paris"
    assert P.display_token("\n") == "↵"
    assert P.display_token("") == "∅"


def test_defaults_selected_target_position(view_dec):
    w = StreamGrid(view_dec)
    C, T = len(view_dec.labels), len(view_dec.tokens)
    assert w.selected == (C - 1, T - 1)
    assert w.position == T - 1
    top = view_dec.token_text(view_dec.top_prediction(-1))
    assert w.target == top
    sources = [t["source"] for t in w._targets]
    assert sources[0] == "top" and "next" in sources
    # SmolLM2-like attention sink at position 0 -> excluded from the colour scale by default
    assert w.exclude_first is True
    assert StreamGrid(view_decomposition(sink=False)).exclude_first is False


def test_selected_from_python_validates(view_dec):
    w = StreamGrid(view_dec)
    w.selected = (3, 2)
    assert w.selected == (3, 2)
    w.selected = [-1, 0]
    assert w.selected == (len(view_dec.labels) - 1, 0)
    with pytest.raises(traitlets.TraitError):
        w.selected = (99, 0)
    assert w.get_state("selected")["selected"] in ([6, 0], (6, 0))


def test_target_by_text_or_id_precomputes(view_dec):
    w = ContributionBars(view_dec)
    n = len(w._targets)
    w.target = " Paris"
    assert w.target == " Paris" and len(w._targets) == n + 1
    w.target = 1  # the same token by id: no new entry
    assert w.target == " Paris" and len(w._targets) == n + 1
    with pytest.raises(traitlets.TraitError):
        w.target = "not a token"
    # a target given at construction is precomputed and selected
    w = ContributionBars(view_dec, target=" Paris")
    entry = w._find_target(" Paris")
    assert entry is not None and entry["id"] == 1 and w.target == " Paris"


def test_contributions_match_engine(llama_dec):
    w = ContributionBars(llama_dec, position=4)
    assert w.position == 4
    tid = w._targets[0]["id"]
    np.testing.assert_allclose(w.values("dla"), llama_dec.contributions(tid, 4, "dla").numpy(), atol=1e-5)
    np.testing.assert_allclose(w.values("logprob"), llama_dec.contributions(tid, 4, "logprob").numpy(), atol=1e-5)
    assert w.actual("dla") == pytest.approx(float(llama_dec.logits[4, tid]), abs=1e-4)
    assert w.actual("logprob") == pytest.approx(llama_dec.logprob(tid, 4), abs=1e-4)
    lp = P.decode_payload(w._arrays["next_prob"])
    nxt = int(llama_dec.token_ids[3])
    np.testing.assert_allclose(lp[:, 2], llama_dec.logit_lens(3).prob(nxt)[:, 2].numpy(), rtol=2e-3, atol=1e-4)
    assert np.isnan(lp[:, -1]).all()


def test_targets_without_tokenizer(llama_dec):
    w = LogitLens(llama_dec)
    w.target = "<5>"
    assert w.target == "<5>"
    w.target = 6
    assert w.target == "<6>"


def _replies(w, content):
    out = []
    w.send = lambda c, buffers=None: out.append((c, buffers or []))
    w._on_custom(w, content, [])
    return out


def test_kernel_messages_pane_target_heads(view_dec):
    w = Dashboard(view_dec)
    C, d = len(view_dec.labels), view_dec.d_model
    [(c, bufs)] = _replies(w, {"type": "pane", "state": 2, "position": 3, "id": "a"})
    assert c["type"] == "pane" and c["id"] == "a" and c["shape"] == [C, d] and c["dtype"] == "float16"
    arr = np.frombuffer(bufs[0], dtype="<f2").reshape(C, d)
    np.testing.assert_allclose(arr, view_dec.deltas[:, 3].numpy(), rtol=1e-2, atol=1e-2)
    [(c, _)] = _replies(w, {"type": "target", "target": " Paris", "id": "b"})
    assert c["ok"] and c["text"] == " Paris" and w._find_target(" Paris")
    [(c, _)] = _replies(w, {"type": "target", "target": "no such", "id": "c"})
    assert c["ok"] is False and "'no such' is 2 tokens" in c["error"]
    [(c, _)] = _replies(w, {"type": "heads", "target": " Paris", "position": 1, "id": "d"})
    assert c["ok"] and "1" in w._find_target(" Paris")["heads"]
    h = P.decode_payload(w._find_target(" Paris")["heads"]["1"]["dla"])
    assert h.shape == (view_dec.n_layers, view_dec.n_heads + 1)


def test_snapshot_state_respects_budget(view_dec):
    w = StreamGrid(view_dec)
    C, T, d = len(view_dec.labels), len(view_dec.tokens), view_dec.d_model
    full = w._snapshot_state(10_000_000)
    assert full["_rw_static"] is True
    assert full["_panes"]["positions"] == list(range(T))
    assert full["_panes"]["shape"] == [C, T, d] and full["_panes"]["dtype"] == "float16"
    # everything embedded: no note (the footer lists only what was left out)
    assert full["_panes_note"] == "" and not any("vector pane" in n for n in full["__notes__"])
    per = C * d * 2
    part = w._snapshot_state(3 * per + 10)
    assert len(part["_panes"]["data"]) <= 3 * per + 10
    assert T - 1 in part["_panes"]["positions"], "the selected position comes first"
    assert "3 of" in part["_panes_note"]
    none = w._snapshot_state(10)
    assert none["_panes"] == {} and "no vector panes" in none["_panes_note"]


@pytest.mark.parametrize("cls", VIEWS)
def test_figure(cls, view_dec):
    import plotly.graph_objects as go

    fig = cls(view_dec).figure()
    assert isinstance(fig, go.Figure) and len(fig.data) >= 1


def test_grid_values_per_metric(view_dec):
    w = StreamGrid(view_dec)
    np.testing.assert_allclose(w.values("norm"), view_dec.states.norm(dim=-1).numpy(), rtol=1e-5)
    np.testing.assert_allclose(w.values("delta"), view_dec.deltas.norm(dim=-1).numpy(), rtol=1e-5)
    tid = w._find_target(w.target)["id"]  # its text may not encode back to one token (here: the <img> token)
    np.testing.assert_allclose(w.values("prob"), view_dec.logit_lens(1).prob(tid).numpy(), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(w.values("dla"), view_dec.dla_grid(tid).cumsum(0).numpy(), rtol=1e-4, atol=1e-4)


def test_bad_input_shows_a_message_not_an_exception():
    dec = view_decomposition(T=3)
    dec.labels = []
    with pytest.warns(RuntimeWarning, match="empty"):
        w = StreamGrid(dec)
    assert "empty" in w._error
    with pytest.warns(RuntimeWarning, match="is 2 tokens"):
        bad = ContributionBars(view_decomposition(), target="two tokens")
    assert "'two tokens' is 2 tokens" in bad._error


def test_real_llama_all_views(llama_dec):
    for cls in VIEWS:
        w = cls(llama_dec)
        assert w._error == ""
        assert w._meta["tokens"][0].startswith("<")
        assert w._meta["n_heads"] == 4


def test_views_importable_from_package():
    import resid_widgets as rw
    import resid_widgets.views as v

    assert v.StreamGrid is StreamGrid
    if hasattr(rw, "StreamGrid"):
        assert rw.StreamGrid is StreamGrid and rw.Dashboard is Dashboard


def test_every_family_renders_payload(family_model):
    """A Decomposition from any supported family gives a complete view payload."""
    import resid_widgets as rw
    from models_zoo import random_ids

    name, model = family_model
    dec = rw.decompose(model, random_ids(7))
    w = Dashboard(dec)
    assert w._error == "", f"{name}: {w._error}"
    C, T = len(dec.labels), len(dec.tokens)
    assert w._arrays["state_norm"]["shape"] == [C, T]
    kinds = w._meta["kinds"]
    assert kinds.count("attn") == dec.n_layers and kinds.count("mlp") == dec.n_layers, (name, dec.labels)
    bars = ContributionBars(dec)
    tid = bars._targets[0]["id"]
    np.testing.assert_allclose(bars.values("dla"), dec.contributions(tid, -1, "dla").numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bars.values("logprob"), dec.contributions(tid, -1, "logprob").numpy(), rtol=1e-4, atol=1e-4)
    # DLA + constant = the model's logit (up to a final soft-cap)
    total = bars.values("dla").sum() + bars._targets[0]["dla_constant"]
    if not getattr(dec.readout, "softcap", None):
        assert total == pytest.approx(bars.actual("dla"), rel=1e-3, abs=1e-3), name


@pytest.mark.slow
def test_smollm2_paris_payload(paris):
    w = Dashboard(paris)
    assert w.target == " Paris"
    assert w.exclude_first is True, "SmolLM2's attention sink (norm ~22k at position 0) is left out of the scale"
    norms = P.decode_payload(w._arrays["state_norm"])
    assert norms[:, 0].max() > 10_000 and norms[:, 1:].max() < 5_000
    assert all("Ġ" not in t for t in w._meta["tokens"])
    # compact: top-k only
    paths, bufs = _buffers(w)
    assert sum(len(bytes(b)) for b in bufs) < 300_000
