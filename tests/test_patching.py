"""rw.patching against TransformerLens's own patching functions on the TL bridge of the same weights,
against dec.edit(rw.Patch(...)) re-runs, and its attribution estimate against the exact values."""
import math

import pytest
import torch
from models_zoo import build, random_ids

import resid_widgets as rw

T = 7


def prompts(seed=0):
    clean = random_ids(T, seed=seed)
    corrupt = clean.clone()
    corrupt[2] = (clean[2] + 5) % 97
    corrupt[4] = (clean[4] + 11) % 97
    return clean, corrupt


def pair(family, seed=0):
    model = build(family)
    a, b = prompts(seed)
    clean, corrupt = rw.decompose(model, a), rw.decompose(model, b)
    x, y = clean.top_prediction(), corrupt.top_prediction()
    return model, clean, corrupt, (x, y if y != x else (x + 1) % 97)


def no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_neox_parallel", "gemma2"])
def test_exact_patching_equals_transformer_lens(family):
    pytest.importorskip("transformer_lens")
    from test_transformer_lens import bridge
    from transformer_lens import patching as tlp

    model, clean, corrupt, (a, b) = pair(family)
    tl = bridge(family)
    with torch.no_grad():
        _, cache = tl.run_with_cache(clean.token_ids[None])

    def metric(logits):
        return logits[0, -1, a] - logits[0, -1, b]

    diff = rw.logit_diff(a, b)
    checks = [("resid", "each", tlp.get_act_patch_resid_pre), ("attn", "each", tlp.get_act_patch_attn_out),
              ("mlp", "each", tlp.get_act_patch_mlp_out), ("heads", "all", tlp.get_act_patch_attn_head_out_all_pos)]
    if family == "llama":
        checks.append(("heads", "each", tlp.get_act_patch_attn_head_out_by_pos))
    for components, positions, fn in checks:
        res = rw.patching(clean, corrupt, diff, components=components, positions=positions, progress=False)
        with torch.no_grad():
            ref = fn(tl, corrupt.token_ids[None], cache, metric).cpu()
        if components == "heads" and positions == "each":  # TL: [L, T, H]; ours: [L*H, T]
            ref = ref.permute(0, 2, 1).reshape(-1, T)
        assert res.raw.shape == ref.shape, components
        torch.testing.assert_close(res.raw, ref.float(), atol=2e-5, rtol=1e-5, msg=f"{family} {components}")
    assert no_hooks(model)
    if family == "llama":  # on the TransformerLens model itself: a clear error naming the fix
        with pytest.raises(rw.UnsupportedModelError, match="Hugging Face"):
            rw.patching(rw.decompose(tl, clean.token_ids), rw.decompose(tl, corrupt.token_ids), diff)


def test_each_cell_is_a_patched_rerun():
    """raw[row, t] is the metric of corrupt.edit(rw.Patch(component, source=clean, positions=[t]))."""
    _, clean, corrupt, (a, b) = pair("phi3")
    res = rw.patching(clean, corrupt, rw.logit_diff(a, b), components="all", progress=False)
    assert res.labels == ["attn.0", "mlp.0", "attn.1", "mlp.1"] and res.raw.shape == (4, T)
    assert res.columns == corrupt.tokens

    def metric(dec):
        return float(dec.logits[-1, a] - dec.logits[-1, b])

    for r, label in enumerate(res.labels):
        for t in (0, 2, T - 1):
            ed = corrupt.edit(rw.Patch(label, source=clean, positions=[t]))
            assert abs(float(res.raw[r, t]) - metric(ed)) < 1e-4, (label, t)
    heads = rw.patching(clean, corrupt, rw.logit_diff(a, b), components="heads", positions="all", progress=False)
    assert heads.raw.shape == (2, 4) and heads.columns == ["H0", "H1", "H2", "H3"]
    ed = corrupt.edit(rw.Patch("attn.1", head=2, source=clean))
    assert abs(float(heads.raw[1, 2]) - metric(ed)) < 1e-4
    assert abs(res.clean_value - metric(clean)) < 1e-4 and abs(res.corrupt_value - metric(corrupt)) < 1e-4
    # patching a component everywhere in the last layer: the resid_pre of layer 0 everywhere is the clean run
    resid = rw.patching(clean, corrupt, rw.logit_diff(a, b), components="resid", positions="all", progress=False)
    assert resid.raw.shape == (2, 1) and abs(float(resid.raw[0, 0]) - res.clean_value) < 1e-4
    assert abs(float(resid.values[0, 0]) - 1.0) < 1e-4
    torch.testing.assert_close(res.values, (res.raw - res.corrupt_value) / (res.clean_value - res.corrupt_value))


def test_metrics_target_token_and_callable():
    _, clean, corrupt, (a, b) = pair("llama")
    by_token = rw.patching(clean, corrupt, a, components="mlp", progress=False)
    assert abs(by_token.clean_value - clean.logprob(a)) < 1e-4
    assert abs(by_token.corrupt_value - corrupt.logprob(a)) < 1e-4
    by_callable = rw.patching(clean, corrupt, lambda z: z.log_softmax(-1)[a], components="mlp", progress=False)
    torch.testing.assert_close(by_callable.raw, by_token.raw, atol=1e-5, rtol=1e-5)
    diff = rw.logit_diff(a, b)
    row = clean.logits[-1]
    assert float(diff(row)) == pytest.approx(float(row[a] - row[b]))
    with pytest.raises(rw.TargetError, match="holds text"):
        rw.logit_diff(" Mary", " John")(row)


def test_attribution_is_one_forward_and_backward_and_tracks_exact():
    model, clean, corrupt, (a, b) = pair("llama")
    calls = []
    handle = model.model.layers[0].register_forward_pre_hook(lambda m, args: calls.append(1))
    try:
        att = rw.patching(clean, corrupt, rw.logit_diff(a, b), components="all", method="attribution")
    finally:
        handle.remove()
    assert len(calls) == 2  # the clean prompt's capture, the corrupted one's forward (then one backward)
    exact = rw.patching(clean, corrupt, rw.logit_diff(a, b), components="all", progress=False)
    assert att.raw.shape == exact.raw.shape and att.method == "attribution"
    corr = torch.corrcoef(torch.stack([att.raw.flatten(), exact.raw.flatten()]))[0, 1]
    assert corr > 0.95
    # positions the prompts share contribute nothing (the clean and corrupted activations are equal there)
    assert float(att.raw[0, :2].sub(att.corrupt_value).abs().max()) < 1e-6
    assert abs(att.corrupt_value - exact.corrupt_value) < 1e-4
    with pytest.raises(rw.PatchingError, match="differentiable"):
        rw.patching(clean, corrupt, lambda z: 0.5, method="attribution")
    assert no_hooks(model) and all(p.grad is None for p in model.parameters())


def test_interrupted_sweep_leaves_no_hooks():
    """Ctrl-C in the middle of a patched forward pass (raised by a hook of the user's own on the
    last block, while the sweep's patch hooks are in place) leaves only the user's hook."""
    model, clean, corrupt, (a, b) = pair("gpt2")
    model.train()
    flags = [m.training for m in model.modules()]
    calls = []

    def interrupt(module, args):
        calls.append(1)
        # calls: the two capture passes, the unpatched check, attn.0's replay, then mlp.0's replay
        if len(calls) == 5:
            raise KeyboardInterrupt

    handle = model.transformer.h[1].register_forward_pre_hook(interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            rw.patching(clean, corrupt, rw.logit_diff(a, b), components="all", progress=False)
    finally:
        handle.remove()
    assert len(calls) == 5
    assert no_hooks(model)
    assert [m.training for m in model.modules()] == flags
    # a metric that raises between forward passes too
    seen = []

    def metric(z):
        seen.append(1)
        if len(seen) > 2:
            raise KeyboardInterrupt
        return z[a] - z[b]

    with pytest.raises(KeyboardInterrupt):
        rw.patching(clean, corrupt, metric, components="all", batch_size=4)
    assert no_hooks(model)


def test_bad_inputs_name_the_problem():
    model, clean, corrupt, (a, b) = pair("llama")
    other_len = rw.decompose(model, random_ids(T + 2))
    other_model = rw.decompose(build("llama", seed=1), corrupt.token_ids)
    diff = rw.logit_diff(a, b)
    with pytest.raises(rw.PatchingError, match="same length"):
        rw.patching(clean, other_len, diff)
    with pytest.raises(rw.PatchingError, match="different models"):
        rw.patching(clean, other_model, diff)
    with pytest.raises(rw.PatchingError, match="components must be"):
        rw.patching(clean, corrupt, diff, components="neurons")
    with pytest.raises(rw.PatchingError, match="positions must be"):
        rw.patching(clean, corrupt, diff, positions="last")
    with pytest.raises(rw.PatchingError, match="method must be"):
        rw.patching(clean, corrupt, diff, method="fast")
    with pytest.raises(rw.PatchingError, match="metric must be"):
        rw.patching(clean, corrupt, [a, b])
    with pytest.raises(rw.PatchingError, match="plain decompositions"):
        rw.patching(clean, corrupt.edit(rw.Zero("mlp.0")), diff)
    with pytest.raises(rw.TargetError):
        rw.patching(clean, corrupt, rw.logit_diff(a, 10_000))
    with pytest.warns(UserWarning, match="same on the clean and the corrupted"):
        same = rw.patching(clean, clean, diff, components="mlp", progress=False)
    assert all(math.isnan(v) for v in same.values.flatten().tolist())
    assert no_hooks(model)


def test_figure_is_a_diverging_heatmap():
    _, clean, corrupt, (a, b) = pair("llama")
    res = rw.patching(clean, corrupt, rw.logit_diff(a, b), components="mlp", progress=False)
    fig = res.figure()
    heat = fig.data[0]
    assert heat.type == "heatmap" and heat.zmid == 0 and heat.zmin == -heat.zmax
    assert list(heat.y) == res.labels and len(heat.x) == T
    assert "raw" in heat.hovertemplate and "normalised" in heat.hovertemplate


@pytest.mark.slow
def test_smollm2_ioi_name_movers(smollm2):
    """IOI on SmolLM2: patching the clean stream at the last position of the last layer restores the
    clean logit difference, and the exact sweep equals re-runs with dec.edit."""
    from test_edits import IOI

    model, tok = smollm2
    clean = rw.decompose(model, IOI[0], tokenizer=tok)
    corrupt = rw.decompose(model, IOI[1], tokenizer=tok)
    metric = rw.logit_diff(" Mary", " John")
    res = rw.patching(clean, corrupt, metric, components="resid", progress=False)
    assert res.clean_value > 0 > res.corrupt_value
    assert abs(float(res.values[-1, -1]) - 1.0) < 1e-3  # resid_pre of the last layer at the last position
    assert float(res.values[:, :-1][-1].abs().max()) < 1e-4  # earlier positions of the last layer: no effect
    mlp = rw.patching(clean, corrupt, metric, components="mlp", progress=False)
    ed = corrupt.edit(rw.Patch("mlp.20", source=clean, positions=[-1]))
    want = float(ed.logits[-1, clean.target_id(" Mary")] - ed.logits[-1, clean.target_id(" John")])
    assert abs(float(mlp.raw[20, -1]) - want) < 1e-3
