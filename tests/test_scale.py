"""Scale: long prompts with bounded memory (sizes, not timings), model-dtype deltas until read
(the accelerator path, emulated on the CPU), and the GPU benchmark's --tiny smoke run."""
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers as tf

import resid_widgets as rw
from resid_widgets.backends import huggingface
from resid_widgets.export import DEFAULT_BUDGET_BYTES, snapshot_html
from resid_widgets.lens import CHUNK_BYTES, MIN_CHUNK_ROWS, Readout
from resid_widgets.views import payload as P

ROOT = Path(__file__).resolve().parents[1]
T_LONG = 4096


def long_context_llama(vocab=2048, dtype=torch.float32):
    """A tiny random Llama whose context holds 8192 tokens (no downloads)."""
    torch.manual_seed(0)
    cfg = tf.LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192)
    return tf.LlamaForCausalLM(cfg).to(dtype).eval()


def ids(T, vocab, seed=0):
    return torch.randint(0, vocab, (T,), generator=torch.Generator().manual_seed(seed))


def expected_bytes(model, T):
    """What a Decomposition of an fp32 Llama holds: deltas, logits, head and neuron inputs."""
    c = model.config
    C, L, d = 1 + 2 * c.num_hidden_layers, c.num_hidden_layers, c.hidden_size
    return {"deltas": C * T * d * 4, "logits": T * c.vocab_size * 4, "head_inputs": L * T * d * 4,
            "neuron_acts": L * T * c.intermediate_size * 4}


def chunk_spy(monkeypatch):
    """Record the shape of every [rows, V] logits chunk the lens computes."""
    seen = []
    original = Readout.chunks

    def chunks(self, h, reuse=False):
        for rows, z in original(self, h, reuse=reuse):
            seen.append(tuple(z.shape))
            yield rows, z

    monkeypatch.setattr(Readout, "chunks", chunks)
    return seen


def test_long_prompt_memory_is_what_the_shapes_say(monkeypatch):
    model = long_context_llama()
    dec = rw.decompose(model, ids(T_LONG, 2048))
    held = dec.memory_bytes()
    want = expected_bytes(model, T_LONG)
    assert {k: held[k] for k in want} == want
    # nothing else: no states until read, no [C, T, V] anywhere
    assert held["states"] == 0 and held["post_norm_inputs"] == 0 and held["lens"] == 0
    seen = chunk_spy(monkeypatch)
    lens = dec.logit_lens(k=10)
    C, V = len(dec.labels), dec.vocab_size
    # the lens reads [C * T, V] logits in chunks that stay within the chunk budget
    assert sum(rows for rows, _ in seen) == C * T_LONG and len(seen) > 1
    assert max(rows for rows, _ in seen) * V * 4 <= max(CHUNK_BYTES, MIN_CHUNK_ROWS * V * 4)
    held = dec.memory_bytes()
    assert held["states"] == C * T_LONG * dec.d_model * 4
    assert held["lens"] == lens.nbytes() == C * T_LONG * (10 * 8 + 10 * 4 + 4)
    assert lens.top_ids.shape == (C, T_LONG, 10)


def test_long_prompt_snapshot_stays_within_budget_and_says_what_it_left_out():
    model = long_context_llama()
    dec = rw.decompose(model, ids(T_LONG, 2048))
    budget = 2_000_000
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "snapshot is ... bytes, over the budget"
        text = snapshot_html(rw.StreamGrid(dec), budget_bytes=budget)
    assert "Left out of this snapshot" in text
    assert "left out to fit the budget" in text and "vector panes embedded for" in text  # what it left out
    assert len(text.encode("utf-8")) <= budget * 1.05


@pytest.mark.parametrize("budget, kept", [(2_000_000, "float16"), (700_000, "left out")])
def test_long_prompt_dashboard_snapshot_fits_its_auto_targets_or_leaves_them_out(budget, kept):
    dec = rw.decompose(long_context_llama(), ids(T_LONG, 2048))
    dash = rw.Dashboard(dec)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "snapshot is ... bytes, over the budget"
        text = snapshot_html(dash, budget_bytes=budget)
    assert len(text.encode("utf-8")) <= budget * 1.05
    assert f"auto targets (each position&#x27;s own top token) {'embedded in' if kept == 'float16' else kept}" in text
    dash.close()


def test_prob8_round_trip_keeps_probabilities_within_half_a_step_and_nan():
    probs = np.array([[0.0, 1.0, 0.5], [1e-9, 0.999, np.nan]], dtype=np.float32)
    packed = P.array_payload(probs, "prob8")
    assert len(packed["data"]) == probs.size  # one byte each
    back = P.decode_payload(packed)
    assert np.isnan(back[1, 2]) and not np.isnan(back[:, :2]).any()
    np.testing.assert_allclose(back[:, :2], probs[:, :2], atol=0.5 / P.PROB8_STEPS)


def test_a_tight_long_prompt_snapshot_stores_the_lens_probabilities_in_8_bits():
    dec = rw.decompose(long_context_llama(), ids(1024, 2048))
    grid = rw.StreamGrid(dec)
    data = {name: getattr(grid, name) for name in ("_meta", "_arrays", "_targets", "_vocab")}
    smallest, _ = P.fit_payload(dec, data, 1)  # every step taken
    fitted, notes = P.fit_payload(dec, data, P.payload_bytes(smallest))  # reachable only with the last step
    assert any("8 bits" in note for note in notes) and not any("still over" in note for note in notes)
    assert fitted["_arrays"]["lens_probs"]["dtype"] == "prob8" and fitted["_arrays"]["next_prob"]["dtype"] == "prob8"
    full = P.decode_payload(grid._arrays["lens_probs"])[..., : fitted["_meta"]["k"]]
    np.testing.assert_allclose(P.decode_payload(fitted["_arrays"]["lens_probs"]), full, atol=0.5 / P.PROB8_STEPS + 1e-3)
    grid.close()


def test_accelerator_path_keeps_model_dtype_deltas_until_read(monkeypatch):
    """On an accelerator the collector keeps each delta in the model's dtype where the model
    computed it; emulated here on the CPU with a bf16 model: the numbers a user reads are the
    fp32 CPU ones of the default path, to the bit."""
    model = long_context_llama(vocab=512, dtype=torch.bfloat16)
    prompt = ids(64, 512)
    ref = rw.decompose(model, prompt)
    assert ref.device_deltas().dtype == torch.float32  # the CPU default: fp32 at once
    monkeypatch.setattr(huggingface.DeltaRecorder, "delta_dtype", lambda self, model_dtype: model_dtype)
    dec = rw.decompose(model, prompt)
    assert dec.device_deltas().dtype == torch.bfloat16
    assert dec.memory_bytes()["deltas"] == ref.memory_bytes()["deltas"] // 2
    assert dec.additivity_error == ref.additivity_error
    lens, ref_lens = dec.logit_lens(k=5), ref.logit_lens(k=5)  # read from the raw deltas
    assert dec.memory_bytes()["states"] == 0  # the lens summed the raw deltas itself
    assert torch.equal(lens.top_ids, ref_lens.top_ids)
    torch.testing.assert_close(lens.top_probs, ref_lens.top_probs, rtol=0, atol=0)
    assert dec.deltas.dtype == torch.float32 and dec.deltas.device.type == "cpu"
    torch.testing.assert_close(dec.deltas, ref.deltas, rtol=0, atol=0)
    torch.testing.assert_close(dec.contributions(3), ref.contributions(3), rtol=0, atol=0)


def test_gpu_bench_tiny_runs_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_bench.py"), "--tiny", "--json", str(out)],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    import json

    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["tiny"] is True
    for key in ("forward_s", "decompose_s", "lens_s", "gemm_s"):
        assert result[key] > 0, key
    assert result["peak_decompose_bytes"] is None  # device peaks are measured on CUDA only
    C, T = result["states"], result["T"]
    assert result["held_bytes"]["deltas"] == C * T * 64 * 4  # fp32 on the CPU (d_model 64)
    assert result["lens_top1_agrees_with_bf16"] > 0.9
    assert result["decompose_vs_forward"] == pytest.approx(result["decompose_s"] / result["forward_s"])
    assert result["additivity_error"] < 1e-2  # bf16
    assert "| " in run.stdout  # the markdown row


@pytest.mark.slow
def test_smollm2_at_4096_tokens(smollm2, monkeypatch):
    """SmolLM2 at T=4096 on the CPU: decompose, lens, grid and dashboard, memory by the shapes."""
    model, _ = smollm2
    dec = rw.decompose(model, ids(T_LONG, model.config.vocab_size))
    held = dec.memory_bytes()
    assert {k: held[k] for k in expected_bytes(model, T_LONG)} == expected_bytes(model, T_LONG)
    assert sum(held.values()) < 2.5 * 2**30  # 0.55 GiB deltas, 0.75 GiB logits, 1 GiB captures
    seen = chunk_spy(monkeypatch)
    lens = dec.logit_lens(k=10)
    assert max(rows for rows, _ in seen) * dec.vocab_size * 4 <= CHUNK_BYTES
    assert lens.top_ids.shape == (len(dec.labels), T_LONG, 10)
    grid = rw.StreamGrid(dec)
    dash = rw.Dashboard(dec)
    assert grid.values("norm").shape == (len(dec.labels), T_LONG)
    for view in (grid, dash):  # snapshots within the default budget, saying what they left out
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "snapshot is ... bytes, over the budget"
            text = snapshot_html(view, progress=False)
        assert len(text.encode("utf-8")) <= DEFAULT_BUDGET_BYTES * 1.05 and "Left out of this snapshot" in text
    grid.close()
    dash.close()
