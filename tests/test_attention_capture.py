"""Attention capture through transformers' public AttentionInterface (no modeling internals)."""
import pytest
import torch

import resid_widgets as rw
from resid_widgets import attention_capture as AC
from resid_widgets.analysis import AnalysisError, capture_attention
from models_zoo import build, random_ids


def _reference_eager(query, key, value, mask, scaling, softcap=None, sinks=None):
    """Textbook eager attention (float64), independent of the capture function."""
    q, k, v = (x.double() for x in (query, key, value))
    rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    s = q @ k.transpose(2, 3) * scaling
    if softcap is not None:
        s = softcap * torch.tanh(s / softcap)
    s = s + mask.double()
    if sinks is not None:
        col = sinks.double().view(1, -1, 1, 1).expand(s.shape[0], -1, s.shape[2], 1)
        p = torch.softmax(torch.cat([s, col], -1), -1)[..., :-1]
    else:
        p = torch.softmax(s, -1)
    return (p @ v).transpose(1, 2), p


@pytest.mark.parametrize("softcap", [None, 3.0])
@pytest.mark.parametrize("with_sinks", [False, True])
def test_capture_function_matches_textbook_eager_attention(softcap, with_sinks):
    g = torch.Generator().manual_seed(0)
    B, H, KV, T, dh = 2, 4, 2, 5, 8
    q, k, v = (torch.randn(B, n, T, dh, generator=g) for n in (H, KV, KV))
    mask = torch.zeros(B, 1, T, T).masked_fill(torch.ones(T, T).triu(1).bool(), float("-inf"))
    sinks = torch.randn(H, generator=g) if with_sinks else None
    module = torch.nn.Module().eval()
    out, probs = AC.capture_attention_forward(module, q, k, v, mask, scaling=0.3, softcap=softcap, s_aux=sinks)
    ref_out, ref_p = _reference_eager(q, k, v, mask, 0.3, softcap, sinks)
    torch.testing.assert_close(probs.double(), ref_p, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out.double(), ref_out, atol=1e-5, rtol=1e-5)
    if with_sinks:  # the sink takes mass: rows sum to less than 1
        assert (probs.sum(-1) < 1).all()


def test_boolean_masks_are_honoured():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 4, 8, generator=g) for _ in range(3))
    allowed = torch.ones(4, 4).tril().bool()[None, None]
    _, probs = AC.capture_attention_forward(torch.nn.Module().eval(), q, k, v, allowed)
    assert (probs[0][:, ~allowed[0, 0]] == 0).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(1, 2, 4))


def test_capture_registers_with_transformers_public_interfaces():
    from transformers import AttentionInterface, AttentionMaskInterface

    name = AC.register_capture_implementation()
    assert AttentionInterface()[name] is AC.capture_attention_forward
    assert name in AttentionMaskInterface()


def test_a_family_whose_attention_differs_fails_loudly():
    """If transformers ever computed attention differently from the capture's eager maths (here:
    simulated by a wrong scaling), the capture must refuse, never return wrong weights."""
    model = build("llama")
    real = AC.capture_attention_forward

    def off_by_scaling(module, q, k, v, mask, scaling=None, **kw):
        return real(module, q, k, v, mask, scaling=(scaling or q.shape[-1] ** -0.5) * 1.5, **kw)

    from transformers import AttentionInterface

    AC.register_capture_implementation()
    AttentionInterface.register(AC.CAPTURE_IMPLEMENTATION, off_by_scaling)
    impl = model.config._attn_implementation
    try:
        with pytest.raises(AnalysisError, match="does not reproduce the model's own output"):
            capture_attention(model, random_ids(9))
    finally:
        AttentionInterface.register(AC.CAPTURE_IMPLEMENTATION, real)
    assert model.config._attn_implementation == impl


def test_capture_switches_the_implementation_back_for_every_family(family_model):
    family, model = family_model
    before = {id(m): m.config._attn_implementation for m in model.modules() if hasattr(m, "config")}
    cap = capture_attention(model, random_ids(9))
    assert len(cap.probs) == model.config.num_hidden_layers
    after = {id(m): m.config._attn_implementation for m in model.modules() if hasattr(m, "config")}
    assert before == after
    assert not AC._recorders


def test_decomposition_capture_uses_its_own_stream_as_reference(family_model):
    """attention_of(dec) checks against dec's last state (no extra forward pass needed)."""
    family, model = family_model
    dec = rw.decompose(model, random_ids(9))
    at = rw.analysis.attention_subvalues(dec, dec.top_prediction(-1))
    assert at.capture_error < 1e-5
