"""The Hugging Face backend: one forward pass with hooks, collected into a :class:`Decomposition`.

It is family-agnostic: an :class:`~resid_widgets.adapters.Adapter` says which modules write the
stream; here they are hooked, the model runs once, the hooks are always removed and the model's
train/eval flags restored, and the deltas are checked to add up to the model's own stream
(:mod:`resid_widgets.checks`).
"""
from __future__ import annotations

import torch

from .. import buffers
from ..adapters.base import Adapter, adapter_for, require_module
from ..checks import check_readout, enforce_additivity, report_nonfinite
from ..core import Decomposition
from ..weights import LayerWeights
from ..errors import UnsupportedModelError
from ..lens import Readout
from ..model_state import model_left_as_found
from ..models import display_name
from ..norms import Norm
from ..runner import first_output, hidden_input
from ..tokens import check_tokenizer, prepare_token_ids
from ..weights import module_device, unembedding_fp32


def decompose_huggingface(model: torch.nn.Module, prompt, tokenizer=None, adapter: Adapter | None = None,
                          edit_hooks=None) -> Decomposition:
    """:func:`resid_widgets.decompose` for a Hugging Face causal LM (see the module docstring).

    ``edit_hooks(handles)`` (see :func:`resid_widgets.edits.hf_hooks`) places hooks that edit the
    stream before the recorder's own, so the recorded run is the edited one; they are removed with
    the recorder's.

    Args:
        model: a Hugging Face causal LM.
        prompt: text (needs ``tokenizer``) or token ids.
        tokenizer: the model's tokenizer.
        adapter: the family's adapter (default: the registered one).
        edit_hooks: see above, or None.
    """
    adapter = adapter or adapter_for(model)
    require_loaded(model)
    check_tokenizer(tokenizer, model.config)
    token_ids = prepare_token_ids(prompt, tokenizer, model.config, adapter)
    unembed = require_module(model, adapter.unembed, "unembedding", adapter)
    final_norm = require_module(model, adapter.final_norm, "final norm", adapter)
    layers = require_module(model, adapter.layers, "decoder layers", adapter)
    L = len(layers)
    n_embed = max(1, len(adapter.embeddings))
    device = module_device(model.get_input_embeddings())
    col = DeltaRecorder(n_embed, L, device)

    def layer_input(i):
        def seen(x):
            if i == 0 and not adapter.embeddings:
                col._write_delta(0, x, "embed")  # the embedding is what enters the first block
            col._check_stream("layer_in", x)
        return seen

    # The model's lock is held from the first hook to the readout: another thread's run of this
    # model waits, instead of firing these hooks in its forward (or loading offloaded weights
    # while this one runs).
    with model_left_as_found(model):
        try:
            if edit_hooks is not None:
                edit_hooks(col.handles)
            for c, (label, path) in enumerate(adapter.embeddings):
                module = require_module(model, path, f"embedding '{label}'", adapter)
                col.on_output(module, lambda x, c=c, label=label: col._write_delta(c, x, label))
            for i, layer in enumerate(layers):
                col.on_input(layer, layer_input(i))
                for offset, kind in ((0, "attn"), (1, "mlp")):
                    post_path = getattr(adapter, f"{kind}_post_norm")
                    writer = require_module(layer, post_path or getattr(adapter, kind), f"{kind} output", adapter)
                    col.on_output(writer, lambda x, c=n_embed + 2 * i + offset, k=kind: col._write_delta(c, x, k))
                    if post_path:
                        col.on_input(writer, lambda x, i=i, k=kind: col._write_layer(f"{k}_post_in", i, x))
                col.on_input(require_module(layer, adapter.attn_out_proj, "attention output projection", adapter),
                             lambda x, i=i: col._write_layer("z", i, x))
                col.on_input(require_module(layer, adapter.mlp_out_proj, "FFN output projection", adapter),
                             lambda x, i=i: col._write_layer("acts", i, x))
            col.on_input(final_norm, lambda x: col._check_stream("final_in", x))
            out = model(input_ids=token_ids[None].to(device), use_cache=False)
        finally:
            col.remove()
        return assemble_decomposition(model, adapter, layers, final_norm, unembed, token_ids, tokenizer, col, out.logits[0])



def require_loaded(model: torch.nn.Module) -> None:
    """UnsupportedModelError when weights sit on the meta device with nothing to load them.
    accelerate's hooks load offloaded weights for each forward: a model it dispatched (with
    ``hf_device_map``, or hooks from cpu_offload / disk_offload) passes.

    Args:
        model: a Hugging Face model.

    Raises:
        UnsupportedModelError: weights on the meta device that nothing loads.
    """
    if not any(param.is_meta for param in model.parameters()):
        return
    if getattr(model, "hf_device_map", None) is not None or any(hasattr(module, "_hf_hook") for module in model.modules()):
        return
    raise UnsupportedModelError(
        f"{type(model).__name__}'s weights are on the meta device (shapes only, no values), so it cannot run. "
        "Load the weights: AutoModelForCausalLM.from_pretrained(...) (with device_map=... to offload them), "
        "or model.to_empty(device='cpu') followed by model.load_state_dict(...).")


class DeltaRecorder:
    """Hooks that write each capture straight into preallocated buffers.

    Deltas go into ``deltas`` [C, T, d] (one copy each, on the device the embedding computes
    on; fp32 on the CPU, the model's dtype on an accelerator, moved to the host as fp32 only
    when first read: no host round trip inside the run); a running fp32 sum of them is
    compared with the stream the model itself passes into every block and into the final norm
    (additivity). Per-layer captures (the output projections' inputs) go into one
    [n_layers, T, width] buffer per kind in the model's dtype on the CPU, and are kept by
    reference on an accelerator. ``remove()`` takes every hook off again.

    Args:
        n_embed: embedding components (1, or 2 with learned positions).
        n_layers: decoder layers.
        device: where the embedding computes (the deltas' buffer lives there).
    """

    def __init__(self, n_embed: int, n_layers: int, device: torch.device):
        self.n_embed, self.n_layers, self.device = n_embed, n_layers, device
        self.handles = []
        self.deltas: torch.Tensor | None = None
        self._rows: tuple[torch.Tensor, ...] = ()  # deltas[c] views, made once
        self.running: torch.Tensor | None = None
        # "z", "acts", "attn_post_in", "mlp_post_in": a [n_layers, T, width] buffer, or a per-layer list
        self.per_layer: dict[str, torch.Tensor | list] = {}
        self.calls: dict[str, int] = {}
        # per stream the model passes on (block inputs, final norm input) and position:
        # ||running sum - model's stream|| and ||model's stream||, reduced once at the end
        self.stream_norms: torch.Tensor | None = None
        self._scratch: torch.Tensor | None = None
        self._streams_seen = 0

    # -- writing ---------------------------------------------------------------------------
    def delta_dtype(self, model_dtype: torch.dtype) -> torch.dtype:
        """fp32 on the CPU (the Decomposition's own dtype: no copy later). On an accelerator the
        model's dtype: each delta is a model-dtype tensor, so this is exact, halves the memory
        of bf16 deltas and leaves the fp32 CPU copy to the first read (``dec.deltas``)."""
        return torch.float32 if self.device.type == "cpu" else model_dtype

    def _count(self, key):
        self.calls[key] = self.calls.get(key, 0) + 1

    # Hooks run under no_grad (no .detach() needed); at T=64 their Python overhead is a third
    # of what decompose adds to a forward, hence the lean bodies.
    def _write_delta(self, component: int, value: torch.Tensor, key: str):
        self._count(key)
        value = value[0]
        if self.deltas is None:
            # empty, not zeros: every row is written once (the call counts check it), and
            # zero-filling [C, T, d] costs page faults for nothing
            self.deltas = buffers.empty((self.n_embed + 2 * self.n_layers, *value.shape),
                                        self.delta_dtype(value.dtype), self.device)
            self._rows = self.deltas.unbind(0)
            self.running = torch.zeros(value.shape, dtype=torch.float32, device=self.device)
        row = self._rows[component]
        row.copy_(value)
        self.running.add_(row)

    def _write_layer(self, key: str, layer: int, value: torch.Tensor):
        # The Decomposition moves these to the CPU as fp32 only when an analysis first reads
        # them. On an accelerator they are kept by reference (fresh inputs of the output
        # projections, never modified afterwards; its caching allocator recycles memory). On the
        # CPU, references would make the model fault in new memory for every layer: one copy
        # into a recycled buffer (resid_widgets.buffers) is cheaper and lets it reuse its own.
        self._count(key)
        value = value[0]
        kept = self.per_layer.get(key)
        if kept is None:
            kept = (buffers.empty((self.n_layers, *value.shape), value.dtype, value.device)
                    if value.device.type == "cpu" else [None] * self.n_layers)
            self.per_layer[key] = kept
        elif not isinstance(kept, list) and kept.shape[1:] != value.shape:  # widths differ per layer
            kept = self.per_layer[key] = list(kept.unbind(0))
        if isinstance(kept, list):
            kept[layer] = value
        else:
            kept[layer].copy_(value)

    def _check_stream(self, key: str, value: torch.Tensor):
        self._count(key)
        boundary = self._streams_seen
        self._streams_seen += 1
        actual = value[0]
        if actual.dtype != torch.float32 or actual.device != self.device:
            actual = actual.to(self.device, torch.float32)
        if self.stream_norms is None:
            self.stream_norms = torch.empty(self.n_layers + 1, 2, actual.shape[0], device=self.device)
            self._scratch = torch.empty_like(actual)
        if boundary > self.n_layers:
            return  # a forward that runs a block twice; the call counts reject it afterwards
        norms = self.stream_norms[boundary]
        torch.linalg.vector_norm(torch.sub(self.running, actual, out=self._scratch), dim=-1, out=norms[0])
        torch.linalg.vector_norm(actual, dim=-1, out=norms[1])

    def additivity_error(self) -> float:
        """max over streams and positions of ||running sum - stream|| / ||stream||."""
        gaps = self.stream_norms[:, 0] / self.stream_norms[:, 1].clamp_min(1e-12)
        return float(torch.nan_to_num(gaps, nan=0.0, posinf=0.0).max())

    # -- hooks -----------------------------------------------------------------------------
    def on_output(self, module, fn):
        self.handles.append(module.register_forward_hook(lambda module, args, out: fn(first_output(out))))

    def on_input(self, module, fn):
        self.handles.append(module.register_forward_pre_hook(
            lambda module, args, kwargs: fn(hidden_input(args, kwargs)), with_kwargs=True))

    def remove(self):
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def assemble_decomposition(model, adapter, layers, final_norm, unembed, token_ids, tokenizer, col: DeltaRecorder, logits):
    """The Decomposition of a recorded run, after its checks (additivity, non-finite values, readout).

    Args:
        model, adapter: the model and its family's adapter.
        layers, final_norm, unembed: the adapter's modules.
        token_ids: [T] the prompt.
        tokenizer: the model's tokenizer, or None.
        col: the recorder that watched the run.
        logits: [T, vocab] the model's own logits.

    Raises:
        UnsupportedModelError: the layers did not each run once (the adapter misses this forward).
        AdditivityError, ReadoutError: (fp32) the checks failed.
    """
    L = len(layers)
    expected = {"layer_in": L, "attn": L, "mlp": L, "final_in": 1}
    if any(col.calls.get(k, 0) != n for k, n in expected.items()):
        raise UnsupportedModelError(
            f"Expected each of the {L} layers to run once; the hooks saw {col.calls}: the adapter "
            f"'{adapter.name}' does not match this model's forward (a custom forward or generation loop?).")
    labels = [label for label, _ in adapter.embeddings] or ["embed"]
    for i in range(L):
        labels += [f"attn.{i}", f"mlp.{i}"]
    err = col.additivity_error()
    dtype = next(model.parameters()).dtype
    nonfinite = {}
    # The running sum is finite exactly when every delta is (inf/NaN never add back to finite):
    # checking [T, d] instead of [C, T, d] saves a full pass over the deltas.
    if not bool(torch.isfinite(col.running).all()):
        nonfinite = report_nonfinite(labels, col.deltas, dtype)
    enforce_additivity(err, nonfinite, dtype, f"adapter '{adapter.name}'",
                       "The model's forward differs from what the adapter describes: "
                       "pass a corrected rw.Adapter(...) as adapter=.")

    # Readout: final norm + unembedding, on the device the model's head computes on.
    device = module_device(unembed)
    W_U, b_U = unembedding_fp32(unembed)
    norm = Norm.from_module(final_norm, adapter.norm_kind, adapter.norm_offset)
    readout = Readout(norm.to(device), W_U.to(device), None if b_U is None else b_U.to(device),
                      getattr(model.config, "final_logit_softcapping", None))

    config = model.config
    n_heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head")
    per_layer = col.per_layer  # moved to the CPU lazily by the Decomposition, when first read
    post_inputs = {kind: per_layer.get(f"{kind}_post_in") for kind in ("attn", "mlp")}
    name = display_name(getattr(config, "name_or_path", "")) or type(model).__name__
    dec = Decomposition(
        tokens=[tokenizer.decode([int(t)]) for t in token_ids] if tokenizer is not None
        else [f"<{int(t)}>" for t in token_ids],
        token_ids=token_ids, labels=labels, deltas=col.deltas, logits=logits.detach(),
        readout=readout, n_heads=n_heads, head_inputs=per_layer["z"], neuron_acts=per_layer["acts"],
        weights=LayerWeights(layers, adapter, model), post_norm_inputs=post_inputs,
        parallel_residual=adapter.is_parallel(config), tokenizer=tokenizer, model=model, adapter=adapter,
        model_name=name, dtype=dtype, additivity_error=err, nonfinite=nonfinite)
    check_readout(dec, f"adapter '{adapter.name}'",
                  "The adapter's final_norm, norm_kind or norm_offset (or the config's final_logit_softcapping) "
                  "does not match how this model computes its logits: pass a corrected rw.Adapter(...) as adapter=.")
    return dec
