"""SAE features: the exact split, SAELens's folder and activation functions, foreign SAE objects."""
import json

import pytest
import torch
from safetensors.torch import save_file

import resid_widgets as rw
from models_zoo import build, random_ids
from resid_widgets.errors import SAEError
from resid_widgets.sae import collect_states, features_payload
from resid_widgets.views.payload import decode_payload

D, D_SAE = 32, 96


def random_sae(architecture="standard", seed=0, d=D, **kw) -> rw.SparseAutoencoder:
    gen = torch.Generator().manual_seed(seed)
    W_enc = torch.randn(d, D_SAE, generator=gen) / d ** 0.5
    extra = {"threshold": 0.05 + 0.1 * torch.rand(D_SAE, generator=gen)} if architecture == "jumprelu" else {}
    if architecture == "topk":
        extra["k"] = 8
    return rw.SparseAutoencoder(W_enc, 0.05 * torch.randn(D_SAE, generator=gen), torch.randn(D_SAE, d, generator=gen),
                                0.1 * torch.randn(d, generator=gen), architecture=architecture, **extra, **kw)


@pytest.fixture(scope="module")
def dec():
    return rw.decompose(build("llama"), random_ids(9))


def state_dla(dec, index, target, pos):
    """The DLA of a whole state: the sum of its components' DLA."""
    return float(dec.contributions(target, pos, "dla")[: index + 1].sum())


@pytest.mark.parametrize("architecture", ["standard", "jumprelu", "topk"])
@pytest.mark.parametrize("state", ["mlp.0", "blocks.1.hook_resid_mid", "blocks.0.hook_resid_pre"])
def test_split_is_exact(dec, architecture, state):
    sae = random_sae(architecture)
    result = dec.sae_features(sae, state=state, position=4, k=5, target=7)
    index = dec.index(result.state)
    x = dec.states[index, 4]
    torch.testing.assert_close(result.vectors.sum(0), x, atol=1e-5, rtol=1e-5)
    assert result.labels[-3:] == ["other features", "decoder bias", "error"]
    assert len(result.labels) == min(5, result.n_active) + 3
    torch.testing.assert_close(result.vectors[-2], sae.b_dec)
    torch.testing.assert_close(result.vectors[-1], x - sae.decode(sae.encode(x[None]))[0], atol=1e-5, rtol=1e-5)
    # each shown feature's row is f_i W_dec[i]
    f = sae.encode(x[None])[0]
    for row, i in zip(result.vectors, result.feature_ids):
        torch.testing.assert_close(row, f[i] * sae.W_dec[i])
    assert torch.equal(result.activations, f[result.feature_ids])
    assert result.n_active == int((f != 0).sum())
    assert result.dla.sum().item() == pytest.approx(state_dla(dec, index, 7, 4), rel=1e-4, abs=1e-4)


def test_resid_hook_names_map_onto_grid_states(dec):
    sae = random_sae()
    assert dec.sae_features(sae, state="blocks.1.hook_resid_post").state == "mlp.1"
    assert dec.sae_features(sae, state="blocks.1.hook_resid_pre").state == "mlp.0"
    assert dec.sae_features(sae, state="blocks.0.hook_resid_pre").state == "embed"
    gpt2 = rw.decompose(build("gpt2"), random_ids(5))
    assert gpt2.sae_features(sae, state="blocks.0.hook_resid_pre").state == "pos_embed"


def test_activation_functions_follow_saelens():
    x = torch.randn(5, D, generator=torch.Generator().manual_seed(1))
    relu, jump, topk = random_sae("standard"), random_sae("jumprelu"), random_sae("topk")
    pre = relu.pre_activations(x)
    torch.testing.assert_close(pre, (x - relu.b_dec) @ relu.W_enc + relu.b_enc)
    assert torch.equal(relu.encode(x), pre.relu())
    pre = jump.pre_activations(x)
    assert torch.equal(jump.encode(x), pre.relu() * (pre > jump.threshold))
    pre = topk.pre_activations(x)
    f = topk.encode(x)
    assert ((f != 0).sum(-1) <= 8).all()
    kept = pre.topk(8, -1)
    assert torch.equal(f.gather(-1, kept.indices), kept.values.relu())
    # rescaled by the decoder norm: top k of pre * |W_dec[i]|, decoded with f / |W_dec[i]|
    scaled = random_sae("topk", rescale_acts_by_decoder_norm=True)
    pre = scaled.pre_activations(x)
    norms = scaled.W_dec.norm(dim=-1)
    f = scaled.encode(x)
    assert torch.equal(f.gather(-1, (pre * norms).topk(8, -1).indices), (pre * norms).topk(8, -1).values.relu())
    torch.testing.assert_close(scaled.decode(f), (f / norms) @ scaled.W_dec + scaled.b_dec)


@pytest.mark.parametrize("architecture", ["standard", "jumprelu", "topk"])
def test_saelens_folder_round_trip(architecture, tmp_path, dec):
    sae = random_sae(architecture, state="mlp.1", model_name="tiny-llama")
    folder = sae.save(tmp_path / "sae")
    assert sorted(p.name for p in folder.iterdir()) == ["cfg.json", "sae_weights.safetensors"]
    loaded = rw.SparseAutoencoder.load(folder)
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        assert torch.equal(getattr(loaded, name), getattr(sae, name))
    assert (loaded.architecture, loaded.k, loaded.state, loaded.model_name) == (architecture, sae.k, "mlp.1", "tiny-llama")
    x = dec.states[3]
    assert torch.equal(loaded.encode(x), sae.encode(x))


def write_saelens_folder(folder, cfg, weights):
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in weights.items()}, str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps(cfg))


def test_reads_saelens_6_and_older_configs(tmp_path, dec):
    ref = random_sae("jumprelu")
    weights = {"W_enc": ref.W_enc, "b_enc": ref.b_enc, "W_dec": ref.W_dec, "b_dec": ref.b_dec,
               "threshold": ref.threshold}
    # SAELens 6.x: architecture + metadata (as SAE.save_model writes cfg.to_dict())
    write_saelens_folder(tmp_path / "v6", {
        "d_in": D, "d_sae": D_SAE, "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": True,
        "normalize_activations": "none", "reshape_activations": "none", "architecture": "jumprelu",
        "metadata": {"sae_lens_version": "6.18.0", "hook_name": "blocks.1.hook_resid_post", "model_name": "tiny"}},
        weights)
    sae = rw.SparseAutoencoder.load(tmp_path / "v6")
    assert sae.architecture == "jumprelu" and torch.equal(sae.threshold, ref.threshold)
    result = dec.sae_features(sae)  # the state comes from the SAE's hook name
    assert result.state == "mlp.1"
    # before 6.0: flat keys, hook_point, activation_fn_str "topk" with its k in activation_fn_kwargs
    topk = random_sae("topk", seed=2)
    write_saelens_folder(tmp_path / "old", {
        "d_in": D, "d_sae": D_SAE, "dtype": "torch.float32", "hook_point": "blocks.0.hook_resid_post",
        "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 8}, "normalize_activations": False,
        "model_name": "tiny"},
        {"W_enc": topk.W_enc, "b_enc": topk.b_enc, "W_dec": topk.W_dec, "b_dec": topk.b_dec})
    old = rw.SparseAutoencoder.load(tmp_path / "old")
    assert (old.architecture, old.k, old.state) == ("topk", 8, "blocks.0.hook_resid_post")
    assert dec.sae_features(old).state == "mlp.0"


def test_refusals_name_the_problem(tmp_path, dec):
    with pytest.raises(SAEError, match="d_model=32"):
        dec.sae_features(random_sae(d=16), state="mlp.0")
    with pytest.raises(SAEError, match="Which state"):
        dec.sae_features(random_sae())
    with pytest.raises(SAEError, match="trained on 'mlp.1'"):
        dec.sae_features(random_sae(state="mlp.1"), state="attn.1")
    with pytest.raises(SAEError, match="not an SAELens folder"):
        rw.SparseAutoencoder.load(tmp_path)
    ref = random_sae()
    weights = {"W_enc": ref.W_enc, "b_enc": ref.b_enc, "W_dec": ref.W_dec, "b_dec": ref.b_dec}
    write_saelens_folder(tmp_path / "gated", {"d_in": D, "d_sae": D_SAE, "architecture": "gated"}, weights)
    with pytest.raises(SAEError, match="'gated' is not supported"):
        rw.SparseAutoencoder.load(tmp_path / "gated")
    write_saelens_folder(tmp_path / "norm", {"d_in": D, "d_sae": D_SAE, "architecture": "standard",
                                             "normalize_activations": "layer_norm"}, weights)
    with pytest.raises(SAEError, match="layer_norm"):
        rw.SparseAutoencoder.load(tmp_path / "norm")
    with pytest.raises(SAEError, match="encode"):
        dec.sae_features(object(), state="mlp.0")


class PlainSAE(torch.nn.Module):
    """A user's SAE: encode/decode, with W_dec/b_dec, optionally decoding rescaled activations."""

    def __init__(self, ref, rescale=False, expose=True):
        super().__init__()
        self.W_enc, self.b_enc = torch.nn.Parameter(ref.W_enc), torch.nn.Parameter(ref.b_enc)
        weights = {"W_dec": torch.nn.Parameter(ref.W_dec), "b_dec": torch.nn.Parameter(ref.b_dec)}
        if expose:
            for k, v in weights.items():
                setattr(self, k, v)
        else:
            self.hidden = torch.nn.ParameterDict(weights)
        self.rescale = rescale

    def _dec(self):
        return (self.W_dec, self.b_dec) if hasattr(self, "W_dec") else (self.hidden["W_dec"], self.hidden["b_dec"])

    def encode(self, x):
        return ((x - self._dec()[1]) @ self.W_enc + self.b_enc).relu()

    def decode(self, f):
        W, b = self._dec()
        return (f / W.norm(dim=-1) if self.rescale else f) @ W + b


@pytest.mark.parametrize("rescale, expose", [(False, True), (True, True), (False, False)])
def test_any_object_with_encode_and_decode(dec, rescale, expose):
    ref = random_sae()
    result = dec.sae_features(PlainSAE(ref, rescale, expose), state="attn.1", position=2, k=4)
    x = dec.states[dec.index("attn.1"), 2]
    torch.testing.assert_close(result.vectors.sum(0), x, atol=1e-5, rtol=1e-5)
    f = ref.encode(x[None])[0]
    direction = ref.W_dec / ref.W_dec.norm(dim=-1, keepdim=True) if rescale else ref.W_dec
    for row, i in zip(result.vectors, result.feature_ids):
        torch.testing.assert_close(row, f[i] * direction[i], atol=1e-5, rtol=1e-5)


def test_rows_table_figure_and_payload(dec):
    result = dec.sae_features(random_sae("topk"), state="mlp.1", position=-1, k=3, target=5, order="abs_dla")
    assert [r["label"] for r in result.rows] == result.labels
    shown = result.rows[:3]
    assert all(r["feature"] is not None and len(r["bs_top"]) == 10 for r in shown)
    assert abs(shown[0]["dla"]) >= abs(shown[-1]["dla"])
    assert list(result.to_pandas().columns)[:3] == ["label", "feature", "activation"]
    assert len(result.figure().data[0].y) == len(result.labels)
    payload = features_payload(result)
    assert decode_payload(payload["vectors"]).shape == (len(result.labels), D)
    assert payload["feature_ids"][-1] is None and payload["labels"] == result.labels


@pytest.mark.slow
def test_trained_sae_on_smollm2_beats_a_random_dictionary(smollm2, paris):
    """A small top-k SAE trained on SmolLM2's mlp.14 states (offline text: stdlib docstrings),
    cached under rw.models.cache_dir(); its reconstruction beats a random dictionary's."""
    model, tok = smollm2
    folder = rw.models.cache_dir() / "test-sae-smollm2-mlp14-768"
    if (folder / "cfg.json").exists():
        sae = rw.SparseAutoencoder.load(folder)
        states = torch.load(folder / "held_out.pt", weights_only=True)
    else:
        texts = stdlib_texts()
        train = collect_states(model, texts[1::2], tok, "mlp.14", max_tokens=3072)
        states = collect_states(model, texts[::2], tok, "mlp.14", max_tokens=512)
        sae = rw.SparseAutoencoder.train(train, n_features=768, k=32, steps=150, batch_size=256, state="mlp.14",
                                         model_name="SmolLM2-135M-Instruct", progress=False)
        sae.save(folder)
        torch.save(states, folder / "held_out.pt")

    def unexplained(s):
        err = states - s.decode(s.encode(states))
        return float(err.pow(2).sum() / (states - states.mean(0)).pow(2).sum())

    gen = torch.Generator().manual_seed(0)
    W = torch.randn(sae.d_sae, sae.d_in, generator=gen)
    W /= W.norm(dim=-1, keepdim=True)
    random_dictionary = rw.SparseAutoencoder(W.t(), torch.zeros(sae.d_sae), W, states.mean(0), architecture="topk", k=sae.k)
    trained_fvu, random_fvu = unexplained(sae), unexplained(random_dictionary)
    assert trained_fvu < 0.5 * random_fvu, (trained_fvu, random_fvu)

    result = paris.sae_features(sae, k=20)  # "mlp.14", from the SAE
    x = paris.states[paris.index("mlp.14"), -1]
    torch.testing.assert_close(result.vectors.sum(0), x, atol=1e-4 * float(x.abs().max()), rtol=1e-5)
    assert result.target == " Paris" and result.n_active <= 32


def stdlib_texts() -> list[str]:
    """Docstrings of standard-library modules: English prose that ships with Python."""
    import importlib
    import inspect

    names = ["argparse", "asyncio", "collections", "csv", "dataclasses", "datetime", "decimal", "email",
             "functools", "http.client", "inspect", "json", "logging", "pathlib", "pickle", "random",
             "re", "shutil", "sqlite3", "statistics", "string", "subprocess", "tarfile", "textwrap",
             "threading", "typing", "unittest", "urllib.request", "uuid", "zipfile"]
    texts = []
    for name in names:
        module = importlib.import_module(name)
        texts += [inspect.getdoc(obj) for _, obj in inspect.getmembers(module)
                  if (inspect.isclass(obj) or inspect.isfunction(obj)) and getattr(obj, "__module__", "") == name
                  and inspect.getdoc(obj) and len(inspect.getdoc(obj)) > 200]
    return texts
