"""The result of :func:`resid_widgets.decompose`: :class:`Decomposition`.

It holds the exact per-component deltas [C, T, d_model] of one prompt and computes lens and
attribution views of them on demand; the backends (:mod:`resid_widgets.backends`) build it.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from . import buffers
from .errors import TargetError
from .lens import LensResult, Readout
from .weights import WeightsReader


# --------------------------------------------------------------------------------------------
# Indices and targets
# --------------------------------------------------------------------------------------------
def as_index(value, what: str) -> int:
    """``value`` as a Python int: ints, numpy integers and one-element integer tensors pass;
    bools, floats and anything else raise a TypeError that names ``what``.

    Args:
        value: the value to read as an index.
        what: its name in the error ("layer", "position").
    """
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.dtype.is_floating_point:
        value = value.item()
    if isinstance(value, bool) or type(value).__name__ in ("bool", "bool_"):  # numpy's bool too
        raise TypeError(f"{what} must be an integer, not a bool ({value!r})")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an integer, not {type(value).__name__} ({value!r})") from None


@dataclass(frozen=True)
class TargetResolver:
    """A single-token string or a token id -> the id, for one tokenizer and vocabulary.

    Kept by a Decomposition and handed to its LensResult (a bound method of the Decomposition
    would make the two a reference cycle, freed only by the full garbage collector).

    Attributes:
        tokenizer: the model's tokenizer, or None (ids only).
        vocab_size: the model's vocabulary size (ids past it are refused).
    """

    tokenizer: Any
    vocab_size: int

    def __call__(self, target) -> int:
        """The id of ``target`` (a single-token string, an int, a numpy integer or a one-element
        integer tensor); TargetError otherwise."""
        if isinstance(target, str):
            return self._text_id(target)
        if isinstance(target, torch.Tensor) and target.numel() != 1:
            raise TargetError(f"target tensor has {target.numel()} elements; pass one token id")
        try:
            token_id = as_index(target, "target")
        except TypeError:
            raise TargetError(f"target must be a single-token string or an integer token id, not "
                              f"{type(target).__name__} ({target!r})") from None
        if not 0 <= token_id < self.vocab_size:
            raise TargetError(f"target id {token_id} is outside the vocabulary (0..{self.vocab_size - 1})")
        return token_id

    def _text_id(self, target: str) -> int:
        if not target:
            raise TargetError("target '' is empty: pass a single token such as ' Paris' (leading spaces "
                              "matter), or its id")
        if self.tokenizer is None:
            raise TargetError(f"target {target!r} is text but no tokenizer was given: pass tokenizer= to "
                              "rw.decompose, or give the target as a token id")
        ids = self.tokenizer.encode(target, add_special_tokens=False)
        if len(ids) != 1:
            pieces = [self.tokenizer.decode([i]) for i in ids]
            hint = f"e.g. {pieces[0]!r}" if pieces else "e.g. ' Paris'"
            raise TargetError(f"target {target!r} is {len(ids)} tokens {pieces}, not one. Pass a single "
                              f"token ({hint}) or its id; note leading spaces matter (' Paris').")
        unk = getattr(self.tokenizer, "unk_token_id", None)
        if unk is not None and ids[0] == unk and target != self.tokenizer.unk_token:
            raise TargetError(f"target {target!r} is not in the vocabulary (it becomes the unknown token)")
        if not 0 <= ids[0] < self.vocab_size:
            raise TargetError(f"target {target!r} has id {ids[0]} outside the model's vocabulary")
        return int(ids[0])


# --------------------------------------------------------------------------------------------
# The result
# --------------------------------------------------------------------------------------------
@dataclass
class NeuronContribution:
    """One FFN neuron (subvalue ``act * W_out[:, index]``) at one position, for one target.

    Attributes:
        layer, index: the neuron (its layer and its index in the FFN).
        activation: its activation ``act`` at the position.
        dla: the subvalue's direct logit attribution to the target.
        logprob_increase: the exact log-prob increase of the target when the subvalue is added to
            the stream before the FFN (None where it was not computed).
        bs_top, bs_bottom: (token, value) pairs the subvalue promotes / suppresses most.
    """

    layer: int
    index: int
    activation: float
    dla: float
    logprob_increase: float | None
    bs_top: list[tuple[str, float]] = field(default_factory=list)
    bs_bottom: list[tuple[str, float]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"L{self.layer}N{self.index}"


class Decomposition:
    """The residual stream of one prompt, split exactly into what each component added.

    Attributes (C components, T positions):
        tokens: list[str] (T) decoded token texts (" Paris").
        token_ids: LongTensor [T] the ids the model saw.
        labels: list[str] (C) "embed", ("pos_embed"), "attn.0", "mlp.0", ..., "mlp.{L-1}".
        deltas: float32 [C, T, d_model] what each component added.
        states: float32 [C, T, d_model] the stream after each component (== deltas.cumsum(0)).
        logits: float32 [T, vocab] the model's own output logits.
        additivity_error: max over block boundaries and positions of
            ||cumsum(deltas) - model's stream|| / ||model's stream||.
        nonfinite: {label: count of NaN/inf values} (empty when all finite).
        readout: the model's final norm + unembedding (+ soft-cap), :class:`~resid_widgets.lens.Readout`.
        weights: the output projections and norms of every layer, a
            :class:`~resid_widgets.weights.WeightsReader` (read on demand, fp32).
        n_layers, n_heads, d_model, vocab_size, n_embed: sizes (n_embed: embedding components, 1 or 2).
        model, adapter: the model that ran (and its family's :class:`~resid_widgets.Adapter`; None
            for TransformerLens models), used by analyses that re-run it.

    Analyses and views read it through the public methods: :meth:`position_index`,
    :meth:`layer_index`, :meth:`readout_direction`, :meth:`lens_logprob`,
    :meth:`post_norm_multiplier`, :meth:`neuron_activations`, :meth:`logits_at`.
    """

    def __init__(self, *, tokens, token_ids, labels, deltas, logits, readout: Readout,
                 n_heads: int, head_inputs: list[torch.Tensor], neuron_acts: list[torch.Tensor],
                 weights: WeightsReader, post_norm_inputs: dict[str, list[torch.Tensor] | None] | None = None,
                 parallel_residual: bool = False, tokenizer=None, model=None, adapter=None,
                 model_name: str = "", dtype=torch.float32, additivity_error: float = 0.0,
                 nonfinite: dict[str, int] | None = None):
        self.tokens = list(tokens)
        self.token_ids = token_ids
        self.labels = list(labels)
        # on an accelerator: the model's dtype, on its device, until first read (see .deltas)
        self._deltas_raw = deltas
        self._logits = logits
        self.readout = readout
        self.n_heads = n_heads
        self.n_layers = len(head_inputs)
        self.d_model = deltas.shape[-1]
        self.vocab_size = readout.vocab_size
        self.parallel_residual = parallel_residual
        self.tokenizer = tokenizer
        self.model = model
        self.adapter = adapter
        self.model_name = model_name
        self.dtype = dtype
        self.additivity_error = additivity_error
        self.nonfinite = nonfinite or {}
        self._head_inputs_raw = head_inputs
        self._neuron_acts_raw = neuron_acts
        self.weights = weights
        self._post_norm_inputs_raw = post_norm_inputs or {}
        self._states: torch.Tensor | None = None
        self._lens_cache: dict[tuple, LensResult] = {}
        self._targets = TargetResolver(tokenizer, self.vocab_size)
        self.n_embed = len(self.labels) - 2 * self.n_layers

    # ---- basic views -----------------------------------------------------------------------
    # Large captures may arrive on the model's device (a GPU); each moves to the CPU as fp32 the
    # first time it is read, so a run pays host transfers only for what is used.
    @staticmethod
    def _on_cpu(value):
        """A tensor, or a per-layer list of tensors, as one fp32 CPU tensor (a list of them
        where the layers' widths differ)."""
        if isinstance(value, (list, tuple)):
            layers = [v.float().cpu() for v in value]
            # a model whose FFN width differs per layer keeps a list (indexed the same way)
            return torch.stack(layers) if len({v.shape for v in layers}) == 1 else layers
        if isinstance(value, torch.Tensor) and (value.device.type != "cpu" or value.dtype != torch.float32):
            return value.float().cpu()
        return value

    def logits_at(self, position: int) -> torch.Tensor:
        """[vocab] the model's own logits at ``position``, where the model computed them (no
        host transfer of the whole [T, vocab] before :attr:`logits` is first read).

        Args:
            position: the position (negative counts from the end).
        """
        return self._logits[self.position_index(position)]

    @property
    def deltas(self) -> torch.Tensor:
        """[C, T, d_model] float32 on the CPU: what each component added."""
        self._deltas_raw = self._on_cpu(self._deltas_raw)
        return self._deltas_raw

    def device_deltas(self) -> torch.Tensor:
        """[C, T, d_model] the deltas where the run left them, not copied: fp32 on the CPU; on an
        accelerator its device and the model's dtype (``deltas`` is the fp32 CPU copy, made on
        first read). For checks that need one position without copying the whole tensor."""
        return self._deltas_raw

    @property
    def logits(self) -> torch.Tensor:
        """[T, vocab] float32: the model's own output logits."""
        self._logits = self._on_cpu(self._logits)
        return self._logits

    @property
    def _head_inputs(self):
        self._head_inputs_raw = self._on_cpu(self._head_inputs_raw)
        return self._head_inputs_raw

    @property
    def _neuron_acts(self):
        self._neuron_acts_raw = self._on_cpu(self._neuron_acts_raw)
        return self._neuron_acts_raw

    @property
    def _post_norm_inputs(self):
        self._post_norm_inputs_raw = {k: self._on_cpu(v) for k, v in self._post_norm_inputs_raw.items()}
        return self._post_norm_inputs_raw

    @property
    def states(self) -> torch.Tensor:
        """[C, T, d_model] the stream after each component."""
        if self._states is None:
            out = buffers.empty(self.deltas.shape, self.deltas.dtype, self.deltas.device)
            self._states = torch.cumsum(self.deltas, 0, out=out)
        return self._states

    def memory_bytes(self) -> dict[str, int]:
        """Bytes of tensor data this Decomposition holds, per part: ``deltas`` [C, T, d],
        ``states`` (0 until first read), ``logits`` [T, V], ``head_inputs`` [L, T, H*d_head],
        ``neuron_acts`` [L, T, d_ff], ``post_norm_inputs`` and ``lens`` (cached lens results,
        [C, T, k] each). Counts what is held, wherever it is (CPU or accelerator); the
        readout's weights belong to the model and are not counted."""
        def size(value) -> int:
            if isinstance(value, torch.Tensor):
                return value.numel() * value.element_size()
            if isinstance(value, dict):
                return sum(size(v) for v in value.values())
            if isinstance(value, (list, tuple)):
                return sum(size(v) for v in value)
            return 0

        return {"deltas": size(self._deltas_raw), "states": size(self._states), "logits": size(self._logits),
                "head_inputs": size(self._head_inputs_raw), "neuron_acts": size(self._neuron_acts_raw),
                "post_norm_inputs": size(self._post_norm_inputs_raw),
                "lens": sum(result.nbytes() + (0 if result.reads(self._states) else size(result._flat))  # own states
                            for result in self._lens_cache.values())}

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    def index(self, label: str) -> int:
        """Component index of a label.

        Args:
            label: a component label ("attn.3"), one of :attr:`labels`.

        Raises:
            KeyError: no component has that label.
        """
        try:
            return self.labels.index(label)
        except ValueError:
            raise KeyError(f"No component {label!r}; components are {self.labels}") from None

    def attn_index(self, layer: int) -> int:
        """Component index of ``layer``'s attention (negative layers count from the end).

        Args:
            layer: the layer.
        """
        return self.n_embed + 2 * self.layer_index(layer)

    def mlp_index(self, layer: int) -> int:
        """Component index of ``layer``'s MLP (negative layers count from the end).

        Args:
            layer: the layer.
        """
        return self.n_embed + 2 * self.layer_index(layer) + 1

    def layer_index(self, layer: int) -> int:
        """``layer`` (negative counts from the end) as an index in 0..n_layers-1.

        Args:
            layer: a layer index, an int (or numpy integer / one-element tensor).

        Raises:
            IndexError: out of range; TypeError: not an integer.
        """
        layer = as_index(layer, "layer")
        if not -self.n_layers <= layer < self.n_layers:
            raise IndexError(f"layer {layer} out of range: the model has {self.n_layers} layers (0..{self.n_layers - 1})")
        return layer % self.n_layers

    def position_index(self, position: int) -> int:
        """``position`` (negative counts from the end) as an index in 0..T-1.

        Args:
            position: a position, an int (or numpy integer / one-element tensor).

        Raises:
            IndexError: out of range; TypeError: not an integer.
        """
        T = self.n_tokens
        position = as_index(position, "position")
        if not -T <= position < T:
            raise IndexError(f"position {position!r} out of range for a prompt of {T} tokens (use 0..{T - 1} or negative)")
        return position % T

    def state_before(self, component: int, position: int) -> torch.Tensor:
        """[d_model] the stream the component ``component`` reads (zero before the first).

        Args:
            component: a component index (see :meth:`index`).
            position: the position.
        """
        if component == 0:
            return torch.zeros(self.d_model)
        return self.states[component - 1, position]

    # ---- tokens ----------------------------------------------------------------------------
    def token_text(self, token_id: int) -> str:
        """How a person reads one token (" Paris", not "ĠParis"); "<id>" without a tokenizer.

        Args:
            token_id: the token's id.
        """
        if self.tokenizer is None:
            return f"<{int(token_id)}>"
        return self.tokenizer.decode([int(token_id)])

    def target_id(self, target) -> int:
        """The token id of ``target``.

        Args:
            target: a single-token string (" Paris", leading spaces matter) or an id (int, numpy
                integer, one-element tensor).

        Raises:
            TargetError: text of several tokens or none, text without a tokenizer, or an id
                outside the vocabulary.
        """
        return self._targets(target)

    def top_prediction(self, position: int = -1) -> int:
        """The model's top next-token id at ``position``.

        Args:
            position: the position (negative counts from the end).
        """
        return int(self.logits[self.position_index(position)].argmax())

    def logprob(self, target, position: int = -1) -> float:
        """The model's own log p(target) at ``position``.

        Args:
            target: a single-token string (" Paris") or a token id.
            position: the position (negative counts from the end).
        """
        row = self.logits[self.position_index(position)]
        return float(row[self.target_id(target)] - torch.logsumexp(row, -1))

    # ---- logit lens ------------------------------------------------------------------------
    def logit_lens(self, k: int = 10, lens=None) -> LensResult:
        """Every state × position through the final norm (recomputed per vector) and unembedding.

        Args:
            k: top tokens kept per cell.
            lens: None for the logit lens, or a :class:`~resid_widgets.TunedLens` trained for this
                model: each state is first translated (h + W h + b), then read out the same way.

        Returns a :class:`LensResult` with ``top_ids``/``top_probs`` [C, T, k] and ``prob``/``rank``/
        ``entropy`` [C, T]. Computed in chunks; [C, T, vocab] is never materialised.
        """
        k = as_index(k, "k (the number of top tokens)")
        if not 1 <= k <= self.vocab_size:
            raise ValueError(f"k={k} must be between 1 and the vocabulary size {self.vocab_size}")
        key = (k, lens)  # one result kept per lens (a TunedLens compares by identity)
        if key not in self._lens_cache:
            states = self._lens_states() if lens is None else lens.transform(self)
            self._lens_cache = {cached: result for cached, result in self._lens_cache.items() if cached[1] is not lens}
            self._lens_cache[key] = LensResult(states, self.readout, k, self._targets)
        return self._lens_cache[key]

    def has_lens(self, k: int = 10, lens=None) -> bool:
        """Whether :meth:`logit_lens` with these arguments is already computed (and so free).

        Args:
            k: top tokens kept per cell.
            lens: None for the logit lens, or the :class:`~resid_widgets.TunedLens` asked for.
        """
        return (k, lens) in self._lens_cache

    def _lens_states(self) -> torch.Tensor:
        """The states the lens reads: :attr:`states`, or where the deltas still sit on the
        readout's accelerator, their fp32 cumulative sum there (no host round trip)."""
        raw = self._deltas_raw
        not_read = raw.dtype != torch.float32 or raw.device.type != "cpu"  # still as the run left it
        if self._states is None and not_read and raw.device == self.readout.device:
            return torch.cumsum(raw, 0, dtype=torch.float32)
        return self.states

    def sae_features(self, sae, state=None, position: int = -1, k: int = 20, target=None, **kwargs):
        """One state at ``position`` split exactly into sparse-autoencoder features, decoder bias
        and error.

        Args:
            sae: a :class:`~resid_widgets.SparseAutoencoder`.
            state: the state's label (``"mlp.14"``: the stream after block 14); see
                :func:`resid_widgets.sae.sae_features` for the default and the other options.
            position: the position (negative counts from the end).
            k: how many features to show (the rest are summed in one row).
            target: a token (text or id) for the rows' DLA.
            **kwargs: passed on to :func:`resid_widgets.sae.sae_features`.

        Returns:
            :class:`~resid_widgets.sae.SAEFeatures`.
        """
        from .sae import sae_features

        return sae_features(self, sae, state=state, position=position, k=k, target=target, **kwargs)

    # ---- direct logit attribution ----------------------------------------------------------
    def readout_direction(self, target, position: int | None,
                          reference: torch.Tensor | None = None) -> torch.Tensor:
        """The direction whose dot product with a vector is that vector's DLA to ``target``.

        Args:
            target: a single-token string or a token id.
            position: the position whose final stream freezes the final norm, or None for all.
            reference: [d_model] a stream to freeze the norm at instead.

        Returns:
            r [d_model] (or [T, d_model] for position=None, CPU fp32) with
            ``v · r == (W_U · norm*(v))[target]``, norm* the final norm frozen at the reference.
        """
        tid = self.target_id(target)
        if position is not None:
            position = self.position_index(position)
        ref = reference if reference is not None else self.states[-1] if position is None else self.states[-1, position]
        return self.readout.norm.to("cpu").frozen_readout(self.readout.unembed[tid].cpu(), ref)

    def dla_constant(self, target, position: int = -1) -> float:
        """The part of the logit no component owns: final-norm bias · W_U[target] + b_U[target].

        Args:
            target: a single-token string (" Paris") or a token id.
            position: unused (the constant is the same at every position); kept so DLA calls
                take the same arguments.
        """
        tid = self.target_id(target)
        const = 0.0
        if self.readout.norm.bias is not None:
            const += float(self.readout.norm.bias.cpu() @ self.readout.unembed[tid].cpu())
        if self.readout.unembed_bias is not None:
            const += float(self.readout.unembed_bias[tid])
        return const

    def dla_grid(self, target) -> torch.Tensor:
        """[C, T] direct logit attribution of every component at every position to ``target``
        (final norm frozen at each position's final stream).

        Args:
            target: a single-token string (" Paris") or a token id.
        """
        tid = self.target_id(target)
        r = self.readout_direction(tid, None)  # [T, d]
        return torch.einsum("ctd,td->ct", self.deltas, r)

    def contributions(self, target, position: int = -1, method: str = "dla",
                      norm: str = "recomputed") -> torch.Tensor:
        """[C] contribution of each component to ``target`` at ``position``.

        method="dla": (W_U · norm*(delta_c))[target], final norm frozen at the real final stream;
            sums, plus :meth:`dla_constant`, to the logit (before any final soft-cap).
        method="logprob": log p(target | state before c + delta_c) - log p(target | state before c)
            with p the logit-lens distribution (norm recomputed, or frozen at the final stream's
            scale with norm="frozen"); the first component gets 0, so the sum is exactly
            log p(final) - log p(first state).

        Args:
            target: a single-token string (" Paris") or a token id.
            position: the position (negative counts from the end).
            method: "dla" or "logprob".
            norm: "recomputed" or "frozen" (method="logprob" only).

        Raises:
            ValueError: an unknown method.
        """
        tid = self.target_id(target)
        pos = self.position_index(position)
        if method == "dla":
            return self.deltas[:, pos] @ self.readout_direction(tid, pos)
        if method == "logprob":
            lp = self.lens_logprob(self.states[:, pos], tid, pos, norm)
            return torch.cat([torch.zeros(1), lp[1:] - lp[:-1]])
        raise ValueError(f"method must be 'dla' or 'logprob', not {method!r}")

    def lens_logprob(self, states: torch.Tensor, target, position: int = -1,
                     norm: str = "recomputed") -> torch.Tensor:
        """Log p(target) of the logit lens of each of ``states``.

        Args:
            states: [N, d_model] vectors in the stream.
            target: a single-token string or a token id.
            position: whose final stream freezes the final norm (norm="frozen" only).
            norm: "recomputed" (the norm of each vector, as the logit lens) or "frozen" (the
                final stream's scale at ``position``).

        Returns:
            [N] float32 CPU.
        """
        tid = self.target_id(target)
        pos = self.position_index(position)
        h = states
        if norm == "recomputed":
            return self.readout.logprob(h, tid)
        if norm != "frozen":
            raise ValueError(f"norm must be 'recomputed' or 'frozen', not {norm!r}")
        ro = self.readout
        final_norm = ro.norm.to(ro.device)
        x = final_norm.frozen(h.to(ro.device), self.states[-1, pos].to(ro.device))
        if final_norm.bias is not None:
            x = x + final_norm.bias
        z = ro.cap(torch.nn.functional.linear(x, ro.unembed, ro.unembed_bias))
        return (z[:, tid] - torch.logsumexp(z, -1)).cpu()

    # ---- heads -----------------------------------------------------------------------------
    def post_norm_multiplier(self, kind: str, layer: int) -> torch.Tensor | None:
        """A sub-layer's post-norm (Gemma 2/3, OLMo 2/3) frozen at its real input, as a multiplier.

        Args:
            kind: "attn" or "mlp".
            layer: the layer.

        Returns:
            [T, d_model] ``gain / rms(input)`` per position (what the sub-layer's raw output is
            multiplied by before it is added), or None when the sub-layer has no post-norm.
        """
        inputs = self._post_norm_inputs.get(kind)
        if inputs is None or len(inputs) == 0:
            return None
        post = self.weights.norm(layer, f"{kind}_post")
        return post.gain * post.inv_scale(inputs[layer])

    def head_deltas(self, layer: int, position: int | None = None) -> torch.Tensor:
        """[H+1, T, d_model] (or [H+1, d_model] at one position): what each head of ``layer`` added.

        Row H is the output bias (zero when there is none). Rows sum exactly to the attention
        delta; a post-norm (Gemma 2/3) is linearised with its scale frozen at its real input.

        Args:
            layer: the layer (negative counts from the end).
            position: one position, or None for all.
        """
        layer = self.layer_index(layer)
        z = self._head_inputs[layer]  # [T, H*dh]
        if position is not None:
            z = z[self.position_index(position)][None]
        W, b = self.weights.attn_out(layer)  # [d, H*dh], on the device the model keeps it
        H = self.n_heads
        # computed where the weight lives (a GPU for GPU models), returned on the CPU
        per_head = torch.einsum("thk,dhk->htd", z.to(W.device).view(z.shape[0], H, -1),
                                W.view(W.shape[0], H, -1)).cpu()
        bias = (torch.zeros(1, z.shape[0], W.shape[0]) if b is None else b.cpu().expand(1, z.shape[0], -1))
        out = torch.cat([per_head, bias], 0)
        mult = self.post_norm_multiplier("attn", layer)
        if mult is not None:
            out = out * (mult if position is None else mult[self.position_index(position)][None])
        return out if position is None else out[:, 0]

    def head_contributions(self, target, position: int = -1, method: str = "dla") -> torch.Tensor:
        """[L, H+1] contribution of each head (last column: output bias) to ``target`` at ``position``.

        "dla": additive, rows sum to the attention layer's DLA. "logprob": log p(base + head) -
        log p(base), base = the stream before that attention layer; not additive across heads.

        Args:
            target: a single-token string (" Paris") or a token id.
            position: the position (negative counts from the end).
            method: "dla" or "logprob".

        Raises:
            ValueError: an unknown method.
        """
        tid = self.target_id(target)
        pos = self.position_index(position)
        out = torch.zeros(self.n_layers, self.n_heads + 1)
        r = self.readout_direction(tid, pos) if method == "dla" else None
        if method not in ("dla", "logprob"):
            raise ValueError(f"method must be 'dla' or 'logprob', not {method!r}")
        for layer in range(self.n_layers):
            vecs = self.head_deltas(layer, pos)  # [H+1, d]
            if method == "dla":
                out[layer] = vecs @ r
            else:
                base = self.state_before(self.attn_index(layer), pos)
                lp = self.readout.logprob(torch.cat([base[None], base[None] + vecs]), tid)
                out[layer] = lp[1:] - lp[0]
        return out

    # ---- neurons ---------------------------------------------------------------------------
    def neuron_activations(self, layer: int) -> torch.Tensor:
        """[T, d_ff] the activations m_k that multiply the FFN's output columns.

        Args:
            layer: the layer (negative counts from the end).
        """
        return self._neuron_acts[self.layer_index(layer)]

    def neuron_dla(self, target, position: int = -1, layer: int | None = None) -> torch.Tensor:
        """DLA of every FFN neuron's subvalue ``m_k W_out[:, k]`` to ``target``.

        Args:
            target: a single-token string (" Paris") or a token id.
            position: the position (negative counts from the end).
            layer: one layer, or None for all.

        Returns:
            [L, d_ff], or [d_ff] for one layer.
        """
        tid = self.target_id(target)
        pos = self.position_index(position)
        r = self.readout_direction(tid, pos)
        layers = range(self.n_layers) if layer is None else [self.layer_index(layer)]
        rows = []
        for l in layers:
            W, _ = self.weights.mlp_out(l)  # [d, d_ff]
            mult = self.post_norm_multiplier("mlp", l)
            rl = r if mult is None else r * mult[pos]
            rows.append(self._neuron_acts[l][pos] * (rl.to(W.device) @ W).cpu())
        return torch.stack(rows) if layer is None else rows[0]

    def neuron_vectors(self, layer: int, indices: Sequence[int], position: int = -1) -> torch.Tensor:
        """[n, d_model] the subvalues act_k * W_out[:, k] (post-norm frozen) written at ``position``.

        Args:
            layer: the layer (negative counts from the end).
            indices: the n neuron indices.
            position: the position (negative counts from the end).

        Raises:
            IndexError: a neuron index is out of range.
        """
        layer = self.layer_index(layer)
        pos = self.position_index(position)
        W, _ = self.weights.mlp_out(layer)
        d_ff = W.shape[1]
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        if len(idx) and (idx.min() < 0 or idx.max() >= d_ff):
            raise IndexError(f"neuron index out of range: layer {layer} has {d_ff} neurons (0..{d_ff - 1})")
        vecs = self._neuron_acts[layer][pos, idx, None] * W[:, idx.to(W.device)].t().cpu()
        mult = self.post_norm_multiplier("mlp", layer)
        return vecs if mult is None else vecs * mult[pos]

    def bs_tokens(self, vectors: torch.Tensor, position: int = -1, k: int = 10):
        """Before-softmax top and bottom tokens of vectors: W_U · norm*(v), norm* the final norm
        frozen at the final stream of ``position``.

        Args:
            vectors: [n, d_model].
            position: the position (negative counts from the end).
            k: how many top and bottom tokens per vector.

        Returns:
            (top, bottom): per vector a list of k (text, value) pairs.
        """
        pos = self.position_index(position)
        ro = self.readout
        x = ro.norm.to(ro.device).frozen(vectors.to(ro.device), self.states[-1, pos].to(ro.device))
        bs = (x @ ro.unembed.t()).cpu()
        top_v, top_i = bs.topk(k, -1)
        bot_v, bot_i = bs.topk(k, -1, largest=False)
        def texts(values: torch.Tensor, ids: torch.Tensor) -> list[list[tuple[str, float]]]:
            return [[(self.token_text(i), float(v)) for v, i in zip(vr, ir)]
                    for vr, ir in zip(values.tolist(), ids.tolist())]
        return texts(top_v, top_i), texts(bot_v, bot_i)

    def top_neurons(self, target, position: int = -1, n: int = 10, layer: int | None = None,
                    method: str = "dla", bs_k: int = 10) -> list[NeuronContribution]:
        """The ``n`` FFN neurons that most promote ``target`` at ``position`` (one layer or all).

        A short form of :func:`resid_widgets.analysis.ffn_subvalues` (which has the options):
        method="dla" ranks by direct logit attribution, "logprob" by log p(base + subvalue) -
        log p(base), base = the stream before that FFN, computed exactly for max(4n, 64)
        candidate neurons. Never builds [T, d_ff, d_model].

        Args:
            target: a single-token string (" Paris") or a token id.
            position: the position (negative counts from the end).
            n: how many neurons.
            layer: one layer, or None for all.
            method: "dla" or "logprob".
            bs_k: how many top / bottom tokens of each subvalue to list.

        Returns:
            n :class:`NeuronContribution`, the most promoting first.

        Raises:
            ValueError: an unknown method.
        """
        from .analysis.ffn import ffn_subvalues

        if method not in ("dla", "logprob"):
            raise ValueError(f"method must be 'dla' or 'logprob', not {method!r}")
        result = ffn_subvalues(self, target, position, n=n, layer=layer, rank_by=method,
                               candidates=max(4 * n, 64), bs_k=bs_k)
        return [NeuronContribution(layer=row["layer"], index=row["neuron"], activation=row["activation"],
                                   dla=row["dla"], logprob_increase=row["logprob_increase"],
                                   bs_top=row["bs_top"], bs_bottom=row["bs_bottom"]) for row in result.rows]

    # ---- edits -----------------------------------------------------------------------------
    #: the edits this Decomposition's run was made with (empty for a plain decompose)
    edits: tuple = ()
    #: the unedited Decomposition the edits were applied to (None for a plain decompose)
    baseline: "Decomposition | None" = None

    def edit(self, *edits) -> "Decomposition":
        """Re-run this prompt with ``edits`` (:class:`~resid_widgets.Zero`, ``ProjectOut``, ``Add``,
        ``Patch``) applied where each named component writes into the stream; everything
        downstream recomputes. The model is left exactly as found, also when an edit raises.

        Args:
            *edits: the edits (or one list of them), applied in order.

        Returns:
            An ordinary exact Decomposition of the edited run (``deltas`` [C, T, d_model] add up
            to its stream) with ``.edits`` (this one's edits, if any, then ``edits``) and
            ``.baseline`` (the unedited Decomposition).

        Raises:
            EditError: (a ValueError) an unknown component, a head or neuron out of range, a
                vector of the wrong size or zero, or a patch source of another length or model.
        """
        from .edits import edit

        return edit(self, *edits)

    # ---- presentation ----------------------------------------------------------------------
    def summary(self, target=None, position: int = -1, top: int = 5) -> str:
        """A printable account: the prediction, the lens at ``position``, the top components.

        Args:
            target: the token (text or id) the components are ranked for; default the model's
                top prediction.
            position: the position (negative counts from the end).
            top: how many components to list.
        """
        pos = self.position_index(position)
        tid = self.top_prediction(pos) if target is None else self.target_id(target)
        probs = torch.softmax(self.logits[pos], -1)
        dla = self.contributions(tid, pos, "dla")
        lpi = self.contributions(tid, pos, "logprob")
        lens = self.logit_lens(k=1)
        lines = [
            f"{self.model_name}: {self.n_layers} layers, d_model={self.d_model}, {self.n_tokens} tokens",
            "prompt tokens: " + " | ".join(repr(t) for t in self.tokens),
            f"target {self.token_text(tid)!r} at position {pos}: p={float(probs[tid]):.3f}, "
            f"logit={float(self.logits[pos, tid]):.3f}",
            f"additivity error {self.additivity_error:.2e}",
            "logit lens at that position (top token after each component):",
        ]
        for c, label in enumerate(self.labels):
            lines.append(f"  {label:>10}  {self.token_text(int(lens.top_ids[c, pos, 0]))!r:<16} "
                         f"p={float(lens.top_probs[c, pos, 0]):.3f}   DLA {float(dla[c]):+8.3f}   "
                         f"dlogp {float(lpi[c]):+7.3f}")
        order = dla.argsort(descending=True)[:top]
        lines.append("top components by DLA: " + ", ".join(f"{self.labels[i]} ({float(dla[i]):+.2f})" for i in order))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"Decomposition({self.model_name or 'model'}, components={len(self.labels)}, "
                f"tokens={self.n_tokens}, d_model={self.d_model}, additivity_error={self.additivity_error:.1e})")
