"""nnsight backend: rw.decompose(nnsight.LanguageModel) and rw.decompose_remote give the plain
Hugging Face path's numbers. The remote path runs as nnsight's local dry run of the request
(remote="local": serialized, deserialized with local modules hidden, then run here); what
that does and does not cover is in docs/scale.md."""
import warnings

import pytest
import torch
from models_zoo import FAMILIES, VOCAB, build, random_ids, word_tokenizer

import resid_widgets as rw
from resid_widgets.backends import nnsight_trace
from resid_widgets.backends.nnsight import _trace, trace_spec, wrapped_model

nnsight = pytest.importorskip("nnsight", reason="nnsight is not installed (pip install 'resid_widgets[nnsight]')")


def wrap(model, tokenizer=None):
    """An nnsight.LanguageModel around ``model`` (a word tokenizer whose BOS/EOS are the model's)."""
    if tokenizer is None:
        model.config.bos_token_id, model.config.eos_token_id = 1, 2
        tokenizer = word_tokenizer(VOCAB)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nnsight 0.8 suggests TransformersModel over LanguageModel
        return nnsight.LanguageModel(model, tokenizer=tokenizer)


def hooks_of(model):
    return [(name, len(m._forward_hooks), len(m._forward_pre_hooks)) for name, m in model.named_modules()]


@pytest.mark.parametrize("family", FAMILIES)
def test_decompose_language_model_matches_hf_path(family):
    model = build(family)
    ids = random_ids(11)
    ref = rw.decompose(model, ids)
    lm = wrap(model)
    before = hooks_of(model)
    dec = rw.decompose(lm, ids)
    assert isinstance(dec, rw.Decomposition) and dec.labels == ref.labels
    assert hooks_of(model) == before and not model.training
    torch.testing.assert_close(dec.deltas, ref.deltas, rtol=0, atol=0)
    torch.testing.assert_close(dec.logits, ref.logits, rtol=0, atol=0)
    assert dec.additivity_error == pytest.approx(ref.additivity_error, abs=1e-7)
    torch.testing.assert_close(dec.head_deltas(1), ref.head_deltas(1))
    tid = ref.top_prediction()
    torch.testing.assert_close(dec.contributions(tid, method="logprob"), ref.contributions(tid, method="logprob"))
    lens, ref_lens = dec.logit_lens(k=5), ref.logit_lens(k=5)
    assert torch.equal(lens.top_ids, ref_lens.top_ids)
    # the neuron split reads the FFN output projection's inputs, which the trace saved
    torch.testing.assert_close(dec._neuron_acts, ref._neuron_acts)


def test_tokenizer_defaults_to_the_wrappers():
    model = build("llama")
    lm = wrap(model)
    dec = rw.decompose(lm, "w5 w7 w9")
    assert dec.tokens == ["w5", "w7", "w9"] and dec.token_ids.tolist() == [5, 7, 9]
    assert dec.contributions("w9").shape == (len(dec.labels),)


def test_language_model_loaded_from_a_folder(tmp_path):
    """LanguageModel("org/name") starts with its weights on meta and loads them on first use."""
    model = build("qwen2")
    model.config.bos_token_id, model.config.eos_token_id = 1, 2
    model.save_pretrained(tmp_path)
    tok = word_tokenizer(VOCAB)
    ids = random_ids(9)
    ref = rw.decompose(model, ids)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        remote_lm = nnsight.LanguageModel(str(tmp_path), tokenizer=tok)
        local_lm = nnsight.LanguageModel(str(tmp_path), tokenizer=tok)
    assert any(p.is_meta for p in wrapped_model(remote_lm).parameters())
    r = rw.decompose_remote(remote_lm, ids, remote="local")  # spec from the meta skeleton
    torch.testing.assert_close(r.deltas, ref.deltas)
    dec = rw.decompose(local_lm, ids)
    torch.testing.assert_close(dec.deltas, ref.deltas)
    torch.testing.assert_close(dec.head_deltas(0), ref.head_deltas(0))


@pytest.mark.parametrize("family", FAMILIES)
def test_remote_trace_matches_hf_path(family):
    """The very trace sent to NDIF, run as nnsight's local dry run of the request."""
    model = build(family)
    ids = random_ids(11)
    ref = rw.decompose(model, ids)
    lm = wrap(model)
    r = rw.decompose_remote(lm, ids, k=5, remote="local")
    torch.testing.assert_close(r.deltas, ref.deltas, rtol=0, atol=0)
    lens = ref.logit_lens(k=5)
    assert torch.equal(r.lens_top_ids, lens.top_ids)
    torch.testing.assert_close(r.lens_top_probs, lens.top_probs)
    tid = ref.top_prediction()
    assert r.target == tid
    torch.testing.assert_close(r.target_logprob, lens.logprob(tid))
    torch.testing.assert_close(r.dla, ref.dla_grid(tid))
    # the attributions add up to the model's own logit of the target (before a soft-cap)
    torch.testing.assert_close(r.contributions(-1), ref.contributions(tid))
    assert r.dla_constant == pytest.approx(ref.dla_constant(tid), abs=1e-6)
    assert torch.equal(r.logits_top_ids, ref.logits.topk(5, -1).indices)
    torch.testing.assert_close(r.logits_logsumexp, torch.logsumexp(ref.logits, -1))
    assert r.additivity_error < 1e-5 and r.readout_error < 1e-5
    assert r.labels == ref.labels and r.tokens == [f"w{i}" for i in ids.tolist()]  # the wrapper's tokenizer


def test_remote_trace_sends_back_no_weights_or_vocabulary_rows():
    model = build("gemma2")  # post-norms and a soft-cap: every branch of the trace
    lm = wrap(model)
    ids = random_ids(11)
    s = trace_spec(wrapped_model(lm), rw.adapters.base.adapter_for(model), k=5, full=False, lens=True)
    saved = _trace(lm, ids, s, remote="local")
    C, T, d = 1 + 2 * model.config.num_hidden_layers, 11, model.config.hidden_size
    assert set(saved) == {"deltas", "stream_norms", "logits_top", "logits_top_ids", "logits_lse", "lens_top_ids",
                          "lens_top_logits", "lens_lse", "lens_target_logit", "target", "dla", "dla_constant",
                          "readout_error"}
    shapes = {key: tuple(v.shape) for key, v in saved.items()}
    assert not any(VOCAB in shape for shape in shapes.values()), shapes
    assert shapes["deltas"] == (C, T, d) and shapes["lens_top_ids"] == (C, T, 5) and shapes["dla"] == (C, T)
    weights = {tuple(p.shape) for p in model.parameters() if p.dim() == 2}
    assert not weights & set(shapes.values())
    # deltas travel in the model's dtype; every other result is O(C * T * k)
    deltas_bytes = C * T * d * model.dtype.itemsize
    payload = sum(v.numel() * v.element_size() for v in saved.values())
    assert payload - deltas_bytes <= C * T * (5 * 12 + 12) + T * (5 * 12 + 4) + 64
    r = rw.decompose_remote(lm, ids, k=5, remote="local")
    assert r.payload_bytes == payload


def test_remote_target_by_text_and_the_trace_ships_by_value():
    model = build("llama")
    lm = wrap(model)
    r = rw.decompose_remote(lm, "w5 w7 w9", target="w9", k=3, remote="local")
    ref = rw.decompose(model, [5, 7, 9])
    assert r.target == 9
    torch.testing.assert_close(r.dla, ref.dla_grid(9))
    # registered for pickling by value: the server needs no resid_widgets for record()
    from cloudpickle.cloudpickle import _PICKLE_BY_VALUE_MODULES
    assert {nnsight_trace.__name__, "resid_widgets.norms"} <= _PICKLE_BY_VALUE_MODULES


def test_remote_readout_check_rejects_a_wrong_adapter():
    from dataclasses import replace

    model = build("llama")
    lm = wrap(model)
    wrong = replace(rw.adapters.base.adapter_for(model), norm_offset=1.0)  # Gemma's (1 + w), not Llama's
    with pytest.raises(rw.ReadoutError, match="norm_offset"):
        rw.decompose_remote(lm, random_ids(7), adapter=wrong, remote="local")
    with pytest.raises(rw.ReadoutError, match="norm_offset"):
        rw.decompose(lm, random_ids(7), adapter=wrong)


def test_unwrappable_object_is_rejected():
    class Fake:
        __module__ = "nnsight.fake"

    with pytest.raises(rw.UnsupportedModelError, match="LanguageModel"):
        rw.decompose(Fake(), [1, 2, 3])


@pytest.mark.slow
def test_smollm2_parity(smollm2):
    model, tok = smollm2
    prompt = "The capital of France is"
    ref = rw.decompose(model, prompt, tokenizer=tok)
    lm = wrap(model, tok)
    dec = rw.decompose(lm, prompt)
    torch.testing.assert_close(dec.deltas, ref.deltas, rtol=0, atol=0)
    paris = " Paris"
    torch.testing.assert_close(dec.contributions(paris), ref.contributions(paris))
    r = rw.decompose_remote(lm, prompt, target=paris, k=10, remote="local")
    torch.testing.assert_close(r.deltas, ref.deltas, rtol=0, atol=0)
    lens = ref.logit_lens(k=10)
    assert (r.lens_top_ids == lens.top_ids).float().mean() > 0.999  # ties may order differently
    torch.testing.assert_close(r.lens_top_probs, lens.top_probs, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(r.contributions(-1), ref.contributions(paris), atol=1e-4, rtol=1e-4)
    assert r.readout_error < 1e-4
