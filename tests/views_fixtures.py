"""Fixtures for the view tests: real Decompositions of tiny random Llamas.

``view_decomposition`` gives the views readable token texts through an in-memory word-level
tokenizer whose vocabulary holds the cases the views must show as text, not HTML: " Paris", "\n",
"<script>alert(1)</script>" and an ``<img onerror>`` tag (positions 1 and 2 of the prompt).
"""

from __future__ import annotations

import functools

import pytest
import torch

# the tokens whose display the view tests check; the rest of the vocabulary is " tok5", "tok6", ...
SPECIAL_WORDS = ["<unk>", " Paris", "\n", "<script>alert(1)</script>", '<img src=x onerror="window.__pwned=1">']
SINK_SCALE = 100.0


@functools.lru_cache(maxsize=None)
def word_tokenizer(vocab: int):
    """A word-level tokenizer of ``vocab`` tokens: SPECIAL_WORDS, then " tok5", "tok6", " tok7", ...

    Text splits before each space, so " Paris" is one token and "two tokens" two (unknown) ones.
    """
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = SPECIAL_WORDS + [(" " if i % 3 else "") + f"tok{i}" for i in range(len(SPECIAL_WORDS), vocab)]
    backend = Tokenizer(models.WordLevel({word: i for i, word in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r" ?[^ ]+| +"), behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")


def view_decomposition(T: int = 6, n_layers: int = 3, d_model: int = 16, vocab: int = 50, n_heads: int = 2,
                       seed: int = 0, sink: bool = True):
    """A real Decomposition of a tiny random Llama, with readable token texts.

    Args:
        T: prompt length; from 3 tokens on, positions 1 and 2 hold the ``<script>`` and ``<img>``
            tokens.
        n_layers, d_model, vocab, n_heads: the model's sizes (C = 1 + 2 * n_layers components).
        seed: seeds the weights and the prompt.
        sink: scale the embedding of the first token (used only at position 0) by SINK_SCALE, so
            position 0's stream dwarfs the others like SmolLM2's attention sink.

    With two layers or more, layer 1's attention output projection is zero, so the views also
    show a component that wrote nothing ("attn.1", a zero row of deltas).

    Returns:
        :class:`~resid_widgets.Decomposition` of the prompt, with the tokenizer of
        :func:`word_tokenizer`.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    import resid_widgets as rw

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=d_model, intermediate_size=2 * d_model, num_hidden_layers=n_layers,
        num_attention_heads=n_heads, num_key_value_heads=n_heads, max_position_embeddings=max(64, T + 8),
        initializer_range=0.2,  # larger than the default 0.02: peaked next-token distributions
    )
    model = LlamaForCausalLM(cfg).eval()
    first = len(SPECIAL_WORDS)  # the first token's id: nowhere else in the prompt
    token_ids = torch.randint(first + 1, vocab, (T,), generator=torch.Generator().manual_seed(seed))
    token_ids[0] = first
    if T >= 3:
        token_ids[1] = SPECIAL_WORDS.index("<script>alert(1)</script>")
        token_ids[2] = SPECIAL_WORDS.index('<img src=x onerror="window.__pwned=1">')
    with torch.no_grad():
        if sink:
            model.get_input_embeddings().weight[first] *= SINK_SCALE
        if n_layers > 1:  # a block that writes nothing: "attn.1" is exactly zero everywhere
            model.model.layers[1].self_attn.o_proj.weight.zero_()
    return rw.decompose(model, token_ids, tokenizer=word_tokenizer(vocab))


@pytest.fixture
def view_dec():
    """The default :func:`view_decomposition` (6 tokens, 3 layers), fresh for each test."""
    return view_decomposition()


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
