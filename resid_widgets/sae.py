"""Sparse-autoencoder features as components of one state (Bricken et al. 2023; Cunningham et al. 2023).

An SAE encodes a state x into feature activations f (mostly zero) and decodes them along its
dictionary: x̂ = Σ_i f_i W_dec[i] + b_dec. :func:`sae_features` (``dec.sae_features``) splits x
*exactly*: one row per shown feature (f_i W_dec[i]), one for the other active features, one for
the decoder bias and one for the error x − x̂, so the rows sum to x to float rounding. Every row
gets its direct logit attribution to a target (final norm frozen at the real final stream, like
every other component), and every shown feature its decoder direction's top / bottom tokens.

Which state: ``"mlp.14"`` is the stream after block 14 (SAELens's ``blocks.14.hook_resid_post``),
``"attn.14"`` the stream after its attention (``hook_resid_mid``), and
``blocks.14.hook_resid_pre`` the stream entering block 14 (``mlp.13``): see
:mod:`resid_widgets.states`.

SAEs come as:

- :class:`SparseAutoencoder`, read from / written to SAELens's folder (``cfg.json`` +
  ``sae_weights.safetensors``, read with safetensors: sae-lens itself is not needed) or trained
  here (:meth:`SparseAutoencoder.train`, a small top-k SAE);
- any object with ``encode(x [n, d]) -> f [n, d_sae]`` and an affine ``decode(f) -> x̂``. Its
  ``W_dec`` [d_sae, d] and ``b_dec`` [d] are used where present and ``decode`` agrees with
  f @ W_dec + b_dec; otherwise each active feature's vector is read off ``decode`` itself
  (decode(f_i e_i) − decode(0)).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch

from .analysis._common import Table, plotly, tok_list
from .errors import SAEError
from .states import state_index

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
ARCHITECTURES = ("standard", "jumprelu", "topk")
# decode(f) must match the split's f @ W_dec + b_dec within this (relative to |x̂|) to use W_dec
DECODE_TOLERANCE = 1e-4


class SparseAutoencoder:
    """A sparse autoencoder in SAELens's conventions (weights fp32 on the CPU).

    Encode: f = act(W_enc^T (x − b_dec [if apply_b_dec_to_input]) + b_enc), with act
    ``"standard"``: ReLU; ``"jumprelu"``: ReLU where the pre-activation exceeds ``threshold``, else
    0; ``"topk"``: ReLU of the ``k`` largest pre-activations (scaled by ‖W_dec[i]‖ first when
    ``rescale_acts_by_decoder_norm``), 0 elsewhere. Decode: x̂ = f' @ W_dec + b_dec with
    f' = f / ‖W_dec[i]‖ when ``rescale_acts_by_decoder_norm``, else f.

    Attributes:
        W_enc: [d_in, d_sae]. b_enc: [d_sae]. W_dec: [d_sae, d_in]. b_dec: [d_in].
        architecture: "standard" | "jumprelu" | "topk".
        threshold: [d_sae] (jumprelu) or None. k: int (topk) or None.
        apply_b_dec_to_input, rescale_acts_by_decoder_norm: bool.
        state: the state it reads (grid label or TransformerLens hook name), or None.
        model_name: the model it was trained on (informative).
    """

    def __init__(self, W_enc, b_enc, W_dec, b_dec, *, architecture: str = "standard", threshold=None,
                 k: int | None = None, apply_b_dec_to_input: bool = True,
                 rescale_acts_by_decoder_norm: bool = False, state: str | None = None, model_name: str = ""):
        if architecture not in ARCHITECTURES:
            raise SAEError(f"SAE architecture {architecture!r} is not supported: use one of {ARCHITECTURES} "
                           "(ReLU, JumpReLU, top-k).")
        self.W_enc = torch.as_tensor(W_enc).float().contiguous()
        self.b_enc = torch.as_tensor(b_enc).float().contiguous()
        self.W_dec = torch.as_tensor(W_dec).float().contiguous()
        self.b_dec = torch.as_tensor(b_dec).float().contiguous()
        d_in, d_sae = self.W_enc.shape
        expected = {"b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
        for name, shape in expected.items():
            if tuple(getattr(self, name).shape) != shape:
                raise SAEError(f"SAE {name} has shape {tuple(getattr(self, name).shape)}, expected {shape} "
                               f"(W_enc is {tuple(self.W_enc.shape)} = [d_in, d_sae]).")
        self.architecture = architecture
        self.threshold = None if threshold is None else torch.as_tensor(threshold).float().reshape(d_sae)
        if architecture == "jumprelu" and self.threshold is None:
            raise SAEError("A JumpReLU SAE needs its threshold [d_sae] (SAELens stores it as 'threshold').")
        if architecture == "topk" and not (k and 0 < int(k) <= d_sae):
            raise SAEError(f"A top-k SAE needs k between 1 and d_sae={d_sae}, got {k!r}.")
        self.k = int(k) if architecture == "topk" else None
        self.apply_b_dec_to_input = bool(apply_b_dec_to_input)
        self.rescale_acts_by_decoder_norm = bool(rescale_acts_by_decoder_norm)
        self.state = state
        self.model_name = model_name

    @property
    def d_in(self) -> int:
        return self.W_enc.shape[0]

    @property
    def d_sae(self) -> int:
        return self.W_enc.shape[1]

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """[..., d_in] -> [..., d_sae] W_enc^T (x − b_dec) + b_enc (before the activation).

        Args:
            x: [..., d_in] the states.
        """
        x = x.float()
        if self.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[..., d_in] -> [..., d_sae] feature activations f.

        Args:
            x: [..., d_in] the states.
        """
        pre = self.pre_activations(x)
        if self.architecture == "standard":
            return pre.relu()
        if self.architecture == "jumprelu":
            return pre.relu() * (pre > self.threshold)
        if self.rescale_acts_by_decoder_norm:
            pre = pre * self.W_dec.norm(dim=-1)
        values, ids = pre.topk(self.k, dim=-1)
        return torch.zeros_like(pre).scatter_(-1, ids, values.relu())

    def decoder_rows(self) -> torch.Tensor:
        """[d_sae, d_in] D with decode(f) = f @ D + b_dec (W_dec, or its rows scaled to unit norm
        when activations are rescaled by the decoder norm)."""
        if self.rescale_acts_by_decoder_norm:
            return self.W_dec / self.W_dec.norm(dim=-1, keepdim=True)
        return self.W_dec

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """[..., d_sae] -> [..., d_in] x̂.

        Args:
            f: [..., d_sae] feature activations.
        """
        return f.float() @ self.decoder_rows() + self.b_dec

    # ---- SAELens folder --------------------------------------------------------------------
    @classmethod
    def load(cls, path) -> "SparseAutoencoder":
        """Read an SAELens folder (``cfg.json`` + ``sae_weights.safetensors``), 6.x or older
        configs: architectures standard (ReLU), jumprelu (``threshold``) and topk (``k``)."""
        from safetensors.torch import load_file

        folder = Path(path)
        if not (folder / CFG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
            raise SAEError(f"{folder} is not an SAELens folder: it needs {CFG_FILE} and {WEIGHTS_FILE}.")
        cfg = json.loads((folder / CFG_FILE).read_text())
        meta = cfg.get("metadata") or {}
        weights = load_file(str(folder / WEIGHTS_FILE))
        missing = [n for n in ("W_enc", "b_enc", "W_dec", "b_dec") if n not in weights]
        if missing:
            raise SAEError(f"{folder / WEIGHTS_FILE} lacks {missing} (SAELens names W_enc, b_enc, W_dec, b_dec).")
        activation = cfg.get("activation_fn", cfg.get("activation_fn_str", "relu"))
        kwargs = cfg.get("activation_fn_kwargs") or {}
        architecture = cfg.get("architecture") or ("topk" if activation == "topk" else "standard")
        if architecture not in ARCHITECTURES:
            raise SAEError(f"{folder}: SAE architecture {architecture!r} is not supported: use one of "
                           f"{ARCHITECTURES} (ReLU, JumpReLU, top-k).")
        if architecture == "standard" and activation not in ("relu", None):
            raise SAEError(f"{folder}: activation {activation!r} is not supported for a standard SAE (ReLU only).")
        normalize = cfg.get("normalize_activations") or "none"
        if normalize is True:  # configs before SAELens 6 stored a bool
            normalize = "expected_average_only_in"
        if normalize not in ("none", False, "expected_average_only_in"):
            # SAELens's own SAE applies nothing for "expected_average_only_in" either (a scale
            # folded into the weights); the other two make the decoder depend on the input.
            raise SAEError(f"{folder}: normalize_activations={normalize!r} is not supported (the decoder would "
                           "depend on each input's norm); use an SAE with 'none'.")
        if (cfg.get("reshape_activations") or "none") != "none" or "hook_z" in str(meta.get("hook_name") or cfg.get("hook_name") or ""):
            raise SAEError(f"{folder}: this SAE reads attention head outputs (hook_z), not a residual-stream state.")
        threshold = weights.get("threshold")
        if threshold is None and "log_threshold" in weights:  # a training checkpoint
            threshold = weights["log_threshold"].float().exp()
        rescale = bool(cfg.get("rescale_acts_by_decoder_norm", False))
        W_dec = weights["W_dec"].float()
        scaling = weights.get("scaling_factor", weights.get("finetuning_scaling_factor"))
        if scaling is not None and not torch.allclose(scaling.float(), torch.ones_like(scaling.float())):
            if rescale:
                raise SAEError(f"{folder}: a finetuning scaling factor with rescale_acts_by_decoder_norm is not supported.")
            W_dec = W_dec * scaling.float()[:, None]  # old SAELens decoded (f * scale) @ W_dec
        hook_name = meta.get("hook_name") or cfg.get("hook_name") or cfg.get("hook_point")
        return cls(weights["W_enc"], weights["b_enc"], W_dec, weights["b_dec"], architecture=architecture,
                   threshold=threshold, k=cfg.get("k", kwargs.get("k")),
                   apply_b_dec_to_input=cfg.get("apply_b_dec_to_input", True),
                   rescale_acts_by_decoder_norm=rescale, state=hook_name,
                   model_name=meta.get("model_name") or cfg.get("model_name") or "")

    def save(self, path) -> Path:
        """Write an SAELens folder (``cfg.json`` + ``sae_weights.safetensors``) that SAELens and
        :meth:`load` read. The config uses the flat layout of SAELens before 6.0 (no version
        claimed; SAELens 6 converts it on load). Returns the folder.

        Args:
            path: the folder (created if missing).
        """
        from safetensors.torch import save_file

        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        weights = {"W_enc": self.W_enc, "b_enc": self.b_enc, "W_dec": self.W_dec, "b_dec": self.b_dec}
        if self.threshold is not None:
            weights["threshold"] = self.threshold
        save_file({k: v.contiguous() for k, v in weights.items()}, str(folder / WEIGHTS_FILE))
        cfg = {"architecture": self.architecture, "d_in": self.d_in, "d_sae": self.d_sae, "dtype": "float32",
               "device": "cpu", "apply_b_dec_to_input": self.apply_b_dec_to_input,
               "normalize_activations": "none", "activation_fn": "topk" if self.k else "relu",
               "hook_name": self.state, "model_name": self.model_name}
        if self.k:
            cfg.update(k=self.k, activation_fn_kwargs={"k": self.k},
                       rescale_acts_by_decoder_norm=self.rescale_acts_by_decoder_norm)
        (folder / CFG_FILE).write_text(json.dumps(cfg, indent=2))
        return folder

    # ---- training --------------------------------------------------------------------------
    @classmethod
    def train(cls, activations: torch.Tensor, n_features: int, k: int = 32, *, steps: int = 300,
              batch_size: int = 512, lr: float = 1e-3, seed: int = 0, state: str | None = None,
              model_name: str = "", progress: bool = True) -> "SparseAutoencoder":
        """Train a small top-k SAE (Gao et al. 2024) on ``activations`` [N, d] by mean squared
        reconstruction error, with Adam.

        Decoder rows are kept at unit norm, b_dec starts at the activations' mean, the encoder at
        the decoder's transpose. Inputs are scaled by one constant (their mean norm over √d) for
        the optimisation and the weights rescaled back, so the result encodes raw states.

        Args:
            activations: [N, d] states to fit (e.g. one grid state over many tokens; leave out
                attention-sink positions, whose norm dwarfs the rest).
            n_features: dictionary size d_sae.
            k: active features per input.
            steps, batch_size, lr, seed: the optimisation (batches drawn with ``seed``).
            state, model_name: recorded on the SAE (``state`` names the grid state it reads).
        """
        from tqdm.auto import tqdm

        x = torch.as_tensor(activations).float().reshape(-1, activations.shape[-1])
        N, d = x.shape
        if N < 2:
            raise ValueError("train an SAE on at least 2 activations")
        if not 0 < k <= n_features:
            raise ValueError(f"k={k} must be between 1 and n_features={n_features}")
        gen = torch.Generator().manual_seed(seed)
        scale = float(x.norm(dim=-1).mean()) / math.sqrt(d)  # inputs of norm ~sqrt(d) in training
        xs = x / scale
        W_dec = torch.randn(n_features, d, generator=gen)
        W_dec /= W_dec.norm(dim=-1, keepdim=True)
        W_dec.requires_grad_()
        W_enc = W_dec.detach().t().clone().requires_grad_()
        b_enc = torch.zeros(n_features, requires_grad=True)
        b_dec = xs.mean(0).clone().requires_grad_()
        opt = torch.optim.Adam([W_enc, b_enc, W_dec, b_dec], lr=lr)
        for _ in tqdm(range(steps), desc="SAE", unit="step", disable=not progress):
            batch = xs[torch.randint(0, N, (min(batch_size, N),), generator=gen)]
            pre = (batch - b_dec) @ W_enc + b_enc
            values, ids = pre.topk(k, dim=-1)
            f = torch.zeros_like(pre).scatter(-1, ids, values.relu())
            loss = (f @ W_dec + b_dec - batch).pow(2).sum(-1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                W_dec /= W_dec.norm(dim=-1, keepdim=True)
        with torch.no_grad():
            # on raw x = scale * xs, b_enc and b_dec times scale give scale times the pre-activations
            # (the same top k) and scale times the reconstruction
            return cls(W_enc.detach(), b_enc.detach() * scale, W_dec.detach(), b_dec.detach() * scale,
                       architecture="topk", k=k, state=state, model_name=model_name)


# --------------------------------------------------------------------------------------------
# The exact split
# --------------------------------------------------------------------------------------------
@dataclass(repr=False, eq=False)
class SAEFeatures(Table):
    """One state at one position split into SAE features (result of :func:`sae_features`).

    Attributes (R = n_shown + 3 rows):
        state: grid label of the state; position: int; target: str; target_id: int.
        vector: [d] the state x.
        labels: (R) ``"F{i}"`` per shown feature, then ``"other features"``, ``"decoder bias"``,
            ``"error"``.
        vectors: [R, d] the rows: f_i · D_i per shown feature (D = the decoder's rows), the sum over
            the other active features, b_dec, and x − x̂. ``vectors.sum(0) == vector`` to rounding.
        feature_ids: LongTensor [n_shown]; activations: [n_shown] f_i.
        dla: [R] each row's direct logit attribution to the target (final norm frozen at the
            real final stream of the position); sums to the state's own DLA.
        bs_top, bs_bottom: (n_shown) lists of (token, value): what each feature's decoder direction
            D_i promotes / suppresses, W_U · norm*(D_i).
        n_active: features with f_i != 0 (L0). reconstruction_error: ‖x − x̂‖ / ‖x‖.
        rows: one dict per row (label, feature, activation, dla, norm, bs_top, bs_bottom).
    """

    state: str
    position: int
    target: str
    target_id: int
    vector: torch.Tensor
    labels: list[str]
    vectors: torch.Tensor
    feature_ids: torch.Tensor
    activations: torch.Tensor
    dla: torch.Tensor
    bs_top: list[list[tuple[str, float]]]
    bs_bottom: list[list[tuple[str, float]]]
    n_active: int
    reconstruction_error: float

    @property
    def rows(self) -> list[dict]:
        out = []
        n_shown = len(self.feature_ids)
        norms = self.vectors.norm(dim=-1).tolist()
        dla = self.dla.tolist()
        for r, label in enumerate(self.labels):
            feature = r < n_shown
            out.append({"label": label, "feature": int(self.feature_ids[r]) if feature else None,
                        "activation": float(self.activations[r]) if feature else None,
                        "dla": dla[r], "norm": norms[r],
                        "bs_top": self.bs_top[r] if feature else [], "bs_bottom": self.bs_bottom[r] if feature else []})
        return out

    def figure(self):
        """A plotly bar chart of each row's DLA, hover with its activation and BS tokens."""
        go, _ = plotly()
        rows = list(reversed(self.rows))
        hover = [f"{row['label']}" + (f" act={row['activation']:.3f}" if row["activation"] is not None else "")
                 + f"<br>DLA={row['dla']:+.3f}, |v|={row['norm']:.2f}"
                 + (f"<br>promotes: {tok_list(row['bs_top'])}<br>suppresses: {tok_list(row['bs_bottom'])}"
                    if row["bs_top"] else "") for row in rows]
        colors = ["#888" if row["feature"] is None else ("#2a9d8f" if row["dla"] >= 0 else "#e76f51") for row in rows]
        fig = go.Figure(go.Bar(y=[row["label"] for row in rows], x=[row["dla"] for row in rows], orientation="h",
                               marker_color=colors, hovertext=hover, hoverinfo="text"))
        fig.update_layout(
            title=(f"SAE features of {self.state} at position {self.position}: DLA to {self.target!r} "
                   f"({self.n_active} active, reconstruction error {self.reconstruction_error:.1%})"),
            xaxis_title="direct logit attribution", height=max(400, 22 * len(rows) + 150))
        return fig

    def __repr__(self) -> str:
        return (f"SAEFeatures(state={self.state!r}, position={self.position}, target={self.target!r}, "
                f"active={self.n_active}, reconstruction_error={self.reconstruction_error:.3g})\n{self._repr_rows()}")


def _sae_device_dtype(sae) -> tuple[torch.device, torch.dtype]:
    """Where and in what dtype a foreign SAE computes (its W_dec, else its first parameter)."""
    ref = getattr(sae, "W_dec", None)
    if not isinstance(ref, torch.Tensor) and hasattr(sae, "parameters"):
        ref = next(iter(sae.parameters()), None)
    if isinstance(ref, torch.Tensor):
        return ref.device, ref.dtype
    return torch.device("cpu"), torch.float32


def _split(sae, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(f [d_sae], active ids [n], vectors [n, d] f_i D_i of the active features, bias [d]) for
    one state x [d], with decode(f) == vectors.sum(0) + bias (checked)."""
    if isinstance(sae, SparseAutoencoder):
        f = sae.encode(x[None])[0]
        active = f.nonzero()[:, 0]
        return f, active, f[active, None] * sae.decoder_rows()[active], sae.b_dec
    if not (callable(getattr(sae, "encode", None)) and callable(getattr(sae, "decode", None))):
        raise SAEError(f"An SAE must have encode(x) and decode(f) (or be a folder: rw.SparseAutoencoder.load(path)); "
                       f"{type(sae).__name__} lacks them.")
    device, dtype = _sae_device_dtype(sae)
    with torch.no_grad():
        f = sae.encode(x[None].to(device, dtype))
        decoded = sae.decode(f).float().cpu()[0]
        f = f.float().cpu()[0]
        if f.dim() != 1:
            raise SAEError(f"encode(x [1, d]) returned shape {tuple(f.shape) if f.dim() else ()}; expected [1, d_sae].")
        active = f.nonzero()[:, 0]
        W_dec, b_dec = getattr(sae, "W_dec", None), getattr(sae, "b_dec", None)
        if isinstance(W_dec, torch.Tensor) and isinstance(b_dec, torch.Tensor):
            vectors = f[active, None] * W_dec[active.to(W_dec.device)].float().cpu()
            bias = b_dec.detach().float().cpu()
            if _agrees(vectors.sum(0) + bias, decoded):
                return f, active, vectors, bias
        # decode is the authority: each active feature's vector read off it, decode(f_i e_i) - decode(0)
        probes = torch.zeros(len(active) + 1, f.shape[0])
        probes[torch.arange(1, len(active) + 1), active] = f[active]
        out = sae.decode(probes.to(device, dtype)).float().cpu()
        bias, vectors = out[0], out[1:] - out[0]
    if not _agrees(vectors.sum(0) + bias, decoded):
        raise SAEError("decode(f) is not f @ W_dec + b_dec, nor affine in f: the split into features needs a "
                       "decoder of that form (SAELens SAEs with normalize_activations other than 'none' are not).")
    return f, active, vectors, bias


def _agrees(a: torch.Tensor, b: torch.Tensor) -> bool:
    return float((a - b).norm()) <= DECODE_TOLERANCE * max(float(b.norm()), 1e-12)


def sae_features(dec, sae, state=None, position: int = -1, k: int = 20, target=None,
                 order: str = "activation", bs_k: int = 10) -> SAEFeatures:
    """Split one state at one position exactly into SAE features, decoder bias and error.

    Args:
        dec: a :class:`~resid_widgets.Decomposition`.
        sae: a :class:`SparseAutoencoder` (e.g. ``rw.SparseAutoencoder.load(folder)``) or any
            object with ``encode``/``decode`` (see the module doc).
        state: which state: grid label (``"mlp.14"``: the stream after block 14), TransformerLens
            hook name (``"blocks.14.hook_resid_post"``) or index. Default: the SAE's own ``state``.
        position: token position.
        k: features shown as their own rows; the other active features form one row.
        target: token for the DLA column; default the model's top prediction at ``position``.
        order: which features are shown: "activation" (largest f_i), "dla" (most promoting the
            target) or "abs_dla" (largest |DLA|).
        bs_k: top / bottom tokens per shown feature.

    Returns:
        :class:`SAEFeatures`; its ``vectors`` sum exactly to the state.
    """
    if order not in ("activation", "dla", "abs_dla"):
        raise ValueError(f"order must be 'activation', 'dla' or 'abs_dla', not {order!r}")
    if k < 0:
        raise ValueError(f"k={k} must be >= 0")
    own = getattr(sae, "state", None)
    if state is None:
        if own is None:
            raise SAEError("Which state does this SAE read? Pass state='mlp.14' (the stream after block 14, "
                           "SAELens's blocks.14.hook_resid_post), or set sae.state.")
        state = own
    index = state_index(dec, state)
    if own is not None and not isinstance(own, int) and state_index(dec, own) != index:
        raise SAEError(f"This SAE was trained on {own!r} (grid state {dec.labels[state_index(dec, own)]!r}), "
                       f"not {dec.labels[index]!r}: pass state={own!r}, or set sae.state = None to apply it anyway.")
    d_in = getattr(sae, "d_in", None) or (sae.W_dec.shape[-1] if hasattr(sae, "W_dec") else None)
    if d_in is not None and int(d_in) != dec.d_model:
        raise SAEError(f"This SAE reads vectors of size {int(d_in)}, but {dec.model_name or 'the model'}'s stream "
                       f"has d_model={dec.d_model}: it belongs to another model.")
    pos = dec.position_index(position)
    tid = dec.top_prediction(pos) if target is None else dec.target_id(target)
    x = dec.states[index, pos]
    f, active, vectors, bias = _split(sae, x)
    readout_dir = dec.readout_direction(tid, pos)
    feature_dla = vectors @ readout_dir
    key = {"activation": f[active], "dla": feature_dla, "abs_dla": feature_dla.abs()}[order]
    shown = key.argsort(descending=True)[:k]
    rest = torch.ones(len(active), dtype=torch.bool)
    rest[shown] = False
    reconstruction = vectors.sum(0) + bias
    rows = torch.cat([vectors[shown], vectors[rest].sum(0, keepdim=True), bias[None], (x - reconstruction)[None]])
    directions = vectors[shown] / f[active[shown], None]  # D_i, the decoder row itself
    top, bottom = dec.bs_tokens(directions, pos, bs_k) if len(shown) else ([], [])
    return SAEFeatures(
        state=dec.labels[index], position=pos, target=dec.token_text(tid), target_id=tid, vector=x.clone(),
        labels=[f"F{int(i)}" for i in active[shown]] + ["other features", "decoder bias", "error"],
        vectors=rows, feature_ids=active[shown].clone(), activations=f[active[shown]].clone(),
        dla=rows @ readout_dir, bs_top=top, bs_bottom=bottom, n_active=len(active),
        reconstruction_error=float((x - reconstruction).norm() / x.norm().clamp_min(1e-12)))


def features_payload(result: SAEFeatures) -> dict:
    """What the StreamGrid's "features" pane needs for one cell, as binary payloads.

    Returns ``{"state", "position", "target", "labels" (R), "feature_ids" (R, None off features),
    "vectors": [R, d] float16 (the rows, summing to the state), "activation": [R] float32 (NaN off
    features), "dla": [R] float32, "bs_top"/"bs_bottom": (R) lists of [token, value],
    "n_active", "reconstruction_error"}``; arrays are
    :func:`~resid_widgets.views.payload.array_payload` dicts.

    Args:
        result: what :func:`sae_features` returned.
    """
    from .views.payload import array_payload

    rows = result.rows
    return {
        "state": result.state, "position": result.position, "target": result.target,
        "labels": list(result.labels), "feature_ids": [row["feature"] for row in rows],
        "vectors": array_payload(result.vectors, "float16"),
        "activation": array_payload(torch.tensor([math.nan if row["activation"] is None else row["activation"]
                                                  for row in rows]), "float32"),
        "dla": array_payload(result.dla, "float32"),
        "bs_top": [[[t, v] for t, v in row["bs_top"]] for row in rows],
        "bs_bottom": [[[t, v] for t, v in row["bs_bottom"]] for row in rows],
        "n_active": result.n_active, "reconstruction_error": result.reconstruction_error,
    }


def collect_states(model, texts: Iterable, tokenizer=None, state="mlp.14", *, max_length: int = 128,
                   max_tokens: int = 8192, skip_first: int = 1, adapter=None) -> torch.Tensor:
    """[N, d] one grid state over the tokens of ``texts`` (e.g. to train an SAE on), by
    ``rw.decompose`` on chunks of ``max_length`` tokens, until ``max_tokens`` are collected.

    ``skip_first`` positions of every chunk are left out (the attention sink at position 0 has a
    norm hundreds of times the others').

    Args:
        model: a Hugging Face causal LM of a supported family.
        texts: texts, or token-id sequences.
        tokenizer: the model's tokenizer (needed for texts).
        state: the grid label of the state collected.
        max_length: tokens per chunk.
        max_tokens: stop once this many positions are collected.
        skip_first: positions left out at the start of every chunk.
        adapter: the family's adapter (default: the registered one).
    """
    from .engine import decompose
    from .tuned_lens import token_chunks

    rows, n = [], 0
    for ids in token_chunks(texts, tokenizer, max_length):
        if ids.numel() <= skip_first:
            continue
        dec = decompose(model, ids, tokenizer, adapter=adapter)
        rows.append(dec.states[state_index(dec, state), skip_first:].clone())
        n += rows[-1].shape[0]
        if n >= max_tokens:
            break
    if not rows:
        raise ValueError("texts gave no positions to collect (all chunks shorter than skip_first + 1)")
    return torch.cat(rows)[:max_tokens]


__all__ = ["SAEFeatures", "SparseAutoencoder", "collect_states", "features_payload", "sae_features"]
