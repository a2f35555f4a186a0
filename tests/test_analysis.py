"""rw.analysis: every analysis on every family (tiny random models), checked against independent
recomputations (hooks on the model's own modules), plus SmolLM2 facts (induction heads, Paris)."""
import math

import pytest
import torch

import resid_widgets as rw
from models_zoo import build, random_ids

A = rw.analysis
T = 11


@pytest.fixture
def fam(family_model):
    family, model = family_model
    dec = rw.decompose(model, random_ids(T))
    return family, model, dec


def _module(model, layer, path):
    return rw.adapters.base.get_module(model_layers(model)[layer], path)


def model_layers(model):
    adapter = rw.adapters.base.adapter_for(model)
    return rw.adapters.base.get_module(model, adapter.layers)


def _capture(model, module, ids, kind="output"):
    """Run ids through model, return what ``module`` saw (input or output, first element)."""
    seen = []
    if kind == "output":
        h = module.register_forward_hook(lambda m, a, o: seen.append((o[0] if isinstance(o, tuple) else o).detach()))
    else:
        h = module.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach()))
    try:
        with torch.no_grad():
            model(ids[None])
    finally:
        h.remove()
    return seen[0][0]


def _lens_logprob(model, h, tid):
    """log p(tid | h) through the model's own final norm and unembedding modules (+ soft-cap)."""
    adapter = rw.adapters.base.adapter_for(model)
    norm = rw.adapters.base.get_module(model, adapter.final_norm)
    head = rw.adapters.base.get_module(model, adapter.unembed)
    with torch.no_grad():
        z = head(norm(h[None]))[0]
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        z = cap * torch.tanh(z / cap)
    return float(z[tid] - torch.logsumexp(z, -1))


def _post_multiplier(model, layer, kind, sub_out):
    """Gemma 2/3, OLMo 2/3: the post-norm as a multiplier frozen at its real input (or None)."""
    adapter = rw.adapters.base.adapter_for(model)
    path = getattr(adapter, f"{kind}_post_norm")
    if not path:
        return None
    post = _module(model, layer, path)
    eps = getattr(post, "eps", getattr(post, "variance_epsilon", 1e-6))
    return (adapter.norm_offset + post.weight.detach()) * torch.rsqrt(sub_out.pow(2).mean(-1, keepdim=True) + eps)


# --------------------------------------------------------------------------------------------
# 1. FFN subvalues
# --------------------------------------------------------------------------------------------
def test_ffn_neuron_dla_plus_bias_is_the_mlp_dla(fam):
    family, model, dec = fam
    for pos in (-1, 4):
        tid = dec.top_prediction(pos)
        fs = A.ffn_subvalues(dec, tid, pos, n=6)
        mlp_dla = dec.contributions(tid, pos, "dla")[[dec.mlp_index(l) for l in range(dec.n_layers)]]
        torch.testing.assert_close(fs.dla.sum(1) + fs.bias_dla, mlp_dla, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(fs.layer_dla, mlp_dla)
        assert fs.dla.shape == (dec.n_layers, dec.neuron_activations(0).shape[1])
        # the listed neurons are the top ones, in order, with their own values
        assert [r["dla"] for r in fs.rows] == sorted(fs.dla.flatten().tolist(), reverse=True)[:6]
        for r in fs.rows:
            assert r["dla"] == float(fs.dla[r["layer"], r["neuron"]])
            assert r["logprob_increase"] is not None and len(r["bs_top"]) == 10 and len(r["bs_bottom"]) == 10
            assert r["bs_top"][0][1] >= r["bs_bottom"][0][1]


def test_ffn_logprob_equals_direct_recomputation(fam):
    family, model, dec = fam
    adapter = rw.adapters.base.adapter_for(model)
    pos, tid = 5, dec.top_prediction(5)
    fs = A.ffn_subvalues(dec, tid, pos, n=4, logprob="all", layer=1)
    assert not torch.isnan(fs.logprob).any()
    ids = random_ids(T)
    out_proj = _module(model, 1, adapter.mlp_out_proj)
    acts = _capture(model, out_proj, ids, "input")[pos]
    W = out_proj.weight.detach()
    W = W.t() if type(out_proj).__name__ == "Conv1D" else W  # [d, d_ff]
    mult = None
    if adapter.mlp_post_norm:
        mult = _post_multiplier(model, 1, "mlp", _capture(model, _module(model, 1, adapter.mlp), ids)[pos])
    base = dec.states[dec.mlp_index(1) - 1, pos]
    lp0 = _lens_logprob(model, base, tid)
    for k in (0, 7, int(fs.dla[0].argmax()), int(fs.dla[0].argmin())):
        v = acts[k] * W[:, k]
        v = v if mult is None else v * mult
        ref = _lens_logprob(model, base + v, tid) - lp0
        assert abs(float(fs.logprob[0, k]) - ref) <= 1e-4, (family, k)
        if mult is None:  # the activations are the module's own
            assert abs(float(fs.activations[0, k]) - float(acts[k])) <= 1e-5


def test_first_order_estimate_is_close_for_small_subvalues(fam):
    family, model, dec = fam
    tid = dec.top_prediction(-1)
    fs = A.ffn_subvalues(dec, tid, n=3, layer=1, logprob="all")
    est, exact = fs.logprob_estimate[0], fs.logprob[0]
    small = fs.dla[0].abs() < fs.dla[0].abs().median()
    # first order: the estimate tracks the exact increase (tiny random models: small subvalues)
    assert torch.corrcoef(torch.stack([est[small], exact[small]]))[0, 1] > 0.9


def test_neuron_subvalue_matches_the_table(fam):
    family, model, dec = fam
    tid = dec.top_prediction(-1)
    fs = A.ffn_subvalues(dec, tid, n=2)
    row = fs.rows[0]
    one = A.neuron_subvalue(dec, row["layer"], row["neuron"], tid)
    assert one["dla"] == pytest.approx(row["dla"], abs=1e-6)
    assert one["logprob_increase"] == pytest.approx(row["logprob_increase"], abs=1e-5)
    assert one["bs_top"] == row["bs_top"] and one["bs_bottom"] == row["bs_bottom"]
    torch.testing.assert_close(one["vector"], dec.neuron_vectors(row["layer"], [row["neuron"]])[0])
    assert "dla" not in A.neuron_subvalue(dec, 0, -1)
    with pytest.raises(IndexError, match="neuron index"):
        A.neuron_subvalue(dec, 0, 10_000)


def test_ffn_ranking_options(fam):
    family, model, dec = fam
    tid = dec.top_prediction(-1)
    fs = A.ffn_subvalues(dec, tid, n=5, rank_by="logprob")
    lps = [r["logprob_increase"] for r in fs.rows]
    assert lps == sorted(lps, reverse=True)
    assert lps[0] == float(torch.nan_to_num(fs.logprob, nan=-math.inf).max())
    bottom = A.ffn_subvalues(dec, tid, n=3, order="bottom", logprob="none")
    assert [r["dla"] for r in bottom.rows] == sorted(fs.dla.flatten().tolist())[:3]
    assert all(r["logprob_increase"] is None for r in bottom.rows)
    # consistent with the engine's top_neurons
    tn = dec.top_neurons(tid, n=3)
    assert [(n.layer, n.index) for n in tn] == [(r["layer"], r["neuron"]) for r in A.ffn_subvalues(dec, tid, n=3).rows]


# --------------------------------------------------------------------------------------------
# 2. Attention subvalues
# --------------------------------------------------------------------------------------------
def test_attention_subvalues_sum_to_attention_dla(fam):
    family, model, dec = fam
    for pos in (-1, 3):
        tid = dec.top_prediction(pos)
        at = A.attention_subvalues(dec, tid, pos)
        p = pos % T
        attn_dla = dec.contributions(tid, pos, "dla")[[dec.attn_index(l) for l in range(dec.n_layers)]]
        torch.testing.assert_close(at.dla.sum((1, 2)) + at.bias_dla, attn_dla, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(at.head_dla, dec.head_contributions(tid, pos)[:, :-1], atol=1e-5, rtol=1e-5)
        # causal: nothing from later tokens; α is a distribution over the sources
        assert (at.dla[:, :, p + 1:] == 0).all() and (at.alpha[:, :, p + 1:].abs() <= 1e-7).all()
        torch.testing.assert_close(at.alpha.sum(-1), torch.ones(at.alpha.shape[:2]), atol=1e-5, rtol=1e-5)
        top = at.rows[0]
        assert top["dla"] == float(at.dla.max())
        assert top["source_token"] == dec.tokens[top["source"]]


def test_attention_probs_and_values_reproduce_the_engines_head_inputs(fam):
    """α and v come from an eager re-run; Σ_j α v_j must equal the o_proj input the engine
    recorded in its own (sdpa) run, per head - this checks α, v and the GQA mapping."""
    family, model, dec = fam
    cap = A.capture_attention(model, dec.token_ids)
    H = dec.n_heads
    kv = getattr(model.config, "num_key_value_heads", None) or H
    assert cap.n_heads == H and cap.n_kv_heads == kv
    for l in range(dec.n_layers):
        z = torch.einsum("hts,hsd->thd", cap.probs[l][0], cap.head_values(l)[0]).reshape(T, -1)
        torch.testing.assert_close(z, dec._head_inputs[l], atol=1e-5, rtol=1e-4)
    assert cap.max_error < 1e-5


@pytest.mark.parametrize("family", ["mistral", "gemma2", "gemma3", "qwen2"])
def test_attention_capture_with_sliding_windows(family):
    from models_zoo import sliding_window_model

    window = 3
    model = sliding_window_model(family, window)
    dec = rw.decompose(model, random_ids(T))
    cap = A.capture_attention(model, dec.token_ids)
    types = getattr(model.config, "layer_types", None) or ["sliding_attention"] * dec.n_layers
    for l in range(dec.n_layers):
        z = torch.einsum("hts,hsd->thd", cap.probs[l][0], cap.head_values(l)[0]).reshape(T, -1)
        torch.testing.assert_close(z, dec._head_inputs[l], atol=1e-5, rtol=1e-4)
        if types[l] == "sliding_attention":
            t, j = torch.meshgrid(torch.arange(T), torch.arange(T), indexing="ij")
            assert (cap.probs[l][0][:, t - j >= window] == 0).all(), (family, l)
    tid = dec.top_prediction(-1)
    at = A.attention_subvalues(dec, tid)
    torch.testing.assert_close(at.dla.sum((1, 2)) + at.bias_dla, at.layer_dla, atol=1e-5, rtol=1e-5)


def test_attention_logprob_equals_direct_recomputation(fam):
    family, model, dec = fam
    adapter = rw.adapters.base.adapter_for(model)
    pos, tid, l = 6, dec.top_prediction(6), 1
    at = A.attention_subvalues(dec, tid, pos, logprob_layers=[l])
    assert torch.isnan(at.logprob[0]).all() and not torch.isnan(at.logprob[l, :, : pos + 1]).any()
    cap = A.capture_attention(model, dec.token_ids)
    o_proj = _module(model, l, adapter.attn_out_proj)
    W = o_proj.weight.detach()
    W = W.t() if type(o_proj).__name__ == "Conv1D" else W  # [d, H*dh]
    dh = W.shape[1] // dec.n_heads
    mult = None
    if adapter.attn_post_norm:
        mult = _post_multiplier(model, l, "attn", _capture(model, _module(model, l, adapter.attn), dec.token_ids)[pos])
    base = dec.states[dec.attn_index(l) - 1, pos]
    lp0 = _lens_logprob(model, base, tid)
    for h, j in ((0, 0), (dec.n_heads - 1, pos), (1, 2)):
        v = cap.probs[l][0, h, pos, j] * (cap.head_values(l)[0, h, j] @ W[:, h * dh:(h + 1) * dh].t())
        v = v if mult is None else v * mult
        assert abs(float(at.logprob[l, h, j]) - (_lens_logprob(model, base + v, tid) - lp0)) <= 1e-4


def test_capture_leaves_the_model_as_found(fam):
    family, model, dec = fam
    impl = model.config._attn_implementation
    model.train()
    A.capture_attention(model, dec.token_ids)
    A.drop_one(dec, unit="attn")
    assert model.training and model.config._attn_implementation == impl
    assert all(getattr(m, "config", model.config)._attn_implementation == impl for m in model.modules()
               if hasattr(getattr(m, "config", None), "_attn_implementation"))
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    model.eval()


def test_capture_restores_the_model_when_the_forward_raises():
    model = build("gemma3")
    impl = model.config._attn_implementation

    def boom(m, a, o):
        raise RuntimeError("boom")

    h = model.model.layers[1].register_forward_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            A.capture_attention(model, random_ids(T))
        with pytest.raises(RuntimeError, match="boom"):
            A.drop_one(_dec_with(model), 3)
    finally:
        h.remove()
    assert model.config._attn_implementation == impl
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def _dec_with(model):
    """A decomposition of a clean copy whose .model is ``model`` (to make re-runs hit its hooks)."""
    import copy

    clean = copy.deepcopy(model)
    for m in clean.modules():
        m._forward_hooks.clear()
    dec = rw.decompose(clean, random_ids(T))
    dec.model = model
    return dec


# --------------------------------------------------------------------------------------------
# 3. Cross-layer contribution
# --------------------------------------------------------------------------------------------
def test_neuron_input_shares_rebuild_the_real_preactivation(fam):
    family, model, dec = fam
    adapter = rw.adapters.base.adapter_for(model)
    key_mod = _module(model, 1, adapter.mlp_key)
    pre = _capture(model, key_mod, random_ids(T))  # [T, d_ff] (Phi-3: gate and up fused)
    if adapter.mlp_key_rows == "first_half":
        pre = pre[:, : pre.shape[1] // 2]
    for pos, k in ((-1, 0), (4, 9), (7, pre.shape[1] - 1)):
        for split in (False, True):
            s = A.neuron_input_shares(dec, 1, k, pos, split_heads=split)
            assert abs(float(s.shares.sum()) - 1) <= 1e-4
            real = float(pre[pos, k])
            assert abs(s.preactivation - real) <= 1e-4 * max(1.0, abs(real)), (family, pos, k, split)
            assert abs(float(s.contributions.sum()) + s.constant - real) <= 1e-4 * max(1.0, abs(real))
        n_comp = dec.attn_index(1) if dec.parallel_residual else dec.mlp_index(1)
        assert A.neuron_input_shares(dec, 1, k, pos).labels == dec.labels[:n_comp]


def test_cross_layer_aggregate(fam):
    family, model, dec = fam
    tid = dec.top_prediction(-1)
    cl = A.cross_layer(dec, tid, n=4, method="dla")
    assert cl.shares.shape == (4, len(dec.labels))
    torch.testing.assert_close(cl.weighted, cl.importance @ cl.shares)
    for (l, k), row in zip(cl.neurons, cl.shares):
        top = dec.attn_index(l) if dec.parallel_residual else dec.mlp_index(l)
        assert (row[top:] == 0).all()


# --------------------------------------------------------------------------------------------
# 4. Block budget and drop one
# --------------------------------------------------------------------------------------------
def _run_with_blocks(model, ids, active):
    """Logits with every block outside ``active`` replaced by the identity (forward hooks)."""
    def identity(m, args, kwargs, out):
        x = args[0] if args else kwargs["hidden_states"]
        return (x,) + tuple(out[1:]) if isinstance(out, tuple) else x

    handles = [layer.register_forward_hook(identity, with_kwargs=True)
               for i, layer in enumerate(model_layers(model)) if i not in active]
    try:
        with torch.no_grad():
            return model(ids[None]).logits[0]
    finally:
        for h in handles:
            h.remove()


def test_block_budget_equals_runs_with_identity_blocks(fam):
    family, model, dec = fam
    L = dec.n_layers
    tid = dec.top_prediction(-1)
    for pos in (-1, 5):
        bb = A.block_budget(dec, pos, k=5, target=tid)
        assert bb.top_ids.shape == (L + 1, 5)
        for k in range(L + 1):
            z = _run_with_blocks(model, random_ids(T), set(range(k)))[pos]
            lp = z - torch.logsumexp(z, -1)
            top_lp, top_ids = lp.topk(5)
            assert top_ids.tolist() == bb.top_ids[k].tolist(), (family, k)
            torch.testing.assert_close(bb.top_probs[k], top_lp.exp(), atol=1e-5, rtol=1e-4)
            assert abs(float(bb.target_logprob[k]) - float(lp[tid])) <= 1e-4
    # the full budget is the model; budget 0 is the direct path
    assert abs(float(bb.target_logprob[-1]) - dec.logprob(tid, 5)) <= 1e-4
    dp = A.direct_path(dec, k=5)
    assert bb.top_ids[0].tolist() == dp.top_ids[5].tolist()


def test_drop_one_matches_single_runs(fam):
    family, model, dec = fam
    L = dec.n_layers
    tid = dec.top_prediction(-1)
    do = A.drop_one(dec, tid, batch_size=2)
    assert abs(do.full_logprob - dec.logprob(tid)) <= 1e-4
    for l in range(L):
        z = _run_with_blocks(model, random_ids(T), set(range(L)) - {l})[-1]
        assert abs(float(do.logprob[l]) - float(z[tid] - torch.logsumexp(z, -1))) <= 1e-4
    # dropping a sub-layer: zero its delta
    for unit in ("attn", "mlp"):
        d = A.drop_one(dec, tid, unit=unit)
        assert d.logprob.shape == (L,) and torch.isfinite(d.logprob).all()
        assert abs(d.full_logprob - dec.logprob(tid)) <= 1e-4


def test_drop_one_sublayer_equals_removing_its_delta(fam):
    """Dropping the FFN of the last layer only removes that FFN's delta from the final stream."""
    family, model, dec = fam
    tid = dec.top_prediction(-1)
    d = A.drop_one(dec, tid, unit="mlp")
    L = dec.n_layers
    h = dec.states[-1, -1] - dec.deltas[dec.mlp_index(L - 1), -1]
    assert abs(float(d.logprob[L - 1]) - float(dec.readout.logprob(h[None], tid)[0])) <= 1e-4


# --------------------------------------------------------------------------------------------
# 5. Induction heads
# --------------------------------------------------------------------------------------------
def test_induction_scores_random_models_are_low(fam):
    family, model, dec = fam
    ind = A.induction_scores(model, n_tokens=12, batch=2, seed=1)
    L, H = dec.n_layers, dec.n_heads
    assert ind.scores.shape == (L, H) and ind.dla.shape == (L, H)
    assert float(ind.scores.max()) < 0.3
    assert (ind.scores >= 0).all()
    n = 12
    off = 0 if ind.bos is None else 1
    assert ind.token_ids.shape == (2, off + 2 * n)
    assert (ind.token_ids[:, off:off + n] == ind.token_ids[:, off + n:]).all()
    # the per-head DLA of the copied token equals the engine's head decomposition
    pos = torch.arange(off + n, off + 2 * n - 1)
    ref = torch.zeros(L, H)
    for b in range(2):
        d = rw.decompose(model, ind.token_ids[b])
        r = d.readout.norm.to("cpu").frozen_readout(d.readout.unembed[ind.token_ids[b, pos + 1]].cpu(), d.states[-1, pos])
        for l in range(L):
            ref[l] += torch.einsum("hpd,pd->h", d.head_deltas(l)[:-1, pos], r) / len(pos) / 2
    torch.testing.assert_close(ind.dla, ref, atol=1e-5, rtol=1e-4)
    # the score is the mean attention to i - (n - 1) over the second copy
    cap = A.capture_attention(model, ind.token_ids)
    i = torch.arange(off + n, off + 2 * n)
    torch.testing.assert_close(ind.scores[0], cap.probs[0][:, :, i, i - n + 1].mean((0, 2)))


def test_induction_scores_without_dla():
    model = build("llama")
    ind = A.induction_scores(model, n_tokens=8, batch=1, dla=False)
    assert float(ind.scores.max()) < 0.5
    assert (ind.dla == 0).all()


# --------------------------------------------------------------------------------------------
# 6. Paths and bandwidth
# --------------------------------------------------------------------------------------------
def test_direct_and_block_paths(fam):
    family, model, dec = fam
    tid = dec.top_prediction(-1)
    dp = A.direct_path(dec, k=3)
    lens = dec.logit_lens(k=3)
    assert dp.top_ids.tolist() == lens.top_ids[dec.n_embed - 1].tolist()
    # the lens of the embedding state, read independently: its top token at each position
    embed_top = lens.top_ids[dec.n_embed - 1, :, 0]
    assert dp.repeats_input == float((embed_top == dec.token_ids).float().mean())
    assert dp.input_rank.shape == (T,) and bool(((dp.input_rank == 0) == (embed_top == dec.token_ids)).all())
    bp = A.block_paths(dec, tid, isolated=True)
    L = dec.n_layers
    dla = dec.contributions(tid, -1, "dla")
    torch.testing.assert_close(bp.dla_block.sum() + dla[: dec.n_embed].sum() + dec.dla_constant(tid),
                               dla.sum() + dec.dla_constant(tid), atol=1e-4, rtol=1e-5)
    e = dec.states[dec.n_embed - 1, -1]
    for l in range(L):
        h = e + dec.deltas[dec.attn_index(l), -1] + dec.deltas[dec.mlp_index(l), -1]
        assert abs(float(bp.lens_logprob[l]) - float(dec.readout.logprob(h[None], tid)[0])) <= 1e-5
        z = _run_with_blocks(model, random_ids(T), {l})[-1]
        assert abs(float(bp.isolated_logprob[l]) - float(z[tid] - torch.logsumexp(z, -1))) <= 1e-4
    assert abs(bp.direct_logprob - float(dec.readout.logprob(e[None], tid)[0])) <= 1e-5


def test_bandwidth_shapes_and_bounds(fam):
    family, model, dec = fam
    bw = A.bandwidth(dec, ranks=True)
    L, H = dec.n_layers, dec.n_heads
    assert bw.head_overlap.shape == (L, H, H) and bw.d_model == dec.d_model
    ov = bw.head_overlap
    torch.testing.assert_close(ov, ov.transpose(1, 2))
    assert (ov >= -1e-6).all() and (ov <= 1 + 1e-6).all()
    torch.testing.assert_close(ov.diagonal(dim1=1, dim2=2), torch.ones(L, H), atol=1e-5, rtol=0)
    for r in bw.rows:
        assert r["attn_dims"] == H * bw.d_head and r["attn_rank"] <= min(bw.d_model, r["attn_dims"])
        assert r["mlp_rank"] <= min(bw.d_model, r["mlp_dims"])
    assert A.bandwidth(model).head_overlap.shape == (L, H, H)
    cos = bw.principal_cosines(1, 0, 1)
    assert cos.shape == (bw.d_head,) and (cos <= 1 + 1e-5).all()
    assert abs(float(cos.pow(2).mean()) - float(ov[1, 0, 1])) <= 1e-4


def test_bandwidth_overlap_of_built_subspaces():
    model = build("llama")
    o = model.model.layers[0].self_attn.o_proj.weight  # [32, 4*8]
    with torch.no_grad():
        o.zero_()
        for h in range(4):  # head h writes coordinates 8h..8h+7: disjoint subspaces
            o[8 * h:8 * h + 8, 8 * h:8 * h + 8] = torch.randn(8, 8)
        o1 = model.model.layers[1].self_attn.o_proj.weight
        base = torch.randn(32, 8)
        for h in range(4):  # every head writes the same 8-dim subspace
            o1[:, 8 * h:8 * h + 8] = base @ torch.randn(8, 8)
    bw = A.bandwidth(model, ranks=True)
    torch.testing.assert_close(bw.head_overlap[0], torch.eye(4), atol=1e-6, rtol=0)
    torch.testing.assert_close(bw.head_overlap[1], torch.ones(4, 4), atol=1e-6, rtol=0)
    assert bw.rows[0]["attn_rank"] == 32 and bw.rows[1]["attn_rank"] == 8
    assert abs(bw.random_overlap - 8 / 32) < 1e-9


def test_frozen_norm_option(fam):
    family, model, dec = fam
    pos, tid = -1, dec.top_prediction(-1)
    fs = A.ffn_subvalues(dec, tid, pos, n=3, layer=0, logprob="all", norm="frozen")
    at = A.attention_subvalues(dec, tid, pos, logprob_layers=0, norm="frozen")
    base = dec.states[dec.mlp_index(0) - 1, pos]
    vecs = dec.neuron_vectors(0, [0, 5], pos)
    ref = dec.lens_logprob(torch.cat([base[None], base[None] + vecs]), tid, T - 1, "frozen")
    torch.testing.assert_close(fs.logprob[0, [0, 5]], ref[1:] - ref[0], atol=1e-5, rtol=1e-4)
    assert not torch.isnan(at.logprob[0]).any()
    with pytest.raises(ValueError, match="norm"):
        A.ffn_subvalues(dec, tid, norm="x")


@pytest.mark.filterwarnings("ignore:The recorded deltas do not add up")
@pytest.mark.parametrize("family", ["llama", "gemma2", "gpt_neox_parallel"])
def test_half_precision_models(family):
    model = build(family).to(torch.bfloat16)
    dec = rw.decompose(model, random_ids(T))
    tid = dec.top_prediction(-1)
    at = A.attention_subvalues(dec, tid, logprob_layers=1)
    torch.testing.assert_close(at.dla.sum((1, 2)) + at.bias_dla, at.layer_dla, atol=5e-3, rtol=1e-2)
    fs = A.ffn_subvalues(dec, tid, n=3)
    torch.testing.assert_close(fs.dla.sum(1) + fs.bias_dla, fs.layer_dla, atol=5e-3, rtol=1e-2)
    assert abs(A.drop_one(dec, tid).full_logprob - dec.logprob(tid)) < 0.05
    assert float(A.induction_scores(model, n_tokens=8, batch=2).scores.max()) < 0.3
    assert abs(float(A.neuron_input_shares(dec, 1, 2).shares.sum()) - 1) < 1e-3
    assert A.block_budget(dec, target=tid).top_ids.shape[0] == dec.n_layers + 1


# --------------------------------------------------------------------------------------------
# Errors, views
# --------------------------------------------------------------------------------------------
def test_bad_inputs_raise_clear_errors():
    model = build("llama")
    dec = rw.decompose(model, random_ids(T))
    with pytest.raises(IndexError, match="position"):
        A.ffn_subvalues(dec, 3, position=T)
    with pytest.raises(IndexError, match="position"):
        A.attention_subvalues(dec, 3, position=-T - 1)
    with pytest.raises(IndexError, match="position"):
        A.block_budget(dec, position=99)
    with pytest.raises(IndexError, match="position"):
        A.drop_one(dec, 3, position=T)
    with pytest.raises(IndexError, match="neuron index"):
        A.neuron_input_shares(dec, 0, 64)
    with pytest.raises(IndexError, match="neuron index"):
        A.neuron_input_shares(dec, 0, -65)
    with pytest.raises(IndexError, match="layer"):
        A.neuron_input_shares(dec, 2, 0)
    with pytest.raises(IndexError, match="layer"):
        A.ffn_subvalues(dec, 3, layer=5)
    with pytest.raises(IndexError, match="layer"):
        A.attention_subvalues(dec, 3, logprob_layers=[7])
    with pytest.raises(rw.TargetError):
        A.ffn_subvalues(dec, 10_000)
    with pytest.raises(rw.TargetError):
        A.attention_subvalues(dec, " Paris")  # text without a tokenizer
    with pytest.raises(ValueError, match="rank_by"):
        A.ffn_subvalues(dec, 3, rank_by="x")
    with pytest.raises(ValueError, match="unit"):
        A.drop_one(dec, unit="head")
    with pytest.raises(ValueError):
        A.induction_scores(model, n_tokens=1)
    with pytest.raises(ValueError, match="context"):
        A.induction_scores(model, n_tokens=40)  # 81 tokens > 64 positions


def test_every_result_has_rows_pandas_and_a_figure():
    import plotly.graph_objects as go

    model = build("gemma2")
    dec = rw.decompose(model, random_ids(T))
    tid = dec.top_prediction(-1)
    results = [A.ffn_subvalues(dec, tid, n=4), A.attention_subvalues(dec, tid, logprob_layers="all"),
               A.neuron_input_shares(dec, 1, 3), A.cross_layer(dec, tid, n=3), A.block_budget(dec, target=tid),
               A.drop_one(dec, tid), A.direct_path(dec), A.block_paths(dec, tid, isolated=True),
               A.bandwidth(dec), A.induction_scores(model, n_tokens=8, batch=2)]
    for res in results:
        assert isinstance(res.rows, list) and res.rows and isinstance(res.rows[0], dict)
        df = res.to_pandas()
        assert len(df) == len(res.rows)
        fig = res.figure()
        assert isinstance(fig, go.Figure) and len(fig.data) >= 1
        fig.to_json()
        repr(res)


# --------------------------------------------------------------------------------------------
# SmolLM2
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_smollm2_has_induction_heads(smollm2):
    model, tok = smollm2
    ind = A.induction_scores(model, n_tokens=50, batch=4, seed=0, tokenizer=tok)
    assert float(ind.scores.max()) > 0.5
    strong = {(r["layer"], r["head"]) for r in ind.rows if r["score"] > 0.5}
    assert any(l in (17, 18) for l, _ in strong)
    assert float(ind.scores.median()) < 0.1
    assert ind.token_ids[0, 0] == tok.bos_token_id


@pytest.mark.slow
def test_smollm2_paris(paris, smollm2):
    model, tok = smollm2
    fs = A.ffn_subvalues(paris, " Paris", n=10)
    torch.testing.assert_close(fs.dla.sum(1) + fs.bias_dla, fs.layer_dla, atol=1e-3, rtol=1e-4)
    at = A.attention_subvalues(paris, " Paris")
    torch.testing.assert_close(at.dla.sum((1, 2)) + at.bias_dla, at.layer_dla, atol=1e-3, rtol=1e-4)
    # " France" feeds " Paris" through attention (Yu & Ananiadou's observation)
    assert at.rows[0]["source_token"] == " France"
    bb = A.block_budget(paris, target=" Paris")
    assert bb.rows[-1]["top"] == " Paris" and bb.rows[0]["target_prob"] < 0.01
    d = A.drop_one(paris, " Paris")
    # first blocks matter most (layer-drop studies)
    assert int(d.effect.argmin()) in (0, 1)
    with pytest.raises(rw.TargetError, match="tokens"):
        A.ffn_subvalues(paris, " Parisians and Londoners")
