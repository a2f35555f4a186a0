"""The readout (final norm + unembedding + soft-cap) and the chunked logit lens."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from . import buffers
from .norms import Norm

# Rows per chunk are chosen so one chunk of logits stays near this size: the lens never holds
# [C, T, vocab]. A GEMM with few rows runs well below peak (64 rows: ~35% slower per row than
# 512 on this CPU), so chunks keep at least MIN_CHUNK_ROWS rows: 256 MiB for a 262k vocabulary,
# and peak extra memory stays far under 1 GB.
CHUNK_BYTES = 128 * 2**20
MIN_CHUNK_ROWS = 256


@dataclass
class Readout:
    """h -> logits the way the model does it: final norm, unembedding W_U [V, d] (+ b_U), soft-cap.

    Attributes:
        norm: the final norm (fp32).
        unembed: W_U [V, d_model] fp32, on the device the readout computes on.
        unembed_bias: b_U [V], or None.
        softcap: the final logit soft-cap (Gemma 2), or None.
    """

    norm: Norm
    unembed: torch.Tensor  # [V, d], fp32, on the device the lens runs on
    unembed_bias: torch.Tensor | None  # [V]
    softcap: float | None = None

    @property
    def device(self) -> torch.device:
        return self.unembed.device

    @property
    def vocab_size(self) -> int:
        return self.unembed.shape[0]

    def cap(self, logits: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        if self.softcap:
            if inplace:
                return logits.div_(self.softcap).tanh_().mul_(self.softcap)
            return torch.tanh(logits / self.softcap).mul_(self.softcap)
        return logits

    def logits(self, h: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """[N, d] streams -> [N, V] logits, norm recomputed on each row.

        ``out``: a [>= N, V] buffer to write into (its first N rows are returned)."""
        x = self.norm(h.to(self.device, torch.float32))
        if out is None:
            return self.cap(torch.nn.functional.linear(x, self.unembed, self.unembed_bias))
        z = out[: x.shape[0]]
        if self.unembed_bias is None:  # the same kernels F.linear uses, into the buffer
            torch.matmul(x, self.unembed.t(), out=z)
        else:
            torch.addmm(self.unembed_bias, x, self.unembed.t(), out=z)
        return self.cap(z, inplace=True)

    def target_logits(self, h: torch.Tensor, target: int) -> torch.Tensor:
        """[N, d] -> [N] logit of one token, without the full vocabulary."""
        x = self.norm(h.to(self.device, torch.float32))
        z = x @ self.unembed[target]
        if self.unembed_bias is not None:
            z = z + self.unembed_bias[target]
        return self.cap(z)

    def rows_per_chunk(self) -> int:
        # an accelerator has the memory to spare and pays per launch: larger chunks there
        budget = CHUNK_BYTES * (8 if self.device.type == "cuda" else 1)
        return max(MIN_CHUNK_ROWS, budget // (4 * self.vocab_size))

    def chunks(self, h: torch.Tensor, reuse: bool = False) -> Iterator[tuple[slice, torch.Tensor]]:
        """Yield (row slice, logits [n, V]) over the rows of h [N, d].

        ``reuse``: every chunk is written into one buffer (no allocation and page faults per
        chunk); each yielded tensor is then overwritten by the next, and may be modified."""
        step = self.rows_per_chunk()
        buf = (buffers.empty((min(step, h.shape[0]), self.vocab_size), torch.float32, self.device)
               if reuse and h.shape[0] else None)
        for start in range(0, h.shape[0], step):
            rows = slice(start, min(start + step, h.shape[0]))
            yield rows, self.logits(h[rows], out=buf)

    def logprob(self, h: torch.Tensor, target: int) -> torch.Tensor:
        """[N, d] -> [N] log p(target | h) under the lens (norm recomputed)."""
        out = torch.empty(h.shape[0])
        for rows, z in self.chunks(h, reuse=True):
            target_logit = z[:, target].clone()  # logsumexp_ overwrites z
            out[rows] = (target_logit - logsumexp_(z, z.amax(-1, keepdim=True))).cpu()
        return out


# Top-k by blocks: the k largest values of a row lie in the k blocks with the largest maxima
# (a block holding one of them has a maximum at least as large, and fewer than k blocks can have
# a larger one). One max pass over the row, then a top-k over k * TOPK_BLOCK candidates, is
# about 5x faster on the CPU than torch.topk over a 49k-262k vocabulary.
TOPK_BLOCK = 256
# A chunk whose rows all have their max inside (LSE_SAFE_MIN, LSE_SAFE_MAX) needs no shift by
# the max before exp: e^60 times a 2^20 vocabulary stays far below fp32's limit, and the sum is
# at least e^-20. Other chunks are shifted, and shifted values clamped at LSE_EXP_FLOOR: below
# it exp gives subnormal numbers, ~100x slower on x86, and e^-87 is far below fp32's precision
# of a sum that is at least 1.
LSE_SAFE_MIN, LSE_SAFE_MAX = -20.0, 60.0
LSE_EXP_FLOOR = -87.0


def top_k_(z: torch.Tensor, k: int, out: tuple[torch.Tensor, torch.Tensor]) -> None:
    """The k largest values of each row of z [n, V], descending, and their ids, into ``out``
    ([n, k] values, [n, k] long ids). Equal values may come in another order than torch.topk's.

    Args:
        z: [n, V] logits.
        k: how many per row.
        out: ([n, k] float, [n, k] long) the buffers written.
    """
    values, ids = out
    n, V = z.shape
    B = TOPK_BLOCK
    n_blocks = V // B
    if n_blocks < 8 * k or z.device.type != "cpu":  # few blocks, or a GPU's own top-k is fast
        torch.topk(z, k, dim=-1, out=out)
        return
    blocks = z[:, : n_blocks * B].view(n, n_blocks, B)
    best = blocks.amax(-1).topk(k, dim=-1).indices  # [n, k] the blocks that hold the top k
    candidates = torch.gather(blocks, 1, best[:, :, None].expand(n, k, B)).view(n, k * B)
    tail = n_blocks * B  # the last V % B ids, always candidates
    if tail < V:
        candidates = torch.cat([candidates, z[:, tail:]], 1)
    top, where = candidates.topk(k, dim=-1)
    values.copy_(top)
    in_blocks = where < k * B
    block_ids = torch.gather(best, 1, (where // B).clamp_max_(k - 1)) * B + where % B
    torch.where(in_blocks, block_ids, where - k * B + tail, out=ids)


def logsumexp_(z: torch.Tensor, row_max: torch.Tensor) -> torch.Tensor:
    """logsumexp [n] of each row of z [n, V] given its max [n, 1] (e.g. the top-1 logit), in
    place: z is overwritten, no temporaries. Moderate logits (the usual case) take one exp pass
    and one sum pass.

    Args:
        z: [n, V] logits (overwritten).
        row_max: [n, 1] each row's max.
    """
    finite = torch.isfinite(row_max)
    # the test costs a device sync: on a GPU the shift is cheaper than that
    if z.device.type == "cpu" and bool(((row_max > LSE_SAFE_MIN) & (row_max < LSE_SAFE_MAX) & finite).all()):
        return z.exp_().sum(-1).log_()
    m = torch.where(finite, row_max, torch.zeros_like(row_max))
    lse = z.sub_(m).clamp_(min=LSE_EXP_FLOOR).exp_().sum(-1).log_().add_(m[:, 0])
    return lse.masked_fill_(row_max[:, 0] == float("-inf"), float("-inf"))  # not e^-87 * V


class LensResult:
    """The logit lens of every state × position.

    ``top_ids`` / ``top_probs`` [C, T, k]; :meth:`prob`, :meth:`logprob`, :meth:`rank` [C, T] for a
    target; :meth:`entropy` [C, T]. Computed in chunks of rows: [C, T, vocab] never exists.
    Made by :meth:`resid_widgets.Decomposition.logit_lens`.

    Args:
        states: [C, T, d_model] the states read (a Decomposition's, or a tuned lens's translation).
        readout: the model's final norm + unembedding (+ soft-cap).
        k: how many top tokens to keep per cell.
        resolve_target: target (text or id) -> token id, e.g. the Decomposition's ``target_id``.
    """

    def __init__(self, states: torch.Tensor, readout: Readout, k: int,
                 resolve_target: Callable[[object], int]):
        C, T, d = states.shape
        self._flat = states.reshape(C * T, d)
        self._shape = (C, T)
        self._readout = readout
        self._resolve = resolve_target
        self.k = k
        # results stay on the readout's device until the end: one transfer, not one per chunk
        dev = readout.device
        top_ids = torch.empty(C * T, k, dtype=torch.long, device=dev)
        top_logits = torch.empty(C * T, k, device=dev)
        lse = torch.empty(C * T, device=dev)
        for rows, z in readout.chunks(self._flat, reuse=True):
            top_k_(z, k, out=(top_logits[rows], top_ids[rows]))
            lse[rows] = logsumexp_(z, top_logits[rows, :1])
        self._lse = lse.cpu()
        self.top_ids = top_ids.cpu().view(C, T, k)
        self.top_probs = (top_logits.cpu() - self._lse[:, None]).exp_().view(C, T, k)
        self._entropy: torch.Tensor | None = None

    def nbytes(self) -> int:
        """Bytes of the results held ([C, T, k] ids and probabilities, [C, T] log-sum-exp and
        entropy); the states it reads are the Decomposition's, not counted here."""
        held = (self.top_ids, self.top_probs, self._lse, self._entropy)
        return sum(t.numel() * t.element_size() for t in held if t is not None)

    def reads(self, states: torch.Tensor | None) -> bool:
        """Whether this result reads ``states`` (rather than holding states of its own).

        Args:
            states: [C, T, d_model] states, or None.
        """
        return states is not None and self._flat.data_ptr() == states.data_ptr()

    @property
    def logsumexp(self) -> torch.Tensor:
        """[C, T] log Σ_v exp(logit_v) of every cell (log-probabilities are logits minus it)."""
        return self._lse.view(self._shape)

    def logprob(self, target) -> torch.Tensor:
        """[C, T] log-probability of ``target`` (a single-token string or an id) in every cell.

        Args:
            target: a single-token string or a token id.
        """
        tid = self._resolve(target)
        z = self._readout.target_logits(self._flat, tid).cpu()
        return (z - self._lse).view(self._shape)

    def prob(self, target) -> torch.Tensor:
        """[C, T] probability of ``target`` in every cell.

        Args:
            target: a single-token string or a token id.
        """
        return self.logprob(target).exp()

    def rank(self, target) -> torch.Tensor:
        """[C, T] rank of ``target`` (0 = top) in every cell; one more chunked pass.

        Args:
            target: a single-token string or a token id.
        """
        tid = self._resolve(target)
        out = torch.empty(self._flat.shape[0], dtype=torch.long)
        for rows, z in self._readout.chunks(self._flat, reuse=True):
            out[rows] = (z > z[:, tid : tid + 1]).sum(-1).cpu()
        return out.view(self._shape)

    def entropy(self) -> torch.Tensor:
        """[C, T] entropy (nats) of the lens distribution in every cell; one more chunked pass."""
        if self._entropy is None:
            out = torch.empty(self._flat.shape[0])
            lse_all = self._lse.to(self._readout.device)
            scratch = None
            for rows, z in self._readout.chunks(self._flat, reuse=True):
                lse = lse_all[rows, None]
                if scratch is None:
                    scratch = torch.empty_like(z)
                # H = -sum p log p with log p = z - lse clamped at LSE_EXP_FLOOR (no subnormals);
                # summing p * log p term by term, not lse - sum p z, which cancels in fp32
                log_p = z.sub_(lse).clamp_(min=LSE_EXP_FLOOR)
                p = torch.exp(log_p, out=scratch[: z.shape[0]])
                out[rows] = p.mul_(log_p).sum(-1).neg_().cpu()
            self._entropy = out.view(self._shape)
        return self._entropy

    def __repr__(self) -> str:
        C, T = self._shape
        return f"LensResult(states={C}, positions={T}, k={self.k})"
