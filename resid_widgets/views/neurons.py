"""Top FFN neurons of every MLP layer for one (target, position): the breakdown shown when an MLP
bar of ContributionBars is expanded. Small: n neurons per layer (index, activation, DLA, the few
tokens each neuron promotes and suppresses here), ranked by |DLA|.

The tokens are those of the neuron's contribution at this activation, ``act * W_out[:, k]`` through
the final norm frozen as the DLA freezes it: a negative activation flips what the neuron's weights
alone would promote (SmolLM2's L28N625 at "The capital of France is" fires at about -19)."""

from __future__ import annotations

import numpy as np
import torch

from .payload import array_payload

#: neurons listed per layer
N_NEURONS = 8
#: before-softmax top tokens per neuron
BS_K = 3


def neuron_key(target_id: int, position: int) -> str:
    return f"{int(target_id)}:{int(position)}"


def neurons_units(n_layers: int) -> int:
    """Units of work :func:`neurons_payload` reports: the neurons' DLA, then one per layer."""
    return 1 + int(n_layers)


def neurons_payload(dec, target_id: int, position: int, n: int = N_NEURONS, bs_k: int = BS_K,
                    progress=None) -> dict:
    """The neurons of each layer with the largest |DLA| to ``target_id`` at ``position``.

    Returns:
        ``{n, index [L,n] i32, dla [L,n] f32, act [L,n] f32, bs_top [L][n][bs_k] str,
        bs_bottom [L][n][bs_k] str}``, strongest first: ``bs_top`` the tokens the neuron's
        contribution at this activation promotes most (largest before-softmax value), ``bs_bottom``
        those it suppresses most (most negative first). ``progress`` (an ``export.Progress``)
        counts :func:`neurons_units` units.
    """
    pos = dec.position_index(position)
    dla = dec.neuron_dla(target_id, pos)  # [L, d_ff]
    if progress is not None:
        progress.done()
    L, d_ff = dla.shape
    n = min(n, d_ff)
    index = np.zeros((L, n), np.int32)
    vals = np.zeros((L, n), np.float32)
    acts = np.zeros((L, n), np.float32)
    vectors = []
    for l in range(L):
        idx = dla[l].abs().topk(n).indices
        index[l] = idx.numpy()
        vals[l] = dla[l, idx].numpy()
        acts[l] = dec.neuron_activations(l)[pos, idx].float().numpy()
        vectors.append(dec.neuron_vectors(l, idx.tolist(), pos))
        if progress is not None:
            progress.done()
    # every layer's neurons in one pass over the unembedding (one per layer took most of the time)
    # the subvalues carry the activation's sign: these are the tokens pushed up / down here
    top, bottom = dec.bs_tokens(torch.cat(vectors), pos, bs_k)
    bs_top = [[[text for text, _ in row] for row in top[l * n:(l + 1) * n]] for l in range(L)]
    bs_bottom = [[[text for text, _ in row] for row in bottom[l * n:(l + 1) * n]] for l in range(L)]
    return {"n": int(n), "index": array_payload(index, "int32"), "dla": array_payload(vals, "float32"),
            "act": array_payload(acts, "float32"), "bs_top": bs_top, "bs_bottom": bs_bottom}
