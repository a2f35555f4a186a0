"""What the views mean (issue 11's "Meaning" items, issue 14's lens gap), on real decompositions.

- neuron tokens: what each top neuron's contribution at its activation promotes and suppresses,
  against a recomputation from the model's own weights and hooks (the activation's sign included);
- targets: the spaced variant of a token typed without its space, the pieces of a multi-token text;
- the Dashboard's bars follow the selected position's own top token until a target is pinned;
- the grid's "lens p(target)" reads the selected lens.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import resid_widgets as rw
from lens_sae_fixtures import perturbed_lens
from models_zoo import build, random_ids
from resid_widgets.tokens import spaced_variant, target_hint
from resid_widgets.views.dashboard import top_targets_payload
from resid_widgets.views.neurons import neurons_payload
from resid_widgets.views.payload import decode_payload


# ------------------------------------------------------------------------------ neuron tokens
def _independent_neuron_tokens(model, ids, position: int, k: int):
    """neuron_tokens(layer, neuron) -> (activation, promoted ids, suppressed ids) of Llama-style
    neurons, from one hooked forward and the weights only: the down projection's input is the
    activation, act * W_down[:, n] goes through the final RMSNorm frozen at the real final stream
    (its gain included), then the unembedding."""
    seen = {}
    layers = model.model.layers
    norm = model.model.norm

    def keep(name):
        return lambda module, args, out: seen.__setitem__(name, args[0][0, position].detach().float())

    hooks = [layer.mlp.down_proj.register_forward_hook(keep(i)) for i, layer in enumerate(layers)]
    hooks.append(norm.register_forward_hook(keep("final")))
    try:
        with torch.no_grad():
            model(ids[None])
    finally:
        for hook in hooks:
            hook.remove()
    rms = torch.sqrt(seen["final"].pow(2).mean() + norm.variance_epsilon)

    def neuron_tokens(layer: int, neuron: int):
        act = float(seen[layer][neuron])
        with torch.no_grad():
            vec = act * layers[layer].mlp.down_proj.weight[:, neuron].float()
            bs = model.lm_head.weight.float() @ (vec / rms * norm.weight.float())
        return act, bs.topk(k).indices.tolist(), bs.topk(k, largest=False).indices.tolist()

    return neuron_tokens


def _check_neuron_lists(dec, model, ids, target, position, layers=None):
    entry = neurons_payload(dec, dec.target_id(target), position)
    index = decode_payload(entry["index"])
    acts = decode_payload(entry["act"])
    neuron_tokens = _independent_neuron_tokens(model, ids, position, len(entry["bs_top"][0][0]))
    signs = set()
    for layer in layers if layers is not None else range(index.shape[0]):
        for j, neuron in enumerate(index[layer][:3]):
            act, up, down = neuron_tokens(layer, int(neuron))
            assert acts[layer, j] == pytest.approx(act, rel=1e-4, abs=1e-5)
            assert entry["bs_top"][layer][j] == [dec.token_text(i) for i in up]
            assert entry["bs_bottom"][layer][j] == [dec.token_text(i) for i in down]
            signs.add(act > 0)
    return signs


def test_neuron_promote_and_suppress_lists_match_the_weights_on_a_tiny_llama():
    model = build("llama").eval()
    ids = random_ids(9)
    dec = rw.decompose(model, ids)
    signs = _check_neuron_lists(dec, model, ids, dec.top_prediction(-1), dec.n_tokens - 1)
    assert signs == {True, False}  # both signs of activation were checked


def test_neuron_tokens_follow_the_sign_of_the_activation_in_smollm2(smollm2, paris):
    model, _tok = smollm2
    ids = paris.token_ids.reshape(-1)
    _check_neuron_lists(paris, model, ids, " Paris", 4, layers=(0, 14, 28))
    # a neuron firing negatively promotes what its weights alone would suppress
    entry = neurons_payload(paris, paris.target_id(" Paris"), 4)
    acts, index = decode_payload(entry["act"]), decode_payload(entry["index"])
    layer, j = next((l, j) for l in range(index.shape[0]) for j in range(index.shape[1]) if acts[l, j] < -1)
    weights_only = paris.bs_tokens(paris.neuron_vectors(layer, [int(index[layer, j])], 4) / float(acts[layer, j]), 4, 3)
    assert entry["bs_top"][layer][j] == [text for text, _ in weights_only[1][0]]
    assert entry["bs_bottom"][layer][j] == [text for text, _ in weights_only[0][0]]


# ------------------------------------------------------------------------------ targets
def test_spaced_variant_is_suggested_and_the_typed_target_kept(smollm2, paris):
    _model, tok = smollm2
    assert spaced_variant(tok, "Rome") == tok.encode(" Rome", add_special_tokens=False)[0]
    assert spaced_variant(tok, " Rome") is None
    bars = rw.ContributionBars(paris)
    bars.target = "Rome"
    assert bars.target == "Rome"  # what was typed is what is explained
    assert bars.target_hint == {"typed": "Rome", "suggestion": " Rome"}
    bars.target = " Rome"
    assert bars.target_hint == {}
    bars.close()


def test_no_did_you_mean_for_a_target_the_view_chose(smollm2, paris):
    _model, tok = smollm2
    dash = rw.Dashboard(paris)
    chosen = []
    for position in range(len(paris.tokens)):  # each position's own top token, followed (not typed)
        dash.selected = [dash.selected[0], position]
        assert not dash.target_pinned and "suggestion" not in dash.target_hint
        if spaced_variant(tok, dash.target) is not None:
            chosen.append(position)
    assert chosen, "no auto target without its leading space in this prompt: the check above proved nothing"
    dash.target = "Rome"  # typed: the suggestion is offered
    assert dash.target_pinned and dash.target_hint.get("suggestion") == " Rome"
    dash.close()
    bars = rw.ContributionBars(paris, position=chosen[0])
    assert spaced_variant(tok, bars.target) is not None
    assert "suggestion" not in bars.target_hint  # the default target is the model's own prediction
    bars.close()


def test_a_multi_token_target_says_how_it_splits_and_clears_on_a_good_target(smollm2, paris):
    _model, tok = smollm2
    hint = target_hint(tok, "New York")
    assert hint["pieces"] == ["New", " York"]
    assert "'New' + ' York'" in hint["error"] and "pick one" in hint["error"]
    dash = rw.Dashboard(paris)
    sent = []
    dash.send = lambda content, buffers=None: sent.append(content)
    dash._on_custom(dash, {"type": "target", "target": "New York", "id": "r1"}, [])  # typed in the view
    assert sent[-1]["ok"] is False and dash.target_hint["pieces"] == ["New", " York"]
    dash.target = " Rome"  # from Python: the error goes
    assert dash.target_hint == {}
    dash.close()


# ------------------------------------------------------------------------------ dashboard auto target
def test_dashboard_bars_follow_the_selected_positions_top_token(paris):
    dash = rw.Dashboard(paris)
    T = paris.n_tokens
    n_targets = len(dash._targets)
    assert not dash.target_pinned and dash.target == paris.token_text(paris.top_prediction(T - 1))
    for p in (1, 3, 0, 2, 1):
        dash.selected = (dash.selected[0], p)
        assert dash.target == paris.token_text(paris.top_prediction(p)) and not dash.target_pinned
        shown = rw.ContributionBars.values(dash, "dla", p)  # what the bars' figure() shows
        np.testing.assert_allclose(shown, paris.contributions(paris.top_prediction(p), p, "dla"), rtol=1e-4, atol=1e-4)
        assert len(dash._targets) <= n_targets + 1  # followed tokens do not pile up
    dash.target = dash.target  # set from Python, even to the token it explains: pinned
    assert dash.target_pinned
    dash.target = " Paris"
    dash.selected = (dash.selected[0], 2)
    assert dash.target == " Paris"
    dash.target_pinned = False  # unpinned: back to position 2's own top token
    assert dash.target == paris.token_text(paris.top_prediction(2))
    dash.close()
    pinned = rw.Dashboard(paris, target=" Rome")
    assert pinned.target_pinned and pinned.target == " Rome"
    pinned.selected = (pinned.selected[0], 1)
    assert pinned.target == " Rome"
    pinned.close()


def test_top_targets_payload_explains_each_positions_own_top_token(paris):
    top = top_targets_payload(paris, 10)
    dla, logp = decode_payload(top["dla"]), decode_payload(top["logp"])
    lens = paris.logit_lens(k=1)
    for p in range(paris.n_tokens):
        tid = paris.top_prediction(p)
        assert top["ids"][p] == tid and top["texts"][p] == paris.token_text(tid)
        np.testing.assert_allclose(dla[:, p], paris.contributions(tid, p, "dla"), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(logp[:, p], lens.logprob(tid)[:, p], rtol=1e-4, atol=1e-3)
        assert decode_payload(top["logprob"])[p] == pytest.approx(paris.logprob(tid, p), abs=1e-4)


def test_an_edit_recomputes_the_auto_target(llama_dec):
    dash = rw.Dashboard(llama_dec)
    before = list(dash._top_targets["ids"])
    dash.edits = [{"kind": "zero", "component": "mlp.1"}]
    edited = dash.edited
    assert dash._top_targets["ids"] == [edited.top_prediction(p) for p in range(edited.n_tokens)]
    assert dash.target == edited.token_text(edited.top_prediction(dash.selected[1]))
    assert before == [llama_dec.top_prediction(p) for p in range(llama_dec.n_tokens)]
    dash.close()


# ------------------------------------------------------------------------------ lens p(target)
def test_grid_lens_probability_follows_the_selected_lens(llama_dec):
    tuned = perturbed_lens(llama_dec)
    dash = rw.Dashboard(llama_dec, tuned_lens=tuned, metric="prob")
    tid = dash._target_entry()["id"]
    dash.lens = "tuned"
    np.testing.assert_allclose(rw.StreamGrid.values(dash), llama_dec.logit_lens(k=1, lens=tuned).prob(tid).numpy(), rtol=1e-3,
                               atol=1e-5)
    dash.lens = "logit"
    np.testing.assert_allclose(rw.StreamGrid.values(dash), llama_dec.logit_lens(k=1).prob(tid).numpy(), rtol=1e-3, atol=1e-5)
    dash.close()
