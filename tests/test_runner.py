"""resid_widgets.runner: modified forwards with edits and captures, model left as found."""
import pytest
import torch

from resid_widgets.runner import Capture, Edit, run_batches, run_forward, run_layers

from models_zoo import build, random_ids


def _parts(model):
    return model.model.layers, model.model.norm


def _final_input(model, ids, edits=()):
    """The stream entering the final norm of a plain forward with hand-placed hooks."""
    layers, norm = _parts(model)
    seen = []
    handles = [norm.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach()))]
    for module, fn in edits:
        handles.append(module.register_forward_hook(fn))
    try:
        with torch.no_grad():
            model(input_ids=ids[None], use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return seen[0][0]


def _no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_row_edits_equal_separate_runs():
    model = build("llama")
    layers, norm = _parts(model)
    ids = random_ids(7)

    def edits_for(rows):  # row 0: block 0 is the identity; row 1: block 1's MLP adds nothing; row 2 intact
        return [Edit.identity(layers[0], rows=[r == 0 for r in rows]),
                Edit.zero(layers[1].mlp, rows=[r == 1 for r in rows])]

    run = run_batches(model, ids, 3, edits_for, {"final": Capture(norm, on="input")}, batch_size=2)
    assert run.captured["final"].shape == (3, 7, 32)

    def identity(module, args, out):
        return (args[0],) + tuple(out[1:]) if isinstance(out, tuple) else args[0]

    expected = [_final_input(model, ids, [(layers[0], identity)]),
                _final_input(model, ids, [(layers[1].mlp, lambda m, a, out: torch.zeros_like(out))]),
                _final_input(model, ids)]
    for row, want in enumerate(expected):
        torch.testing.assert_close(run.captured["final"][row], want, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(expected[0], expected[2])
    assert _no_hooks(model)


def test_position_and_logits_are_kept_per_row():
    model = build("gpt2")
    ids = random_ids(6)
    run = run_batches(model, ids, 3, lambda rows: [], {"ln_f": Capture(model.transformer.ln_f, on="output")},
                      batch_size=2, position=4, logits=True)
    with torch.no_grad():
        out = model(input_ids=ids[None], use_cache=False)
    assert run.logits.shape == (3, 97)
    torch.testing.assert_close(run.logits, out.logits[0, 4].expand(3, -1), rtol=1e-5, atol=1e-5)
    assert run.captured["ln_f"].shape == (3, 32)


def test_input_edit_patches_a_stored_stream():
    """Patching: block 1 receives row 1's stream in row 0 (an input edit writing a stored tensor)."""
    model = build("llama")
    layers, norm = _parts(model)
    ids = torch.stack([random_ids(5, seed=1), random_ids(5, seed=2)])
    plain = run_forward(model, ids, capture={"block1_in": Capture(layers[1], on="input"),
                                             "final": Capture(norm, on="input")})
    stored = plain.captured["block1_in"][1:2]
    patched = run_forward(model, ids, [Edit(layers[1], lambda value, inputs: stored, rows=[True, False], on="input")],
                          {"final": Capture(norm, on="input")})
    # what happens after block 1's input depends on the tokens only through attention over the same
    # stream, so row 0 now computes exactly what row 1 computed
    torch.testing.assert_close(patched.captured["final"][0], plain.captured["final"][1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(patched.captured["final"][1], plain.captured["final"][1], rtol=1e-5, atol=1e-5)


def test_model_left_as_found_when_the_edit_raises():
    model = build("llama").train()
    layers, norm = _parts(model)

    def broken(value, inputs):
        raise ValueError("edit failed")

    with pytest.raises(ValueError, match="edit failed"):
        run_forward(model, random_ids(4), [Edit(layers[0], broken)], {"final": Capture(norm, on="input")})
    assert _no_hooks(model)
    assert all(m.training for m in model.modules())
    assert all(p.requires_grad for p in model.parameters())


def test_wrong_row_mask_and_unknown_side_are_refused():
    model = build("llama")
    layers, _ = _parts(model)
    with pytest.raises(ValueError, match="batch has 1 rows"):
        run_forward(model, random_ids(4), [Edit.zero(layers[0].mlp, rows=[True, False])])
    assert _no_hooks(model)
    with pytest.raises(ValueError, match="pass 'output' or 'input'"):
        Capture(layers[0], on="outputs")


def test_run_layers_from_a_recorded_stream_equals_the_full_forward():
    """Starting at block 1 from the stream a full forward gave it, with the blocks' recorded calls
    tiled to 3 rows, gives the full forward's final stream; an edit there acts as in a full run."""
    model = build("llama")
    layers, norm = _parts(model)
    ids = random_ids(6)
    capture = {("call", i): Capture(layer, on="call") for i, layer in enumerate(layers)}
    full = run_forward(model, ids, capture={**capture, "block1_in": Capture(layers[1], on="input"),
                                            "final": Capture(norm, on="input")}, logits=True)
    calls = [full.captured[("call", i)] for i in range(len(layers))]
    assert calls[1].batch == 1 and "position_embeddings" in calls[1].kwargs
    hidden = full.captured["block1_in"].expand(3, -1, -1)
    run = run_layers(model, layers, 1, hidden, calls, [Edit.zero(layers[1].mlp, rows=[False, True, False])],
                     capture={"final": Capture(norm, on="input")}, readout=lambda stream: model.lm_head(norm(stream)))
    torch.testing.assert_close(run.captured["final"][0], full.captured["final"][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(run.logits[2], full.logits[0], rtol=1e-5, atol=1e-5)
    edited = run_forward(model, ids, [Edit.zero(layers[1].mlp)], {"final": Capture(norm, on="input")})
    torch.testing.assert_close(run.captured["final"][1], edited.captured["final"][0], rtol=1e-5, atol=1e-5)
    assert _no_hooks(model)
    with pytest.raises(ValueError, match="records one call"):
        run_batches(model, ids, 2, lambda rows: [], capture)


def test_grad_run_keeps_the_graph_from_a_leaf_edit():
    model = build("llama")
    layers, norm = _parts(model)
    leaf = Edit(model.get_input_embeddings(), lambda value, inputs: value.detach().requires_grad_(True))
    run = run_forward(model, random_ids(5), [leaf], {"embed": Capture(model.get_input_embeddings()),
                                                    "final": Capture(norm, on="input")}, logits=True, grad=True)
    (grad,) = torch.autograd.grad(run.logits[0, -1, 3], [run.captured["embed"]])
    assert grad.shape == (1, 5, 32) and grad[0, -1].abs().sum() > 0
    assert all(p.requires_grad for p in model.parameters()) and _no_hooks(model)
