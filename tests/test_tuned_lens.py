"""Tuned lens: identity = logit lens, training lowers KL, the tuned-lens package's folder layout."""
import hashlib
import json

import numpy as np
import pytest
import torch

import resid_widgets as rw
from models_zoo import build, random_ids
from resid_widgets.errors import TunedLensError
from resid_widgets.states import state_index
from resid_widgets.tuned_lens import kl_to_final, lens_payload
from resid_widgets.views.payload import decode_payload

# the tuned-lens package's TunedLensConfig fields (tuned_lens/nn/lenses.py)
PACKAGE_CONFIG_FIELDS = {"base_model_name_or_path", "d_model", "num_hidden_layers", "bias",
                         "base_model_revision", "unembed_hash", "lens_type"}


def package_hash(weight: torch.Tensor) -> str:
    """tuned_lens.utils.tensor_hash of Unembed.unembedding.weight, as that package computes it."""
    return hashlib.sha256(str.encode(np.array_str(weight.detach().cpu().float().numpy(), precision=1))).hexdigest()


def texts(n: int, length: int = 24, seed: int = 100):
    return [random_ids(length, seed=seed + i) for i in range(n)]


def sharpened(family: str, seed: int = 0) -> torch.nn.Module:
    """A tiny random model whose layers change the prediction a lot (larger output projections,
    a sharper unembedding), so the logit lens is far from the final distribution."""
    model = build(family, seed)
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(6)
        for name, p in model.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                p.mul_(4)
    return model


@pytest.fixture(scope="module")
def llama():
    return sharpened("llama")


@pytest.fixture(scope="module")
def trained(llama):
    return rw.TunedLens.train(llama, texts(6), steps=20, tokens_per_step=64, progress=False)


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma2"])
def test_identity_lens_is_the_logit_lens(family):
    model = build(family)
    dec = rw.decompose(model, random_ids(9))
    lens = rw.TunedLens.identity(dec)
    plain, tuned = dec.logit_lens(5), dec.logit_lens(5, lens=lens)
    assert tuned is not plain and isinstance(tuned, rw.LensResult)
    assert torch.equal(tuned.top_ids, plain.top_ids)
    assert torch.equal(tuned.top_probs, plain.top_probs)
    assert torch.equal(tuned.entropy(), plain.entropy())
    assert torch.equal(kl_to_final(dec, lens), kl_to_final(dec))
    assert dec.logit_lens(5, lens=lens) is tuned  # cached per lens, beside the logit lens
    assert dec.logit_lens(5) is plain


def test_kl_to_final_matches_a_direct_computation(llama):
    dec = rw.decompose(llama, random_ids(7))
    kl = kl_to_final(dec)
    logp_final = torch.log_softmax(dec.logits.double(), -1)
    lens_logits = dec.readout.logits(dec.states.reshape(-1, dec.d_model)).double().view(len(dec.labels), 7, -1)
    direct = (logp_final.exp() * (logp_final - torch.log_softmax(lens_logits, -1))).sum(-1)
    torch.testing.assert_close(kl.double(), direct, atol=2e-5, rtol=1e-4)
    assert float(kl[-1].abs().max()) < 1e-4  # the last state is the model's output


def mean_kl(model, lens, corpus) -> torch.Tensor:
    """[C] KL to the final distribution, mean over every position of every text."""
    return torch.cat([kl_to_final(rw.decompose(model, ids), lens) for ids in corpus], 1).mean(1)


def test_training_lowers_kl_at_every_state(llama, trained):
    """The objective falls for every translator (held-out text: the SmolLM2 benchmark; a random
    model has little a linear translator can generalise)."""
    logit, tuned = mean_kl(llama, None, texts(6)), mean_kl(llama, trained, texts(6))
    assert float(logit[0]) > 0.1  # far from the final distribution to begin with
    assert (tuned[:-1] < 0.9 * logit[:-1]).all(), (logit, tuned)
    assert len(trained.history) == 20 and trained.history[-1] < trained.history[0]


def test_training_is_seeded_and_leaves_the_model_as_found(llama):
    llama.train()
    flags = [p.requires_grad for p in llama.parameters()]
    a = rw.TunedLens.train(llama, texts(4), steps=3, tokens_per_step=30, seed=1, progress=False)
    b = rw.TunedLens.train(llama, texts(4), steps=3, tokens_per_step=30, seed=1, progress=False)
    assert all(torch.equal(a.translators[k][0], b.translators[k][0]) for k in a.translators)
    assert llama.training and [p.requires_grad for p in llama.parameters()] == flags
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in llama.modules())
    assert all(p.grad is None for p in llama.parameters())
    llama.eval()


@pytest.mark.parametrize("precision, optimizer", [("bfloat16", "sgd"), ("float32", "adam")])
def test_other_precision_and_optimizer_lower_kl(precision, optimizer):
    model = sharpened("gemma2")  # with a final soft-cap
    lens = rw.TunedLens.train(model, texts(4), steps=10, tokens_per_step=64, precision=precision,
                              optimizer=optimizer, progress=False)
    logit, tuned = mean_kl(model, None, texts(4)), mean_kl(model, lens, texts(4))
    assert (tuned[:-1] < logit[:-1]).all(), (logit, tuned)


def test_one_translator_per_grid_state(trained, llama):
    dec = rw.decompose(llama, random_ids(5))
    assert trained.translated(dec) == [True] * (len(dec.labels) - 1) + [False]
    assert set(trained.translators) == {"blocks.0.hook_resid_pre", "attn.0", "mlp.0", "attn.1"}
    # the transform is h + W h + b, state by state
    moved = trained.transform(dec)
    W, b = trained.translators["attn.1"]
    c = dec.index("attn.1")
    torch.testing.assert_close(moved[c], dec.states[c] + dec.states[c] @ W.T + b)
    assert torch.equal(moved[-1], dec.states[-1])


def test_save_load_round_trip_in_the_package_layout(trained, llama, tmp_path):
    folder = trained.save(tmp_path / "lens")
    config = json.loads((folder / "config.json").read_text())
    assert set(config) == PACKAGE_CONFIG_FIELDS
    assert config["num_hidden_layers"] == 2 and config["d_model"] == 32 and config["lens_type"] == "linear_tuned_lens"
    assert config["unembed_hash"] == package_hash(llama.lm_head.weight)
    blocks = torch.load(folder / "params.pt", weights_only=True)
    assert set(blocks) == {"0.weight", "0.bias", "1.weight", "1.bias"}  # the package's ModuleList keys
    torch.testing.assert_close(blocks["1.weight"], trained.translators["mlp.0"][0], rtol=0, atol=0)
    sub = torch.load(folder / "sublayer_params.pt", weights_only=True)
    assert set(sub) == {"attn.0.weight", "attn.0.bias", "attn.1.weight", "attn.1.bias"}

    loaded = rw.TunedLens.load(folder)
    assert set(loaded.translators) == set(trained.translators)
    for key, (W, b) in trained.translators.items():
        assert torch.equal(loaded.translators[key][0], W) and torch.equal(loaded.translators[key][1], b)
    dec = rw.decompose(llama, random_ids(6))
    assert torch.equal(dec.logit_lens(4, lens=loaded).top_ids, dec.logit_lens(4, lens=trained).top_ids)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_loads_a_folder_written_by_the_tuned_lens_package(family, tmp_path):
    """A folder as tuned_lens.TunedLens.save writes it (config.json + params.pt, translators in the
    unembedding's dtype): translator i reads hidden_states[i], the stream entering block i."""
    model = build(family)
    d, L = model.config.hidden_size if family != "gpt2" else model.config.n_embd, 2
    gen = torch.Generator().manual_seed(3)
    state = {}
    for i in range(L):
        state[f"{i}.weight"] = (0.05 * torch.randn(d, d, generator=gen)).half()
        state[f"{i}.bias"] = (0.05 * torch.randn(d, generator=gen)).half()
    folder = tmp_path / "package_lens"
    folder.mkdir()
    torch.save(state, folder / "params.pt")
    (folder / "config.json").write_text(json.dumps({
        "base_model_name_or_path": "tiny", "d_model": d, "num_hidden_layers": L, "bias": True,
        "base_model_revision": None, "unembed_hash": package_hash(model.get_output_embeddings().weight),
        "lens_type": "linear_tuned_lens"}))
    lens = rw.TunedLens.load(folder)
    ids = random_ids(8)
    dec = rw.decompose(model, ids)
    with torch.no_grad():
        hidden = model(input_ids=ids[None], output_hidden_states=True).hidden_states
    translated = lens.transform(dec)
    for i in range(L):
        c = state_index(dec, f"blocks.{i}.hook_resid_pre")
        torch.testing.assert_close(dec.states[c], hidden[i][0], atol=1e-5, rtol=1e-5)
        W, b = state[f"{i}.weight"].float(), state[f"{i}.bias"].float()
        torch.testing.assert_close(translated[c], hidden[i][0] + hidden[i][0] @ W.T + b, atol=1e-4, rtol=1e-4)
    expected = [c in {state_index(dec, f"blocks.{i}.hook_resid_pre") for i in range(L)}
                for c in range(len(dec.labels))]
    assert lens.translated(dec) == expected  # attn.l rows (and GPT-2's token-only embed) stay the logit lens


def test_refuses_a_lens_of_another_model(trained, tmp_path):
    other = sharpened("llama", seed=1)  # same shapes, other weights
    with pytest.raises(TunedLensError, match="trained for another model"):
        rw.decompose(other, random_ids(5)).logit_lens(3, lens=trained)
    wider = build("qwen3")
    wider_dec = rw.decompose(wider, random_ids(5))
    small = rw.TunedLens.identity(wider_dec)
    small.d_model = 16
    with pytest.raises(TunedLensError, match="d_model=16"):
        wider_dec.logit_lens(3, lens=small)
    with pytest.raises(TunedLensError, match="not a tuned lens folder"):
        rw.TunedLens.load(tmp_path)


def test_lens_payload_for_views(trained, llama):
    dec = rw.decompose(llama, random_ids(6))
    logit, tuned = lens_payload(dec, None, k=3), lens_payload(dec, trained, k=3)
    assert logit["name"] == "logit lens" and tuned["name"] == "tuned lens"
    assert decode_payload(tuned["lens_ids"]).shape == (len(dec.labels), 6, 3)
    assert tuned["translated"][-1] is False and all(tuned["translated"][:-1])
    assert decode_payload(tuned["kl"]).mean() < decode_payload(logit["kl"]).mean()


@pytest.mark.parametrize("family", ["llama", "gemma2", "gpt2"])
def test_gradient_matches_autograd(family):
    """The hand-written KL gradient (softmax - p_final, through soft-cap, unembedding and norm)
    equals autograd of the KL written out."""
    from resid_widgets.tuned_lens import _fit_chunk, _Unembed

    model = sharpened(family)
    dec = rw.decompose(model, random_ids(10))
    keys, weight, bias = rw.TunedLens.identity(dec)._leaves(dec)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for W, b in zip(weight, bias):
            W.copy_(0.1 * torch.randn(W.shape, generator=gen))
            b.copy_(0.1 * torch.randn(b.shape, generator=gen))
    kl = _fit_chunk(dec, weight, bias, _Unembed(dec.readout), grad_scale=0.5)

    ref_W = [W.detach().clone().requires_grad_() for W in weight]
    ref_b = [b.detach().clone().requires_grad_() for b in bias]
    logp_final = torch.log_softmax(dec.logits, -1)
    total, per_state = 0.0, []
    for s, (W, b) in enumerate(zip(ref_W, ref_b)):
        h = dec.states[s]
        ro = dec.readout
        logits = torch.nn.functional.linear(ro.norm(h + h @ W.T + b), ro.unembed, ro.unembed_bias)
        if ro.softcap:
            logits = ro.softcap * torch.tanh(logits / ro.softcap)
        logq = torch.log_softmax(logits, -1)
        per_state.append((logp_final.exp() * (logp_final - logq)).sum(-1).sum())
        total = total + per_state[-1]
    (0.5 * total).backward()
    torch.testing.assert_close(kl, torch.stack(per_state).detach(), rtol=1e-4, atol=1e-4)
    for mine, ref in zip(weight + bias, ref_W + ref_b):
        torch.testing.assert_close(mine.grad, ref.grad, rtol=1e-3, atol=1e-5)
