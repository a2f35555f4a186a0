"""The code that runs *inside* an nnsight trace, locally or on NDIF.

Self-contained on purpose: it imports only torch and :mod:`resid_widgets.norms` (torch only),
and reads the model through the envoy tree, so :func:`record` can ship by value to a server
that has no resid_widgets installed (``nnsight.register`` of both modules, done by
:mod:`resid_widgets.backends.nnsight`). Its only inputs are the envoy and a :func:`spec` of
plain Python values (module paths, norm kind, k).

What leaves the trace (``.save()``), per run of C components, T positions, L layers:

- always: ``deltas`` [C, T, d] in the model's dtype (each delta is a model-dtype tensor, so
  this is exact; fp32 on arrival), ``stream_norms`` [L + 1, 2, T] (the additivity check),
  ``logits_top`` / ``logits_top_ids`` [T, k] and ``logits_lse`` [T] (the model's own output);
- ``spec["full"]`` (a local model): the per-layer inputs of the output projections (head and
  neuron splits) and of post-norms, in the model's dtype, and the full logits [T, V];
- ``spec["lens"]`` (remote): the logit lens of every state x position, top-k ids [C, T, k]
  (int32), their logits and the log-sum-exp [C, T], computed in row chunks on the model's device
  (never [C, T, V]); the target's lens logit [C, T]; the direct logit attribution of every
  component at every position to the target [C, T] with the final norm frozen at each position's
  final stream (plus its constant); the readout self-check error (a scalar).

Never saved: weight matrices, [*, V] tensors other than the full logits of ``spec["full"]``.
"""
from __future__ import annotations

import torch

from ..norms import Norm

# Rows of [rows, V] logits the in-trace lens holds at once (a 262k vocabulary: 1 GiB in fp32).
LENS_CHUNK_ELEMENTS = 2**28
# Tokens the in-trace readout self-check compares: the model's top ones and a spread sample.
CHECK_TOP, CHECK_SPREAD = 16, 240


def spec(*, embeddings, layers, n_layers, attn_writer, attn_post_in, mlp_writer, mlp_post_in,
         attn_out_proj, mlp_out_proj, final_norm, unembed, norm_kind, norm_offset, norm_eps,
         softcap, k=10, target=None, full=True, lens=False) -> dict:
    """The plain-Python description :func:`record` works from (every path already resolved to
    one dotted name, relative to the model or, for the per-layer ones, to one decoder layer)."""
    return dict(embeddings=list(embeddings), layers=layers, n_layers=int(n_layers),
                attn_writer=attn_writer, attn_post_in=attn_post_in, mlp_writer=mlp_writer,
                mlp_post_in=mlp_post_in, attn_out_proj=attn_out_proj, mlp_out_proj=mlp_out_proj,
                final_norm=final_norm, unembed=unembed, norm_kind=norm_kind,
                norm_offset=float(norm_offset), norm_eps=float(norm_eps),
                softcap=None if not softcap else float(softcap), k=int(k),
                target=None if target is None else int(target), full=bool(full), lens=bool(lens))


def _envoy(root, path: str):
    for part in path.split("."):
        root = root[int(part)] if part.isdigit() else getattr(root, part)
    return root


def _first(value):
    return value[0] if isinstance(value, (tuple, list)) else value


def _input(envoy):
    args, kwargs = envoy.inputs
    return args[0] if args else kwargs.get("hidden_states", next(iter(kwargs.values())))


def _cap(z: torch.Tensor, softcap):
    return z if not softcap else torch.tanh(z / softcap) * softcap


def _gaps(running: torch.Tensor, stream: torch.Tensor) -> torch.Tensor:
    actual = stream.float()
    return torch.stack([torch.linalg.vector_norm(running - actual, dim=-1),
                        torch.linalg.vector_norm(actual, dim=-1)])


def record(lm, spec: dict) -> dict:
    """Inside ``with lm.trace(ids[None]):`` read every component's delta (and what ``spec`` asks
    for) in the order the model runs; returns {name: tensor} (the caller saves the dict).

    Args:
        lm: the nnsight wrapper being traced.
        spec: from ``backends.nnsight.trace_spec``.
    """
    with torch.no_grad():
        return _record(lm, spec)


def _record(lm, spec):
    L = spec["n_layers"]
    deltas, gaps, per_layer = [], [], {"z": [], "acts": [], "attn_post_in": [], "mlp_post_in": []}
    running = None

    def add(delta):
        nonlocal running
        deltas.append(delta)
        running = delta.float() if running is None else running + delta.float()

    for path in spec["embeddings"]:
        add(_first(_envoy(lm, path).output)[0])
    for i in range(L):
        layer = _envoy(lm, f"{spec['layers']}.{i}")
        stream = _input(layer)[0]
        if not spec["embeddings"] and i == 0:
            add(stream)  # the embedding is what enters the first block
        gaps.append(_gaps(running, stream))
        for kind in ("attn", "mlp"):
            proj = _input(_envoy(layer, spec[f"{kind}_out_proj"]))[0]
            if spec["full"]:
                per_layer["z" if kind == "attn" else "acts"].append(proj.detach())
            writer = _envoy(layer, spec[f"{kind}_writer"])
            if spec[f"{kind}_post_in"] and spec["full"]:
                per_layer[f"{kind}_post_in"].append(_input(writer)[0].detach())
            add(_first(writer.output)[0])
    final_norm = _envoy(lm, spec["final_norm"])
    gaps.append(_gaps(running, _input(final_norm)[0]))
    # [T, V]; the model soft-caps its logits after the unembedding (Gemma 2), as _cap does
    logits = _cap(_first(_envoy(lm, spec["unembed"]).output)[0].float(), spec["softcap"])

    k = min(spec["k"], logits.shape[-1])
    top = logits.topk(k, dim=-1)
    out = {
        "deltas": torch.stack(deltas).detach(),  # [C, T, d], the model's dtype
        "stream_norms": torch.stack(gaps).detach(),  # [L + 1, 2, T]
        "logits_top": top.values.detach(), "logits_top_ids": top.indices.int().detach(),
        "logits_lse": torch.logsumexp(logits, -1).detach(),
    }
    if spec["full"]:
        out["logits"] = logits.detach()
        out.update({key: torch.stack(v) for key, v in per_layer.items() if v})
    if spec["lens"]:
        out.update(_lens(_envoy(lm, spec["unembed"]), final_norm, out["deltas"], logits, spec))
    return out


def _lens(unembed, final_norm, deltas: torch.Tensor, logits: torch.Tensor, spec: dict) -> dict:
    """The logit lens and the DLA of every state / component, on the model's device."""
    W = unembed.weight  # [V, d]; stays where it is (only results of products with it leave)
    V = W.shape[0]
    W32 = W if W.dtype == torch.float32 else W.float()
    b = getattr(unembed, "bias", None)
    b32 = None if b is None else b.float()
    weight = getattr(final_norm, "weight", None)
    gain = (torch.ones(deltas.shape[-1], device=W.device) if weight is None
            else weight.float().to(W.device) + spec["norm_offset"])
    nb = getattr(final_norm, "bias", None)
    nbias = None if nb is None else nb.float().to(W.device)
    norm = Norm(spec["norm_kind"], gain, nbias, spec["norm_eps"])  # the final norm, in fp32
    cap, k = spec["softcap"], min(spec["k"], V)

    states = deltas.to(W.device, torch.float32).cumsum(0)  # [C, T, d]
    C, T, d = states.shape
    flat = states.reshape(C * T, d)
    tid = spec["target"] if spec["target"] is not None else int(logits[-1].argmax())
    top_ids = torch.empty(C * T, k, dtype=torch.int32, device=W.device)
    top_logits = torch.empty(C * T, k, device=W.device)
    lse = torch.empty(C * T, device=W.device)
    target_logit = torch.empty(C * T, device=W.device)
    step = max(1, LENS_CHUNK_ELEMENTS // V)
    for start in range(0, C * T, step):
        rows = slice(start, min(start + step, C * T))
        z = norm(flat[rows]) @ W32.t()
        if b32 is not None:
            z = z + b32
        z = _cap(z, cap)
        t = z.topk(k, dim=-1)
        top_logits[rows], top_ids[rows] = t.values, t.indices.int()
        lse[rows] = torch.logsumexp(z, -1)
        target_logit[rows] = z[:, tid]
    last = z[-1]  # the final state at the last position: the last row of the last chunk
    # the readout self-check: the last state read out as the model does, against its own logits
    model_row = logits[-1].to(W.device)
    ids = torch.cat([model_row.topk(min(CHECK_TOP, V)).indices,
                     torch.linspace(0, V - 1, min(CHECK_SPREAD, V), device=W.device).long()])
    check = (last[ids] - model_row[ids]).abs().max() / (1 + model_row.abs().max())
    # DLA: each delta through the final norm frozen at its position's final stream
    final = states[-1]  # [T, d]
    r = norm.frozen_readout(W32[tid], final)  # [T, d]: x . r == norm*(x) . W_U[tid]
    dla = torch.einsum("ctd,td->ct", deltas.to(W.device, torch.float32), r)
    const = torch.zeros((), device=W.device)
    if nbias is not None:
        const = const + nbias @ W32[tid]
    if b32 is not None:
        const = const + b32[tid]
    return {"lens_top_ids": top_ids.view(C, T, k), "lens_top_logits": top_logits.view(C, T, k),
            "lens_lse": lse.view(C, T), "lens_target_logit": target_logit.view(C, T),
            "target": torch.tensor(tid), "dla": dla, "dla_constant": const,
            "readout_error": check}
