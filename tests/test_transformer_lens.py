"""rw.decompose on TransformerLens 4.x TransformerBridge models (built offline around local HF models).

TransformerLens 4 removed HookedTransformer / HookedTransformerConfig; the bridge is its model
class. ``build_bridge_from_module`` wraps an in-memory HF model without touching the hub
(``TransformerBridge.boot_transformers(name, hf_model=...)`` does too when given a tokenizer).
The bridge rewires the HF model it wraps, so every test builds a fresh copy.
"""
import pytest
import torch

import resid_widgets as rw
from models_zoo import build, random_ids, word_tokenizer

tl = pytest.importorskip("transformer_lens", reason="transformer_lens is not installed (pip install transformer-lens)")
from transformer_lens.model_bridge.sources._bridge_builder import build_bridge_from_module  # noqa: E402

ARCH = {
    "gpt2": "GPT2LMHeadModel", "gpt_neox_parallel": "GPTNeoXForCausalLM",
    "gpt_neox_sequential": "GPTNeoXForCausalLM", "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
    "gemma": "GemmaForCausalLM", "gemma2": "Gemma2ForCausalLM", "gemma3": "Gemma3ForCausalLM",
    "phi3": "Phi3ForCausalLM", "olmo": "OlmoForCausalLM", "olmo2": "Olmo2ForCausalLM",
}


def bridge(family, compat=False):
    hf = build(family)
    b = build_bridge_from_module(hf, ARCH[family], hf_config=hf.config)
    if compat:
        b.enable_compatibility_mode()
    return b


@pytest.fixture(params=[(f, c) for f in ARCH for c in (False, True)],
                ids=lambda p: f"{p[0]}-{'compat' if p[1] else 'raw'}")
def bridged(request):
    family, compat = request.param
    return family, compat, bridge(family, compat)


def test_deltas_equal_decompose_resid_and_logits_match(bridged):
    family, compat, b = bridged
    ids = random_ids(9)
    dec = rw.decompose(b, ids)
    with torch.no_grad():
        logits, cache = b.run_with_cache(ids[None])
    resid, labels = cache.decompose_resid(return_labels=True)
    assert [l.replace("_out", "").replace("_", ".") for l in labels[len(dec.labels) - 2 * dec.n_layers:]] == \
        [f"{i}.{k}" for i in range(dec.n_layers) for k in ("attn", "mlp")]
    assert dec.labels[:len(labels) - 2 * dec.n_layers] == labels[:len(labels) - 2 * dec.n_layers]
    torch.testing.assert_close(dec.deltas, resid[:, 0].float(), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(dec.logits, logits[0].float(), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(dec.states[-1], cache["ln_final.hook_in"][0], atol=1e-5, rtol=1e-5)
    assert dec.additivity_error <= 1e-5
    # the readout read from the bridge (final norm, W_U, b_U, soft-cap) reproduces its logits
    assert (dec.readout.logits(dec.states[-1]) - dec.logits).abs().max() <= 1e-4


def test_same_numbers_as_the_hf_model(bridged):
    family, compat, b = bridged
    if compat and family in ("gpt2", "gpt_neox_parallel", "gpt_neox_sequential", "olmo"):
        pytest.skip("compatibility mode centres LayerNorm models' writing weights: other deltas by design")
    ids = random_ids(9)
    ref = rw.decompose(build(family), ids)
    dec = rw.decompose(b, ids)
    assert dec.labels == ref.labels
    torch.testing.assert_close(dec.deltas, ref.deltas, atol=1e-5, rtol=1e-4)
    # compatibility mode centres the unembedding: logits shift by a per-row constant
    lp, lp_ref = dec.logits.log_softmax(-1), ref.logits.log_softmax(-1)
    torch.testing.assert_close(lp, lp_ref, atol=1e-4, rtol=1e-4)
    t = ref.top_prediction(-1)
    torch.testing.assert_close(dec.logit_lens(k=5).top_probs, ref.logit_lens(k=5).top_probs, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(dec.contributions(t, -1, "logprob"), ref.contributions(t, -1, "logprob"),
                               atol=1e-4, rtol=1e-4)
    if not compat:
        torch.testing.assert_close(dec.contributions(t, -1, "dla"), ref.contributions(t, -1, "dla"),
                                   atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(dec.head_contributions(t, -1), ref.head_contributions(t, -1),
                                   atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(dec.neuron_dla(t, -1), ref.neuron_dla(t, -1), atol=1e-5, rtol=1e-4)
        for layer in range(ref.n_layers):
            torch.testing.assert_close(dec.weights.mlp_key(layer)[0], ref.weights.mlp_key(layer)[0])


def test_heads_and_neurons_add_up(bridged):
    family, compat, b = bridged
    dec = rw.decompose(b, random_ids(7))
    target = dec.top_prediction(-1)
    dla = dec.contributions(target, -1, "dla")
    total = float(dla.sum()) + dec.dla_constant(target, -1)
    logit = float(dec.logits[-1, target])
    cap = dec.readout.softcap
    if cap:
        logit = cap * float(torch.atanh(torch.tensor(logit / cap)))
    assert abs(total - logit) <= 1e-3
    hc = dec.head_contributions(target, -1)
    r = dec.readout_direction(target, dec.n_tokens - 1)
    nd = dec.neuron_dla(target, -1)
    for layer in range(dec.n_layers):
        torch.testing.assert_close(dec.head_deltas(layer).sum(0), dec.deltas[dec.attn_index(layer)],
                                   atol=1e-5, rtol=1e-4)
        assert abs(float(hc[layer].sum() - dla[dec.attn_index(layer)])) <= 1e-4
        _, bias = dec.weights.mlp_out(layer)
        mult = dec.post_norm_multiplier("mlp", layer)
        bias_term = 0.0 if bias is None else float((bias if mult is None else bias * mult[-1]) @ r)
        assert abs(float(nd[layer].sum()) + bias_term - float(dla[dec.mlp_index(layer)])) <= 1e-4
    assert len(dec.top_neurons(target, -1, n=3, method="logprob")) == 3


def _hook_state(b):
    return ([m.training for m in b.modules()], [p.requires_grad for p in b.parameters()],
            sorted((name, len(hp.fwd_hooks), len(hp.bwd_hooks)) for name, hp in b.hook_dict.items()),
            sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in b.modules()))


def test_bridge_left_as_found():
    b = bridge("llama").train()
    b.blocks[0].train(False)
    b.add_hook("blocks.0.hook_resid_pre", lambda t, hook: None)  # the user's own hook
    with torch.no_grad():  # TL installs its own persistent norm pre-hooks on a bridge's first forward
        b(random_ids(3)[None])
    before = _hook_state(b)
    rw.decompose(b, random_ids(5))
    assert _hook_state(b) == before
    with pytest.raises(rw.PromptError, match="context"):
        rw.decompose(b, random_ids(200))
    with pytest.raises(rw.PromptError, match="vocabulary"):
        rw.decompose(b, torch.tensor([1, 500]))
    assert _hook_state(b) == before


def test_bridge_with_real_tokenizer_smollm2():
    """SmolLM2 through the public boot_transformers(hf_model=..., tokenizer=...) path, offline."""
    try:
        from transformer_lens import TransformerBridge
    except ImportError:  # TL 3.x keeps it in its model_bridge package
        from transformer_lens.model_bridge import TransformerBridge

    try:
        model, tok = rw.models.smollm2()
    except ImportError as e:
        pytest.skip(str(e))
    ref = rw.decompose(model, "The capital of France is", tokenizer=tok)
    b = TransformerBridge.boot_transformers("SmolLM2-135M-Instruct", hf_model=model, tokenizer=tok)
    dec = rw.decompose(b, ref.token_ids)
    # the bridge switches attention to "eager" (HF: sdpa): equal up to kernel rounding
    rel = (dec.deltas - ref.deltas).norm(dim=-1) / ref.states.norm(dim=-1).clamp_min(1)
    assert float(rel.max()) < 1e-5
    assert (dec.logits - ref.logits).abs().max() < 1e-3
    assert dec.token_text(dec.top_prediction(-1)) == " Paris"
    # text prompts follow TransformerLens' tokenisation (BOS prepended as in b.to_tokens)
    text = rw.decompose(b, "The capital of France is")
    assert text.tokens == b.to_str_tokens("The capital of France is")
    assert text.token_text(text.top_prediction(-1)) == " Paris"


def test_readout_checks_apply_to_bridges():
    """The engine's checks on the TransformerLens path: NaN/inf logits reported, a tokenizer of
    another model refused (as for Hugging Face models)."""
    b = bridge("llama")
    with torch.no_grad():
        b.original_model.model.norm.weight[0] = float("nan")
    with pytest.warns(rw.NonFiniteWarning, match="output logits"):
        dec = rw.decompose(b, random_ids(5))
    assert dec.nonfinite == {"logits": 5 * b.cfg.d_vocab}
    with pytest.raises(rw.TokenizerError, match="300 tokens"):
        rw.decompose(bridge("llama"), "w3 w4", tokenizer=word_tokenizer(300))


@pytest.mark.parametrize("family", ["gemma2", "llama"])
def test_bandwidth_of_a_bridge_equals_the_hf_model(family):
    """The bridge's weights reader answers for post-norms itself: Gemma-2's post-norm gains scale
    what each sub-layer writes on the bridge as on the HF model (no adapter needed)."""
    ids = random_ids(6)
    dec = rw.decompose(bridge(family), ids)
    assert isinstance(dec.weights, rw.weights.WeightsReader)
    has_post = dec.weights.norm(0, "attn_post") is not None
    assert has_post == (family == "gemma2")
    ours, ref = rw.analysis.bandwidth(dec), rw.analysis.bandwidth(build(family))
    torch.testing.assert_close(ours.head_overlap, ref.head_overlap, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours.principal_cosines(1, 0, 1), ref.principal_cosines(1, 0, 1), atol=1e-5, rtol=1e-4)
    if has_post:  # gains away from 1 change the overlaps: skipping them would fail the checks above
        gains = [dec.weights.norm(layer, "attn_post").gain for layer in range(dec.n_layers)]
        assert all(not torch.allclose(g, torch.ones_like(g), atol=1e-2) for g in gains)
