"""Attention patterns, head scores and the induction circuit (rw.analysis.head_scores,
rw.analysis.induction_circuit) on every family, checked against independent recomputations, plus
a hand-built GPT-2 whose previous-token -> induction pair the circuit must find."""
import math

import pytest
import torch
import transformers as tf

import resid_widgets as rw
from models_zoo import build, random_ids, sliding_window_model

A = rw.analysis
T = 11


def repeated_ids(n: int = 5, seed: int = 0) -> torch.Tensor:
    """BOS-like first token + r + r with r distinct (ids of every zoo vocabulary)."""
    g = torch.Generator().manual_seed(seed)
    r = torch.randperm(90, generator=g)[:n] + 3
    return torch.cat([torch.tensor([1]), r, r])


def _module(model, layer, path):
    adapter = rw.adapters.base.adapter_for(model)
    layers = rw.adapters.base.get_module(model, adapter.layers)
    return rw.adapters.base.get_module(layers[layer], path)


def attention_output(model, layer, alpha, values):
    """What attention layer ``layer`` writes, rebuilt from weights alpha [H, T, T] and values
    [H, T, dh] through the model's own output projection (and post-norm) modules."""
    adapter = rw.adapters.base.adapter_for(model)
    z = torch.einsum("hts,hsd->thd", alpha, values).reshape(alpha.shape[1], -1)
    with torch.no_grad():
        out = _module(model, layer, adapter.attn_out_proj)(z[None])
        if adapter.attn_post_norm:
            out = _module(model, layer, adapter.attn_post_norm)(out)
    return out[0]


# --------------------------------------------------------------------------------------------
# Patterns: exact, rows sum to 1, bounded
# --------------------------------------------------------------------------------------------
def test_patterns_reproduce_what_each_attention_layer_wrote(family_model):
    """Σ_j α v_j through W_O (and the post-norm) equals the attention delta the engine recorded,
    with the capture's fp32 weights and with the float16 patterns the views show."""
    family, model = family_model
    dec = rw.decompose(model, repeated_ids())
    cap = A.capture_attention(model, dec.token_ids)
    hs = A.head_scores(dec)
    for l in range(dec.n_layers):
        wrote = dec.deltas[dec.attn_index(l)]
        exact = attention_output(model, l, cap.probs[l][0], cap.head_values(l)[0])
        torch.testing.assert_close(exact, wrote, atol=1e-5, rtol=1e-4)
        shown = attention_output(model, l, hs.pattern(l).dense(), cap.head_values(l)[0])
        assert float((shown - wrote).norm() / wrote.norm()) < 2e-3, (family, l)
        torch.testing.assert_close(hs.pattern(l).dense(), cap.probs[l][0], atol=5e-4, rtol=1e-3)
    assert hs.capture_error < 1e-5


def test_rows_sum_to_one_over_the_allowed_sources(family_model):
    family, model = family_model
    dec = rw.decompose(model, random_ids(T))
    hs = A.head_scores(dec)
    for l in range(dec.n_layers):
        p = hs.pattern(l)
        assert p.format == "dense" and not p.sparsified and p.values.dtype == torch.float16
        assert p.values.shape == (dec.n_heads, T * (T + 1) // 2)  # the causal lower triangle only
        dense = p.dense()
        assert (dense.triu(1) == 0).all()
        torch.testing.assert_close(p.kept_mass(), torch.ones(dec.n_heads, T), atol=2e-3, rtol=0)
        src, w = p.row(1, 4)
        assert src.tolist() == list(range(5))
        torch.testing.assert_close(w, dense[1, 4, :5])


@pytest.mark.parametrize("family", ["mistral", "gemma2", "gemma3", "qwen2"])
def test_sliding_windows_and_soft_caps(family):
    """Rows sum to 1 within the window; nothing outside it; still exact (Gemma 2 soft-caps too)."""
    window = 3
    model = sliding_window_model(family, window)
    dec = rw.decompose(model, repeated_ids())
    n = dec.n_tokens
    hs = A.head_scores(dec)
    cap = A.capture_attention(model, dec.token_ids)
    types = getattr(model.config, "layer_types", None) or ["sliding_attention"] * dec.n_layers
    if family == "qwen2":  # max_window_layers=1: layer 0 attends to everything
        types = ["full_attention"] + ["sliding_attention"] * (dec.n_layers - 1)
    t, s = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    assert "sliding_attention" in types
    for l in range(dec.n_layers):
        dense = hs.pattern(l).dense()
        allowed = (s <= t) & ((t - s < window) if types[l] == "sliding_attention" else True)
        assert (dense[:, ~allowed] == 0).all(), (family, l)
        torch.testing.assert_close((dense * allowed).sum(-1), torch.ones(dec.n_heads, n), atol=2e-3, rtol=0)
        torch.testing.assert_close(attention_output(model, l, cap.probs[l][0], cap.head_values(l)[0]),
                                   dec.deltas[dec.attn_index(l)], atol=1e-5, rtol=1e-4)


def test_long_prompts_keep_the_top_k_of_each_row():
    model = build("llama")
    ids = random_ids(40, seed=3)
    dec = rw.decompose(model, ids)
    hs = A.head_scores(dec, top_k=4, dense_limit=16)
    cap = A.capture_attention(model, dec.token_ids)
    p = hs.pattern(1)
    assert p.format == "topk" and p.sparsified and hs.sparsified and p.k == 4
    assert p.values.shape == p.index.shape == (dec.n_heads, 40, 4) and p.index.dtype == torch.int16
    exact = cap.probs[1][0]
    top = exact.topk(4, dim=-1)
    torch.testing.assert_close(p.values.float(), top.values, atol=5e-4, rtol=1e-3)
    # rows shorter than k are complete: the missing entries are marked -1
    assert (p.index[:, 0, 1:] == -1).all() and (p.index[:, 0, 0] == 0).all()
    dense = p.dense()
    assert ((dense > 0).sum(-1) <= 4).all()
    torch.testing.assert_close(p.kept_mass(), top.values.sum(-1), atol=2e-3, rtol=0)
    assert (p.kept_mass() <= 1.002).all()
    # scores come from the full fp32 weights, not the kept ones
    full = A.head_scores(dec)
    for kind in A.SCORE_KINDS:
        torch.testing.assert_close(hs.scores[kind], full.scores[kind], equal_nan=True)
    assert "top 4 weights per row" in repr(hs)


def test_pattern_payloads_round_trip():
    from resid_widgets.views.payload import decode_payload

    dec = rw.decompose(build("llama"), random_ids(T))
    p = A.head_scores(dec).pattern(0)
    dense = p.payload()
    assert dense["format"] == "dense"
    torch.testing.assert_close(torch.tensor(decode_payload(dense["values"])), p.values.float())
    sparse = p.payload(k=3, mass=1.0)
    counts = decode_payload(sparse["counts"])
    assert sparse["format"] == "sparse" and sparse["sparsified"] and counts.shape == (dec.n_heads, T)
    assert counts.max() == 3 and counts[:, 0].tolist() == [1] * dec.n_heads
    index, values = decode_payload(sparse["index"]), decode_payload(sparse["values"])
    assert len(index) == len(values) == counts.sum() and sparse["index"]["dtype"] == "uint16"
    rebuilt = torch.zeros(dec.n_heads, T, T)
    j = 0
    for h in range(dec.n_heads):
        for t in range(T):
            for _ in range(int(counts[h, t])):
                rebuilt[h, t, int(index[j])] = float(values[j])
                j += 1
    ref = p.dense()
    top = ref.topk(3, dim=-1)
    torch.testing.assert_close(rebuilt.topk(3, dim=-1).values, top.values)
    # a mass target cuts rows early: rows dominated by one weight keep only it
    assert p.payload(k=3, mass=0.01)["counts"]["data"] == bytes([1] * dec.n_heads * T)


# --------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------
def _independent_scores(probs: torch.Tensor, ids: list[int]) -> dict[str, torch.Tensor]:
    """The METHODS.md definitions, written out position by position."""
    H, n, _ = probs.shape
    out = {k: torch.zeros(H) for k in A.SCORE_KINDS}
    eligible = 0
    for t in range(1, n):
        out["previous_token"] += probs[:, t, t - 1] / (n - 1)
        out["sink"] += probs[:, t, 0] / (n - 1)
        out["self"] += probs[:, t, t] / (n - 1)
        sources = [j + 1 for j in range(t - 1) if ids[j] == ids[t]]
        if sources:
            eligible += 1
            out["induction"] += probs[:, t, sources].sum(-1)
    out["induction"] = out["induction"] / eligible if eligible else torch.full((H,), math.nan)
    return out


def test_scores_match_an_independent_recomputation(family_model):
    family, model = family_model
    ids = torch.cat([random_ids(7, seed=5), random_ids(7, seed=5)[[2, 3, 0, 6]], random_ids(3, seed=9)])
    dec = rw.decompose(model, ids)
    hs = A.head_scores(dec)
    cap = A.capture_attention(model, dec.token_ids)
    for l in range(dec.n_layers):
        ref = _independent_scores(cap.probs[l][0], ids.tolist())
        for kind in A.SCORE_KINDS:
            torch.testing.assert_close(hs.scores[kind][l], ref[kind], atol=1e-5, rtol=1e-4)
    assert hs.n_induction_positions == sum(
        any(ids[j] == ids[t] for j in range(t - 1)) for t in range(len(ids)))
    row = hs.rows[dec.n_heads + 2]
    assert (row["layer"], row["head"], row["label"]) == (1, 2, "L1H2")
    assert row["sink"] == pytest.approx(float(hs.scores["sink"][1, 2]))


def test_induction_on_repeated_random_tokens_is_the_classic_score():
    """On BOS + r + r with distinct r, the natural-prompt definition is induction_scores' one."""
    model = build("qwen2")
    ids = A.induction_prompt(97, n_tokens=8, batch=1, seed=2, bos=1, exclude=[1], distinct=True)
    dec = rw.decompose(model, ids[0])
    hs = A.head_scores(dec)
    cap = A.capture_attention(model, ids)
    second = torch.arange(9, 17)
    for l in range(dec.n_layers):
        torch.testing.assert_close(hs.scores["induction"][l], cap.probs[l][0][:, second, second - 7].mean(-1))
    assert hs.n_induction_positions == 8


def test_prompts_without_repeats_have_no_induction_score():
    dec = rw.decompose(build("llama"), torch.arange(3, 3 + T))
    hs = A.head_scores(dec)
    assert hs.n_induction_positions == 0 and torch.isnan(hs.scores["induction"]).all()
    assert all(r["induction"] is None for r in hs.rows)
    assert "undefined" in hs.figure("induction").layout.title.text
    assert hs.top("induction", 2)[0][2] is None and hs.top("sink", 1)[0][2] is not None
    df = hs.to_pandas()
    assert list(df.columns) == ["layer", "head", "label", *A.SCORE_KINDS] and len(df) == dec.n_layers * dec.n_heads


def test_head_score_figure_switches_and_sorts():
    dec = rw.decompose(build("gemma2"), repeated_ids())
    hs = A.head_scores(dec)
    fig = hs.figure("previous_token")
    assert len(fig.data) == 2 * len(A.SCORE_KINDS)
    shown = [tr for tr in fig.data if tr.visible]
    assert len(shown) == 1 and shown[0].z[1][2] == pytest.approx(float(hs.scores["previous_token"][1, 2]))
    sorted_trace = fig.data[2 * A.SCORE_KINDS.index("previous_token") + 1]
    row = [v for v in sorted_trace.z[1]]
    assert row == sorted(row, reverse=True)
    assert sorted_trace.customdata[1][0] == "L1H%d" % int(hs.scores["previous_token"][1].argmax())
    labels = [b.label for b in fig.layout.updatemenus[0].buttons]
    assert "induction, heads sorted" in labels
    fig.to_json()
    with pytest.raises(ValueError, match="kind"):
        hs.figure("entropy")


def test_head_scores_are_cached_per_decomposition_and_leave_the_model_as_found():
    model = build("gemma3")
    dec = rw.decompose(model, random_ids(T))
    impl = model.config._attn_implementation
    model.train()
    hs = A.head_scores(dec)
    assert A.head_scores(dec) is hs and A.head_scores(dec, top_k=8) is not hs
    assert model.training and model.config._attn_implementation == impl
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    model.eval()
    with pytest.raises(ValueError, match="top_k"):
        A.head_scores(dec, top_k=0)
    with pytest.raises(IndexError):
        hs.pattern(dec.n_layers)


# --------------------------------------------------------------------------------------------
# The induction circuit
# --------------------------------------------------------------------------------------------
V, P, D, NH = 16, 16, 80, 4
DH = D // NH
TOK, POS, PREV, COPY, BAL = 0, 16, 32, 48, 64


def planted_model():
    """A GPT-2 built by hand: L0H0 is a previous-token head (writes the token before t into PREV),
    L0H1 copies the current token into COPY. L1H0 is an induction head whose query reads the token
    and whose keys read PREV (K-composition with L0H0); L1H1 is one whose query reads COPY
    (Q-composition with L0H1) and whose keys also read PREV. Embeddings and head outputs have zero
    mean (a balance dimension), so the LayerNorms only rescale. MLPs and other heads are zero."""
    cfg = tf.GPT2Config(vocab_size=V, n_positions=P, n_embd=D, n_layer=2, n_head=NH, n_inner=4 * D,
                        bos_token_id=0, eos_token_id=0)
    model = tf.GPT2LMHeadModel(cfg).eval()
    t = model.transformer
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for block in t.h:
            block.ln_1.weight.fill_(1.0)
            block.ln_2.weight.fill_(1.0)
        t.ln_f.weight.fill_(1.0)
        for v in range(V):
            t.wte.weight[v, TOK + v], t.wte.weight[v, BAL] = 1.0, -1.0
        for p in range(P):
            t.wpe.weight[p, POS + p], t.wpe.weight[p, BAL] = 1.0, -1.0
        sigma = (6 / D) ** 0.5  # the std of every embedding: layer 0's LayerNorm divides by it
        w = t.h[0].attn.c_attn.weight  # Conv1D [in, q | k | v]
        q, k, val, out = w[:, :D], w[:, D:2 * D], w[:, 2 * D:], t.h[0].attn.c_proj.weight
        for p in range(P):
            if p + 1 < P:
                q[POS + p + 1, 0 * DH + p], k[POS + p, 0 * DH + p] = 3.0, 3.0  # t attends to t - 1
            q[POS + p, 1 * DH + p], k[POS + p, 1 * DH + p] = 3.0, 3.0  # t attends to t
        for head, dest in ((0, PREV), (1, COPY)):
            for v in range(V):
                val[TOK + v, head * DH + v] = sigma
                out[head * DH + v, dest + v], out[head * DH + v, BAL] = 1.0, -1.0
        w = t.h[1].attn.c_attn.weight
        q, k = w[:, :D], w[:, D:2 * D]
        for v in range(V):
            q[TOK + v, 0 * DH + v], k[PREV + v, 0 * DH + v] = 5.0, 5.0
            q[COPY + v, 1 * DH + v], k[PREV + v, 1 * DH + v] = 5.0, 5.0
    return model


def test_the_circuit_finds_the_planted_previous_token_head():
    model = planted_model()
    res = A.induction_circuit(model, n_tokens=6, batch=2, threshold=0.5)
    assert res.induction_heads == [(1, 0), (1, 1)]
    assert res.score.min() > 0.95
    assert res.scores["previous_token"][0, 0] > 0.95 and res.scores["self"][0, 1] > 0.95
    for head in (0, 1):
        top = res.sources(1, head)[0]
        assert (top["source_layer"], top["source_head"]) == (0, 0)
        assert top["relative_drop"] > 0.8 and top["source_previous_token"] > 0.95
        # the copy head feeds L1H1's query, not its keys: removing it from the keys changes nothing
        assert abs(float(res.drop[head, 0, 1])) < 1e-3
    assert torch.isnan(res.drop[:, 1]).all()  # no head of the same layer is a source
    assert res.rows[0]["induction_head"] == "L1H0" and res.rows[0]["source"] == "L0H0"
    # control: L1H1 does depend on L0H1, through its query: silence L0H1's whole write
    silenced = planted_model()
    with torch.no_grad():
        silenced.transformer.h[0].attn.c_proj.weight[DH:2 * DH] = 0
    cap = A.capture_attention(silenced, res.token_ids)
    scores = A.patterns.score_heads(cap.probs[1], A.patterns.induction_sources(res.token_ids))
    assert scores["induction"][0] > 0.95 and scores["induction"][1] < 0.5


def test_only_the_keys_see_the_edited_stream(family_model, monkeypatch):
    """Every replay of the induction layer gets the clean queries and values; keys change."""
    from transformers import AttentionInterface

    from resid_widgets import attention_capture as AC

    family, model = family_model
    layer1 = _module(model, 1, rw.adapters.base.adapter_for(model).attn)
    calls = []
    real = AC.capture_attention_forward

    def spy(module, query, key, value, *args, **kwargs):
        if module is layer1:
            calls.append((query.clone(), key.clone(), value.clone()))
        return real(module, query, key, value, *args, **kwargs)

    AC.register_capture_implementation()
    AttentionInterface.register(AC.CAPTURE_IMPLEMENTATION, spy)
    try:
        res = A.induction_circuit(model, n_tokens=6, batch=2, heads=[(1, 0)])
    finally:
        AttentionInterface.register(AC.CAPTURE_IMPLEMENTATION, real)
    H = res.scores["sink"].shape[1]
    # the clean pass, the unedited replay, one replay removing each layer-0 head (H copies of the batch)
    assert len(calls) == 3
    q0, k0, v0 = calls[0]
    torch.testing.assert_close(calls[1][1], k0)
    q, k, v = calls[2]
    assert q.shape[0] == H * q0.shape[0]
    changed = 0
    for qe, ke, ve in zip(q.split(q0.shape[0]), k.split(q0.shape[0]), v.split(q0.shape[0])):
        torch.testing.assert_close(qe, q0, atol=0, rtol=0)
        torch.testing.assert_close(ve, v0, atol=0, rtol=0)
        changed += not torch.allclose(ke, k0)
    assert changed >= H - 1  # a head whose output is ~0 may leave the keys as they were
    assert res.score_without.shape == (1, 2, H) and not torch.isnan(res.score_without[0, 0]).any()
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_circuit_options_and_errors():
    model = build("llama")
    res = A.induction_circuit(model, n_tokens=5, batch=1, threshold=2.0)  # nobody reaches 2
    assert res.induction_heads == [] and res.rows == []
    res.figure().to_json()
    assert "none" in repr(res)
    res = A.induction_circuit(model, token_ids=repeated_ids(4), heads=[(1, 3), (-1, 0)], n_sources=2)
    assert res.induction_heads == [(1, 3), (1, 0)] and len(res.rows) == 4
    assert len(res.sources(1, 3)) == 4  # all earlier heads
    with pytest.raises(KeyError, match="not among"):
        res.sources(1, 1)
    with pytest.raises(rw.analysis.AnalysisError, match="occurs twice"):
        A.induction_circuit(model, token_ids=torch.arange(3, 12))
    with pytest.raises(ValueError, match="context"):
        A.induction_circuit(model, n_tokens=40)
    keyless = rw.Adapter(**{**rw.adapters.base.adapter_for(model).__dict__, "attn_key": None})
    rw.register_adapter(keyless)
    try:
        with pytest.raises(rw.analysis.AnalysisError, match="attn_key"):
            A.induction_circuit(model, n_tokens=5, batch=1)
    finally:
        rw.register_adapter(rw.adapters.families.LLAMA)
    fig = A.induction_circuit(planted_model(), n_tokens=6, batch=1).figure(n=2)
    assert any(tr.type == "bar" for tr in fig.data) and fig.layout.annotations
    fig.to_json()
    assert len(fig.data) >= 3


@pytest.mark.slow
def test_smollm2_induction_heads_read_a_previous_token_head(smollm2):
    """SmolLM2's strongest induction heads (L18H6, L17H3 among them) lose their induction when
    the previous-token head L16H0 is removed from their keys."""
    model, tok = smollm2
    res = A.induction_circuit(model, tok, n_tokens=30, batch=2, heads=[(18, 6), (17, 3)], n_sources=3)
    for (l2, h2) in ((18, 6), (17, 3)):
        top = res.sources(l2, h2)[0]
        assert top["source_previous_token"] > 0.7, top
        assert top["relative_drop"] > 0.5, top
        assert res.scores["induction"][l2, h2] > 0.5
