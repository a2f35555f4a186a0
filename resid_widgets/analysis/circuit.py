"""The induction circuit, causally: which earlier heads the keys of each induction head read
(K-composition; Elhage et al. 2021, Olsson et al. 2022; docs/METHODS.md).

On BOS + r + r (r = ``n_tokens`` distinct random ids), one eager pass gives every head's scores
(:mod:`~resid_widgets.analysis.patterns`) and every head's output. For an induction head (l2, h2)
and an earlier head (l1, h1), the output of (l1, h1) is removed from the input of layer l2's key
projection only: a forward hook on that projection recomputes the pre-norm (where the family has
one) on the edited stream h − out(l1, h1) and replaces the keys (for a fused query/key/value projection, the key columns
only). Queries and values see the unedited stream, and layers before l2 are untouched, so each
ablation replays layer l2's attention alone with its recorded inputs. The drop of (l2, h2)'s
induction score is the effect of (l1, h1) through the keys; previous-token heads feeding the keys
of induction heads show large drops.

A head's output is its slice of the output projection, z_h W_O^h (the output bias is no head's);
in Gemma 2/3 times the attention post-norm frozen at its real input, as in ``dec.head_deltas``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..adapters.base import Adapter, require_module
from ..attention_capture import CaptureError, implementation_switched, recording, register_capture_implementation
from ..weights import LayerWeights
from ..model_state import model_left_as_found
from ..runner import tile_batch
from ._common import AnalysisError, Table, attention_pass, check_index, hooks, model_parts, plotly
from .induction import repeated_random_tokens
from .patterns import SCORE_KINDS, induction_sources, score_heads


@dataclass(repr=False, eq=False)
class InductionCircuit(Table):
    """Result of :func:`induction_circuit`.

    Attributes:
        induction_heads: [(layer, head)] the n induction heads examined, strongest first.
        score: [n] their induction score on the prompt (replayed, nothing removed).
        score_without: [n, L, H] their induction score with head (l1, h1)'s output removed from
            their keys' input (NaN where l1 is not an earlier layer).
        drop: [n, L, H] score − score_without.
        scores: {kind: [L, H]} every head's scores on the prompt (``SCORE_KINDS``), from the same
            pass: a source's "previous_token" score says whether it is a previous-token head.
        token_ids: [batch, T] the prompt (BOS + r + r).
        n_tokens: T; batch: how many random prompts; seed: their seed.
        capture_error: relative error of Σ_j α v_j against the attention output (worst layer).
        rows: per induction head, its ``n_sources`` earlier heads with the largest drops, ranked:
            induction_head, layer, head, source, source_layer, source_head, drop, relative_drop,
            score, score_without, source_previous_token.
    """

    induction_heads: list[tuple[int, int]]
    score: torch.Tensor
    score_without: torch.Tensor
    drop: torch.Tensor
    scores: dict[str, torch.Tensor]
    token_ids: torch.Tensor
    n_tokens: int
    batch: int
    seed: int | None
    capture_error: float
    rows: list[dict]

    def sources(self, layer: int, head: int, n: int | None = None) -> list[dict]:
        """The rows of one induction head (all earlier heads when ``n`` is None), largest drop first.

        Args:
            layer, head: an induction head examined.
            n: how many source heads, or None for all.

        Raises:
            KeyError: the head is not among the induction heads examined.
        """
        if (layer, head) not in self.induction_heads:
            raise KeyError(f"L{layer}H{head} is not among the induction heads examined "
                           f"({', '.join(f'L{l}H{h}' for l, h in self.induction_heads) or 'none'})")
        i = self.induction_heads.index((layer, head))
        return _source_rows(self, i, n)

    def figure(self, n: int = 3):
        """A small graph (heads at (head, layer); an arrow from each induction head's ``n`` strongest
        key sources, width and label = the score drop) beside the ranked drops as bars.

        Args:
            n: the source heads drawn per induction head.
        """
        go, make_subplots = plotly()
        L, H = self.scores["sink"].shape
        fig = make_subplots(rows=1, cols=2, column_widths=[0.5, 0.5], horizontal_spacing=0.14,
                            subplot_titles=("key sources of the induction heads (K-composition)",
                                            "drop of the induction score"))
        top = max([row["drop"] for row in self.rows] + [1e-9])
        nodes: dict[tuple[int, int], str] = {}
        bars_y, bars_x, bars_text = [], [], []
        for i, (l2, h2) in enumerate(self.induction_heads):
            nodes[(l2, h2)] = "induction"
            for r in _source_rows(self, i, n):
                l1, h1 = r["source_layer"], r["source_head"]
                nodes.setdefault((l1, h1), "source")
                width = 1 + 7 * max(r["drop"], 0) / top
                fig.add_scatter(x=[h1, h2], y=[l1, l2], mode="lines", line=dict(width=width, color="#0072B2"),
                                opacity=0.75, hoverinfo="skip", showlegend=False, row=1, col=1)
                fig.add_annotation(x=h2, y=l2, ax=h1, ay=l1, xref="x1", yref="y1", axref="x1", ayref="y1",
                                   showarrow=True, arrowhead=2, arrowsize=1, arrowwidth=max(1.0, width / 2),
                                   arrowcolor="#0072B2", text="", standoff=8)
                bars_y.append(f"{r['source']} → {r['induction_head']}")
                bars_x.append(r["drop"])
                bars_text.append(f"prev-token {r['source_previous_token']:.2f}")
        for kind, color, symbol in (("induction", "#D55E00", "diamond"), ("source", "#009E73", "circle")):
            pts = [lh for lh, k in nodes.items() if k == kind]
            if not pts:
                continue
            hover = [f"L{l}H{h}<br>induction {self.scores['induction'][l, h]:.2f}"
                     f"<br>previous token {self.scores['previous_token'][l, h]:.2f}" for l, h in pts]
            fig.add_scatter(x=[h for _, h in pts], y=[l for l, _ in pts], mode="markers+text",
                            marker=dict(size=16, color=color, symbol=symbol), text=[f"L{l}H{h}" for l, h in pts],
                            textposition="middle right", hovertext=hover, hoverinfo="text",
                            name="induction head" if kind == "induction" else "key source", row=1, col=1)
        fig.add_bar(y=bars_y, x=bars_x, orientation="h", text=bars_text, marker_color="#0072B2",
                    hovertemplate="%{y}: drop %{x:.3f}<br>%{text}<extra></extra>", showlegend=False, row=1, col=2)
        fig.update_xaxes(title_text="head", range=[-0.5, H - 0.5 + 1.5], dtick=1, row=1, col=1)
        fig.update_yaxes(title_text="layer", range=[L - 0.5, -0.5], row=1, col=1)
        fig.update_yaxes(autorange="reversed", row=1, col=2)
        fig.update_xaxes(title_text="score − score without the source in the keys", row=1, col=2)
        fig.update_layout(title=f"induction circuit on BOS + r + r ({self.n_tokens} random tokens × {self.batch})",
                          height=max(420, 24 * len(bars_y) + 200, 16 * L + 160))
        return fig

    def __repr__(self) -> str:
        heads = ", ".join(f"L{l}H{h} ({s:.2f})" for (l, h), s in zip(self.induction_heads, self.score.tolist()))
        return f"InductionCircuit(induction heads: {heads or 'none'})\n{self._repr_rows(12)}"


def _source_rows(res: InductionCircuit, i: int, n: int | None) -> list[dict]:
    l2, h2 = res.induction_heads[i]
    drop = res.drop[i]
    order = torch.nan_to_num(drop, nan=-math.inf).flatten().argsort(descending=True)
    count = l2 * drop.shape[1] if n is None else min(n, l2 * drop.shape[1])
    rows = []
    H = drop.shape[1]
    base = float(res.score[i])
    for j in order[:count].tolist():
        l1, h1 = divmod(j, H)
        d = float(drop[l1, h1])
        rows.append(dict(induction_head=f"L{l2}H{h2}", layer=l2, head=h2, source=f"L{l1}H{h1}", source_layer=l1,
                         source_head=h1, drop=d, relative_drop=d / base if base > 0 else math.nan, score=base,
                         score_without=float(res.score_without[i, l1, h1]),
                         source_previous_token=float(res.scores["previous_token"][l1, h1])))
    return rows


def key_columns(adapter: Adapter, n_heads: int, n_kv_heads: int, head_dim: int) -> torch.Tensor | None:
    """Which outputs of the adapter's ``attn_key`` module are keys (None: all of them).

    Args:
        adapter: the family's adapter (its ``attn_key_columns``).
        n_heads, n_kv_heads, head_dim: the attention's sizes.
    """
    layout = adapter.attn_key_columns
    if layout is None:
        return None
    if layout == "qkv":
        start = n_heads * head_dim
        return torch.arange(start, start + n_kv_heads * head_dim)
    if layout == "qkv_per_head":
        return torch.cat([torch.arange(h * 3 * head_dim + head_dim, h * 3 * head_dim + 2 * head_dim)
                          for h in range(n_heads)])
    raise ValueError(f"adapter '{adapter.name}': attn_key_columns must be None, 'qkv' or 'qkv_per_head', "
                     f"not {layout!r}")


def _replace_keys_hook(columns: torch.Tensor | None, key_input: torch.Tensor):
    """A forward hook for the key projection: its keys become those of ``key_input``."""

    def hook(module, args, out):
        edited = module.forward(key_input)  # forward(): the projection's own hooks are not re-entered
        if columns is None:
            return edited
        out = out.clone()
        cols = columns.to(out.device)
        out[..., cols] = edited[..., cols]
        return out

    return hook


def induction_circuit(model, tokenizer=None, *, heads=None, n_tokens: int = 40, batch: int = 4, seed: int = 0,
                      threshold: float = 0.4, max_heads: int = 4, n_sources: int = 5,
                      token_ids: torch.Tensor | None = None) -> InductionCircuit:
    """Find the induction heads and, for each, the earlier heads its keys read (K-composition).

    Args:
        model: a Hugging Face causal LM of a supported family.
        tokenizer: used for the BOS token and to leave special tokens out of r.
        heads: [(layer, head)] the induction heads to examine; default: the heads whose induction
            score is at least ``threshold``, at most ``max_heads``, strongest first.
        n_tokens, batch, seed: the prompt, BOS + r + r with r ``n_tokens`` distinct random ids.
        n_sources: earlier heads listed in ``rows`` per induction head (``drop`` holds them all).
        token_ids: [batch, T] or [T] your own prompt instead (induction as defined in
            :mod:`~resid_widgets.analysis.patterns`: attention to the tokens after earlier copies).

    Cost: one plain and one eager pass of the prompt, then, per layer l2 holding an induction
    head, l2 + 1 replays of that layer's attention alone (the heads of one earlier layer are
    removed side by side, as H copies of the prompt in one batch).
    """
    adapter, layers = model_parts(model)
    if not adapter.attn_key:
        raise AnalysisError(f"The adapter '{adapter.name}' names no key projection (attn_key): describe it in "
                            "rw.Adapter(attn_key=..., attn_key_columns=...) to ablate the key path.")
    if token_ids is None:
        ids, _ = repeated_random_tokens(model, adapter, tokenizer, n_tokens, batch, seed, distinct=True)
    else:
        ids = _ids(token_ids)
    sources = induction_sources(ids)
    if not bool((sources.sum(-1) > 0).any()):
        raise AnalysisError("No token of the prompt occurs twice: induction needs a repeated token "
                            "(e.g. BOS + r + r, the default prompt).")
    L = len(layers)
    attn_mods = [require_module(layer, adapter.attn, "attention", adapter) for layer in layers]
    per_layer: list = [None] * L
    block_inputs: list = [None] * L
    attn_calls: list = [None] * L

    def keep_scores(layer, probs, values):
        per_layer[layer] = score_heads(probs, sources)

    with hooks(model) as handles:
        for i, (layer, attn) in enumerate(zip(layers, attn_mods)):
            handles.append(layer.register_forward_pre_hook(_keep_input(block_inputs, i), with_kwargs=True))
            handles.append(attn.register_forward_pre_hook(_keep_call(attn_calls, i), with_kwargs=True))
        run = attention_pass(model, ids, keep_scores, adapter)
    scores = {k: torch.stack([s[k] for s in per_layer]) for k in SCORE_KINDS}
    H = scores["sink"].shape[1]
    chosen = _choose(scores["induction"], heads, threshold, max_heads, L, H)
    weights = LayerWeights(layers, adapter)
    n = len(chosen)
    score = torch.zeros(n)
    without = torch.full((n, L, H), math.nan)
    if chosen:
        head_dim = run.z[0].shape[-1] // H
        name = register_capture_implementation()
        for l2 in sorted({l for l, _ in chosen}):
            rows = [i for i, (l, _) in enumerate(chosen) if l == l2]
            targets = torch.tensor([chosen[i][1] for i in rows])
            replay = _Replay(model, adapter, layers[l2], attn_mods[l2], attn_calls[l2], block_inputs[l2], sources,
                             name)
            base = replay.induction(None)[0]
            clean = scores["induction"][l2]
            tol = 1e-4 if next(model.parameters()).dtype in (torch.float32, torch.float64) else 2e-2
            if not torch.allclose(base, clean, atol=tol, rtol=0):
                raise AnalysisError(f"Replaying layer {l2}'s attention with its recorded inputs does not reproduce its "
                                    f"weights (induction scores differ by {float((base - clean).abs().max()):.1e}): "
                                    "this model's attention needs inputs the replay does not pass.")
            score[rows] = base[targets]
            n_kv = int(getattr(model.config, "num_key_value_heads", None) or H)
            columns = key_columns(adapter, H, n_kv, head_dim)
            for l1 in range(l2):
                writes = _head_writes(weights, adapter, run.z[l1], l1, H)  # [H, B, T, d]
                without[rows, l1] = replay.induction((columns, writes))[:, targets].t()
    drop = score[:, None, None] - without
    result = InductionCircuit(induction_heads=chosen, score=score, score_without=without, drop=drop, scores=scores,
                              token_ids=ids, n_tokens=n_tokens if token_ids is None else ids.shape[1],
                              batch=ids.shape[0], seed=seed, capture_error=run.max_error, rows=[])
    result.rows = [r for i in range(n) for r in _source_rows(result, i, n_sources)]
    return result


class _Replay:
    """Layer l2's attention run again with the inputs recorded in the clean pass; optionally with
    the keys computed from an edited stream."""

    def __init__(self, model, adapter, layer, attn, call, block_input, sources, implementation: str):
        self.model, self.adapter, self.layer, self.attn = model, adapter, layer, attn
        self.args, self.kwargs = call
        self.block_input = block_input
        self.sources = sources
        self.implementation = implementation
        # without a pre-norm (OLMo 2/3) the key projection reads the stream itself
        self.norm = (require_module(layer, adapter.attn_norm, "attention pre-norm", adapter) if adapter.attn_norm
                     else torch.nn.Identity())
        self.key = require_module(layer, adapter.attn_key, "attention key projection", adapter)

    def induction(self, edit) -> torch.Tensor:
        """[E, H] induction scores of the layer's heads for E edits, or [1, H] with ``edit`` None.
        ``edit`` = (key columns, writes [E, B, T, d]): edit e removes writes[e] from the keys' input."""
        seen: list = []
        self.run(edit, lambda probs, values: seen.append(probs))
        if not seen:
            raise AnalysisError("the replayed attention did not go through the capture function")
        probs = seen[0]
        B = self.block_input.shape[0]
        return torch.stack([score_heads(chunk, self.sources)["induction"] for chunk in probs.split(B)])

    def run(self, edit, on_record) -> None:
        """Replay the attention once; ``on_record(probs, values)`` sees its weights (the E edits one
        after the other along the batch)."""
        args, kwargs = self.args, self.kwargs
        with hooks(self.model) as handles, recording([self.attn], lambda i, p, v: on_record(p, v)):
            if edit is not None:
                columns, writes = edit
                h = self.block_input
                E, B = writes.shape[0], h.shape[0]
                edited = (h.float()[None] - writes.to(h.device)).to(h.dtype).flatten(0, 1)  # [E * B, T, d]
                with torch.no_grad():
                    key_input = self.norm(edited)
                handles.append(self.key.register_forward_hook(_replace_keys_hook(columns, key_input)))
                args, kwargs = tile_batch(args, B, E), tile_batch(kwargs, B, E)
            try:
                with model_left_as_found(self.model), implementation_switched(self.model, self.implementation):
                    self.attn(*args, **kwargs)
            except CaptureError as exc:
                raise AnalysisError(str(exc)) from None


def _head_writes(weights: LayerWeights, adapter: Adapter, z: torch.Tensor, layer: int, H: int) -> torch.Tensor:
    """[H, B, T, d] what each head of ``layer`` wrote (post-norm frozen at its real input), fp32."""
    W, b = weights.attn_out(layer)
    W = W.cpu()
    B, T, _ = z.shape
    per_head = torch.einsum("bthk,dhk->hbtd", z.view(B, T, H, -1), W.view(W.shape[0], H, -1))
    if adapter.attn_post_norm:
        post = weights.norm(layer, "attn_post")
        pre = z @ W.t() + (0 if b is None else b.cpu())
        per_head = per_head * (post.gain * post.inv_scale(pre))
    return per_head


def _keep_input(store: list, i: int):
    def hook(module, args, kwargs):
        store[i] = (args[0] if args else kwargs.get("hidden_states")).detach()
    return hook


def _keep_call(store: list, i: int):
    def hook(module, args, kwargs):
        store[i] = (tuple(args), dict(kwargs))
    return hook


def _choose(induction: torch.Tensor, heads, threshold: float, max_heads: int, L: int, H: int) -> list:
    if heads is not None:
        chosen = []
        for pair in heads:
            l, h = pair
            chosen.append((check_index(int(l), L, "layer"), check_index(int(h), H, "head")))
        return list(dict.fromkeys(chosen))
    # layer 0 has no earlier heads to read from
    flat = torch.nan_to_num(induction, nan=-1.0)[1:].flatten()
    order = [j for j in flat.argsort(descending=True).tolist() if float(flat[j]) >= threshold]
    return [(1 + j // H, j % H) for j in order[:max_heads]]


def _ids(token_ids) -> torch.Tensor:
    ids = torch.as_tensor(token_ids).long()
    if ids.dim() == 1:
        ids = ids[None]
    if ids.dim() != 2:
        raise ValueError(f"token_ids must be [T] or [batch, T], not {tuple(ids.shape)}")
    return ids
