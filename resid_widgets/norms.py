"""RMSNorm / LayerNorm, recomputed on a vector or frozen at another vector's statistics.

Recomputed: what the model does (the logit lens). Frozen (``norm*`` in docs/METHODS.md): scale by the
statistics of a reference stream, which makes the norm linear, so contributions add up exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Norm:
    """An RMSNorm or LayerNorm, fp32 copies of its parameters (on the CPU unless moved with ``to``).

    Attributes:
        kind: "rms" or "layer".
        gain: [d] the weight, Gemma's ``1 +`` offset included (ones for a weightless norm, OLMo).
        bias: [d] LayerNorm's beta, or None.
        eps: the epsilon added to the variance.
    """

    kind: str  # "rms" | "layer"
    gain: torch.Tensor  # [d]
    bias: torch.Tensor | None
    eps: float

    @classmethod
    def from_module(cls, module: torch.nn.Module, kind: str, offset: float = 0.0) -> "Norm":
        """The fp32 copy of a model's norm module.

        Args:
            module: an RMSNorm / LayerNorm of the model (weights loaded if accelerate offloads them).
            kind: "rms" or "layer".
            offset: added to the weight (Gemma: 1.0).
        """
        from .weights import materialized

        with materialized(module):
            weight = getattr(module, "weight", None)
            normalized_shape = getattr(module, "normalized_shape", None)
            gain = (weight.detach().float().cpu() + offset) if weight is not None else None
            bias = getattr(module, "bias", None)
            bias = None if bias is None else bias.detach().float().cpu().clone()
        if gain is None:
            gain = torch.ones(int(normalized_shape[0]))
        eps = getattr(module, "variance_epsilon", None)
        if eps is None:
            eps = getattr(module, "eps", 1e-5)
        return cls(kind=kind, gain=gain, bias=bias, eps=float(eps))

    def to(self, device) -> "Norm":
        return Norm(self.kind, self.gain.to(device),
                    None if self.bias is None else self.bias.to(device), self.eps)

    def inv_scale(self, x: torch.Tensor) -> torch.Tensor:
        """1 / (rms or std) of each row of x [..., d], shape [..., 1]."""
        x = x.float()
        if self.kind == "layer":
            return torch.rsqrt(x.var(-1, keepdim=True, unbiased=False) + self.eps)
        return torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)

    def center(self, x: torch.Tensor) -> torch.Tensor:
        return x - x.mean(-1, keepdim=True) if self.kind == "layer" else x

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Recomputed norm of each row of x [..., d] (fp32)."""
        y = self.center(x.float()) * self.inv_scale(x) * self.gain
        return y if self.bias is None else y + self.bias

    def frozen(self, x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """norm*(x): x [..., d] scaled with the statistics of ``reference`` [..., d], no bias."""
        return self.center(x.float()) * self.inv_scale(reference) * self.gain

    def frozen_readout(self, direction: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """r such that ``x · r == norm*(x) · direction`` for every x (the adjoint of norm*).

        direction [d] (e.g. an unembedding row), reference [d] -> r [d].
        """
        r = direction.float() * self.gain * self.inv_scale(reference)
        return self.center(r)  # centering is self-adjoint
