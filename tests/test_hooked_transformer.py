"""rw.decompose on TransformerLens 3.x HookedTransformer models (tiny random ones, no hub).

TransformerLens 4 removed HookedTransformer, so this module runs only where a 3.x release is
installed (e.g. a side venv with ``pip install "transformer-lens==3.9.0"``); elsewhere it is
skipped. The models are built from HookedTransformerConfig with every 1-d parameter (norm gains,
biases) perturbed: random init leaves them at 1 / 0, which would hide a missing term.
"""
import pytest
import torch

import resid_widgets as rw

pytest.importorskip("transformer_lens", reason="transformer_lens is not installed")
try:  # TL 4.x raises ImportError (not AttributeError) for the removed names
    from transformer_lens import HookedTransformer, HookedTransformerConfig
except ImportError:
    from importlib.metadata import version

    pytest.skip(f"transformer-lens {version('transformer-lens')} has no HookedTransformer (removed in 4.0; "
                "these tests need a 3.x release)", allow_module_level=True)

VOCAB = 97
BASE = dict(n_layers=2, d_model=32, n_ctx=64, d_head=8, n_heads=4, d_mlp=64, d_vocab=VOCAB,
            use_attn_result=True)  # hook_result: TL's own per-head outputs to compare with
LLAMA = dict(normalization_type="RMS", positional_embedding_type="rotary", gated_mlp=True, act_fn="silu",
             n_key_value_heads=2, final_rms=True)
CONFIGS = {
    "gpt2": dict(normalization_type="LN", act_fn="gelu"),
    "llama_gqa": LLAMA,
    "neox_parallel": dict(normalization_type="LN", positional_embedding_type="rotary", rotary_dim=4,
                          parallel_attn_mlp=True, act_fn="gelu"),
    "solu": dict(normalization_type="LN", act_fn="solu_ln"),
    "shortformer": dict(normalization_type="LN", positional_embedding_type="shortformer", act_fn="gelu"),
    "gemma2": dict(LLAMA, act_fn="gelu_pytorch_tanh", final_rms=False, use_normalization_before_and_after=True,
                   attn_scores_soft_cap=20.0, output_logits_soft_cap=5.0),
    "olmo2": dict(LLAMA, n_key_value_heads=None, original_architecture="Olmo2ForCausalLM"),
    "alibi_embed_ln": dict(normalization_type="LN", positional_embedding_type="alibi", post_embedding_ln=True,
                           act_fn="gelu_fast"),
}
FOLDED = ("gpt2", "llama_gqa")  # also after process_weights_(): LNPre / RMSPre, centred weights
# which block norm sits between each sub-layer's output and the stream, if any
POST_NORMS = {"gemma2": ("ln1_post", "ln2_post"), "olmo2": ("ln1", "ln2")}


def build(family: str, seed: int = 0, folded: bool = False) -> HookedTransformer:
    torch.manual_seed(seed)
    model = HookedTransformer(HookedTransformerConfig(**BASE, **CONFIGS[family], seed=seed))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    if folded:
        model.process_weights_(fold_ln=True, center_writing_weights=True, center_unembed=True)
        assert type(model.ln_final).__name__ in ("LayerNormPre", "RMSNormPre")
    return model.eval()


def random_ids(n: int = 9, seed: int = 0) -> torch.Tensor:
    return torch.randint(1, VOCAB, (n,), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module", params=[(f, False) for f in CONFIGS] + [(f, True) for f in FOLDED],
                ids=lambda p: p[0] + ("-folded" if p[1] else ""))
def run(request):
    """(family, model, ids, dec, logits, cache): one decomposition and TL's own cached run."""
    family, folded = request.param
    model = build(family, folded=folded)
    ids = random_ids()
    dec = rw.decompose(model, ids)
    with torch.no_grad():
        logits, cache = model.run_with_cache(ids[None])
    return family, model, ids, dec, logits[0], cache


def test_deltas_equal_decompose_resid(run):
    family, model, ids, dec, logits, cache = run
    resid, labels = cache.decompose_resid(return_labels=True)
    resid = resid[:, 0]
    if family == "shortformer":
        # TL stacks hook_pos_embed, though a shortformer adds it only to queries and keys
        assert labels[1] == "pos_embed"
        resid, labels = torch.cat([resid[:1], resid[2:]]), labels[:1] + labels[2:]
    learned_pos = model.cfg.positional_embedding_type == "standard"
    assert dec.labels == ["embed"] + (["pos_embed"] if learned_pos else []) + \
        [f"{k}.{l}" for l in range(dec.n_layers) for k in ("attn", "mlp")]
    assert labels == dec.labels[:dec.n_embed] + [f"{l}_{k}_out" for l in range(dec.n_layers)
                                                 for k in ("attn", "mlp")]
    torch.testing.assert_close(dec.deltas, resid, atol=1e-6, rtol=1e-6)
    # the states are the model's own stream, also where decompose_resid is not (shortformer)
    torch.testing.assert_close(dec.states[-1], cache[f"blocks.{dec.n_layers - 1}.hook_resid_post"][0],
                               atol=1e-5, rtol=1e-5)
    for l in range(dec.n_layers):
        torch.testing.assert_close(dec.states[dec.attn_index(l) - 1], cache[f"blocks.{l}.hook_resid_pre"][0],
                                   atol=1e-5, rtol=1e-5)
    assert dec.additivity_error < 1e-5


def test_logits_and_readout(run):
    family, model, ids, dec, logits, cache = run
    with torch.no_grad():
        plain = model(ids[None])[0]
    assert (dec.logits - plain).abs().max() <= 1e-3
    torch.testing.assert_close(dec.logits, logits, atol=1e-6, rtol=1e-6)
    # final norm + W_U + b_U (+ soft-cap) read from the model reproduce its logits from the states
    assert (dec.readout.logits(dec.states[-1]) - dec.logits).abs().max() <= 1e-4
    assert (dec.readout.softcap is not None) == (family == "gemma2")
    lens = dec.logit_lens(k=5)
    assert lens.top_ids.shape == (len(dec.labels), len(ids), 5)
    torch.testing.assert_close(lens.top_ids[-1, :, 0], dec.logits.argmax(-1))
    # DLA of the components plus the constant is the logit (before the soft-cap)
    t = dec.top_prediction(-1)
    logit = float(dec.logits[-1, t])
    if dec.readout.softcap:
        logit = dec.readout.softcap * float(torch.atanh(torch.tensor(logit / dec.readout.softcap)))
    assert abs(float(dec.contributions(t, -1, "dla").sum()) + dec.dla_constant(t, -1) - logit) <= 1e-3


def _post_multiplier(family, model, cache, layer, which):
    """[T, d] TL's own post-norm as a multiplier (gain / its scale), or [1, 1] without one."""
    if family not in POST_NORMS:
        return torch.ones(1, 1)
    ln = POST_NORMS[family][which]
    return model.blocks[layer].get_submodule(ln).w.detach() / cache[f"blocks.{layer}.{ln}.hook_scale"][0]


def test_heads_match_hook_result(run):
    family, model, ids, dec, logits, cache = run
    target = dec.top_prediction(-1)
    dla = dec.contributions(target, -1, "dla")
    hc = dec.head_contributions(target, -1)
    H = dec.n_heads
    for l in range(dec.n_layers):
        heads = dec.head_deltas(l)  # [H+1, T, d]
        assert heads.shape == (H + 1, len(ids), dec.d_model)
        torch.testing.assert_close(heads.sum(0), dec.deltas[dec.attn_index(l)], atol=1e-5, rtol=1e-4)
        result = cache[f"blocks.{l}.attn.hook_result"][0].transpose(0, 1)  # [H, T, d], without b_O
        expected = result * _post_multiplier(family, model, cache, l, 0)
        torch.testing.assert_close(heads[:H], expected, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(heads[2, -1], dec.head_deltas(l, position=-1)[2])
        assert abs(float(hc[l].sum() - dla[dec.attn_index(l)])) <= 1e-4


def test_neurons_match_hook_post(run):
    family, model, ids, dec, logits, cache = run
    target = dec.top_prediction(-1)
    dla = dec.contributions(target, -1, "dla")
    nd = dec.neuron_dla(target, -1)
    assert nd.shape == (dec.n_layers, model.cfg.d_mlp)
    r = dec.readout_direction(target, dec.n_tokens - 1)
    for l in range(dec.n_layers):
        acts = cache[f"blocks.{l}.mlp.hook_post"][0]
        torch.testing.assert_close(dec.neuron_activations(l), acts, atol=1e-6, rtol=1e-6)
        # the neurons' subvalues plus the (post-normed) output bias are the MLP's delta
        bias = model.blocks[l].mlp.b_out.detach() * _post_multiplier(family, model, cache, l, 1)[-1]
        vecs = dec.neuron_vectors(l, range(model.cfg.d_mlp), -1)
        torch.testing.assert_close(vecs.sum(0) + bias, dec.deltas[dec.mlp_index(l), -1], atol=1e-5, rtol=1e-4)
        bias_term = float(bias @ r)
        assert abs(float(nd[l].sum()) + bias_term - float(dla[dec.mlp_index(l)])) <= 1e-4
    top = dec.top_neurons(target, -1, n=3, method="logprob")
    assert len(top) == 3 and all(0 <= n.index < model.cfg.d_mlp for n in top)


def _model_state(model):
    return ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()],
            sorted((name, len(hp.fwd_hooks), len(hp.bwd_hooks)) for name, hp in model.hook_dict.items()),
            sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()))


def test_model_left_as_found():
    model = build("llama_gqa").train()
    model.blocks[0].train(False)
    model.blocks[1].mlp.W_in.requires_grad_(False)
    seen = []
    model.add_hook("blocks.0.hook_resid_pre", lambda t, hook: seen.append(hook.name))  # the user's own hook
    before = _model_state(model)
    assert not any(hp.fwd_hooks for name, hp in model.hook_dict.items() if name != "blocks.0.hook_resid_pre")
    ids = random_ids(6)
    dec = rw.decompose(model, ids)
    assert _model_state(model) == before and seen == ["blocks.0.hook_resid_pre"]
    assert all(p.grad is None for p in model.parameters())
    model.eval()
    with torch.no_grad():  # decompose ran the model in eval mode (no dropout), like this
        torch.testing.assert_close(dec.logits, model(ids[None])[0], atol=1e-6, rtol=1e-6)
    model.train()
    model.blocks[0].train(False)
    with pytest.raises(rw.PromptError, match="context"):
        rw.decompose(model, random_ids(65))
    with pytest.raises(rw.PromptError, match="vocabulary"):
        rw.decompose(model, torch.tensor([1, VOCAB]))
    assert _model_state(model) == before


def test_unsupported_configs_fail_clearly():
    model = HookedTransformer(HookedTransformerConfig(**BASE, normalization_type=None, act_fn="relu"))
    with pytest.raises(rw.UnsupportedModelError, match="final norm"):
        rw.decompose(model, random_ids(4))
    model = HookedTransformer(HookedTransformerConfig(**BASE, attn_only=True))
    with pytest.raises(rw.UnsupportedModelError, match="Attention-only"):
        rw.decompose(model, random_ids(4))


def test_neuron_input_shares_rebuild_the_preactivation(run):
    """Cross-layer shares of a neuron's input add up (with the constant) to TL's own hook_pre,
    also where the FFN has no pre-norm (OLMo 2: ln2 sits after the FFN)."""
    family, model, ids, dec, logits, cache = run
    layer = dec.n_layers - 1
    pre = cache[f"blocks.{layer}.mlp.hook_pre"][0, -1]  # [d_mlp]: the gate's for gated FFNs
    for neuron in (0, 7):
        shares = rw.analysis.neuron_input_shares(dec, layer, neuron)
        assert shares.preactivation == pytest.approx(float(pre[neuron]), abs=1e-4)
