"""GPU benchmark: a 7B-class Llama-shaped model (random weights, bf16, built from a config on the
GPU; nothing is downloaded) at T=2048.

Measures, the compared functions interleaved (A, B, A, B, ...), median of ``--reps`` after a
warm-up, each call ended by a device synchronisation:

- ``rw.decompose`` / a plain forward (``use_cache=False``) on the same tokens (goal <= 1.3x);
- ``dec.logit_lens(k=10)`` over every state x position / the bare bf16 unembedding GEMM of the
  same rows (``states @ W_U.T`` in the model's dtype, in 16384-row chunks into one buffer),
  goal <= 1.5x;
- peak device memory of each, beyond what was allocated before the call
  (``torch.cuda.max_memory_allocated``), and the bytes the Decomposition holds.

Run on a machine with a CUDA GPU:

    python benchmarks/gpu_bench.py                      # llama2-7b shape, T=2048, bf16
    python benchmarks/gpu_bench.py --shape llama3-8b     # 128k vocabulary
    python benchmarks/gpu_bench.py --write               # also into benchmarks/results.md

``--tiny``: a tiny config on the CPU (a smoke run of this script, tests/test_scale.py); its
numbers say nothing about a GPU and are never written to results.md.
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402
import transformers as tf  # noqa: E402

import resid_widgets as rw  # noqa: E402
from bench_core import interleaved_medians, write_section  # noqa: E402

GOALS = {"decompose": 1.3, "lens": 1.5}
SECTION = ("<!-- gpu_bench: begin -->", "<!-- gpu_bench: end -->")
GEMM_CHUNK_ROWS = 16384
SHAPES = {
    # Llama-2-7B: 6.7B parameters
    "llama2-7b": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096),
    # Llama-3.1-8B: grouped-query attention, 128k vocabulary
    "llama3-8b": dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192,
                      rope_theta=500000.0),
    "tiny": dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512),
}


def build(shape: str, device: str, dtype: torch.dtype) -> torch.nn.Module:
    """A random-weight Llama of ``shape``, created directly on ``device`` in ``dtype``."""
    torch.manual_seed(0)
    cfg = tf.LlamaConfig(**SHAPES[shape])
    with torch.device(device):
        model = tf.LlamaForCausalLM._from_config(cfg, dtype=dtype)
    return model.eval()


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def synced(fns: dict, device: str) -> dict:
    """The functions, each followed by a device synchronisation (so its time covers its kernels)."""
    def one(fn):
        def call():
            out = fn()
            sync(device)
            return out
        return call
    return {name: one(fn) for name, fn in fns.items()}


def peak_bytes(fn, device: str) -> int | None:
    """Most device memory ``fn`` held beyond what was allocated when it started (CUDA only)."""
    if device != "cuda":
        return None
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    result = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - before
    del result
    return int(peak)


def run(args) -> dict:
    device = "cpu" if args.tiny else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --tiny for the CPU smoke run")
    shape = "tiny" if args.tiny else args.shape
    T = args.T or (64 if args.tiny else 2048)
    dtype = torch.bfloat16
    model = build(shape, device, dtype)
    V = model.config.vocab_size
    ids = torch.randint(0, V, (T,), generator=torch.Generator().manual_seed(0))
    on_device = ids[None].to(device)

    def forward():
        with torch.no_grad():
            return model(input_ids=on_device, use_cache=False).logits

    def decompose():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # bf16: the self-checks warn at the model's own rounding
            return rw.decompose(model, ids)

    times = interleaved_medians(synced({"forward": forward, "decompose": decompose}, device), args.reps)
    peak_forward = peak_bytes(forward, device)
    peak_decompose = peak_bytes(decompose, device)
    dec = decompose()
    held = dec.memory_bytes()

    # the lens and the bare bf16 GEMM of the same rows
    W = model.lm_head.weight.detach()  # [V, d], the model's dtype
    rows = dec._lens_states().reshape(-1, dec.d_model).to(device, dtype)
    out = torch.empty(min(GEMM_CHUNK_ROWS, rows.shape[0]), V, dtype=dtype, device=device)

    def gemm():
        for start in range(0, rows.shape[0], GEMM_CHUNK_ROWS):
            chunk = rows[start:start + GEMM_CHUNK_ROWS]
            torch.matmul(chunk, W.t(), out=out[: chunk.shape[0]])
        return out

    def lens():
        dec._lens_cache.clear()
        return dec.logit_lens(k=10)

    times.update(interleaved_medians(synced({"lens": lens, "gemm": gemm}, device), args.reps))
    peak_lens = peak_bytes(lens, device)
    result = lens()
    # sanity: the lens's top token against the bf16 logits' argmax, on the last chunk of rows
    tail = rows[-min(GEMM_CHUNK_ROWS, rows.shape[0]):]
    agree = float((result.top_ids.reshape(-1, 10)[-tail.shape[0]:, 0].to(device)
                   == (tail @ W.t()).argmax(-1)).float().mean())
    n_params = sum(p.numel() for p in model.parameters())
    return {
        "device": device, "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
        "tiny": bool(args.tiny), "shape": shape, "params": n_params, "T": T, "dtype": str(dtype),
        "states": len(dec.labels), "vocab": V, "torch": torch.__version__, "transformers": tf.__version__,
        "forward_s": times["forward"], "decompose_s": times["decompose"],
        "decompose_vs_forward": times["decompose"] / times["forward"],
        "lens_s": times["lens"], "gemm_s": times["gemm"], "lens_vs_gemm": times["lens"] / times["gemm"],
        "peak_forward_bytes": peak_forward, "peak_decompose_bytes": peak_decompose, "peak_lens_bytes": peak_lens,
        "held_bytes": held, "additivity_error": dec.additivity_error, "lens_top1_agrees_with_bf16": agree,
    }


def gib(n) -> str:
    return "-" if n is None else f"{n / 2**30:.2f} GiB"


def table(r: dict) -> str:
    head = ("| GPU | model | T | decompose / forward | lens / bf16 GEMM | peak extra: forward, decompose, lens "
            "| Decomposition holds (device + host) |\n|---|---|---|---|---|---|---|")
    held = sum(r["held_bytes"].values())
    row = (f"| {r['gpu'] or 'CPU (--tiny smoke run)'} | {r['shape']} random, {r['params'] / 1e9:.2f}B, bf16 | {r['T']} "
           f"| {r['decompose_vs_forward']:.2f}x ({r['decompose_s'] * 1e3:.0f} / {r['forward_s'] * 1e3:.0f} ms; "
           f"goal <= {GOALS['decompose']}x) "
           f"| {r['lens_vs_gemm']:.2f}x ({r['lens_s'] * 1e3:.0f} / {r['gemm_s'] * 1e3:.0f} ms; goal <= {GOALS['lens']}x) "
           f"| {gib(r['peak_forward_bytes'])}, {gib(r['peak_decompose_bytes'])}, {gib(r['peak_lens_bytes'])} "
           f"| {gib(held)} |")
    return head + "\n" + row


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="a tiny config on the CPU (smoke run; numbers meaningless)")
    ap.add_argument("--shape", choices=[s for s in SHAPES if s != "tiny"], default="llama2-7b")
    ap.add_argument("--T", type=int, default=None, help="prompt length (default 2048; --tiny: 64)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", help="write the result as JSON to this file")
    ap.add_argument("--write", action="store_true", help="put the table into benchmarks/results.md")
    args = ap.parse_args(argv)
    result = run(args)
    text = table(result)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    if args.write and not args.tiny:
        report = "\n".join([SECTION[0], "## GPU: 7B-class model (benchmarks/gpu_bench.py)", "",
                            f"torch {result['torch']}, transformers {result['transformers']}; random weights, "
                            f"{result['states']} states x {result['T']} positions, vocabulary {result['vocab']}.", "",
                            text, "", SECTION[1]])
        write_section(ROOT / "benchmarks" / "results.md", report, SECTION)
    return result


if __name__ == "__main__":
    main()
