"""A dropped Decomposition is freed by reference counting alone (no reference cycles), whatever
was computed from it: a notebook that re-runs ``dec = rw.decompose(...)`` must not wait for the
full garbage collector to give back its memory."""
import gc
import weakref

import pytest

import resid_widgets as rw
from models_zoo import build, random_ids

A = rw.analysis


def _use_every_public_method(dec):
    """Call every public method and property of a Decomposition, and the analyses built on it."""
    target, pos = dec.top_prediction(-1), 3
    lens = dec.logit_lens(k=3)
    lens.prob(target), lens.logprob(target), lens.rank(target), lens.entropy(), lens.logsumexp, repr(lens)
    dec.logit_lens(k=2)  # replaces the cached lens
    dec.states, dec.logits, dec.n_tokens, repr(dec), dec.summary(target)
    dec.index("attn.0"), dec.attn_index(0), dec.mlp_index(1), dec.state_before(2, pos)
    dec.token_text(target), dec.target_id(target), dec.logprob(target, pos)
    for method in ("dla", "logprob"):
        dec.contributions(target, pos, method)
        dec.head_contributions(target, pos, method)
        dec.top_neurons(target, pos, n=2, method=method)
    dec.contributions(target, pos, "logprob", norm="frozen")
    dec.dla_grid(target), dec.dla_constant(target, pos)
    dec.head_deltas(0), dec.head_deltas(1, pos)
    dec.neuron_activations(0), dec.neuron_dla(target, pos), dec.neuron_vectors(0, [1, 2], pos)
    dec.bs_tokens(dec.deltas[:2, pos], pos, k=3)
    # the analyses that take a Decomposition
    A.ffn_subvalues(dec, target, n=3), A.neuron_subvalue(dec, 0, 1, target)
    A.attention_subvalues(dec, target), A.neuron_input_shares(dec, 1, 2), A.cross_layer(dec, target, n=2)
    A.block_budget(dec, k=3), A.drop_one(dec, target), A.direct_path(dec), A.block_paths(dec, target)
    A.bandwidth(dec)


@pytest.mark.parametrize("family", ["llama", "gemma2", "gpt2"])
def test_a_dropped_decomposition_is_freed_without_the_garbage_collector(family):
    model = build(family)
    gc.collect()
    gc.disable()
    try:
        dec = rw.decompose(model, random_ids(9))
        _use_every_public_method(dec)
        freed = weakref.ref(dec)
        del dec
        assert freed() is None, [type(r).__name__ for r in gc.get_referrers(freed())]
    finally:
        gc.enable()


def test_a_kept_decomposition_holds_what_the_readme_says():
    """The sizes behind README's figure for a kept Decomposition (SmolLM2 at T=256: deltas, the
    output projections' inputs and the logits; the states once read), as a formula of the shapes."""
    model = build("llama")
    T = 40
    dec = rw.decompose(model, random_ids(T))
    cfg = model.config
    C, L, d, V = len(dec.labels), cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size
    expected = 4 * (C * T * d + L * T * (cfg.num_attention_heads * (d // cfg.num_attention_heads))
                    + L * T * cfg.intermediate_size + T * V)
    held = (dec.deltas.nbytes + dec.logits.nbytes + dec._head_inputs.nbytes + dec._neuron_acts.nbytes)
    assert held == expected
    assert dec.states.nbytes == 4 * C * T * d  # computed when first read, then kept
