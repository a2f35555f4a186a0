"""A tuned lens and a sparse autoencoder for a tiny random model, built in milliseconds (the views'
tests need lenses that differ from the logit lens, not good ones; tests/test_tuned_lens.py and
tests/test_sae.py test training)."""

from __future__ import annotations

import torch

import resid_widgets as rw


def perturbed_lens(dec, seed: int = 0, scale: float = 0.5) -> rw.TunedLens:
    """The identity lens of ``dec``'s model with random translators (W ~ scale/sqrt(d), b ~ scale)."""
    lens = rw.TunedLens.identity(dec)
    gen = torch.Generator().manual_seed(seed)
    d = dec.d_model
    for key in lens.translators:
        lens.translators[key] = (scale * torch.randn(d, d, generator=gen) / d ** 0.5, scale * torch.randn(d, generator=gen))
    return lens


def small_sae(d: int, d_sae: int = 64, k: int = 8, seed: int = 0, state: str | None = None) -> rw.SparseAutoencoder:
    """A random top-k SAE reading vectors of size ``d``."""
    gen = torch.Generator().manual_seed(seed)
    return rw.SparseAutoencoder(torch.randn(d, d_sae, generator=gen) / d ** 0.5, 0.05 * torch.randn(d_sae, generator=gen),
                                torch.randn(d_sae, d, generator=gen), 0.1 * torch.randn(d, generator=gen),
                                architecture="topk", k=k, state=state)
