"""Models dispatched with accelerate (device_map with CPU + disk offload) give the same numbers.

No GPU here: the main device is the CPU, so "disk" entries are offloaded into a temporary folder
(parameters on ``meta``, loaded by accelerate's hooks for each forward), and ``cpu_offload`` /
``disk_offload`` / ``preload_module_classes`` cover the other hook layouts. Every split that
reads weights (heads, neurons, post-norms) goes through ``weights.materialized``.
"""
import pytest
import torch

import resid_widgets as rw
from models_zoo import build, random_ids

accelerate = pytest.importorskip("accelerate")
from accelerate import cpu_offload, disk_offload, dispatch_model, infer_auto_device_map  # noqa: E402
from accelerate.utils import compute_module_sizes  # noqa: E402

FAMILIES = ["llama", "gpt2", "gemma2", "phi3", "gpt_neox_parallel"]
LAYER_CLASSES = {"llama": "LlamaDecoderLayer", "gpt2": "GPT2Block", "gemma2": "Gemma2DecoderLayer",
                 "phi3": "Phi3DecoderLayer", "gpt_neox_parallel": "GPTNeoXLayer"}
SUBLAYER_CLASSES = {"llama": ["LlamaAttention", "LlamaMLP"], "gpt2": ["GPT2Attention", "GPT2MLP"],
                    "gemma2": ["Gemma2Attention", "Gemma2MLP"], "phi3": ["Phi3Attention", "Phi3MLP"],
                    "gpt_neox_parallel": ["GPTNeoXAttention", "GPTNeoXMLP"]}


def dispatched(family, how, tmp_path):
    model = build(family)
    if how == "auto":  # accelerate picks: what fits in the CPU budget stays, the rest goes to disk
        total = compute_module_sizes(model)[""]
        device_map = infer_auto_device_map(model, max_memory={"cpu": int(0.9 * total)},
                                           no_split_module_classes=model._no_split_modules)
        assert set(device_map.values()) == {"cpu", "disk"}, device_map
        return dispatch_model(model, device_map, offload_dir=str(tmp_path))
    if how == "cpu_offload":  # every weight on meta, kept in a CPU state dict
        return cpu_offload(model, execution_device="cpu")
    if how == "disk_offload":
        return disk_offload(model, str(tmp_path), execution_device="cpu")
    if how in ("preload_sublayers", "preload_layers"):  # hooks on parents, not on the Linear layers
        classes = SUBLAYER_CLASSES[family] if how == "preload_sublayers" else [LAYER_CLASSES[family]]
        return disk_offload(model, str(tmp_path), execution_device="cpu", preload_module_classes=classes)
    raise ValueError(how)


def snapshot(model):
    """What decompose must leave untouched: accelerate's hooks, torch hooks, devices, flags."""
    return [(name, id(getattr(m, "_hf_hook", None)), m.training, tuple(m._forward_hooks), tuple(m._forward_pre_hooks),
             tuple((n, p.device.type, p.requires_grad) for n, p in m.named_parameters(recurse=False)))
            for name, m in model.named_modules()]


def assert_same(dec, ref):
    close = lambda a, b: torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)  # noqa: E731
    assert dec.labels == ref.labels and dec.tokens == ref.tokens
    close(dec.deltas, ref.deltas)
    close(dec.logits, ref.logits)
    assert abs(dec.additivity_error - ref.additivity_error) < 1e-6
    t = ref.top_prediction(-1)
    lens, lens_ref = dec.logit_lens(k=5), ref.logit_lens(k=5)
    assert torch.equal(lens.top_ids, lens_ref.top_ids)
    close(lens.top_probs, lens_ref.top_probs)
    close(lens.prob(t), lens_ref.prob(t))
    close(lens.entropy(), lens_ref.entropy())
    close(dec.dla_grid(t), ref.dla_grid(t))
    assert abs(dec.dla_constant(t) - ref.dla_constant(t)) < 1e-6
    for method in ("dla", "logprob"):
        close(dec.contributions(t, -1, method), ref.contributions(t, -1, method))
        close(dec.head_contributions(t, -1, method), ref.head_contributions(t, -1, method))
    for layer in range(ref.n_layers):
        close(dec.head_deltas(layer), ref.head_deltas(layer))
        close(dec.neuron_activations(layer), ref.neuron_activations(layer))
    close(dec.neuron_dla(t, -1), ref.neuron_dla(t, -1))
    top, top_ref = dec.top_neurons(t, -1, n=3, method="logprob"), ref.top_neurons(t, -1, n=3, method="logprob")
    assert [(n.layer, n.index) for n in top] == [(n.layer, n.index) for n in top_ref]
    assert [tok for tok, _ in top[0].bs_top] == [tok for tok, _ in top_ref[0].bs_top]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("how", ["auto", "cpu_offload", "disk_offload", "preload_sublayers", "preload_layers"])
def test_dispatched_model_same_numbers_and_left_as_found(family, how, tmp_path):
    ids = random_ids(9)
    ref = rw.decompose(build(family), ids)
    model = dispatched(family, how, tmp_path)
    assert any(p.device.type == "meta" for p in model.parameters())  # really offloaded
    before = snapshot(model)
    dec = rw.decompose(model, ids)
    assert_same(dec, ref)  # also reads every layer's weights through accelerate's hooks
    assert snapshot(model) == before
    with torch.no_grad():  # and the model still runs as before
        torch.testing.assert_close(model(ids[None]).logits[0], ref.logits, atol=1e-6, rtol=1e-5)


def test_from_pretrained_with_device_map_and_offload_folder(tmp_path):
    """The usual way in: from_pretrained(device_map=..., offload_folder=...) from a local folder."""
    from transformers import AutoModelForCausalLM

    ids = random_ids(9)
    original = build("llama")
    ref = rw.decompose(original, ids)
    original.save_pretrained(tmp_path / "model")
    device_map = {"model.embed_tokens": "cpu", "model.layers.0": "cpu", "model.layers.1": "disk",
                  "model.norm": "disk", "model.rotary_emb": "cpu", "lm_head": "disk"}
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "model", device_map=device_map,
                                                 offload_folder=str(tmp_path / "offload"), dtype=torch.float32)
    assert model.lm_head.weight.device.type == "meta"
    before = snapshot(model)
    assert_same(rw.decompose(model, ids), ref)
    assert snapshot(model) == before
