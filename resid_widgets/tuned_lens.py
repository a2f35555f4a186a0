"""The tuned lens (Belrose et al. 2023, arXiv 2303.08112): one affine translator per state.

``TunedLens_s(h) = LogitLens(h + W_s h + b_s)``: the state h is moved into the basis the final norm
and unembedding read, then read out exactly like the logit lens (final norm recomputed, soft-cap).

- :meth:`TunedLens.train` fits the translators on your machine to the model's own next-token
  distribution: mean over positions of KL(p_final || p_lens), translators starting at the
  identity (W = 0, b = 0: the logit lens).
- :meth:`TunedLens.save` / :meth:`TunedLens.load` use the tuned-lens package's folder
  (``config.json`` + ``params.pt``), so lenses trained with that package load here and the
  block translators trained here load there.
- ``dec.logit_lens(k, lens=tuned)`` reads every grid state through it; :func:`kl_to_final`
  measures either lens against the model's own distribution.

**One translator per grid state**, not per block: the grid, the lens view and the log-prob
attributions show the stream after every sub-layer (``attn.l`` and ``mlp.l``), so a per-block
lens would leave half the rows untranslated. The last state needs none (the lens there is the
model's output). The tuned-lens package trains one per block, for the stream *entering* block i
(its index i, our ``mlp.{i-1}``, and ``blocks.0.hook_resid_pre`` for i = 0, which the grid calls
``embed``, or ``pos_embed`` with learned positions); ``params.pt`` holds exactly those, under its
keys ``"{i}.weight"``/``"{i}.bias"``, and ``sublayer_params.pt`` the others (``attn.l``, and
GPT-2's ``embed`` row), which that package ignores. A lens loaded from the package leaves the
``attn.l`` rows at the logit lens: :meth:`TunedLens.translated` says which rows are translated.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from .errors import TunedLensError
from .states import BLOCK0_INPUT, state_key

CONFIG_FILE = "config.json"
PARAMS_FILE = "params.pt"
SUBLAYER_FILE = "sublayer_params.pt"
LENS_TYPE = "linear_tuned_lens"

# The tuned-lens package's optimiser (its train_loop defaults): SGD with Nesterov momentum, a
# learning rate of 1 scaled by (1 - momentum), weight decay 1e-3, gradients clipped at norm 1.
SGD_MOMENTUM = 0.9
GRAD_CLIP = 1.0


def unembedding_hash(unembed: torch.Tensor) -> str:
    """The tuned-lens package's fingerprint of an unembedding W_U [V, d]: sha256 of numpy's
    summarised print of it at one decimal (robust to dtype), as its ``config.json`` stores it.

    Args:
        unembed: W_U [V, d].
    """
    array = unembed.detach().float().cpu().numpy()
    with np.printoptions(edgeitems=3, threshold=1000, linewidth=75, suppress=False, floatmode="maxprec",
                         sign="-", legacy=False):
        text = np.array_str(array, precision=1)
    return hashlib.sha256(text.encode()).hexdigest()


def _package_key(key: str, n_layers: int) -> int | None:
    """The tuned-lens package's translator index of a state key, or None (a sub-layer state)."""
    if key == BLOCK0_INPUT:
        return 0
    kind, _, layer = key.partition(".")
    if kind == "mlp" and layer.isdigit() and int(layer) < n_layers - 1:
        return int(layer) + 1
    return None


def _key_of_package_index(index: int) -> str:
    return BLOCK0_INPUT if index == 0 else f"mlp.{index - 1}"


@dataclass(eq=False)
class TunedLens:
    """Affine translators h -> h + W h + b, one per residual-stream state.

    Attributes:
        translators: {state key: (W [d, d], b [d] or None)} fp32 on the CPU. Keys are grid labels
            (``"attn.3"``, ``"mlp.3"``), except the stream entering block 0, which is
            ``"blocks.0.hook_resid_pre"`` (see :func:`resid_widgets.states.state_key`).
        d_model, n_layers: the model the lens belongs to.
        base_model_name_or_path: the model's name (informative; not checked).
        unembed_hash: :func:`unembedding_hash` of the model's unembedding, checked before use
            (None: not checked, as in folders written without one).
        history: mean KL(p_final || p_lens) per training step, averaged over states.
    """

    translators: dict[str, tuple[torch.Tensor, torch.Tensor | None]]
    d_model: int
    n_layers: int
    base_model_name_or_path: str = ""
    unembed_hash: str | None = None
    base_model_revision: str | None = None
    history: list[float] = field(default_factory=list)

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def identity(cls, dec) -> "TunedLens":
        """The untrained lens of ``dec``'s model: W = 0, b = 0 for every state but the last, so it
        reads exactly like the logit lens."""
        d = dec.d_model
        keys = [state_key(dec, c) for c in range(len(dec.labels) - 1)]
        return cls({key: (torch.zeros(d, d), torch.zeros(d)) for key in keys}, d_model=d,
                   n_layers=dec.n_layers, base_model_name_or_path=dec.model_name,
                   unembed_hash=unembedding_hash(dec.readout.unembed))

    @classmethod
    def train(cls, model, texts: Iterable, tokenizer=None, *, steps: int = 40, tokens_per_step: int = 256,
              max_length: int = 128, lr: float | None = None, optimizer: str = "sgd",
              weight_decay: float = 1e-3, seed: int = 0,
              precision: str = "float32", init: "TunedLens | None" = None, adapter=None,
              progress: bool = True) -> "TunedLens":
        """Fit one translator per state to the model's own next-token distribution.

        Objective, per translator: mean over positions of KL(p_final || p_lens), p_final the model's
        own distribution (detached), p_lens the logit lens of h + W h + b. The states are exactly
        the grid's: each text chunk goes through ``rw.decompose``. Optimiser: the tuned-lens
        package's (SGD, Nesterov momentum 0.9, lr scaled by 0.1, weight decay), each translator's
        gradient clipped at norm 1 on its own, the learning rate decaying linearly to 0.

        Cost: each step reads every state of every token through the unembedding twice (forward
        and gradient), about steps × tokens_per_step × 2L vocabulary-sized products: minutes on a
        CPU for a 135M model with the defaults (see benchmarks/results.md).

        Args:
            model: a model ``rw.decompose`` accepts (the grid's model).
            texts: strings (need ``tokenizer``) or token-id sequences. Each is tokenized as
                ``decompose`` does and cut into chunks of at most ``max_length`` tokens.
            tokenizer: the model's tokenizer.
            steps: optimiser steps.
            tokens_per_step: each step takes whole chunks, in a seeded random order, cycling
                through them, until it has at least this many tokens.
            max_length: tokens per chunk (the longest context a translator is trained on).
            lr: for "sgd", the learning rate before the (1 - momentum) scaling (default 1, the
                package's); for "adam", the learning rate (default 1e-3).
            optimizer: "sgd" (default) or "adam" (AMSGrad, as the package's Adam option).
            weight_decay: pulls W and b toward 0, i.e. the lens toward the logit lens.
            seed: the chunk order.
            precision: "float32", or "bfloat16" for the two vocabulary-sized products (inputs
                rounded to bfloat16, sums and everything else in float32): about 3x faster on
                CPUs with AMX/AVX512-BF16, much slower on CPUs without.
            init: continue from this lens (its translators are copied) instead of the identity.
            adapter: as for ``rw.decompose``.
            progress: show a tqdm progress bar.

        Returns:
            A new :class:`TunedLens`; ``history`` holds each step's mean KL (nats).
        """
        from tqdm.auto import tqdm

        from .engine import decompose

        if precision not in ("float32", "bfloat16"):
            raise ValueError(f"precision must be 'float32' or 'bfloat16', not {precision!r}")
        if steps < 1 or tokens_per_step < 1 or max_length < 1:
            raise ValueError("steps, tokens_per_step and max_length must be positive")
        chunks = token_chunks(texts, tokenizer, max_length)
        order = torch.randperm(len(chunks), generator=torch.Generator().manual_seed(seed)).tolist()
        budget = min(tokens_per_step, sum(ids.numel() for ids in chunks))  # all texts, if fewer
        cursor = 0

        def next_batch() -> list[torch.Tensor]:
            nonlocal cursor
            batch, n_tokens = [], 0
            while n_tokens < budget:
                batch.append(chunks[order[cursor % len(order)]])
                n_tokens += batch[-1].numel()
                cursor += 1
            return batch

        lens = None
        weight = bias = None
        opt = sched = None
        bar = tqdm(range(steps), desc="tuned lens", unit="step", disable=not progress)
        for _ in bar:
            batch = next_batch()
            n_tokens = sum(ids.numel() for ids in batch)
            step_kl = None
            for ids in batch:
                dec = decompose(model, ids, tokenizer, adapter=adapter)
                if lens is None:  # the first chunk tells the lens its model
                    lens = cls.identity(dec) if init is None else init.copy()
                    lens.check(dec)
                    keys, weight, bias = lens._leaves(dec)
                    opt = _optimizer(optimizer, weight + bias, lr, weight_decay)
                    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1 - i / steps)
                    unembed = _Unembed(dec.readout, precision)
                kl = _fit_chunk(dec, weight, bias, unembed, grad_scale=1.0 / n_tokens)
                step_kl = kl if step_kl is None else step_kl + kl
            for W, b in zip(weight, bias):  # each translator has its own objective
                torch.nn.utils.clip_grad_norm_([W, b], GRAD_CLIP)
            opt.step()
            opt.zero_grad(set_to_none=False)
            sched.step()
            mean_kl = float(step_kl.sum() / (n_tokens * len(step_kl)))
            lens.history.append(mean_kl)
            bar.set_postfix(kl=f"{mean_kl:.3f}")
        lens._set(keys, weight, bias)
        return lens

    def copy(self) -> "TunedLens":
        """A deep copy (translators cloned, history kept)."""
        return TunedLens({k: (w.clone(), None if b is None else b.clone()) for k, (w, b) in self.translators.items()},
                         d_model=self.d_model, n_layers=self.n_layers,
                         base_model_name_or_path=self.base_model_name_or_path, unembed_hash=self.unembed_hash,
                         base_model_revision=self.base_model_revision, history=list(self.history))

    # ---- use -------------------------------------------------------------------------------
    def keys(self, dec) -> list[str | None]:
        """(C) per grid state, the key of its translator, or None where it reads as the logit
        lens (the last state; states the lens has no translator for).

        Args:
            dec: a :class:`~resid_widgets.Decomposition` of the lens's model.
        """
        last = len(dec.labels) - 1
        keys = [state_key(dec, c) for c in range(len(dec.labels))]
        return [key if c != last and key in self.translators else None for c, key in enumerate(keys)]

    def translated(self, dec) -> list[bool]:
        """(C) whether each grid state goes through a translator (False: read as the logit lens).

        Args:
            dec: a :class:`~resid_widgets.Decomposition` of the lens's model.
        """
        return [key is not None for key in self.keys(dec)]

    def check(self, dec) -> None:
        """Raise :class:`~resid_widgets.errors.TunedLensError` unless the lens belongs to ``dec``'s
        model (same width, same number of blocks, same unembedding where the lens records one).

        Args:
            dec: a :class:`~resid_widgets.Decomposition`.

        Raises:
            TunedLensError: the lens belongs to another model.
        """
        where = f" (trained for {self.base_model_name_or_path!r})" if self.base_model_name_or_path else ""
        if self.d_model != dec.d_model or self.n_layers != dec.n_layers:
            raise TunedLensError(
                f"This tuned lens{where} has d_model={self.d_model} and {self.n_layers} layers, but "
                f"{dec.model_name or 'the model'} has d_model={dec.d_model} and {dec.n_layers} layers: "
                "train one for this model with rw.TunedLens.train(model, texts, tokenizer=tok).")
        if self.unembed_hash and self.unembed_hash != unembedding_hash(dec.readout.unembed):
            raise TunedLensError(
                f"This tuned lens{where} was trained for another model: its unembedding fingerprint "
                f"differs from {dec.model_name or 'this model'}'s. Train one for this model with "
                "rw.TunedLens.train(model, texts, tokenizer=tok); if you know the states and unembedding "
                "are the same, set lens.unembed_hash = None to skip this check.")

    def transform(self, dec) -> torch.Tensor:
        """[C, T, d_model] every state through its translator, h + W h + b (h itself where there
        is none). ``dec.logit_lens(k, lens=self)`` reads these.

        Args:
            dec: a :class:`~resid_widgets.Decomposition` of the lens's model.
        """
        self.check(dec)
        states = dec.states
        out = states.clone()
        for c, key in enumerate(self.keys(dec)):
            if key is not None:
                W, b = self.translators[key]
                out[c] += states[c] @ W.t() if b is None else torch.addmm(b, states[c], W.t())
        return out

    # ---- files -----------------------------------------------------------------------------
    @property
    def has_bias(self) -> bool:
        return any(b is not None for _, b in self.translators.values())

    def save(self, path) -> Path:
        """Write the tuned-lens package's folder: ``config.json`` (its TunedLensConfig fields),
        ``params.pt`` (its block translators ``"{i}.weight"``, ``"{i}.bias"``, i = 0..L-1; a
        block without a translator here is saved as the identity), and ``sublayer_params.pt``
        (every other translator, ``"{key}.weight"``/``"{key}.bias"``). Returns the folder.

        Args:
            path: the folder (created if missing).
        """
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        d, bias = self.d_model, self.has_bias
        blocks, others = {}, {}
        for i in range(self.n_layers):
            W, b = self.translators.get(_key_of_package_index(i), (torch.zeros(d, d), torch.zeros(d)))
            blocks[f"{i}.weight"] = W.contiguous()
            if bias:
                blocks[f"{i}.bias"] = (torch.zeros(d) if b is None else b).contiguous()
        for key, (W, b) in self.translators.items():
            if _package_key(key, self.n_layers) is None:
                others[f"{key}.weight"] = W.contiguous()
                if b is not None:
                    others[f"{key}.bias"] = b.contiguous()
        torch.save(blocks, folder / PARAMS_FILE)
        if others:
            torch.save(others, folder / SUBLAYER_FILE)
        elif (folder / SUBLAYER_FILE).exists():
            (folder / SUBLAYER_FILE).unlink()
        config = {"base_model_name_or_path": self.base_model_name_or_path, "d_model": d,
                  "num_hidden_layers": self.n_layers, "bias": bias,
                  "base_model_revision": self.base_model_revision, "unembed_hash": self.unembed_hash,
                  "lens_type": LENS_TYPE}
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2))
        return folder

    @classmethod
    def load(cls, path) -> "TunedLens":
        """Read a folder written by :meth:`save` or by the tuned-lens package (``TunedLens.save``,
        or a downloaded lens folder). Translators are converted to fp32 on the CPU."""
        folder = Path(path)
        config_path, params_path = folder / CONFIG_FILE, folder / PARAMS_FILE
        if not config_path.is_file() or not params_path.is_file():
            raise TunedLensError(f"{folder} is not a tuned lens folder: it needs {CONFIG_FILE} and {PARAMS_FILE} "
                                 "(the tuned-lens package's layout, as TunedLens.save writes it).")
        config = json.loads(config_path.read_text())
        lens_type = config.get("lens_type", LENS_TYPE)
        if lens_type != LENS_TYPE:
            raise TunedLensError(f"{config_path}: lens_type {lens_type!r} is not supported (only {LENS_TYPE!r}).")
        try:
            d, n_layers = int(config["d_model"]), int(config["num_hidden_layers"])
        except KeyError as e:
            raise TunedLensError(f"{config_path} lacks {e.args[0]!r} (the tuned-lens package writes "
                                 "d_model and num_hidden_layers).") from None
        translators = {}
        blocks = torch.load(params_path, map_location="cpu", weights_only=True)
        for i in range(n_layers):
            if f"{i}.weight" not in blocks:
                raise TunedLensError(f"{params_path} has no translator {i} ('{i}.weight'), but config.json "
                                     f"says {n_layers} layers.")
            translators[_key_of_package_index(i)] = (blocks[f"{i}.weight"], blocks.get(f"{i}.bias"))
        if (folder / SUBLAYER_FILE).is_file():
            others = torch.load(folder / SUBLAYER_FILE, map_location="cpu", weights_only=True)
            for name, W in others.items():
                if name.endswith(".weight"):
                    key = name[: -len(".weight")]
                    translators[key] = (W, others.get(f"{key}.bias"))
        for key, (W, b) in translators.items():
            if tuple(W.shape) != (d, d) or (b is not None and tuple(b.shape) != (d,)):
                raise TunedLensError(f"{folder}: translator {key!r} has shape {tuple(W.shape)}, expected ({d}, {d}).")
        translators = {k: (W.float().contiguous(), None if b is None else b.float().contiguous())
                       for k, (W, b) in translators.items()}
        return cls(translators, d_model=d, n_layers=n_layers,
                   base_model_name_or_path=config.get("base_model_name_or_path") or "",
                   unembed_hash=config.get("unembed_hash"), base_model_revision=config.get("base_model_revision"))

    # ---- training internals ----------------------------------------------------------------
    def _leaves(self, dec) -> tuple[list[str], list[torch.Tensor], list[torch.Tensor]]:
        """(keys, [W [d, d]], [b [d]]) trainable copies for the states 0..C-2 (identity where
        missing), on the readout's device. One leaf per state: a slice of one stacked leaf
        would cost a zero-filled gradient of the whole stack per slice."""
        d, device = self.d_model, dec.readout.device
        keys = [state_key(dec, c) for c in range(len(dec.labels) - 1)]
        pairs = [self.translators.get(key, (torch.zeros(d, d), None)) for key in keys]
        weight = [W.to(device, copy=True).requires_grad_() for W, _ in pairs]
        bias = [(torch.zeros(d) if b is None else b).to(device, copy=True).requires_grad_() for _, b in pairs]
        return keys, weight, bias

    def _set(self, keys: Sequence[str], weight: Sequence[torch.Tensor], bias: Sequence[torch.Tensor]) -> None:
        self.translators.update({key: (W.detach().float().cpu(), b.detach().float().cpu())
                                 for key, W, b in zip(keys, weight, bias)})

    def __repr__(self) -> str:
        n_block = sum(_package_key(k, self.n_layers) is not None for k in self.translators)
        return (f"TunedLens({self.base_model_name_or_path or 'model'}, d_model={self.d_model}, "
                f"layers={self.n_layers}, translators={len(self.translators)} "
                f"({n_block} block inputs, {len(self.translators) - n_block} sub-layer states))")


def _optimizer(name: str, params, lr: float | None, weight_decay: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=(1.0 if lr is None else lr) * (1 - SGD_MOMENTUM), momentum=SGD_MOMENTUM,
                               nesterov=True, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=1e-3 if lr is None else lr, amsgrad=True, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', not {name!r}")


# --------------------------------------------------------------------------------------------
# KL(p_final || p_lens) and its gradient, in chunks (the [rows, vocab] logits never all at once)
# --------------------------------------------------------------------------------------------
class _Unembed:
    """The readout's unembedding for the two vocabulary-sized products, in the chosen precision."""

    def __init__(self, readout, precision: str = "float32"):
        self.readout = readout
        self.dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
        self.weight = readout.unembed.to(self.dtype)  # [V, d]

    def logits(self, normed: torch.Tensor) -> torch.Tensor:
        """[n, d] final-normed rows -> [n, V] logits before any soft-cap (fp32)."""
        u = normed.to(self.dtype) @ self.weight.t()
        u = u.float() if u.dtype != torch.float32 else u
        return u if self.readout.unembed_bias is None else u.add_(self.readout.unembed_bias)

    def backward(self, grad_logits: torch.Tensor) -> torch.Tensor:
        """[n, V] d loss / d logits -> [n, d] d loss / d normed rows (fp32)."""
        return (grad_logits.to(self.dtype) @ self.weight).float()


class _Final:
    """The model's own next-token distribution at each position: log p [T, V], p, sum p log p [T]."""

    def __init__(self, logits: torch.Tensor, device):
        self.logp = torch.log_softmax(logits.to(device, torch.float32), -1)
        self.p = self.logp.exp()
        self.plogp = torch.special.xlogy(self.p, self.p).sum(-1)


def _chunk_kl(x: torch.Tensor, positions: slice, final: _Final, unembed: _Unembed,
              grad_scale: float | None = None) -> torch.Tensor:
    """KL(p_final || lens(x)) of translated states x [g, t, d] at ``positions`` -> [g, t].

    With ``grad_scale``, also backpropagates grad_scale * sum(KL) into x's graph: d KL / d logits
    = softmax(logits) - p_final, then through the soft-cap, unembedding and recomputed norm."""
    readout = unembed.readout
    g, t, d = x.shape
    normed = readout.norm(x.reshape(g * t, d))
    with torch.no_grad():
        z = readout.cap(unembed.logits(normed.detach()), inplace=True)  # [g*t, V]
        V = z.shape[-1]
        p, plogp = final.p[positions], final.plogp[positions]
        cap_slope = None
        if grad_scale is not None and readout.softcap:
            cap_slope = 1 - (z / readout.softcap) ** 2  # d cap(u) / du
        lse = torch.logsumexp(z, -1)  # [g*t]
        z3 = z.view(g, t, V)
        cross = torch.stack([(z3[s] * p).sum(-1) for s in range(g)]) - lse.view(g, t)  # sum p log q
        kl = plogp[None] - cross
        if grad_scale is None:
            return kl
        grad = z.sub_(lse[:, None]).exp_().view(g, t, V).sub_(p).view(g * t, V)
        if cap_slope is not None:
            grad.mul_(cap_slope)
        grad_normed = unembed.backward(grad).mul_(grad_scale)
    normed.backward(grad_normed)
    return kl


def _groups(n_states: int, n_positions: int, rows: int):
    """(state slice, position slice) blocks of about ``rows`` rows."""
    per_state = min(n_positions, rows)
    n_group = max(1, rows // per_state)
    for s0 in range(0, n_states, n_group):
        for t0 in range(0, n_positions, per_state):
            yield slice(s0, min(s0 + n_group, n_states)), slice(t0, min(t0 + per_state, n_positions))


def _fit_chunk(dec, weight: Sequence[torch.Tensor], bias: Sequence[torch.Tensor], unembed: _Unembed,
               grad_scale: float) -> torch.Tensor:
    """Accumulate grad_scale * d sum KL / d (W_s, b_s) for one decomposed chunk; returns [S] the KL
    summed over its positions, S = C - 1 states."""
    device = unembed.weight.device
    final = _Final(dec.logits, device)
    states = dec.states[:-1]
    S, T, _ = states.shape
    out = torch.zeros(S)
    for s, t in _groups(S, T, dec.readout.rows_per_chunk()):
        h = states[s, t].to(device)
        W, b = torch.stack(weight[s]), torch.stack(bias[s])
        x = h + torch.baddbmm(b[:, None, :], h, W.transpose(1, 2))
        out[s] += _chunk_kl(x, t, final, unembed, grad_scale).sum(-1).cpu()
    return out


def kl_to_final(dec, lens: TunedLens | None = None) -> torch.Tensor:
    """[C, T] KL(p_final || p_lens) in nats at every state and position: p_final the model's own
    next-token distribution, p_lens the logit lens (``lens=None``) or the tuned lens. Computed in
    chunks of rows (as the logit lens); 0 up to rounding at the last state.

    Args:
        dec: a Decomposition.
        lens: a :class:`TunedLens` of its model, or None for the logit lens.
    """
    states = dec.states if lens is None else lens.transform(dec)
    unembed = _Unembed(dec.readout)
    final = _Final(dec.logits, dec.readout.device)
    C, T, _ = states.shape
    out = torch.empty(C, T)
    with torch.no_grad():
        for s, t in _groups(C, T, dec.readout.rows_per_chunk()):
            out[s, t] = _chunk_kl(states[s, t].to(dec.readout.device), t, final, unembed).cpu()
    return out


# --------------------------------------------------------------------------------------------
# Text -> token chunks
# --------------------------------------------------------------------------------------------
def token_chunks(texts: Iterable, tokenizer, max_length: int) -> list[torch.Tensor]:
    """Texts (or token-id sequences) -> LongTensor chunks of at most ``max_length`` tokens each.

    Text is tokenized as ``rw.decompose`` tokenizes a prompt (the tokenizer's special tokens
    included), then cut; empty texts are skipped.

    Args:
        texts: texts, or token-id sequences.
        tokenizer: the tokenizer (needed for texts).
        max_length: tokens per chunk.
    """
    chunks = []
    for text in texts:
        if isinstance(text, str):
            if tokenizer is None:
                raise TypeError("texts are strings but no tokenizer was given: pass tokenizer=..., or token ids")
            ids = tokenizer(text, return_tensors="pt")["input_ids"][0] if text else torch.zeros(0, dtype=torch.long)
        else:
            ids = torch.as_tensor(text).reshape(-1)
            if ids.dtype.is_floating_point or ids.dtype == torch.bool:
                raise TypeError(f"token ids must be integers, got {ids.dtype}")
        chunks += list(ids.long().split(max_length))
    chunks = [c for c in chunks if c.numel()]
    if not chunks:
        raise ValueError("texts hold no tokens: pass some text to train on")
    return chunks


def lens_payload(dec, lens: TunedLens | None = None, k: int = 10) -> dict:
    """What a view needs to show one lens (the logit lens, or ``lens``), as binary payloads.

    Returns ``{"name": "logit lens" | "tuned lens", "lens_ids": [C, T, k] int32,
    "lens_probs": [C, T, k] float16, "kl": [C, T] float32 (KL to the model's own distribution),
    "translated": [C] bools (rows read through a translator)}``; the arrays are
    :func:`~resid_widgets.views.payload.array_payload` dicts. A view that switches lenses ships
    one payload per lens (snapshots: both).

    Args:
        dec: a Decomposition.
        lens: a :class:`TunedLens` of its model, or None for the logit lens.
        k: top tokens per cell.
    """
    from .views.payload import array_payload

    result = dec.logit_lens(k, lens=lens)
    return {
        "name": "logit lens" if lens is None else "tuned lens",
        "lens_ids": array_payload(result.top_ids, "int32"),
        "lens_probs": array_payload(result.top_probs, "float16"),
        "kl": array_payload(kl_to_final(dec, lens), "float32"),
        "translated": [False] * len(dec.labels) if lens is None else lens.translated(dec),
    }


__all__ = ["TunedLens", "kl_to_final", "lens_payload", "token_chunks", "unembedding_hash"]
