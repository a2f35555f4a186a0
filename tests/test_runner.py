"""resid_widgets.runner: modified forwards with edits and captures, model left as found."""
import pytest
import torch

from resid_widgets.runner import Capture, Edit, run_batches, run_forward

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
