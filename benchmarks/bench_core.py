"""Core benchmarks: decompose overhead, logit-lens cost, lens memory for a 262k vocabulary.

Run: python benchmarks/bench_core.py [--quick]   (CPU; writes benchmarks/results.md)

(a) ``rw.decompose`` time / plain forward time, SmolLM2-135M, same tokens (goal <= 1.10x);
    TransformerLens 4.x ``run_with_cache`` on the same weights (a TransformerBridge around a
    second copy of the HF model, built offline) where transformer_lens is installed.
(b) ``dec.logit_lens(k=10)`` over all states x positions / one bare GEMM
    ``states.reshape(-1, d) @ W_U.T`` of the same rows (goal <= 1.2x); TL's chunked
    ``cache.logit_lens(positions=None, incl_mid=True, top_k=10)`` on the same states.
(c) peak extra memory of the lens, random Llama with vocab 262144 (d_model 640, 2 layers),
    T=256 (goal < 1 GB). Measured in a fresh subprocess: glibc is told to serve every block
    >= 64 KiB with its own mmap (MALLOC_MMAP_THRESHOLD_=65536), so freed tensors leave the
    resident set at once; the kernel's peak-RSS counter is reset (/proc/self/clear_refs = 5)
    right before the measured call and the result is VmHWM - VmRSS(before), i.e. the most
    memory the call ever held beyond what was resident when it started. Falls back to a 0.5 ms
    RSS sampler where clear_refs is not writable.

Timings: median of several runs after a warm-up, the compared functions interleaved (A, B, A,
B, ...) so that load from other jobs on this shared machine hits both; torch's default threads.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import resid_widgets as rw  # noqa: E402
from resid_widgets.lens import LensResult  # noqa: E402

GOALS = {"decompose": 1.10, "lens": 1.2, "memory_gb": 1.0}
# each benchmark owns a marked section of results.md and rewrites only that one
SECTION = ("<!-- bench_core: begin -->", "<!-- bench_core: end -->")


def interleaved_medians(fns: dict, reps: int, warmup: int = 1, clock=time.perf_counter) -> dict:
    """{name: median seconds}, the functions timed in turn (A, B, C, A, B, C, ...) so that a
    slow phase of this shared machine hits every one of them, not one alone. ``clock``:
    time.process_time measures this process's CPU time instead of the wall clock."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            gc.collect()
            t0 = clock()
            fn()
            times[name].append(clock() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def tl_available() -> str | None:
    """None when transformer_lens can be used, else why not."""
    try:
        import transformer_lens  # noqa: F401
        from transformer_lens import TransformerBridge  # noqa: F401
    except Exception as e:  # noqa: BLE001
        return f"transformer_lens not importable ({type(e).__name__}: {e})"
    return None


def tl_bridge(model, tok=None):
    """A TransformerBridge around an in-memory HF model (no hub access). It rewires ``model``."""
    from transformer_lens.model_bridge.sources._bridge_builder import build_bridge_from_module

    return build_bridge_from_module(model, type(model).__name__, hf_config=model.config, tokenizer=tok)


# --------------------------------------------------------------------------------------------
# (a) + (b): SmolLM2
# --------------------------------------------------------------------------------------------
def bench_smollm2(Ts, reps, lens_reps):
    model, tok = rw.models.smollm2()
    V = model.config.vocab_size
    tl_why = tl_available()
    bridge = None
    if tl_why is None:
        tl_model, _ = rw.models.smollm2()  # a second copy: the bridge rewires the model it wraps
        bridge = tl_bridge(tl_model, tok)
    rows = []
    for T in Ts:
        ids = torch.randint(0, V, (T,), generator=torch.Generator().manual_seed(T))
        row = {"T": T}

        def forward():
            with torch.no_grad():
                model(input_ids=ids[None], use_cache=False)

        kept = []

        def decompose_kept():  # every result stays alive: all capture memory is fresh
            kept.append(rw.decompose(model, ids))

        # two groups: results kept alive would take the memory the dropped ones free
        row.update(interleaved_medians({"forward_s": forward, "decompose_s": lambda: rw.decompose(model, ids)},
                                       reps))
        t = interleaved_medians({"forward_s": forward, "decompose_kept_s": decompose_kept}, reps)
        del kept[:]
        row["decompose_kept_s"], row["forward_kept_s"] = t["decompose_kept_s"], t["forward_s"]
        dec = rw.decompose(model, ids)
        states, ro = dec.states, dec.readout
        C, _, d = states.shape
        row["rows"] = C * T

        def gemm():
            return states.reshape(-1, d) @ ro.unembed.t()

        row.update(interleaved_medians(
            {"gemm_s": gemm, "lens_s": lambda: LensResult(states, ro, 10, dec.target_id)}, lens_reps))
        # same numbers as the full GEMM (sanity check, not timed)
        lens = LensResult(states, ro, 10, dec.target_id)
        full = ro.logits(states[-1])
        assert torch.equal(lens.top_ids[-1, :, 0], full.argmax(-1))
        del full
        if bridge is not None:
            def bridge_forward():
                with torch.no_grad():
                    bridge(ids[None])

            def run_with_cache():
                with torch.no_grad():
                    bridge.run_with_cache(ids[None])

            row.update(interleaved_medians({"tl_forward_s": bridge_forward, "tl_cache_s": run_with_cache,
                                            "rw_on_tl_s": lambda: rw.decompose(bridge, ids)}, reps))
            with torch.no_grad():
                _, cache = bridge.run_with_cache(ids[None])
            tl_lens = lambda: cache.logit_lens(positions=None, incl_mid=True, top_k=10,  # noqa: E731
                                               return_type="probs")
            row.update(interleaved_medians({"tl_lens_s": tl_lens}, lens_reps))
            del cache
        rows.append(row)
        print(f"  T={T}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in row.items()), flush=True)
    return rows, tl_why


# --------------------------------------------------------------------------------------------
# (c): memory, in a fresh subprocess
# --------------------------------------------------------------------------------------------
def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _rss_kb() -> int:
    return _status_kb("VmRSS")


def peak_extra_bytes(fn) -> tuple[int, str]:
    """(most bytes ``fn`` held beyond the resident set at its start, method)."""
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        method = "VmHWM after clear_refs"
    except OSError:
        method = None
    before = _rss_kb()
    if method:
        out = fn()
        peak = _status_kb("VmHWM")
    else:  # sample
        method, peak, stop = "RSS sampled every 0.5 ms", before, threading.Event()

        def sample():
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, _rss_kb())
                time.sleep(0.0005)

        thread = threading.Thread(target=sample)
        thread.start()
        out = fn()
        stop.set()
        thread.join()
        peak = max(peak, _rss_kb())
    del out
    return (peak - before) * 1024, method


PROJ_INPUTS = "output projections' inputs"


def kept_decomposition(T: int) -> dict:
    """What a Decomposition that stays alive holds: SmolLM2, T tokens; resident-set growth and
    the bytes of its tensors (deltas, output projections' inputs, logits; states once read)."""
    model, _ = rw.models.smollm2()
    ids = torch.randint(0, model.config.vocab_size, (T,), generator=torch.Generator().manual_seed(0))
    rw.decompose(model, ids)  # warm-up (lazy initialisations), then dropped
    rw.buffers.release_memory()
    gc.collect()
    before = _rss_kb()
    dec = rw.decompose(model, ids)
    gc.collect()
    kept = _rss_kb()
    parts = {"deltas": dec.deltas.nbytes, PROJ_INPUTS: dec._head_inputs.nbytes + dec._neuron_acts.nbytes,
             "logits": dec.logits.nbytes}
    dec.states
    with_states = _rss_kb()
    return {"what": "kept", "T": T, "rss_kept": (kept - before) * 1024, "rss_states": (with_states - kept) * 1024,
            "parts": parts, "states": dec.states.nbytes}


def memory_child(what: str, T: int) -> dict:
    import transformers as tf

    if what == "kept":
        return kept_decomposition(T)
    torch.manual_seed(0)
    cfg = tf.LlamaConfig(vocab_size=262144, hidden_size=640, intermediate_size=2048, num_hidden_layers=2,
                         num_attention_heads=10, num_key_value_heads=2, max_position_embeddings=1024)
    model = tf.LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, cfg.vocab_size, (T,), generator=torch.Generator().manual_seed(0))
    result = {"what": what, "T": T, "vocab": cfg.vocab_size}
    if what == "tl_lens":
        bridge = tl_bridge(model)
        with torch.no_grad():
            _, cache = bridge.run_with_cache(ids[None])
        extra, method = peak_extra_bytes(lambda: cache.logit_lens(
            positions=None, incl_mid=True, top_k=10, return_type="probs"))
        result.update(rows=(2 * cfg.num_hidden_layers + 1) * T, extra=extra, method=method)
        return result
    dec = rw.decompose(model, ids)
    states, ro = dec.states, dec.readout
    C, _, d = states.shape
    result["rows"] = C * T
    if what == "rw_lens":
        extra, method = peak_extra_bytes(lambda: LensResult(states, ro, 10, dec.target_id))
    elif what == "gemm":
        extra, method = peak_extra_bytes(lambda: states.reshape(-1, d) @ ro.unembed.t())
    elif what == "full_lens":  # the naive lens: all logits, then top-k and logsumexp
        def naive():
            z = ro.logits(states.reshape(-1, d))
            return z.topk(10, -1), z.logsumexp(-1)
        extra, method = peak_extra_bytes(naive)
    else:
        raise ValueError(what)
    result.update(extra=extra, method=method)
    return result


def _child(what: str, T: int) -> dict:
    """memory_child(what, T) in a fresh subprocess (freed memory leaves the resident set)."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    proc = subprocess.run([sys.executable, __file__, "--memory-child", what, "--T", str(T)],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
        return {"what": what, "error": proc.stderr.strip().splitlines()[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_memory(T: int, include_tl: bool):
    out = []
    for what in ["rw_lens", "gemm", "full_lens"] + (["tl_lens"] if include_tl else []):
        res = _child(what, T)
        if "error" not in res:
            print(f"  {what}: {res['extra'] / 2**20:.1f} MiB extra ({res['method']})", flush=True)
        out.append(res)
    return out


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
def verdict(value, goal, lower_is_better=True):
    return "met" if value <= goal else "**missed**"


def report(speed, tl_why, memory, T_mem, args, held=None) -> str:
    lines = [
        SECTION[0],
        "# Core benchmarks",
        "",
        f"`python benchmarks/bench_core.py{' --quick' if args.quick else ''}` on "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"load average at the end {os.getloadavg()[0]:.1f} (a shared machine: expect noise). "
        f"Median of {args.reps} runs after a warm-up ({args.lens_reps} for the lens); SmolLM2-135M-Instruct "
        "fp32, random token ids.",
        "",
        "## (a) decompose vs a plain forward (goal <= 1.10x)",
        "",
    ]
    has_tl = tl_why is None
    head = ("| T | forward | rw.decompose (previous result dropped) | ratio | goal | "
            "rw.decompose (every result kept) | ratio |")
    sep = "|---|---|---|---|---|---|---|"
    if has_tl:
        head += " TL bridge forward | TL run_with_cache | run_with_cache / HF forward | run_with_cache / bridge forward | rw.decompose(bridge) / HF forward |"
        sep += "---|---|---|---|---|"
    lines += [head, sep]
    for r in speed:
        ratio = r["decompose_s"] / r["forward_s"]
        kept = r["decompose_kept_s"] / r["forward_kept_s"]
        line = (f"| {r['T']} | {r['forward_s'] * 1e3:.1f} ms | {r['decompose_s'] * 1e3:.1f} ms | "
                f"{ratio:.3f}x | {verdict(ratio, GOALS['decompose'])} | {r['decompose_kept_s'] * 1e3:.1f} ms | "
                f"{kept:.3f}x |")
        if has_tl:
            line += (f" {r['tl_forward_s'] * 1e3:.1f} ms | {r['tl_cache_s'] * 1e3:.1f} ms | "
                     f"{r['tl_cache_s'] / r['forward_s']:.2f}x | {r['tl_cache_s'] / r['tl_forward_s']:.2f}x | "
                     f"{r['rw_on_tl_s'] / r['forward_s']:.2f}x |")
        lines.append(line)
    lines += ["", "Previous result dropped: each call's result is freed before the next call, as when a cell "
              "or a dashboard re-runs `dec = rw.decompose(...)`; decompose then reuses the capture memory "
              "of a freed result (`resid_widgets.buffers`) instead of faulting in fresh pages. Every "
              "result kept: all results stay alive, so every capture buffer is fresh memory "
              "(~100 MB at T=256, one page fault per 4 KiB; the logits are the forward's own).",
              "", "## (b) logit lens over all states x positions vs one bare GEMM (goal <= 1.2x)", ""]
    head = "| T | rows (states x positions) | bare GEMM `states @ W_U.T` | dec.logit_lens(k=10) | ratio | goal |"
    sep = "|---|---|---|---|---|---|"
    if has_tl:
        head += " TL cache.logit_lens(top_k=10) | TL / GEMM |"
        sep += "---|---|"
    lines += [head, sep]
    for r in speed:
        ratio = r["lens_s"] / r["gemm_s"]
        line = (f"| {r['T']} | {r['rows']} | {r['gemm_s'] * 1e3:.0f} ms | {r['lens_s'] * 1e3:.0f} ms | "
                f"{ratio:.3f}x | {verdict(ratio, GOALS['lens'])} |")
        if has_tl:
            line += f" {r['tl_lens_s'] * 1e3:.0f} ms | {r['tl_lens_s'] / r['gemm_s']:.2f}x |"
        lines.append(line)
    lines += ["", f"## (c) peak extra memory, vocab 262144, d_model 640, 2 layers, T={T_mem} (goal < 1 GB)", "",
              "| what | rows | peak extra memory | goal |", "|---|---|---|---|"]
    names = {"rw_lens": "dec.logit_lens(k=10)", "gemm": "bare GEMM (all logits)",
             "full_lens": "naive lens (all logits, then top-k + logsumexp)",
             "tl_lens": "TL cache.logit_lens(top_k=10)"}
    method = None
    for m in memory:
        if "error" in m:
            lines.append(f"| {names[m['what']]} | | failed: {m['error']} | |")
            continue
        method = m["method"]
        gb = m["extra"] / 1e9
        goal = verdict(gb, GOALS["memory_gb"]) if m["what"] == "rw_lens" else ""
        lines.append(f"| {names[m['what']]} | {m['rows']} | {m['extra'] / 2**20:.0f} MiB ({gb:.2f} GB) | {goal} |")
    lines += ["", "Method (c): each row runs in a fresh subprocess with `MALLOC_MMAP_THRESHOLD_=65536` (every "
              "allocation >= 64 KiB is its own mmap and leaves the resident set when freed); the kernel's "
              f"peak-RSS counter is reset right before the call; reported = peak - RSS at the start ({method})."]
    if held and "error" not in held:
        mb = lambda n: f"{n / 1e6:.0f} MB"  # noqa: E731
        lines += ["", f"## (d) what a kept Decomposition holds, SmolLM2-135M fp32, T={held['T']}", "",
                  "| resident set growth | deltas | output projections' inputs | logits | states, once read |",
                  "|---|---|---|---|---|",
                  f"| {mb(held['rss_kept'])} ({held['rss_kept'] / 2**20:.0f} MiB) | {mb(held['parts']['deltas'])} | "
                  f"{mb(held['parts'][PROJ_INPUTS])} | {mb(held['parts']['logits'])} | "
                  f"+{mb(held['rss_states'])} |", "",
                  "Method (d): a fresh subprocess as in (c); resident set before and after a second decompose "
                  "(the first one dropped and the recycled memory released), then after reading `dec.states`."]
    if not has_tl:
        lines += ["", f"TransformerLens columns omitted: {tl_why}."]
    else:
        lines += ["", "TransformerLens: 4.x has no HookedTransformer; the bridge wraps a second in-memory copy of "
                  "the same HF model (`build_bridge_from_module`, no hub access). The bridge switches attention "
                  "to eager (HF default: sdpa), so its plain forward is slower than the HF one; "
                  "`run_with_cache / bridge forward` isolates the caching cost."]
    lines.append(SECTION[1])
    return "\n".join(lines) + "\n"


def write_section(path: Path, text: str, markers: tuple[str, str]) -> None:
    """Print ``text`` (a report that starts and ends with ``markers``) and put it in place of that
    benchmark's section of results.md, or append it; the other sections stay as they are."""
    print("\n" + text)
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if markers[0] in old and markers[1] in old:
        head, rest = old.split(markers[0], 1)
        tail = rest.split(markers[1], 1)[1].lstrip("\n")
        new = head + text + ("\n" + tail if tail else "")
    else:
        new = old.rstrip("\n") + ("\n\n" if old else "") + text
    path.write_text(new, encoding="utf-8")
    print(f"written to {path}")


def bench_args(quick_help: str, memory_child, parts: tuple[str, ...] = ()) -> argparse.Namespace | None:
    """The benchmarks' command line: ``--quick``, ``--out``, ``--threads``, and the hidden
    ``--memory-child WHAT --T N`` a benchmark runs itself with in a fresh subprocess (then
    ``memory_child(WHAT, N)`` is printed as JSON and None returned). With ``parts``, ``--parts``
    picks some of them (comma-separated)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--memory-child", help=argparse.SUPPRESS)
    ap.add_argument("--T", type=int, default=256, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results.md"))
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's); 1 keeps a loaded machine's "
                                                "timings steadier")
    if parts:
        ap.add_argument("--parts", help=f"comma-separated, from {','.join(parts)} (default: all)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, args.T)))
        return None
    return args


def main():
    args = bench_args("T=64 only, fewer runs", memory_child)
    if args is None:
        return
    Ts = [64] if args.quick else [64, 256]
    args.reps = 3 if args.quick else 5
    args.lens_reps = 3
    print("(a)+(b) SmolLM2-135M ...", flush=True)
    speed, tl_why = bench_smollm2(Ts, args.reps, args.lens_reps)
    T_mem = 256
    print(f"(c) lens memory, vocab 262144, T={T_mem} ...", flush=True)
    memory = bench_memory(T_mem, include_tl=tl_why is None)
    print(f"(d) a kept Decomposition, SmolLM2, T={T_mem} ...", flush=True)
    held = _child("kept", T_mem)
    write_section(Path(args.out), report(speed, tl_why, memory, T_mem, args, held), SECTION)


if __name__ == "__main__":
    main()
