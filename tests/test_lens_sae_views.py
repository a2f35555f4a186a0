"""Payloads of the tuned-lens switch (LogitLens, Dashboard: ``tuned_lens=``, ``lens``) and of the
vector pane's SAE "features" mode (StreamGrid, Dashboard: ``saes=``, ``pane_mode="features"``)."""
import math

import numpy as np
import pytest
import torch
import traitlets
from lens_sae_fixtures import perturbed_lens, small_sae
from models_zoo import build, random_ids

import resid_widgets as rw
from resid_widgets.errors import SAEError, TunedLensError
from resid_widgets.sae import features_payload
from resid_widgets.tuned_lens import kl_to_final
from resid_widgets.views.payload import decode_payload


@pytest.fixture(scope="module")
def dec():
    return rw.decompose(build("llama"), random_ids(8, seed=3))


@pytest.fixture(scope="module")
def lens(dec):
    return perturbed_lens(dec)


def reply(view, content):
    """The view's answer to one message from the front end."""
    sent = []
    view.send = lambda c, buffers=None: sent.append(c)
    view._on_custom(view, content, [])
    return sent[-1]


# ------------------------------------------------------------------------------- tuned lens
def test_both_lenses_travel_and_the_tuned_one_is_exact(dec, lens):
    w = rw.LogitLens(dec, tuned_lens=lens, k=4)
    assert w.lens == "tuned"  # given a tuned lens, the view opens on it
    tuned = dec.logit_lens(4, lens=lens)
    payload = w._lenses["tuned"]
    assert np.array_equal(decode_payload(payload["lens_ids"]), tuned.top_ids.numpy())
    np.testing.assert_allclose(decode_payload(payload["lens_probs"]), tuned.top_probs.numpy(), atol=1e-3)
    np.testing.assert_allclose(decode_payload(payload["kl"]), kl_to_final(dec, lens).numpy(), rtol=1e-6)
    np.testing.assert_allclose(decode_payload(w._lenses["logit"]["kl"]), kl_to_final(dec).numpy(), rtol=1e-6)
    assert payload["translated"] == lens.translated(dec) and not any(w._lenses["logit"]["translated"])
    # the actual next token's probability under the tuned lens, NaN in the last column
    nxt = decode_payload(payload["next_prob"])
    ids = dec.token_ids.reshape(-1)
    for t in range(len(ids) - 1):
        np.testing.assert_allclose(nxt[:, t], tuned.prob(int(ids[t + 1]))[:, t].numpy(), rtol=2e-3, atol=1e-5)
    assert np.isnan(nxt[:, -1]).all()
    # every precomputed target has its tuned log-probs; every tuned top-k id has its text
    for tp in w._targets:
        np.testing.assert_allclose(decode_payload(payload["logp"][str(tp["id"])]), tuned.logprob(tp["id"]).numpy(),
                                   rtol=1e-5, atol=1e-5)
    assert {str(int(i)) for i in tuned.top_ids.unique()} <= set(w._vocab)


def test_values_and_figure_follow_the_lens(dec, lens):
    w = rw.LogitLens(dec, tuned_lens=lens, k=3)
    tuned, plain = dec.logit_lens(3, lens=lens), dec.logit_lens(3)
    np.testing.assert_allclose(w.values("top"), tuned.top_probs[..., 0].numpy(), atol=1e-3)
    assert w.figure().layout.title.text.startswith("Tuned lens")
    assert w.kl().mean() == pytest.approx(float(kl_to_final(dec, lens).mean()), rel=1e-5)
    w.lens = "logit"
    np.testing.assert_allclose(w.values("top"), plain.top_probs[..., 0].numpy(), atol=1e-3)
    assert w.top_tokens()[0][0] == dec.token_text(int(plain.top_ids[0, 0, 0]))
    assert w.figure().layout.title.text.startswith("Logit lens")
    # a target added later gets its tuned log-probs too
    w.target = 11
    assert "11" in w._lenses["tuned"]["logp"]
    w.lens, w.lens_color = "tuned", "target"
    np.testing.assert_allclose(w.values(), tuned.prob(11).numpy(), rtol=1e-4, atol=1e-6)


def test_the_dashboard_switches_too_and_snapshots_carry_both(dec, lens):
    w = rw.Dashboard(dec, tuned_lens=lens, lens="logit")
    assert w.lens == "logit" and set(w._lenses) == {"logit", "tuned"}
    assert w.figure().layout.annotations  # the lens panel draws from the logit lens here
    snap = w._snapshot_state(10_000_000)
    assert any("tuned lens both embedded" in note for note in snap["__notes__"])
    state = w.get_state()
    assert "lens" in state and "tuned" in state["_lenses"]


def test_lens_errors_name_the_fix(dec, lens):
    plain = rw.LogitLens(dec)
    assert plain._lenses == {} and plain.lens == "logit"
    with pytest.raises(traitlets.TraitError, match="needs a tuned lens: create the view with tuned_lens="):
        plain.lens = "tuned"
    with pytest.raises(ValueError, match="kl_to_final"):
        plain.kl()
    with pytest.raises(TypeError, match="rw.TunedLens"):
        rw.LogitLens(dec, tuned_lens="lens")
    other = rw.decompose(build("llama", seed=5), random_ids(5))
    with pytest.raises(TunedLensError, match="trained for another model"):
        rw.LogitLens(other, tuned_lens=lens)


def test_close_lets_the_lens_go(dec, lens):
    w = rw.LogitLens(dec, tuned_lens=lens)
    w.close()
    assert w._lenses == {} and w._tuned_lens is None


# ------------------------------------------------------------------------------- SAE features
def test_features_pane_payload_round_trip(dec):
    sae = small_sae(dec.d_model)
    w = rw.StreamGrid(dec, saes={"blocks.0.hook_resid_post": sae}, sae_k=5)
    c = dec.index("mlp.0")
    assert w._features_meta == {"k": 5, "states": {str(c): {"label": "mlp.0", "d_sae": 64, "name": "SparseAutoencoder"}}}
    tid = w._targets[0]["id"]
    T = len(dec.tokens)
    assert list(w._features) == [f"{c}:{T - 1}:{tid}"]  # the default cell, computed up front
    w.pane_mode = "features"
    answer = reply(w, {"type": "features", "id": "r1", "state": c, "position": 2, "target": 9})
    assert answer == {"type": "features", "id": "r1", "ok": True, "error": "", "key": f"{c}:2:9"}
    entry = w._features[f"{c}:2:9"]
    expected = features_payload(dec.sae_features(sae, state="mlp.0", position=2, k=5, target=9))
    assert entry["labels"] == expected["labels"] and entry["feature_ids"] == expected["feature_ids"]
    np.testing.assert_array_equal(decode_payload(entry["dla"]), decode_payload(expected["dla"]))
    # the rows sum to the state (float16 rows: to their rounding)
    rows = decode_payload(entry["vectors"])
    np.testing.assert_allclose(rows.sum(0), dec.states[c, 2].numpy(), atol=2e-2 * float(dec.states[c, 2].abs().max()))
    assert entry["labels"][-3:] == ["other features", "decoder bias", "error"]
    act = decode_payload(entry["activation"])
    assert np.isnan(act[-3:]).all() and (act[:-3] > 0).all()
    # features() is what the pane shows
    result = w.features("mlp.0", position=2, target=9)
    assert result.labels == entry["labels"]


def test_features_messages_refuse_what_is_missing(dec):
    w = rw.StreamGrid(dec, saes={"mlp.0": small_sae(dec.d_model)})
    answer = reply(w, {"type": "features", "id": "r2", "state": dec.index("attn.1"), "position": 1, "target": 9})
    assert answer["ok"] is False and "no SAE is attached to attn.1 (attached: mlp.0)" in answer["error"]
    answer = reply(w, {"type": "features", "id": "r3", "state": dec.index("mlp.0"), "position": 99, "target": 9})
    assert answer["ok"] is False and "outside the prompt" in answer["error"]
    # other messages still reach the base view
    assert reply(w, {"type": "target", "id": "r4", "target": 12})["ok"] is True


def test_snapshots_embed_features_for_the_embedded_panes(dec):
    w = rw.Dashboard(dec, saes={"mlp.0": small_sae(dec.d_model), "attn.1": small_sae(dec.d_model, seed=1)})
    T, tid = len(dec.tokens), w._targets[0]["id"]
    before = dict(w._features)
    snap = w._snapshot_state(10_000_000)
    assert snap["_panes"]["positions"] == list(range(T))
    states = (dec.index("mlp.0"), dec.index("attn.1"))
    assert {f"{c}:{p}:{tid}" for c in states for p in range(T)} <= set(snap["_features"])
    assert all("error" not in e for e in snap["_features"].values())
    assert any("SAE features (mlp.0, attn.1) embedded" in n for n in snap["__notes__"])
    assert w._features == before  # the live view is left as it was
    small = w._snapshot_state(20_000)
    assert "_features" not in small and any("SAE features left out" in n for n in small["__notes__"])


def test_saes_arguments_are_checked(dec):
    with pytest.raises(traitlets.TraitError, match="needs a sparse autoencoder: create the view with saes="):
        rw.StreamGrid(dec).pane_mode = "features"
    with pytest.raises(ValueError, match="No component 'mlp.9'"):
        rw.StreamGrid(dec, saes={"mlp.9": small_sae(dec.d_model)})
    with pytest.raises(SAEError, match="belongs to another model"):
        rw.StreamGrid(dec, saes={"mlp.0": small_sae(dec.d_model + 1)})
    with pytest.raises(ValueError, match="does not say which state"):
        rw.StreamGrid(dec, saes=[small_sae(dec.d_model)])
    with pytest.raises(TypeError, match="not an SAE"):
        rw.StreamGrid(dec, saes={"mlp.0": object()})
    # SAEs that know their state
    w = rw.StreamGrid(dec, saes=[small_sae(dec.d_model, state="blocks.1.hook_resid_mid")])
    assert next(iter(w._features_meta["states"].values()))["label"] == "attn.1"
    assert math.isfinite(w.features("attn.1").reconstruction_error)


def test_a_foreign_sae_object_works_in_the_pane(dec):
    """Any object with encode/decode (here a torch module without W_dec) splits through decode."""
    sae = small_sae(dec.d_model)

    class Foreign(torch.nn.Module):
        def encode(self, x):
            return sae.encode(x)

        def decode(self, f):
            return sae.decode(f)

    w = rw.StreamGrid(dec, saes={"mlp.1": Foreign()})
    entry = next(iter(w._features.values()))
    assert "error" not in entry and entry["labels"][-1] == "error"


def test_a_closed_view_with_a_lens_and_saes_lets_go_of_its_decomposition():
    import gc
    import weakref

    model = build("llama")
    dec = rw.decompose(model, random_ids(6, seed=1))
    alive = weakref.ref(dec)
    lens, sae = perturbed_lens(dec), small_sae(dec.d_model)
    view = rw.Dashboard(dec, tuned_lens=lens, saes={"mlp.0": sae})
    reply(view, {"type": "features", "id": "x", "state": dec.index("mlp.0"), "position": 1, "target": 9})
    view.close()
    del dec
    gc.collect()
    assert alive() is None, "a closed Dashboard with a tuned lens and SAEs keeps its Decomposition alive"
    assert view._lenses == {} and view._features == {}
