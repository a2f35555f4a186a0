"""Attention-pattern benchmarks: capture time and memory, payload sizes against CircuitsVis, and a
1,024-token dashboard + patterns snapshot.

Run: python benchmarks/bench_attention.py [--quick]   (CPU; updates its section of benchmarks/results.md)

(a) time, SmolLM2-135M fp32, random token ids, T = 256 and 1024: a plain forward (the model's own
    sdpa attention); ``rw.analysis.head_scores(dec)`` (one eager pass through the capture function,
    the stream and Σ α v checks, the four scores and every layer's bounded pattern); and
    ``rw.analysis.capture_attention`` (the same pass keeping every layer's full fp32 weights).
    Interleaved medians (bench_core.interleaved_medians).
(b) memory of the same two captures, each in a fresh subprocess: peak extra resident memory during
    the call (bench_core.peak_extra_bytes: VmHWM after clear_refs, glibc mmap threshold 64 KiB) and
    the bytes the result keeps.
(c) payload size of every layer's patterns (30 layers x 9 heads) as resid_widgets sends them
    (per layer, on demand: float16 lower triangle up to 256 tokens, else the top 32 weights per row
    with uint16 sources), in a snapshot (fitted to a 4 MB share), and as CircuitsVis serialises them:
    ``circuitsvis.attention.attention_patterns(tokens, attention)`` calls ``attention.tolist()`` and
    renders ``json.dumps({"tokens": ..., "attention": ...})`` into the page, one call per layer
    (attention [heads, dest, src] float32; CircuitsVis itself is not installed, its format is
    reproduced: python/circuitsvis/attention.py and utils/render.py of TransformerLensOrg/CircuitsVis).
(d) ``rw.export_html([rw.Dashboard(dec), rw.AttentionPatterns(dec)], budget_bytes=...)`` for a
    1,024-token SmolLM2 prompt: the file size against its budget and what the page says it left out.
"""
from __future__ import annotations

import gc
import json
import os
import platform
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

import resid_widgets as rw  # noqa: E402
from bench_core import bench_args, interleaved_medians, peak_extra_bytes, write_section  # noqa: E402
from resid_widgets.analysis import patterns as P  # noqa: E402
from resid_widgets.views.attention_patterns import snapshot_patterns  # noqa: E402

SECTION = ("<!-- bench_attention: begin -->", "<!-- bench_attention: end -->")
RAW = ROOT / "benchmarks" / "bench_attention.json"  # each part's last results; --parts re-measures some
PARTS = ("time", "memory", "payload", "snapshot")
SNAPSHOT_SHARE = 4_000_000
DASHBOARD_BUDGET = 16_000_000


def token_ids(model, T: int) -> torch.Tensor:
    return torch.randint(0, model.config.vocab_size, (T,), generator=torch.Generator().manual_seed(T))


def head_scores_uncached(dec):
    P._SCORES_CACHE.clear()
    return rw.analysis.head_scores(dec)


# --------------------------------------------------------------------------------------------
# (a) time
# --------------------------------------------------------------------------------------------
def bench_time(model, tok, Ts, reps):
    rows = []
    for T in Ts:
        ids = token_ids(model, T)
        dec = rw.decompose(model, ids, tokenizer=tok)

        def forward():
            with torch.no_grad():
                model(input_ids=ids[None], use_cache=False)

        def full_capture(dec=dec):
            return rw.analysis.capture_attention(model, ids, reference=dec.states[-1])

        t = interleaved_medians({"forward_s": forward, "head_scores_s": lambda dec=dec: head_scores_uncached(dec),
                                 "capture_s": full_capture}, reps)
        rows.append({"T": T, **t})
        print(f"  T={T}: " + ", ".join(f"{k}={v * 1e3:.0f} ms" for k, v in t.items()), flush=True)
        del dec
        gc.collect()
    return rows


# --------------------------------------------------------------------------------------------
# (b) memory, in fresh subprocesses
# --------------------------------------------------------------------------------------------
def memory_child(what: str, T: int) -> dict:
    model, tok = rw.models.smollm2()
    ids = token_ids(model, T)
    dec = rw.decompose(model, ids, tokenizer=tok)
    reference = dec.states[-1]
    _ = dec.states  # computed before the measurement
    if what == "head_scores":
        holder = {}

        def run():
            holder["r"] = head_scores_uncached(dec)

        extra, method = peak_extra_bytes(run)
        kept = sum(holder["r"].pattern(l).nbytes() for l in range(dec.n_layers))
    elif what == "capture":
        holder = {}

        def run():
            holder["r"] = rw.analysis.capture_attention(model, ids, reference=reference)

        extra, method = peak_extra_bytes(run)
        cap = holder["r"]
        kept = sum(p.numel() * 4 for p in cap.probs) + sum(v.numel() * 4 for v in cap.values) + \
            sum(z.numel() * 4 for z in cap.z)
    else:
        raise ValueError(what)
    return {"what": what, "T": T, "extra": extra, "kept": kept, "method": method}


def bench_memory(Ts):
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    out = []
    for T in Ts:
        for what in ("head_scores", "capture"):
            proc = subprocess.run([sys.executable, __file__, "--memory-child", what, "--T", str(T)],
                                  env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                out.append({"what": what, "T": T, "error": proc.stderr.strip().splitlines()[-1]})
                print(proc.stderr[-2000:], file=sys.stderr)
                continue
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"  T={T} {what}: peak extra {res['extra'] / 2**20:.0f} MiB, keeps {res['kept'] / 2**20:.1f} MiB",
                  flush=True)
            out.append(res)
    return out


# --------------------------------------------------------------------------------------------
# (c) payload sizes
# --------------------------------------------------------------------------------------------
def payload_bytes(payload: dict) -> int:
    return sum(len(v["data"]) for v in payload.values() if isinstance(v, dict) and "data" in v)


def circuitsvis_json_bytes(tokens: list[str], probs: torch.Tensor) -> int:
    """Size of the props CircuitsVis renders into the page for one layer (attention [H, T, T])."""
    return len(json.dumps({"tokens": tokens, "attention": probs.tolist()}).encode())


def bench_payloads(model, tok, Ts):
    rows = []
    for T in Ts:
        ids = token_ids(model, T)
        dec = rw.decompose(model, ids, tokenizer=tok)
        scores = head_scores_uncached(dec)
        L = dec.n_layers
        live = sum(payload_bytes(scores.pattern(l).payload()) for l in range(L))
        snap, note = snapshot_patterns(scores, SNAPSHOT_SHARE)
        snap_bytes = sum(payload_bytes(p) for p in snap.values())
        cv_bytes = [0]

        def add_layer(layer, probs, values, tokens=list(dec.tokens)):
            cv_bytes[0] += circuitsvis_json_bytes(tokens, probs[0].float().cpu())

        t0 = time.perf_counter()
        rw.analysis._common.attention_pass(model, ids[None], add_layer, dec.adapter, reference=dec.states[-1])
        cv_time = time.perf_counter() - t0
        rows.append({"T": T, "layers": L, "heads": dec.n_heads, "live": live, "live_format": scores.pattern(0).format,
                     "snapshot": snap_bytes, "snapshot_note": note, "circuitsvis": cv_bytes[0],
                     "circuitsvis_s": cv_time, "dense_fp32": L * dec.n_heads * T * T * 4})
        print(f"  T={T}: ours {live / 1e6:.2f} MB live, {snap_bytes / 1e6:.2f} MB snapshot ({note}); "
              f"CircuitsVis JSON {cv_bytes[0] / 1e6:.1f} MB", flush=True)
        del dec, scores
        gc.collect()
    return rows


# --------------------------------------------------------------------------------------------
# (d) a 1,024-token dashboard + patterns snapshot
# --------------------------------------------------------------------------------------------
def bench_snapshot(model, tok, T: int = 1024) -> dict:
    ids = token_ids(model, T)
    dec = rw.decompose(model, ids, tokenizer=tok)
    views = [rw.Dashboard(dec), rw.AttentionPatterns(dec)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        text = rw.export_html(views, budget_bytes=DASHBOARD_BUDGET)
    size = len(text.encode())
    notes = re.findall(r"<li><b>(\w+)</b>: (.*?)</li>", text)
    res = {"T": T, "budget": DASHBOARD_BUDGET, "size": size, "notes": notes,
           "warnings": [str(w.message) for w in caught]}
    print(f"  dashboard + patterns, T={T}: {size / 1e6:.2f} MB of {DASHBOARD_BUDGET / 1e6:.0f} MB", flush=True)
    return res


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
def mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB" if n < 1e8 else f"{n / 1e6:.0f} MB"


def conditions() -> dict:
    """When and how a part was measured."""
    return {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load": round(os.getloadavg()[0], 1),
            "threads": torch.get_num_threads()}


def measured(part: dict) -> str:
    c = part["conditions"]
    return f"Measured {c['when']}, torch threads: {c['threads']}, load average {c['load']} at the end."


def report(raw: dict) -> str:
    missing = {"rows": [], "reps": 0, "conditions": {"when": "never", "threads": "-", "load": "-"}}
    times, memory, payloads, snap = (raw.get(k, missing) for k in PARTS)
    lines = [
        SECTION[0],
        "# Attention-pattern benchmarks",
        "",
        f"`python benchmarks/bench_attention.py` on {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs "
        f"(a machine shared with other jobs: compare the ratios, measured interleaved), torch {torch.__version__}. "
        "SmolLM2-135M-Instruct fp32 (30 layers x 9 heads), random token ids. `--parts time` (or memory, payload, "
        "snapshot) re-measures one part; the others are kept from `benchmarks/bench_attention.json`.",
        "",
        "## (a) capture time",
        "",
        "| T | plain forward (sdpa) | `head_scores` (scores + bounded patterns, checked) | ratio | "
        "`capture_attention` (all fp32 weights, checked) | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for r in times["rows"]:
        lines.append(f"| {r['T']} | {r['forward_s'] * 1e3:.0f} ms | {r['head_scores_s'] * 1e3:.0f} ms | "
                     f"{r['head_scores_s'] / r['forward_s']:.2f}x | {r['capture_s'] * 1e3:.0f} ms | "
                     f"{r['capture_s'] / r['forward_s']:.2f}x |")
    lines += ["", f"Medians of {times['reps']} interleaved runs. Both captures run the prompt once through the eager "
              "capture function (the model's own implementation is sdpa), check the final stream and Σ_j α v_j "
              "against the model, and for `head_scores` reduce each layer as it runs. The eager pass materialises "
              "every layer's [H, T, T] scores, which sdpa avoids; beyond 256 tokens most of what `head_scores` "
              "adds is choosing the top 32 weights of every row. " + measured(times), "",
              "## (b) capture memory", "",
              "| T | what | peak extra resident memory | kept by the result |", "|---|---|---|---|"]
    names = {"head_scores": "`head_scores`", "capture": "`capture_attention`"}
    method = ""
    for m in memory["rows"]:
        if "error" in m:
            lines.append(f"| {m['T']} | {names[m['what']]} | failed: {m['error']} | |")
            continue
        method = m["method"]
        lines.append(f"| {m['T']} | {names[m['what']]} | {m['extra'] / 2**20:.0f} MiB | {m['kept'] / 2**20:.1f} MiB |")
    lines += ["", f"Each row in a fresh subprocess, `MALLOC_MMAP_THRESHOLD_=65536`, peak = {method} minus the "
              "resident set at the start. `head_scores` keeps float16 lower triangles up to 256 tokens and the "
              "top 32 weights per row (float16 + int16 source) beyond. " + measured(memory), "",
              "## (c) payload of every layer's patterns, against CircuitsVis", "",
              "| T | resid_widgets, sent per layer on demand (all 30 layers) | resid_widgets snapshot (4 MB share) | "
              "CircuitsVis `attention_patterns` JSON (30 calls) | CircuitsVis / ours | fp32 [L, H, T, T] |",
              "|---|---|---|---|---|---|"]
    for r in payloads["rows"]:
        fmt = "float16 lower triangle" if r["live_format"] == "dense" else "top 32 per row, float16 + uint16"
        lines.append(f"| {r['T']} | {mb(r['live'])} ({fmt}) | {mb(r['snapshot'])} | {mb(r['circuitsvis'])} | "
                     f"{r['circuitsvis'] / r['live']:.0f}x | {mb(r['dense_fp32'])} |")
    lines += [""] + [f"- T={r['T']} snapshot: {r['snapshot_note']}." for r in payloads["rows"]]
    lines += ["", "CircuitsVis sends one layer per call as a JSON list of floats (every head, the whole "
              "[T, T] square, the masked half as 0.0, each float32 printed as a double), inline in the "
              "page; its view has no sparse mode. Ours travel as binary buffers (ipywidgets) or base64 "
              "(snapshots: 4/3 of the bytes above). " + measured(payloads), "",
              "## (d) a 1,024-token SmolLM2 dashboard + patterns snapshot", ""]
    if snap["rows"]:
        when, snap = measured(snap), snap["rows"][0]
        verdict = "fits" if snap["size"] <= snap["budget"] else "**over**"
        lines += [f"`rw.export_html([rw.Dashboard(dec), rw.AttentionPatterns(dec)], budget_bytes={snap['budget']:,})`, "
                  f"T={snap['T']}: **{mb(snap['size'])}**, {verdict} its budget. The page says:", ""]
        lines += [f"- {w}: {n}" for w, n in snap["notes"]]
        if snap["warnings"]:
            lines += ["", "Warnings: " + "; ".join(snap["warnings"])]
        lines += ["", when]
    lines.append(SECTION[1])
    return "\n".join(lines) + "\n"


def main():
    args = bench_args("T=256 only, fewer runs, no snapshot", memory_child, parts=PARTS)
    if args is None:
        return
    parts = [p for p in (args.parts or ",".join(PARTS)).split(",") if p]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise SystemExit(f"unknown parts {unknown}: choose from {PARTS}")
    Ts, reps = ([256], 2) if args.quick else ([256, 1024], 3)
    raw = json.loads(RAW.read_text()) if RAW.exists() and not args.quick else {}
    model, tok = rw.models.smollm2()
    if "time" in parts:
        print("(a) capture time ...", flush=True)
        raw["time"] = {"rows": bench_time(model, tok, Ts, reps), "reps": reps, "conditions": conditions()}
    if "memory" in parts:
        print("(b) capture memory ...", flush=True)
        raw["memory"] = {"rows": bench_memory(Ts), "conditions": conditions()}
    if "payload" in parts:
        print("(c) payload sizes ...", flush=True)
        raw["payload"] = {"rows": bench_payloads(model, tok, Ts), "conditions": conditions()}
    if "snapshot" in parts and not args.quick:
        print("(d) dashboard + patterns snapshot ...", flush=True)
        raw["snapshot"] = {"rows": [bench_snapshot(model, tok)], "conditions": conditions()}
    if not args.quick:
        RAW.write_text(json.dumps(raw, indent=1) + "\n")
    write_section(Path(args.out), report(raw), SECTION)


if __name__ == "__main__":
    main()
