"""The recycled capture buffers: memory comes back only when nothing can read it any more."""
import gc

import pytest
import torch

import resid_widgets as rw
from resid_widgets import buffers
from models_zoo import FAMILIES, build, random_ids

MB = 2**20


@pytest.fixture(autouse=True)
def empty_pool():
    buffers.release_memory()
    yield
    buffers.release_memory()


def test_small_and_device_buffers_are_plain_tensors():
    small = buffers.empty((4, 4), torch.float32)
    assert small.shape == (4, 4) and buffers.idle_bytes() == 0
    del small
    gc.collect()
    assert buffers.idle_bytes() == 0


def test_freed_buffer_is_reused_with_its_memory():
    a = buffers.empty((3, MB), torch.float32)
    a.fill_(7.0)
    ptr = a.data_ptr()
    assert buffers.idle_bytes() == 0
    del a
    gc.collect()
    assert buffers.idle_bytes() >= 12 * MB
    b = buffers.empty((3, MB), torch.float32)
    assert b.data_ptr() == ptr and buffers.idle_bytes() == 0
    # a slightly smaller request fits the same region; a much smaller one does not take it
    del b
    gc.collect()
    c = buffers.empty((1, MB), torch.float32)
    assert c.data_ptr() != ptr and buffers.idle_bytes() >= 12 * MB
    d = buffers.empty((3 * MB - 100,), torch.float32)
    assert d.data_ptr() == ptr


def test_a_view_keeps_the_memory_in_use():
    a = buffers.empty((2, MB), torch.float32, "cpu")
    a.fill_(1.0)
    row = a[1]
    del a
    gc.collect()
    assert buffers.idle_bytes() == 0
    b = buffers.empty((2, MB), torch.float32)
    b.fill_(2.0)
    assert bool((row == 1.0).all())
    del row
    gc.collect()
    assert buffers.idle_bytes() >= 8 * MB


def test_idle_memory_is_capped(monkeypatch):
    monkeypatch.setattr(buffers, "MAX_IDLE_BYTES", 10 * MB)
    held = [buffers.empty((MB,), torch.float32) for _ in range(4)]  # 4 MB each
    del held
    gc.collect()
    assert 8 * MB <= buffers.idle_bytes() <= 10 * MB
    assert buffers.release_memory() >= 8 * MB and buffers.idle_bytes() == 0


def test_dtypes_and_shapes():
    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.int64):
        t = buffers.empty((5, 3, MB // 8), dtype)
        assert t.dtype == dtype and t.shape == (5, 3, MB // 8) and t.is_contiguous()
        t.zero_()
        assert float(t.float().sum()) == 0.0


@pytest.fixture
def pooled(monkeypatch):
    """Every capture goes through the pool, also those of the tiny test models."""
    monkeypatch.setattr(buffers, "MIN_BYTES", 0)


@pytest.mark.parametrize("family", FAMILIES)
def test_pooled_captures_equal_unpooled_ones(family, monkeypatch):
    """Pooled buffers hold exactly what the by-reference captures (tested for exactness in
    test_engine) hold, also when a second run reuses the first run's memory."""
    model = build(family)
    ids = random_ids(13)
    monkeypatch.setattr(buffers, "MIN_BYTES", 2**62)
    reference = rw.decompose(model, ids)
    monkeypatch.setattr(buffers, "MIN_BYTES", 0)
    for _ in range(2):
        dec = rw.decompose(model, ids)
        assert isinstance(dec._neuron_acts_raw, torch.Tensor)  # captured into one pooled buffer
        assert torch.equal(dec.deltas, reference.deltas)
        assert torch.equal(dec._neuron_acts, reference._neuron_acts)
        assert torch.equal(dec._head_inputs, reference._head_inputs)
        for kind, kept in reference._post_norm_inputs.items():
            assert (kept is None) == (dec._post_norm_inputs[kind] is None)
            if kept is not None:
                assert torch.equal(dec._post_norm_inputs[kind], kept)
        assert torch.equal(dec.head_contributions(int(ids[-1])), reference.head_contributions(int(ids[-1])))
        assert dec.additivity_error == reference.additivity_error
        del dec
        gc.collect()
    assert buffers.idle_bytes() > 0


def test_decompositions_never_share_memory(pooled):
    """A later decompose may reuse the memory only of results that are gone."""
    model = build("llama")
    a_ids, b_ids = random_ids(30, seed=1), random_ids(30, seed=2)
    first = rw.decompose(model, a_ids)
    saved = (first.deltas.clone(), first._neuron_acts.clone(), first._head_inputs.clone())
    second = rw.decompose(model, b_ids)
    assert first.deltas.data_ptr() != second.deltas.data_ptr()
    row = second.deltas[3]  # a view keeps the second result's memory in use
    del second
    gc.collect()
    third = rw.decompose(model, b_ids)
    assert torch.equal(third.deltas[3], row)
    assert third.deltas.data_ptr() != row.data_ptr() - 3 * row.numel() * 4
    for kept, now in zip(saved, (first.deltas, first._neuron_acts, first._head_inputs)):
        assert torch.equal(kept, now)


def test_without_anonymous_mappings_buffers_are_plain_tensors(monkeypatch):
    monkeypatch.setattr(buffers, "_CAN_MAP", False)  # as on Windows
    t = buffers.empty((2, MB), torch.float32)
    assert t.shape == (2, MB) and t.is_contiguous()
    del t
    gc.collect()
    assert buffers.idle_bytes() == 0


def test_ffn_width_that_differs_per_layer(pooled):
    """A (custom) model whose FFN width differs per layer: decompose keeps per-layer activations."""
    import transformers as tf

    model = build("llama")
    cfg = tf.LlamaConfig(**{**model.config.to_dict(), "intermediate_size": 48})
    model.model.layers[1].mlp = tf.models.llama.modeling_llama.LlamaMLP(cfg).eval()
    ids = random_ids(13)
    dec = rw.decompose(model, ids)
    with torch.no_grad():
        assert torch.allclose(dec.logits, model(input_ids=ids[None]).logits[0], atol=1e-4)
    assert [dec.neuron_activations(l).shape[-1] for l in range(2)] == [64, 48]
    for l in range(2):  # each layer's neurons add up to its MLP delta
        W, b = dec.weights.mlp_out(l)
        rebuilt = dec.neuron_activations(l) @ W.t() + (0 if b is None else b)
        torch.testing.assert_close(rebuilt, dec.deltas[dec.mlp_index(l)], atol=1e-5, rtol=1e-4)
        assert dec.neuron_dla(int(ids[-1]), layer=l).shape == (dec.neuron_activations(l).shape[-1],)
