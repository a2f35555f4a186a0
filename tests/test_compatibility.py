"""The private internals of other libraries that resid_widgets still reads (docs/compatibility.md).

Each has a canary here, which fails when the installed release changes it, and a check that
resid_widgets then fails loudly with a clear error, never with silently wrong numbers.
"""
import types

import pytest
import torch

import resid_widgets as rw
from resid_widgets import attention_capture as AC
from resid_widgets.weights import materialized, module_device, unembedding_fp32
from models_zoo import build, random_ids


# ---- transformers: config._attn_implementation ------------------------------------------------
def test_transformers_keeps_the_attention_implementation_in_config():
    model = build("llama")
    model.set_attn_implementation("eager")
    assert model.config._attn_implementation == "eager" == AC.attention_implementation(model)
    model.set_attn_implementation("sdpa")
    assert AC.attention_implementation(model) == "sdpa"


def test_without_config_attn_implementation_the_capture_refuses_clearly():
    class Switchable(torch.nn.Module):  # what a release without the private attribute would look like
        config = types.SimpleNamespace()

        def set_attn_implementation(self, name):
            raise AssertionError("must not switch what it cannot switch back")

    with pytest.raises(AC.CaptureError, match="_attn_implementation.*compatibility"):
        with AC.implementation_switched(Switchable(), "eager"):
            pass


# ---- accelerate: the _hf_hook of dispatched modules ---------------------------------------------
accelerate = pytest.importorskip("accelerate")


def test_accelerate_hooks_have_what_is_read(tmp_path):
    from accelerate import cpu_offload, disk_offload

    model = cpu_offload(build("llama"), execution_device="cpu")
    proj = model.model.layers[0].self_attn.o_proj
    assert proj.weight.device.type == "meta"
    assert hasattr(proj._hf_hook, "pre_forward") and proj._hf_hook.execution_device is not None
    assert module_device(proj) == torch.device("cpu")
    layered = disk_offload(build("llama"), str(tmp_path), execution_device="cpu",
                           preload_module_classes=["LlamaDecoderLayer"])
    hooks = getattr(layered.model.layers[0]._hf_hook, "hooks", [layered.model.layers[0]._hf_hook])
    assert any(h.offload and h.place_submodules for h in hooks)
    with materialized(layered.model.layers[0].mlp.down_proj, layered.model.layers[0]) as down:
        assert down.weight.device.type == "cpu"
    assert layered.model.layers[0].mlp.down_proj.weight.device.type == "meta"  # put back


def test_offloaded_weights_no_hook_loads_fail_loudly():
    layer = torch.nn.Linear(4, 4, device="meta")
    with pytest.raises(rw.UnsupportedModelError, match="meta device and no accelerate hook"):
        with materialized(layer):
            pass
    parent = torch.nn.Sequential(layer)
    parent._hf_hook = types.SimpleNamespace(offload=True, place_submodules=True)  # a hook that loads nothing
    with pytest.raises(rw.UnsupportedModelError, match="meta device and no accelerate hook"):
        with materialized(layer, parent):
            pass


# ---- torch: Tensor._version --------------------------------------------------------------------
def test_in_place_changes_bump_the_version_the_fp32_unembedding_cache_checks():
    model = build("llama").to(torch.bfloat16)
    first, _ = unembedding_fp32(model.lm_head)
    assert unembedding_fp32(model.lm_head)[0] is first  # cached
    version = model.lm_head.weight._version
    with torch.no_grad():
        model.lm_head.weight.mul_(2)
    assert model.lm_head.weight._version > version
    again, _ = unembedding_fp32(model.lm_head)
    torch.testing.assert_close(again, model.lm_head.weight.float())


# ---- TransformerLens: a wrong reading of the readout is caught ----------------------------------
def test_transformer_lens_readout_read_wrongly_raises():
    pytest.importorskip("transformer_lens")
    from transformer_lens.model_bridge.sources._bridge_builder import build_bridge_from_module

    hf = build("llama")
    bridge = build_bridge_from_module(hf, "LlamaForCausalLM", hf_config=hf.config)
    bridge.cfg.output_logits_soft_cap = 2.0  # what a renamed/ignored attribute would do
    with pytest.raises(rw.ReadoutError, match="TransformerLens"):
        rw.decompose(bridge, random_ids(7))
