"""Fixtures for the view tests: a small fake Decomposition with the engine's API.

The fake is exact about shapes and about the identities the views rely on (states == cumsum of
deltas, DLA sums to the logit, log-prob contributions telescope); its numbers are random.
"""

from __future__ import annotations

import pytest
import torch


class FakeLens:
    def __init__(self, dec, k):
        self.dec = dec
        logits = dec.states @ dec.W_U  # [C, T, V]
        self.logp = torch.log_softmax(logits, -1)
        probs = self.logp.exp()
        self.top_probs, self.top_ids = probs.topk(k, dim=-1)

    def prob(self, target):
        return self.logp[..., self.dec.target_id(target)].exp()

    def rank(self, target):
        tid = self.dec.target_id(target)
        return (self.logp > self.logp[..., tid : tid + 1]).sum(-1)

    def entropy(self):
        return -(self.logp.exp() * self.logp).sum(-1)


class FakeDecomposition:
    def __init__(self, T=6, n_layers=3, d_model=16, vocab=50, n_heads=2, seed=0, sink=True, words=None):
        g = torch.Generator().manual_seed(seed)
        self.n_layers, self.n_heads, self.d_model, self.vocab_size = n_layers, n_heads, d_model, vocab
        self.model_name = "fake-llama"
        self.vocab = words or [(" " if i % 3 else "") + f"tok{i}" for i in range(vocab)]
        self.vocab[1] = " Paris"
        self.vocab[2] = "\n"
        self.vocab[3] = "<script>alert(1)</script>"
        self.vocab[4] = '<img src=x onerror="window.__pwned=1">'
        self.token_ids = torch.randint(5, vocab, (T,), generator=g)
        if T >= 3:
            self.token_ids[1] = 3
            self.token_ids[2] = 4
        self.tokens = [self.vocab[int(i)] for i in self.token_ids]
        self.labels = ["embed"] + [f"{k}.{l}" for l in range(n_layers) for k in ("attn", "mlp")]
        C = len(self.labels)
        self.deltas = torch.randn(C, T, d_model, generator=g)
        if sink:
            self.deltas[:, 0] *= 100.0
        if C > 3:
            self.deltas[3, 1] = 0.0  # a block that wrote nothing
        self.states = self.deltas.cumsum(0)
        self.W_U = torch.randn(d_model, vocab, generator=g) / d_model**0.5
        self.logits = self.states[-1] @ self.W_U
        self._head_split = torch.softmax(torch.randn(n_layers, n_heads, generator=g), -1)

    def token_text(self, i):
        return self.vocab[int(i)]

    def target_id(self, target):
        if isinstance(target, int) or (hasattr(target, "item") and not isinstance(target, str)):
            i = int(target)
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"token id {i} out of range")
            return i
        if target in self.vocab:
            return self.vocab.index(target)
        raise ValueError(f"{target!r} is not a single token")

    def top_prediction(self, position=-1):
        return int(self.logits[position].argmax())

    def logit_lens(self, k=10):
        return FakeLens(self, k)

    def dla_grid(self, target):
        return self.deltas @ self.W_U[:, self.target_id(target)]

    def dla_constant(self, target, position=-1):
        return 0.0

    def contributions(self, target, position=-1, method="dla"):
        if method == "dla":
            return self.dla_grid(target)[:, position]
        lp = self.logit_lens(1).prob(target)[:, position].log()
        out = torch.zeros_like(lp)
        out[1:] = lp[1:] - lp[:-1]
        return out

    def head_contributions(self, target, position=-1, method="dla"):
        c = self.contributions(target, position, method)
        attn = c[1::2][: self.n_layers]
        heads = attn[:, None] * self._head_split
        return torch.cat([heads, torch.zeros(self.n_layers, 1)], 1)

    def logprob(self, target, position=-1):
        return float(torch.log_softmax(self.logits[position], -1)[self.target_id(target)])


@pytest.fixture
def fake_dec():
    return FakeDecomposition()


@pytest.fixture
def fake_dec_factory():
    return FakeDecomposition


def tiny_llama_decomposition(T: int = 10, n_layers: int = 2, vocab: int = 97, d: int = 32, seed: int = 0):
    """A real Decomposition of a tiny random Llama (no tokenizer: tokens show as "<id>")."""
    from transformers import LlamaConfig, LlamaForCausalLM

    import resid_widgets as rw

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=d, intermediate_size=2 * d, num_hidden_layers=n_layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max(64, T + 8),
    )
    model = LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, vocab, (T,), generator=torch.Generator().manual_seed(seed))
    return rw.decompose(model, ids)


@pytest.fixture(scope="module")
def llama_dec():
    return tiny_llama_decomposition()
