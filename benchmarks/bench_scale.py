"""Scale benchmarks on the CPU: long prompts, and a ~1B-parameter model offloaded with accelerate.

Run: python benchmarks/bench_scale.py [--parts long,offload] [--Ts 512,1024,2048,4096]
     [--lens-Ts 512,1024]   (writes its section of benchmarks/results.md)

(long) SmolLM2-135M (fp32) at T = 512 ... 4096: ``rw.decompose`` time and a plain forward's, the
    peak extra resident memory of decompose, the bytes the Decomposition then holds
    (``dec.memory_bytes()``: deltas, logits, the output projections' inputs), and for the
    ``--lens-Ts`` the full logit lens (k=10; its time and peak extra memory, which includes the
    states [C, T, d] it first computes).
(offload) a random-weight Llama of 1.1B parameters (TinyLlama-1.1B's shape, fp32), saved once and
    loaded the way a user loads an 8B model on a laptop: ``from_pretrained(device_map="auto",
    max_memory={"cpu": ...}, offload_folder=...)``, so part of it stays on the CPU and the rest is
    offloaded to disk; then a forward and ``rw.decompose`` at T=512, their times, the resident
    memory after loading and the peak extra memory of decompose.

Every measurement runs in a fresh subprocess, glibc told to return freed blocks at once
(MALLOC_MMAP_THRESHOLD_=65536), peak extra memory as in bench_core (VmHWM after clear_refs minus
the resident set before the call). Timings are single runs (long prompts take minutes on a
shared 2-core machine): read them as sizes of the cost, not as precise ratios.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402

import resid_widgets as rw  # noqa: E402
from bench_core import _rss_kb, peak_extra_bytes, write_section  # noqa: E402

SECTION = ("<!-- bench_scale: begin -->", "<!-- bench_scale: end -->")
OFFLOAD_CPU_BUDGET = "2GiB"
OFFLOAD_SHAPE = dict(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                     num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048)
OFFLOAD_DIR = Path(tempfile.gettempdir()) / "rw_bench_scale_1b"


def timed(fn):
    gc.collect()
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def long_child(T: int, lens: bool) -> dict:
    model, _ = rw.models.smollm2()
    ids = torch.randint(0, model.config.vocab_size, (T,), generator=torch.Generator().manual_seed(0))
    rw.decompose(model, ids[:64])  # lazy initialisations
    with torch.no_grad():
        _, forward_s = timed(lambda: model(input_ids=ids[None], use_cache=False).logits)
    kept = []
    t0 = time.perf_counter()
    extra, method = peak_extra_bytes(lambda: kept.append(rw.decompose(model, ids)))
    decompose_s = time.perf_counter() - t0
    dec = kept[0]
    result = {"T": T, "states": len(dec.labels), "forward_s": forward_s, "decompose_s": decompose_s,
              "decompose_peak_extra": extra, "method": method, "held": dec.memory_bytes()}
    if lens:
        t0 = time.perf_counter()
        extra, _ = peak_extra_bytes(lambda: dec.logit_lens(k=10))
        result.update(lens_s=time.perf_counter() - t0, lens_peak_extra=extra)
    return result


def offload_child() -> dict:
    import transformers as tf

    if not (OFFLOAD_DIR / "config.json").exists():  # once: a random 1.1B model on disk
        torch.manual_seed(0)
        model = tf.LlamaForCausalLM(tf.LlamaConfig(**OFFLOAD_SHAPE))
        model.save_pretrained(OFFLOAD_DIR)
        del model
        gc.collect()
    before = _rss_kb()
    with tempfile.TemporaryDirectory() as offload:
        (model, load_s) = timed(lambda: tf.AutoModelForCausalLM.from_pretrained(
            OFFLOAD_DIR, device_map="auto", max_memory={"cpu": OFFLOAD_CPU_BUDGET}, offload_folder=offload))
        loaded = (_rss_kb() - before) * 1024
        placement = {}
        for where in model.hf_device_map.values():
            placement[str(where)] = placement.get(str(where), 0) + 1
        T = 512
        ids = torch.randint(0, OFFLOAD_SHAPE["vocab_size"], (T,), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            _, forward_s = timed(lambda: model(input_ids=ids[None], use_cache=False).logits)
        gc.collect()
        after_forward = (_rss_kb() - before) * 1024  # the CPU part's weights are read in by now
        kept = []
        t0 = time.perf_counter()
        extra, method = peak_extra_bytes(lambda: kept.append(rw.decompose(model, ids)))
        decompose_s = time.perf_counter() - t0
        return {"T": T, "params": sum(p.numel() for p in model.parameters()), "placement": placement,
                "cpu_budget": OFFLOAD_CPU_BUDGET, "load_s": load_s, "rss_after_load": loaded,
                "rss_after_forward": after_forward,
                "forward_s": forward_s, "decompose_s": decompose_s, "decompose_peak_extra": extra,
                "method": method, "held": kept[0].memory_bytes(), "additivity_error": kept[0].additivity_error}


def child(*args: str) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"child {args} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def mib(n) -> str:
    return f"{n / 2**20:,.0f} MiB"


def report(long_rows: list, offload: dict | None) -> str:
    lines = [SECTION[0], "## Scale on the CPU (benchmarks/bench_scale.py)", "",
             f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared with other jobs), "
             f"torch {torch.__version__}, {torch.get_num_threads()} threads; single runs.", ""]
    if long_rows:
        lines += ["### Long prompts, SmolLM2-135M (fp32)", "",
                  "| T | forward | decompose | decompose peak extra RSS | Decomposition holds (deltas + logits + "
                  "projection inputs) | logit lens k=10 | lens peak extra RSS |", "|---|---|---|---|---|---|---|"]
        for r in long_rows:
            held = r["held"]
            parts = (f"{mib(sum(held.values()))} ({mib(held['deltas'])} + {mib(held['logits'])} + "
                     f"{mib(held['head_inputs'] + held['neuron_acts'])})")
            lens = (f"{r['lens_s']:.0f} s | {mib(r['lens_peak_extra'])}" if "lens_s" in r
                    else "not run | -")
            lines.append(f"| {r['T']} | {r['forward_s']:.1f} s | {r['decompose_s']:.1f} s | "
                         f"{mib(r['decompose_peak_extra'])} | {parts} | {lens} |")
        lines += ["", "The lens's peak includes the states [C, T, d] it computes first (kept afterwards); its "
                  "logits are chunked (resid_widgets.lens.CHUNK_BYTES), never [C, T, vocab].", ""]
    if offload:
        o = offload
        lines += ["### A 1.1B-parameter model offloaded with accelerate (random weights, fp32)", "",
                  "| model | T | placement (modules) | resident after loading, after a forward | forward | decompose | "
                  "decompose peak extra RSS | Decomposition holds |", "|---|---|---|---|---|---|---|---|",
                  f"| Llama 1.1B (TinyLlama shape), device_map=\"auto\", max_memory cpu={o['cpu_budget']} | {o['T']} | "
                  f"{', '.join(f'{k}: {v}' for k, v in o['placement'].items())} | {mib(o['rss_after_load'])}, "
                  f"{mib(o['rss_after_forward'])} | "
                  f"{o['forward_s']:.1f} s | {o['decompose_s']:.1f} s | {mib(o['decompose_peak_extra'])} | "
                  f"{mib(sum(o['held'].values()))} |", ""]
    lines.append(SECTION[1])
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="long,offload")
    ap.add_argument("--Ts", default="512,1024,2048,4096")
    ap.add_argument("--lens-Ts", default="512,1024,2048,4096", help="the Ts whose lens is measured too")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results.md"))
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        what, *rest = args.child
        result = long_child(int(rest[0]), rest[1] == "1") if what == "long" else offload_child()
        print(json.dumps(result))
        return
    parts = args.parts.split(",")
    lens_Ts = {int(t) for t in args.lens_Ts.split(",") if t}
    long_rows = []
    if "long" in parts:
        for T in (int(t) for t in args.Ts.split(",")):
            print(f"long prompt T={T} ...", flush=True)
            long_rows.append(child("long", str(T), "1" if T in lens_Ts else "0"))
            print(long_rows[-1], flush=True)
    offload = None
    if "offload" in parts:
        print("1.1B offloaded, T=512 ...", flush=True)
        offload = child("offload")
        print(offload, flush=True)
    write_section(Path(args.out), report(long_rows, offload), SECTION)


if __name__ == "__main__":
    main()
