"""dec.edit(rw.Zero / rw.ProjectOut / rw.Add / rw.Patch) against independent hook-based re-runs.

The reference runs below place their own hooks on the named modules of each family (written out
here, not read from the adapters) and run the model's plain forward; the edited Decomposition
must give the same logits and add up to its own edited stream.
"""
import pytest
import torch
from models_zoo import build, random_ids

import resid_widgets as rw

# family -> (layers, attention writer, MLP writer, attention output projection, down-projection,
#            embedding module or None where the embedding is the first block's input)
MODULES = {
    "gpt2": ("transformer.h", "attn", "mlp", "attn.c_proj", "mlp.c_proj", "transformer.wte"),
    "gpt_neox_parallel": ("gpt_neox.layers", "attention", "mlp", "attention.dense", "mlp.dense_4h_to_h", None),
    "llama": ("model.layers", "self_attn", "mlp", "self_attn.o_proj", "mlp.down_proj", None),
    "gemma2": ("model.layers", "post_attention_layernorm", "post_feedforward_layernorm", "self_attn.o_proj",
               "mlp.down_proj", None),
    "phi3": ("model.layers", "self_attn", "mlp", "self_attn.o_proj", "mlp.down_proj", None),
    "olmo2": ("model.layers", "post_attention_layernorm", "post_feedforward_layernorm", "self_attn.o_proj",
              "mlp.down_proj", None),
}
H = 4  # heads of the tiny models


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _with_first(out, new):
    return (new,) + tuple(out[1:]) if isinstance(out, tuple) else new


def _module(model, family, layer, which):
    layers, attn, mlp, o_proj, down, _ = MODULES[family]
    path = {"attn": attn, "mlp": mlp, "o_proj": o_proj, "down": down}[which]
    return model.get_submodule(f"{layers}.{layer}.{path}")


def reference_run(model, ids, hooks):
    """logits [T, V] and the final norm's input of a plain forward with ``hooks`` =
    [(module, "post"|"pre", fn(tensor) -> tensor)] placed (and removed afterwards)."""
    handles = []
    try:
        for module, when, fn in hooks:
            if when == "post":
                handles.append(module.register_forward_hook(lambda m, a, o, fn=fn: _with_first(o, fn(_first(o).clone()))))
            else:
                handles.append(module.register_forward_pre_hook(
                    lambda m, a, fn=fn: (fn(a[0].clone()),) + tuple(a[1:])))
        with torch.no_grad():
            return model(input_ids=ids[None], use_cache=False).logits[0]
    finally:
        for h in handles:
            h.remove()


def recorded(model, ids, module, on="output"):
    """What ``module`` outputs (first element), or with ``on="input"`` receives (first argument), in
    a plain forward of ``ids``: [1, T, ...]. Hand-placed hooks, independent of resid_widgets."""
    seen = []
    if on == "output":
        h = module.register_forward_hook(lambda m, a, o: seen.append(_first(o).detach().clone()))
    else:
        h = module.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))
    try:
        with torch.no_grad():
            model(input_ids=ids[None], use_cache=False)
    finally:
        h.remove()
    return seen[0]


def zero_neuron(index):
    """Reference hook: the down-projection's input with one neuron's activation zeroed."""
    def hook(x):
        x[..., index] = 0
        return x
    return hook


def add_at_last(vector, scale):
    """Reference hook: ``scale * vector`` added to the output at the last position."""
    def hook(x):
        x[:, -1] += scale * vector
        return x
    return hook


def project_out(unit):
    """Reference hook: the output with its component along ``unit`` (norm 1) removed."""
    return lambda x: x - (x @ unit)[..., None] * unit


def cases(family, model, other_ids, v):
    """[(id, edits, reference hooks)] covering every edit kind."""
    u = v / v.norm()

    def head_zero(x):
        x.view(*x.shape[:-1], H, -1)[:, -1, 2] = 0
        return x

    src_attn1 = recorded(model, other_ids, _module(model, family, 1, "attn"))
    src_z0 = recorded(model, other_ids, _module(model, family, 0, "o_proj"), on="input")
    src_acts1 = recorded(model, other_ids, _module(model, family, 1, "down"), on="input")

    def patch_attn(x):
        x[:, -3:] = src_attn1[:, -3:]
        return x

    def patch_head(x):
        x.view(*x.shape[:-1], H, -1)[:, :, 1] = src_z0.view(*src_z0.shape[:-1], H, -1)[:, :, 1]
        return x

    def patch_neuron(x):
        x[:, 2, 3] = src_acts1[:, 2, 3]
        return x

    embed_path = MODULES[family][5]
    embed_hook = ((model.get_submodule(embed_path), "post", lambda x: x * 0) if embed_path else
                  (model.get_submodule(f"{MODULES[family][0]}.0"), "pre", lambda x: x * 0))
    return [
        ("zero-mlp", [rw.Zero("mlp.1")], [(_module(model, family, 1, "mlp"), "post", lambda x: x * 0)]),
        ("zero-head", [rw.Zero("attn.0", head=2, positions=[-1])], [(_module(model, family, 0, "o_proj"), "pre", head_zero)]),
        ("zero-neuron", [rw.Zero("mlp.0", neuron=5)], [(_module(model, family, 0, "down"), "pre", zero_neuron(5))]),
        ("zero-embed", [rw.Zero("embed")], [embed_hook]),
        ("project-out", [rw.ProjectOut("mlp.0", direction=3 * v)], [(_module(model, family, 0, "mlp"), "post", project_out(u))]),
        ("add", [rw.Add("attn.1", vector=v, scale=4.0, positions=[-1])], [(_module(model, family, 1, "attn"), "post", add_at_last(v, 4.0))]),
        ("patch", "source", [(_module(model, family, 1, "attn"), "post", patch_attn)]),
        ("patch-head", "source-head", [(_module(model, family, 0, "o_proj"), "pre", patch_head)]),
        ("patch-neuron", "source-neuron", [(_module(model, family, 1, "down"), "pre", patch_neuron)]),
        ("several", [rw.Zero("mlp.0"), rw.Add("attn.1", vector=v, scale=4.0, positions=[-1])],
         [(_module(model, family, 0, "mlp"), "post", lambda x: x * 0),
          (_module(model, family, 1, "attn"), "post", add_at_last(v, 4.0))]),
    ]


def no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def hook_count(model):
    """Forward hooks on the model's modules (a TransformerLens bridge keeps some of its own)."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("family", list(MODULES))
def test_every_edit_kind_matches_a_hooked_rerun(family):
    model = build(family)
    ids, other_ids = random_ids(9), random_ids(9, seed=3)
    dec = rw.decompose(model, ids)
    other = rw.decompose(model, other_ids)
    v = torch.randn(dec.d_model, generator=torch.Generator().manual_seed(1))
    sources = {"source": [rw.Patch("attn.1", source=other, positions=[-3, -2, -1])],
               "source-head": [rw.Patch("attn.0", head=1, source=other)],
               "source-neuron": [rw.Patch("mlp.1", neuron=3, source=other, positions=slice(2, 3))]}
    for name, edits, hooks in cases(family, model, other_ids, v):
        edits = sources.get(edits, edits) if isinstance(edits, str) else edits
        ed = dec.edit(*edits)
        ref = reference_run(model, ids, hooks)
        torch.testing.assert_close(ed.logits, ref, atol=2e-5, rtol=1e-5, msg=f"{family} {name}")
        assert ed.additivity_error <= 1e-5, (family, name)
        assert ed.edits == tuple(edits) and ed.baseline is dec
        assert not torch.equal(ed.logits, dec.logits), (family, name)
        first = min(dec.labels.index(e.component) for e in edits)
        # components before the first edited one are untouched
        torch.testing.assert_close(ed.deltas[:first], dec.deltas[:first], atol=0, rtol=0)
        assert no_hooks(model)


def test_edited_rows_hold_the_edit():
    model = build("llama")
    dec = rw.decompose(model, random_ids(9))
    other = rw.decompose(model, random_ids(9, seed=4))
    v = torch.randn(dec.d_model)
    c = dec.index("mlp.1")
    assert torch.count_nonzero(dec.edit(rw.Zero("mlp.1")).deltas[c]) == 0
    ed = dec.edit(rw.Zero("mlp.1", positions=[0, -1]))
    assert torch.count_nonzero(ed.deltas[c, [0, -1]]) == 0 and torch.count_nonzero(ed.deltas[c, 1:-1]) > 0
    ed = dec.edit(rw.ProjectOut("mlp.1", direction=v))
    assert float((ed.deltas[c] @ (v / v.norm())).abs().max()) < 1e-5
    ed = dec.edit(rw.Patch("attn.0", source=other))  # the whole component at every position
    torch.testing.assert_close(ed.deltas[dec.index("attn.0")], other.deltas[dec.index("attn.0")], atol=0, rtol=0)
    ed = dec.edit(rw.Zero("attn.1", head=3))  # head edits are seen by the head split
    assert torch.count_nonzero(ed.head_deltas(1)[3]) == 0
    torch.testing.assert_close(ed.head_deltas(1).sum(0), ed.deltas[dec.index("attn.1")], atol=1e-5, rtol=1e-5)
    ed = dec.edit(rw.Zero("mlp.0", neuron=7))
    assert float(ed.neuron_activations(0)[:, 7].abs().max()) == 0
    # every method works on the edited Decomposition
    ed.logit_lens(k=3), ed.contributions(1), ed.summary()


def test_edits_accumulate_and_baseline_stays_unedited():
    model = build("llama")
    dec = rw.decompose(model, random_ids(9))
    ed1 = dec.edit(rw.Zero("mlp.0"))
    ed2 = ed1.edit(rw.Zero("attn.1"))
    assert ed2.edits == (rw.Zero("mlp.0"), rw.Zero("attn.1")) and ed2.baseline is dec
    both = dec.edit(rw.Zero("mlp.0"), rw.Zero("attn.1"))
    torch.testing.assert_close(ed2.logits, both.logits, atol=0, rtol=0)
    assert dec.edits == () and dec.baseline is None


def test_bad_edits_name_the_problem():
    model = build("llama")
    dec = rw.decompose(model, random_ids(9))
    other_len = rw.decompose(model, random_ids(7))
    other_model = rw.decompose(build("llama", seed=1), random_ids(9))
    d = dec.d_model
    bad = [
        (rw.Zero("mlp.7"), "unknown component"),
        (rw.Zero("attn.0", head=4), "head 4 out of range"),
        (rw.Zero("attn.0", head=-1), "head -1 out of range"),
        (rw.Zero("mlp.0", head=0), "head= applies to attention"),
        (rw.Zero("attn.0", neuron=0), "neuron= applies to MLP"),
        (rw.Zero("mlp.0", neuron=64), "neuron 64 out of range"),
        (rw.Zero("mlp.0", positions=[9]), "position 9 out of range"),
        (rw.Zero("mlp.0", positions=[]), "selects no position"),
        (rw.Zero("mlp.0", positions=[1.5]), "must be an integer"),
        (rw.ProjectOut("mlp.0", direction=torch.ones(d + 1)), f"d_model={d}"),
        (rw.ProjectOut("mlp.0", direction=torch.zeros(d)), "zero vector"),
        (rw.Add("mlp.0", vector=torch.zeros(d)), "zero vector"),
        (rw.Add("mlp.0", vector=torch.full((d,), float("nan"))), "NaN"),
        (rw.Patch("attn.0", source=other_len), "same length"),
        (rw.Patch("attn.0", source=other_model), "another model"),
        (rw.Patch("attn.0", source="clean"), "must be a Decomposition"),
        ("mlp.0", "not an edit"),
    ]
    for edit, message in bad:
        with pytest.raises(ValueError, match=message):
            dec.edit(edit)
        assert isinstance(pytest.raises(rw.EditError, dec.edit, edit).value, rw.EditError)
    with pytest.raises(rw.EditError, match="at least one edit"):
        dec.edit()
    assert no_hooks(model)


def test_model_left_as_found_when_an_edit_raises(monkeypatch):
    model = build("gpt2")
    model.train()
    model.transformer.h[1].mlp.eval()
    flags = [m.training for m in model.modules()]
    grads = [p.requires_grad for p in model.parameters()]
    ids = random_ids(9)
    dec = rw.decompose(model, ids)
    import resid_widgets.edits as edits_module

    def exploding(*args):
        def apply(t):
            raise RuntimeError("edit exploded")
        return apply

    monkeypatch.setattr(edits_module, "_zero", exploding)
    with pytest.raises(RuntimeError, match="edit exploded"):
        dec.edit(rw.Zero("mlp.1"))
    assert no_hooks(model)
    assert [m.training for m in model.modules()] == flags
    assert [p.requires_grad for p in model.parameters()] == grads
    monkeypatch.undo()
    torch.testing.assert_close(rw.decompose(model, ids).logits, dec.logits, atol=0, rtol=0)


def test_transformer_lens_bridge_edits_match_the_hf_model():
    pytest.importorskip("transformer_lens")
    from test_transformer_lens import bridge

    for family in ("llama", "gpt2"):
        ids = random_ids(9)
        hf = rw.decompose(build(family), ids)
        tl = rw.decompose(bridge(family), ids)
        own_hooks = hook_count(tl.model)
        hf_other, tl_other = rw.decompose(hf.model, random_ids(9, seed=2)), rw.decompose(tl.model, random_ids(9, seed=2))
        v = torch.randn(hf.d_model, generator=torch.Generator().manual_seed(0))
        for edits in ([rw.Zero("mlp.1")], [rw.Zero("attn.0", head=1, positions=[-1])], [rw.Zero("mlp.0", neuron=5)],
                      [rw.ProjectOut("attn.1", direction=v), rw.Add("mlp.0", vector=v, scale=2.0)], "patch"):
            if edits == "patch":
                a, b = [rw.Patch("attn.1", source=hf_other, head=2)], [rw.Patch("attn.1", source=tl_other, head=2)]
            else:
                a = b = edits
            ed_hf, ed_tl = hf.edit(*a), tl.edit(*b)
            torch.testing.assert_close(ed_tl.deltas, ed_hf.deltas, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(ed_tl.logits, ed_hf.logits, atol=1e-4, rtol=1e-4)
        assert hook_count(tl.model) == own_hooks


IOI = ("When Mary and John went to the store, John gave a drink to",
       "When Mary and John went to the store, Mary gave a drink to")


@pytest.mark.slow
def test_smollm2_edits_match_hooked_reruns(smollm2):
    model, tok = smollm2
    clean = rw.decompose(model, IOI[0], tokenizer=tok)
    corrupt = rw.decompose(model, IOI[1], tokenizer=tok)
    ids = clean.token_ids
    v = torch.randn(clean.d_model, generator=torch.Generator().manual_seed(0))
    u = v / v.norm()
    layers = model.model.layers
    src_attn14 = recorded(model, corrupt.token_ids, layers[14].self_attn)
    dh = clean.d_model // clean.n_heads

    def head3(x):
        x[:, -1, 3 * dh:4 * dh] = 0
        return x

    def patch(x):
        x[:, -3:] = src_attn14[:, -3:]
        return x

    checks = [
        (rw.Zero("mlp.20"), (layers[20].mlp, "post", lambda x: x * 0)),
        (rw.Zero("attn.5", head=3, positions=[-1]), (layers[5].self_attn.o_proj, "pre", head3)),
        (rw.Zero("mlp.29", neuron=1233), (layers[29].mlp.down_proj, "pre", zero_neuron(1233))),
        (rw.ProjectOut("mlp.10", direction=v), (layers[10].mlp, "post", project_out(u))),
        (rw.Add("attn.12", vector=v, scale=4.0, positions=[-1]), (layers[12].self_attn, "post", add_at_last(v, 4.0))),
        (rw.Patch("attn.14", source=corrupt, positions=[-3, -2, -1]), (layers[14].self_attn, "post", patch)),
    ]
    for edit, hook in checks:
        ed = clean.edit(edit)
        ref = reference_run(model, ids, [hook])
        torch.testing.assert_close(ed.logits, ref, atol=1e-4, rtol=1e-4, msg=str(edit))
        assert ed.additivity_error <= 1e-5
    assert no_hooks(model)
