"""Views at scale, by shapes and counts (never timings, which live in benchmarks/bench_views.py):
the export's zero-ablations batched, the first Dashboard's lens limited to what it shows first,
the saved widget state's size, long-prompt snapshots within their budget."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import resid_widgets as rw
from models_zoo import build, random_ids
from resid_widgets.views import payload as P
from resid_widgets.views.edit_mode import zero_effects, zero_effects_unbatched


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma2", "gpt_neox_parallel"])
def test_batched_zero_effects_equal_one_edit_per_component(family, monkeypatch):
    dec = rw.decompose(build(family), random_ids(11))
    forwards = []
    original = dec.model.forward
    monkeypatch.setattr(dec.model, "forward", lambda *a, **kw: forwards.append(kw["input_ids"].shape) or original(*a, **kw))
    for position in (-1, 4):
        forwards.clear()
        batched = zero_effects(dec, 5, position)
        assert forwards == [(2 * dec.n_layers, 11)]  # one forward, one row per zeroed sub-layer
        single = zero_effects_unbatched(dec, 5, position)
        assert list(batched) == list(single) == [lab for lab in dec.labels if lab.startswith(("attn.", "mlp."))]
        for label, effect in batched.items():
            for name in ("dla", "logp"):
                np.testing.assert_allclose(P.decode_payload(effect[name]), P.decode_payload(single[label][name]),
                                           rtol=1e-5, atol=1e-5, err_msg=f"{family} {label} {name}")
            for name in ("logit", "logprob"):
                assert effect[name] == pytest.approx(single[label][name], rel=1e-5, abs=1e-5)


def test_zero_effects_are_those_of_the_edited_runs():
    dec = rw.decompose(build("llama"), random_ids(9))
    effects = zero_effects(dec, 7, -1)
    ed = dec.edit(rw.Zero("mlp.1"))
    np.testing.assert_allclose(P.decode_payload(effects["mlp.1"]["dla"]), ed.contributions(7, -1).numpy(), rtol=1e-5,
                               atol=1e-6)
    assert effects["mlp.1"]["logit"] == pytest.approx(float(ed.logits[-1, 7]), abs=1e-5)
    torch.testing.assert_close(torch.as_tensor(P.decode_payload(effects["mlp.1"]["logp"])),
                               ed.lens_logprob(ed.states[:, -1], 7), rtol=1e-5, atol=1e-5)
