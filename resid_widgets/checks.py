"""The self-checks every backend runs on a decomposition, and their limits.

- :func:`report_nonfinite`: count NaN/inf values per component and warn;
- :func:`enforce_additivity`: the deltas must add up to the model's own stream;
- :func:`check_readout`: the declared final norm + unembedding must reproduce the model's logits.

fp32 models must pass to rounding (an error is raised otherwise); half precision only warns.
"""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import torch

from .errors import AdditivityError, NonFiniteWarning, ReadoutError

if TYPE_CHECKING:
    from .core import Decomposition

# fp32 models must add up to rounding; anything above this means the adapter is wrong.
FP32_ADDITIVITY_LIMIT = 1e-4
# The readout self-check, relative to 1 + the largest |logit| of the checked row: fp32 models
# reproduce their own logits to rounding (SmolLM2: 3e-7); a wrong declaration (norm kind, offset,
# bias, soft-cap) misses by 1e-3 and more. bfloat16 rounds the model's own logits by up to ~1e-2
# (SmolLM2), and so does fp32 with TF32 / reduced-precision matmuls.
FP32_READOUT_LIMIT = 1e-4
HALF_READOUT_LIMIT = 5e-2
# Tokens whose logits the self-check compares: the model's top ones and a spread sample of the
# vocabulary (the whole row would cost one more pass over W_U per run).
READOUT_CHECK_TOP, READOUT_CHECK_SPREAD = 16, 240


def report_nonfinite(labels, deltas: torch.Tensor, dtype) -> dict[str, int]:
    """{label: count of NaN/inf values} of deltas [C, T, d], warned about when not empty.

    Args:
        labels: (C) the components' labels.
        deltas: [C, T, d_model].
        dtype: the model's dtype (named in the warning).
    """
    counts = (~torch.isfinite(deltas)).flatten(1).sum(1).tolist()
    nonfinite = {lab: int(n) for lab, n in zip(labels, counts) if n}
    if nonfinite:
        warnings.warn(NonFiniteWarning(
            f"NaN/inf in the model's activations: {nonfinite} (values per component). They are kept "
            f"as NaN/inf and flagged in dec.nonfinite; the model's dtype {dtype} may overflow on "
            "this prompt."), stacklevel=4)
    return nonfinite


def enforce_additivity(err: float, nonfinite: dict, dtype, source: str, fix: str) -> None:
    """Raise (fp32) or warn (half precision) when the deltas miss the model's own stream.

    Args:
        err: the relative additivity error (see ``Decomposition.additivity_error``).
        nonfinite: the non-finite counts (the check is skipped when any).
        dtype: the model's dtype: fp32 raises, half precision warns.
        source: what recorded the deltas, named in the message.
        fix: what the user should do, appended to the error.

    Raises:
        AdditivityError: fp32 and the error is past the limit.
    """
    if err <= FP32_ADDITIVITY_LIMIT or nonfinite:
        return
    msg = f"The recorded deltas do not add up to the model's stream (relative error {err:.2e}) for {source}."
    if dtype == torch.float32:
        raise AdditivityError(f"{msg} {fix}")
    warnings.warn(f"{msg} Expected in {dtype}: the model itself adds in {dtype}; deltas were "
                  "accumulated in fp32.", stacklevel=4)


def check_readout(dec: Decomposition, source: str, fix: str) -> None:
    """The readout self-check, at the last position, and the non-finite report of the logits.

    - NaN/inf in the model's own logits (e.g. a NaN final-norm weight) are counted into
      ``dec.nonfinite["logits"]`` and warned about; the check is then skipped.
    - Lens: the last state through the declared final norm + unembedding (+ soft-cap) against the
      model's own logits, on its top tokens and a spread sample of the vocabulary.
    - DLA: the components' DLA to the top token + ``dla_constant`` (soft-capped) against its logit.

    Each error is relative to 1 + max |logit|; past the limit, :class:`ReadoutError` for fp32
    models, a warning in half precision (as for additivity).

    Args:
        dec: the Decomposition just assembled.
        source: what declared the readout, named in the message.
        fix: what the user should do, appended to the error.

    Raises:
        ReadoutError: fp32 and an error is past the limit.
    """
    ro = dec.readout
    model_row = dec.logits_at(-1).float().to(ro.device)  # [V]
    if dec.nonfinite or not bool(torch.isfinite(model_row).all()):
        count = int((~torch.isfinite(dec.logits)).sum())
        if count:
            dec.nonfinite["logits"] = count
            warnings.warn(NonFiniteWarning(
                f"NaN/inf in the model's output logits ({count} values, flagged in dec.nonfinite['logits']): "
                "the final norm or the unembedding holds NaN/inf, or the stream overflowed. Lens values and "
                "attributions are NaN/inf where the logits are."), stacklevel=4)
        return
    last = dec.device_deltas()[:, -1].float().cpu()  # [C, d]: no full copy of the deltas yet
    final = last.sum(0)  # [d] the last state, without the [C, T, d] cumulative sum
    V = ro.vocab_size
    top = model_row.topk(min(READOUT_CHECK_TOP, V)).indices
    spread = torch.linspace(0, V - 1, min(READOUT_CHECK_SPREAD, V), device=top.device).long()
    tokens = torch.cat([top, spread])
    x = ro.norm(final.to(ro.device)[None])[0]
    lens = ro.unembed[tokens] @ x
    if ro.unembed_bias is not None:
        lens = lens + ro.unembed_bias[tokens]
    lens = ro.cap(lens)
    scale = 1.0 + float(model_row.abs().max())
    lens_err = float((lens - model_row[tokens]).abs().max()) / scale
    tid = int(top[0])
    direction = dec.readout_direction(tid, -1, reference=final)
    dla = float((last @ direction).sum()) + dec.dla_constant(tid)
    dla_err = abs(float(ro.cap(torch.tensor(dla))) - float(model_row[tid])) / scale
    err = max(lens_err, dla_err)
    exact = dec.dtype == torch.float32 and _exact_fp32_matmuls(ro.device)
    if err <= (FP32_READOUT_LIMIT if exact else HALF_READOUT_LIMIT):
        return  # (a NaN error goes on: it is no match)
    msg = (f"The final norm + unembedding read from {source} do not reproduce the model's own output at the "
           f"last position (lens logits off by {lens_err:.1e}, DLA sum + constant off the logit by {dla_err:.1e}, "
           "relative to 1 + max |logit|): lens values and attributions would be wrong.")
    if exact or err != err:
        raise ReadoutError(f"{msg} {fix}")
    warnings.warn(f"{msg} In {dec.dtype} (or with reduced-precision fp32 matmuls) part of this is the "
                  "model's own rounding.", stacklevel=4)


def _exact_fp32_matmuls(device: torch.device) -> bool:
    """False where torch may run fp32 matmuls in TF32 / bf16 (torch.set_float32_matmul_precision)."""
    if torch.get_float32_matmul_precision() != "highest":
        return False
    return not (device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32)
