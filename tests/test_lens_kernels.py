"""The lens's per-chunk top-k and log-sum-exp agree with torch.topk and torch.logsumexp."""
import pytest
import torch

from resid_widgets.lens import TOPK_BLOCK, logsumexp_, top_k_


def run_top_k(z, k):
    values = torch.empty(z.shape[0], k)
    ids = torch.empty(z.shape[0], k, dtype=torch.long)
    top_k_(z, k, out=(values, ids))
    return values, ids


@pytest.mark.parametrize("vocab", [97, 8 * 10 * TOPK_BLOCK, 49152, 50257, 151936])
@pytest.mark.parametrize("k", [1, 5, 10])
def test_top_k_matches_torch(vocab, k):
    g = torch.Generator().manual_seed(vocab + k)
    z = torch.randn(37, vocab, generator=g) * 4
    z[3, -1] = 100.0  # the maximum in the tail that is no whole block
    z[4, :k] = 50.0 + torch.arange(k)  # the top k in the first block
    values, ids = run_top_k(z.clone(), k)
    ref_values, ref_ids = torch.topk(z, k, dim=-1)
    assert torch.equal(values, ref_values)
    assert torch.equal(ids, ref_ids)  # no ties in random data: the same ids
    assert torch.equal(z.gather(1, ids), values)


def test_top_k_with_ties_gives_the_right_values():
    z = torch.zeros(4, 64 * TOPK_BLOCK)
    z[:, ::7] = 1.0  # many equal maxima, in many blocks
    values, ids = run_top_k(z.clone(), 10)
    assert torch.equal(values, torch.ones(4, 10))
    assert torch.equal(z.gather(1, ids), values)
    assert all(len(set(row)) == 10 for row in ids.tolist())


def test_top_k_nonfinite_rows():
    z = torch.randn(3, 100 * TOPK_BLOCK)
    z[0, 5] = float("nan")
    z[1, :] = float("-inf")
    z[2, 17] = float("inf")
    values, ids = run_top_k(z.clone(), 3)
    assert torch.isnan(values[0, 0])
    assert torch.isneginf(values[1]).all()
    assert values[2, 0] == float("inf") and ids[2, 0] == 17


@pytest.mark.parametrize("scale,shift", [(3, 0), (3, 25), (3, -40), (30, 200), (30, -150), (60, 0)])
def test_logsumexp_matches_torch(scale, shift):
    g = torch.Generator().manual_seed(int(scale + shift))
    z = torch.randn(23, 49152, generator=g) * scale + shift
    z[0] = torch.linspace(-300, 239, z.shape[1])  # an embed-state row: huge max, huge spread
    ref = torch.logsumexp(z.double(), -1).float()
    out = logsumexp_(z.clone(), z.amax(-1, keepdim=True))
    torch.testing.assert_close(out, ref, rtol=2e-6, atol=2e-5)


def test_logsumexp_nonfinite_rows():
    z = torch.randn(4, 1000)
    z[1, :] = float("-inf")
    z[2, 3] = float("inf")
    z[3, 9] = float("nan")
    out = logsumexp_(z.clone(), z.amax(-1, keepdim=True))
    ref = torch.logsumexp(z, -1)
    torch.testing.assert_close(out[0], ref[0])
    assert torch.isneginf(out[1]) and torch.isposinf(out[2]) and torch.isnan(out[3])


def test_lens_entropy_and_logsumexp_on_extreme_rows():
    """Rows with a huge spread (like the embedding states of a tied-embedding model) take the
    shifted, clamped path; entropy reuses the lens's log-sum-exp. Both match float64 references."""
    from resid_widgets.lens import LensResult, Readout
    from resid_widgets.norms import Norm

    g = torch.Generator().manual_seed(0)
    d, V = 16, 300 * TOPK_BLOCK + 17
    W = torch.randn(V, d, generator=g)
    states = torch.randn(3, 5, d, generator=g)
    states[0] *= 40.0  # after the norm's weight below: logits spread over hundreds
    readout = Readout(Norm("rms", torch.full((d,), 8.0), None, 1e-6), W, None)
    lens = LensResult(states, readout, 5, int)
    logits = readout.logits(states.reshape(-1, d)).double()
    logp = logits.log_softmax(-1)
    entropy = -(logp.exp() * logp).sum(-1).view(3, 5)
    torch.testing.assert_close(lens.logsumexp, logits.logsumexp(-1).view(3, 5).float(), rtol=2e-6, atol=2e-5)
    torch.testing.assert_close(lens.entropy(), entropy.float(), rtol=1e-4, atol=1e-4)
    top = logits.topk(5, -1)
    assert torch.equal(lens.top_ids.view(-1, 5), top.indices)
    torch.testing.assert_close(lens.top_probs.view(-1, 5).double(), top.values.sub(logits.logsumexp(-1, keepdim=True)).exp(),
                               rtol=1e-4, atol=1e-6)
