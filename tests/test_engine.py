"""Exactness of the decomposition on every supported family (tiny random models)."""
import math
import warnings

import pytest
import torch

import resid_widgets as rw
from models_zoo import VOCAB, build, random_ids, word_tokenizer


@pytest.fixture
def dec_of(family_model):
    family, model = family_model
    return family, model, rw.decompose(model, random_ids(11))


def test_shapes_labels_and_states(dec_of):
    family, model, dec = dec_of
    L = model.config.num_hidden_layers
    emb = ["embed", "pos_embed"] if family == "gpt2" else ["embed"]
    assert dec.labels == emb + [f"{k}.{i}" for i in range(L) for k in ("attn", "mlp")]
    C, T, d = len(dec.labels), 11, model.config.hidden_size
    assert dec.deltas.shape == (C, T, d) and dec.deltas.dtype == torch.float32
    assert dec.states.shape == (C, T, d)
    torch.testing.assert_close(dec.states, dec.deltas.cumsum(0))
    assert dec.token_ids.tolist() == random_ids(11).tolist()
    assert dec.logits.shape == (T, VOCAB)


def test_logits_and_additivity_exact(dec_of):
    family, model, dec = dec_of
    with torch.no_grad():
        ref = model(random_ids(11)[None]).logits[0]
    assert (dec.logits - ref).abs().max() <= 1e-3
    # the last state through the readout reproduces the model's logits
    assert (dec.readout.logits(dec.states[-1]) - ref).abs().max() <= 1e-3
    assert dec.additivity_error <= 1e-5


def test_lens_final_row_is_model_distribution(dec_of):
    family, model, dec = dec_of
    lens = dec.logit_lens(k=5)
    C, T = len(dec.labels), 11
    assert lens.top_ids.shape == (C, T, 5) and lens.top_probs.shape == (C, T, 5)
    probs = torch.softmax(dec.logits, -1)
    top_p, top_i = probs.topk(5, -1)
    torch.testing.assert_close(lens.top_probs[-1], top_p, atol=1e-5, rtol=1e-4)
    target = int(top_i[-1, 0])
    torch.testing.assert_close(lens.prob(target)[-1], probs[:, target], atol=1e-5, rtol=1e-4)
    assert lens.rank(target)[-1, -1] == 0
    ent = -(probs * probs.clamp_min(1e-30).log()).sum(-1)
    torch.testing.assert_close(lens.entropy()[-1], ent, atol=1e-4, rtol=1e-4)
    # every row is a distribution: top-k probs are sorted and below 1
    assert (lens.top_probs[..., :-1] >= lens.top_probs[..., 1:]).all()
    assert (lens.top_probs.sum(-1) <= 1 + 1e-5).all()


def test_dla_sums_to_logit(dec_of):
    family, model, dec = dec_of
    for pos in (-1, 3):
        target = dec.top_prediction(pos)
        dla = dec.contributions(target, position=pos, method="dla")
        total = float(dla.sum()) + dec.dla_constant(target, pos)
        logit = float(dec.logits[pos, target])
        cap = getattr(model.config, "final_logit_softcapping", None)
        if cap:  # DLA adds up to the logit before the final soft-cap
            logit = cap * math.atanh(logit / cap)
        assert abs(total - logit) <= 1e-3, (family, total, logit)
        grid = dec.dla_grid(target)
        torch.testing.assert_close(grid[:, pos], dla, atol=1e-5, rtol=1e-5)


def test_logprob_telescopes(dec_of):
    family, model, dec = dec_of
    target = dec.top_prediction(-1)
    lp = dec.contributions(target, position=-1, method="logprob")
    lens_lp = dec.logit_lens(k=1).logprob(target)[:, -1]
    assert lp.shape == (len(dec.labels),) and lp[0] == 0
    assert abs(float(lp.sum()) - float(lens_lp[-1] - lens_lp[0])) <= 1e-4
    assert abs(float(lens_lp[-1]) - dec.logprob(target, -1)) <= 1e-4
    # c-th value is log p(state c) - log p(state c-1), checked directly for one component
    c = 3
    direct = dec.readout.logprob(dec.states[[c - 1, c], -1], target)
    assert abs(float(direct[1] - direct[0]) - float(lp[c])) <= 1e-5
    frozen = dec.contributions(target, position=-1, method="logprob", norm="frozen")
    assert frozen.shape == lp.shape


def test_heads_sum_to_attention_delta(dec_of):
    family, model, dec = dec_of
    for layer in range(dec.n_layers):
        heads = dec.head_deltas(layer)
        assert heads.shape == (dec.n_heads + 1, 11, dec.d_model)
        torch.testing.assert_close(heads.sum(0), dec.deltas[dec.attn_index(layer)], atol=1e-5, rtol=1e-4)
    target = dec.top_prediction(-1)
    hc = dec.head_contributions(target, -1, "dla")
    dla = dec.contributions(target, -1, "dla")
    for layer in range(dec.n_layers):
        assert abs(float(hc[layer].sum() - dla[dec.attn_index(layer)])) <= 1e-4
    hl = dec.head_contributions(target, -1, "logprob")
    assert hl.shape == (dec.n_layers, dec.n_heads + 1) and torch.isfinite(hl).all()


def test_neurons_sum_to_mlp_dla(dec_of):
    family, model, dec = dec_of
    target = dec.top_prediction(-1)
    nd = dec.neuron_dla(target, -1)
    dla = dec.contributions(target, -1, "dla")
    r = dec.readout_direction(target, dec.n_tokens - 1)
    for layer in range(dec.n_layers):
        _, bias = dec.weights.mlp_out(layer)
        bias_term = 0.0
        if bias is not None:
            mult = dec.post_norm_multiplier("mlp", layer)
            b = bias if mult is None else bias * mult[-1]
            bias_term = float(b.cpu() @ r)
        assert abs(float(nd[layer].sum()) + bias_term - float(dla[dec.mlp_index(layer)])) <= 1e-4
    top = dec.top_neurons(target, -1, n=3)
    assert len(top) == 3 and top[0].dla >= top[1].dla >= top[2].dla
    assert len(top[0].bs_top) == 10 and top[0].bs_top[0][1] >= top[0].bs_top[-1][1]
    by_lp = dec.top_neurons(target, -1, n=3, method="logprob")
    assert all(n.logprob_increase is not None for n in by_lp)
    assert by_lp[0].logprob_increase >= by_lp[-1].logprob_increase


def test_model_left_exactly_as_found():
    model = build("llama").train()
    model.model.layers[0].eval()
    model.lm_head.weight.requires_grad_(False)
    before = [(m.training) for m in model.modules()]
    grads = [p.requires_grad for p in model.parameters()]
    rw.decompose(model, random_ids(5))
    assert [m.training for m in model.modules()] == before
    assert [p.requires_grad for p in model.parameters()] == grads
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    with pytest.raises(rw.PromptError):
        rw.decompose(model, random_ids(200))  # too long: raises before touching the model
    # a run that raises inside the forward also leaves nothing behind
    model.model.layers[1].mlp.register_forward_hook(lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    hook_count = sum(len(m._forward_hooks) for m in model.modules())
    with pytest.raises(RuntimeError, match="boom"):
        rw.decompose(model, random_ids(5))
    assert sum(len(m._forward_hooks) for m in model.modules()) == hook_count
    assert not any(m._forward_pre_hooks for m in model.modules())
    assert [m.training for m in model.modules()] == before


def test_bad_inputs_name_the_problem():
    model = build("llama")
    with pytest.raises(rw.PromptError, match="empty"):
        rw.decompose(model, torch.tensor([], dtype=torch.long))
    with pytest.raises(rw.PromptError, match="empty"):
        rw.decompose(model, "", tokenizer=object())
    with pytest.raises(rw.PromptError, match="tokenizer"):
        rw.decompose(model, "hello")
    with pytest.raises(rw.PromptError, match="context"):
        rw.decompose(model, random_ids(65))
    with pytest.raises(rw.PromptError, match="shape"):
        rw.decompose(model, torch.zeros(2, 3, dtype=torch.long))
    dec = rw.decompose(model, random_ids(5))
    with pytest.raises(rw.TargetError, match="vocabulary"):
        dec.contributions(VOCAB + 3)
    with pytest.raises(rw.TargetError, match="tokenizer"):
        dec.contributions("Paris")
    with pytest.raises(IndexError, match="position"):
        dec.contributions(1, position=9)
    with pytest.raises(ValueError, match="method"):
        dec.contributions(1, method="shapley")
    with pytest.raises(IndexError, match="layer"):
        dec.head_deltas(7)
    with pytest.raises(IndexError, match="neuron"):
        dec.neuron_vectors(0, [10_000])


def test_unsupported_and_non_causal_models():
    from transformers import BertConfig, BertModel, LlamaConfig, LlamaModel

    bert = BertModel(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                intermediate_size=64))
    with pytest.raises(rw.UnsupportedModelError) as e:
        rw.decompose(bert, random_ids(5))
    msg = str(e.value)
    assert "bert" in msg and "GPT-2" in msg and "register_adapter" in msg
    base = LlamaModel(LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                  num_attention_heads=4))
    with pytest.raises(rw.UnsupportedModelError, match="causal language model"):
        rw.decompose(base, random_ids(5))
    with pytest.raises(rw.UnsupportedModelError, match="torch.nn.Module"):
        rw.decompose("gpt2", random_ids(5))


def test_wrong_adapter_is_caught_by_additivity_check():
    import dataclasses

    model = build("gemma2")
    wrong = dataclasses.replace(rw.adapters.families.GEMMA2, attn_post_norm=None, mlp_post_norm=None)
    with pytest.raises(rw.AdditivityError, match="adapter"):
        rw.decompose(model, random_ids(5), adapter=wrong)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_accumulates_in_fp32(dtype):
    model = build("llama").to(dtype)
    dec = rw.decompose(model, random_ids(9))
    assert dec.deltas.dtype == torch.float32 and dec.logits.dtype == torch.float32 and dec.dtype == dtype
    assert dec.additivity_error < 5e-2
    with torch.no_grad():  # the same call as decompose's (transformers 4.56 masks otherwise with a cache)
        ref = model(random_ids(9)[None], use_cache=False).logits[0].float()
    assert (dec.logits - ref).abs().max() == 0


def test_nonfinite_is_reported():
    model = build("llama")
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight[0, 0] = float("inf")
    with pytest.warns(rw.NonFiniteWarning, match="NaN/inf"):
        dec = rw.decompose(model, random_ids(5))
    assert "mlp.1" in dec.nonfinite and dec.nonfinite["mlp.1"] > 0


def test_custom_adapter_for_new_family():
    import dataclasses

    model = build("llama")
    model.config.model_type = "my_llama_fork"
    with pytest.raises(rw.UnsupportedModelError, match="my_llama_fork"):
        rw.decompose(model, random_ids(5))
    adapter = dataclasses.replace(rw.adapters.families.LLAMA, name="fork", model_types=("my_llama_fork",))
    dec = rw.decompose(model, random_ids(5), adapter=adapter)
    assert dec.additivity_error <= 1e-5


def test_token_ids_as_list_and_batch_of_one():
    model = build("qwen2")
    ids = random_ids(6)
    a = rw.decompose(model, ids.tolist())
    b = rw.decompose(model, ids[None])
    torch.testing.assert_close(a.deltas, b.deltas)
    assert a.tokens == [f"<{i}>" for i in ids.tolist()]


# --------------------------------------------------------------------------------------------
# The readout self-check, non-finite logits, tokenizers, small inputs (issue 9)
# --------------------------------------------------------------------------------------------
def test_olmo_has_its_own_declaration_and_the_readout_check_catches_the_llama_one():
    # OLMo's norms are LayerNorms without weights: read through Llama's RMSNorm declaration its
    # DLA sum missed the logit by ~1e-3 and the lens its log-probs by ~0.02, silently
    model = build("olmo")
    assert rw.adapters.adapter_for(model).norm_kind == "layer"
    dec = rw.decompose(model, random_ids(11))
    torch.testing.assert_close(dec.readout.logits(dec.states[-1]), dec.logits, atol=1e-5, rtol=1e-5)
    with pytest.raises(rw.ReadoutError, match="do not reproduce the model's own output"):
        rw.decompose(model, random_ids(11), adapter=rw.adapters.families.LLAMA)


def test_wrong_readout_raises_in_fp32_and_warns_in_half_precision():
    import dataclasses

    no_offset = dataclasses.replace(rw.adapters.families.GEMMA, norm_offset=0.0)  # Gemma's gain is 1 + weight
    model = build("gemma")
    with pytest.raises(rw.ReadoutError, match="adapter="):
        rw.decompose(model, random_ids(7), adapter=no_offset)
    model = build("gemma").to(torch.bfloat16)
    with pytest.warns(UserWarning, match="do not reproduce the model's own output"):
        dec = rw.decompose(model, random_ids(7), adapter=no_offset)
    assert dec.deltas.shape[0] == len(dec.labels)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*do not reproduce")  # the right declaration: no warning
        rw.decompose(model, random_ids(7))


def test_nan_in_the_final_norm_is_reported_in_nonfinite():
    model = build("llama")
    with torch.no_grad():
        model.model.norm.weight[3] = float("nan")
    with pytest.warns(rw.NonFiniteWarning, match="output logits"):
        dec = rw.decompose(model, random_ids(5))
    assert dec.nonfinite == {"logits": 5 * VOCAB}  # the stream itself is finite
    assert not torch.isfinite(dec.logits).any()


def test_a_tokenizer_of_another_model_is_refused():
    model = build("llama")  # vocabulary 97, bos 1, eos 2
    dec = rw.decompose(model, "w5 w7 w9", tokenizer=word_tokenizer(VOCAB))
    assert dec.tokens == ["w5", "w7", "w9"] and dec.target_id("w9") == 9
    with pytest.raises(rw.TokenizerError, match="300 tokens.*vocabulary has 97"):
        rw.decompose(model, "w5 w7", tokenizer=word_tokenizer(300))
    with pytest.raises(rw.TokenizerError, match="BOS token id is 40"):
        rw.decompose(model, "w5 w7", tokenizer=word_tokenizer(VOCAB, bos="w40", eos="w41"))
    with pytest.raises(rw.TokenizerError, match="EOS token id is 41"):
        rw.decompose(model, "w5 w7", tokenizer=word_tokenizer(VOCAB, eos="w41"))
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_numpy_integers_are_accepted_and_bools_floats_refused():
    np = pytest.importorskip("numpy")
    model = build("llama")
    ids = random_ids(6)
    ref = rw.decompose(model, ids)
    for prompt in (ids.numpy(), ids.numpy()[None], [np.int64(i) for i in ids.tolist()]):
        torch.testing.assert_close(rw.decompose(model, prompt).deltas, ref.deltas)
    target = ref.top_prediction(-1)
    torch.testing.assert_close(ref.contributions(np.int64(target), np.int32(2)), ref.contributions(target, 2))
    torch.testing.assert_close(ref.contributions(torch.tensor(target), torch.tensor(-1)), ref.contributions(target))
    torch.testing.assert_close(ref.head_deltas(np.int64(1)), ref.head_deltas(1))
    lens = ref.logit_lens(k=np.int64(3))
    assert lens.top_ids.shape[-1] == 3
    torch.testing.assert_close(lens.prob(np.int64(target)), lens.prob(target))
    with pytest.raises(TypeError, match="position must be an integer, not a bool"):
        ref.contributions(target, position=True)
    with pytest.raises(TypeError, match="position must be an integer, not float"):
        ref.contributions(target, position=1.0)
    with pytest.raises(TypeError, match="layer must be an integer"):
        ref.head_deltas(False)
    with pytest.raises(TypeError, match="k .* must be an integer, not float"):
        ref.logit_lens(k=2.5)
    with pytest.raises(TypeError, match="k .* must be an integer, not a bool"):
        ref.logit_lens(k=True)
    with pytest.raises(rw.TargetError, match="not a token|integer token id"):
        ref.contributions(True)
    with pytest.raises(rw.TargetError, match="integer token id"):
        ref.contributions(2.0)
    with pytest.raises(IndexError, match="neuron index"):
        rw.analysis.neuron_input_shares(ref, layer=np.int64(0), neuron=np.int64(10_000))
    rw.analysis.neuron_input_shares(ref, layer=np.int64(0), neuron=np.int64(3))
    with pytest.raises(TypeError, match="must be an integer, not a bool"):
        rw.analysis.neuron_input_shares(ref, layer=0, neuron=True)


def test_empty_inputs_name_the_problem():
    model = build("llama")
    for empty in ([], (), torch.tensor([], dtype=torch.long), torch.zeros(1, 0, dtype=torch.long)):
        with pytest.raises(rw.PromptError, match="empty"):
            rw.decompose(model, empty)
    with pytest.raises(rw.PromptError, match="integers, got torch.float32"):
        rw.decompose(model, [1.0, 2.0])
    dec = rw.decompose(model, "w5 w7", tokenizer=word_tokenizer(VOCAB))
    with pytest.raises(rw.TargetError, match="empty"):
        dec.contributions("")
    with pytest.raises(rw.TargetError, match="is 2 tokens"):
        dec.contributions("w3 w4")


def test_a_model_on_the_meta_device_is_refused_clearly():
    from transformers import LlamaConfig, LlamaForCausalLM

    from models_zoo import COMMON

    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**COMMON))
    with pytest.raises(rw.UnsupportedModelError, match="meta device.*from_pretrained"):
        rw.decompose(model, random_ids(5))


def test_the_unsupported_model_error_points_to_a_file_that_exists():
    from pathlib import Path
    import re

    model = build("llama")
    model.config.model_type = "not_a_family"
    with pytest.raises(rw.UnsupportedModelError) as e:
        rw.decompose(model, random_ids(5))
    path = re.search(r"resid_widgets/\S+\.py", str(e.value)).group(0)
    assert (Path(rw.__file__).parent.parent / path).is_file(), path
