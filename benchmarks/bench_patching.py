"""Activation patching and edits on SmolLM2-135M-Instruct (IOI prompts), on this CPU.

(a) ``rw.patching(method="exact")`` against TransformerLens's ``patching.get_act_patch_*`` loop (one
    forward of the bridge per patch) on a TransformerBridge of the same weights: seconds per sweep,
    the speed-up, and the largest difference of their numbers. The two are timed in turn.
(b) ``method="attribution"``: seconds, and its correlation with the exact values per sweep.
(c) ``dec.edit(...)`` against a plain ``rw.decompose`` of the same prompt (median of interleaved runs).

Writes its section of benchmarks/results.md.

    python benchmarks/bench_patching.py [--quick] [--threads N]
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import torch

import resid_widgets as rw

sys.path.insert(0, str(Path(__file__).parent))
from bench_core import interleaved_medians, tl_available, tl_bridge, write_section  # noqa: E402

HERE = Path(__file__).parent
SECTION = ("<!-- bench_patching: begin -->", "<!-- bench_patching: end -->")
CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPT = "When Mary and John went to the store, Mary gave a drink to"


def tl_sweeps():
    from transformer_lens import patching as tlp

    return {("resid", "each"): tlp.get_act_patch_resid_pre, ("attn", "each"): tlp.get_act_patch_attn_out,
            ("mlp", "each"): tlp.get_act_patch_mlp_out, ("heads", "all"): tlp.get_act_patch_attn_head_out_all_pos}


def timed(fn):
    """(result, CPU seconds of this process): on a shared, overloaded machine the wall clock
    measures the other jobs; the CPU time of a one-thread run measures this one."""
    t0 = time.process_time()
    out = fn()
    return out, time.process_time() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="the mlp and heads sweeps only, 3 edit runs")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: CPU time is then comparable)")
    ap.add_argument("--out", default=str(HERE / "results.md"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = rw.models.smollm2()
    clean = rw.decompose(model, CLEAN, tokenizer=tok)
    corrupt = rw.decompose(model, CORRUPT, tokenizer=tok)
    metric = rw.logit_diff(" Mary", " John")
    a, b = clean.target_id(" Mary"), clean.target_id(" John")
    T = clean.n_tokens
    why = tl_available()
    bridge = cache = None
    if why is None:
        tl_model, _ = rw.models.smollm2()  # a second copy: the bridge rewires the model it wraps
        bridge = tl_bridge(tl_model, tok)
        with torch.no_grad():
            _, cache = bridge.run_with_cache(clean.token_ids[None])
    sweeps = tl_sweeps() if why is None else {k: None for k in (("resid", "each"), ("attn", "each"),
                                                                  ("mlp", "each"), ("heads", "all"))}
    if args.quick:
        sweeps = {k: v for k, v in sweeps.items() if k[0] in ("mlp", "heads")}
    rows = []
    loads = [os.getloadavg()[0]]
    for (components, positions), tl_fn in sweeps.items():
        print(f"(a) {components} x {positions} ...", flush=True)
        kw = {"components": components, "positions": positions}
        res, ours = timed(lambda kw=kw: rw.patching(clean, corrupt, metric, progress=False, **kw))
        row = {"sweep": f"{components}, positions={positions}", "runs": res.raw.numel(), "ours": ours}
        if tl_fn is not None:
            with torch.no_grad():
                ref, theirs = timed(lambda fn=tl_fn: fn(bridge, corrupt.token_ids[None], cache,
                                                        lambda z: z[0, -1, a] - z[0, -1, b]))
            row.update(tl=theirs, diff=float((res.raw - ref.float().cpu().reshape(res.raw.shape)).abs().max()))
        att, attr_s = timed(lambda kw=kw: rw.patching(clean, corrupt, metric, method="attribution", **kw))
        row.update(attr=attr_s, corr=float(torch.corrcoef(torch.stack([att.raw.flatten(), res.raw.flatten()]))[0, 1]))
        rows.append(row)
        loads.append(os.getloadavg()[0])
        print(row, flush=True)

    print("(c) edit vs decompose ...", flush=True)
    reps = 3 if args.quick else 7
    v = clean.deltas[clean.index("attn.12"), -1]
    edit_times = interleaved_medians({
        "decompose": lambda: rw.decompose(model, CLEAN, tokenizer=tok),
        "edit Zero(mlp.20)": lambda: clean.edit(rw.Zero("mlp.20")),
        "edit Zero(attn.5, head=3, positions=[-1])": lambda: clean.edit(rw.Zero("attn.5", head=3, positions=[-1])),
        "edit Add(attn.12) + Patch(attn.14)": lambda: clean.edit(
            rw.Add("attn.12", vector=v, scale=4.0, positions=[-1]),
            rw.Patch("attn.14", source=corrupt, positions=[-3, -2, -1])),
    }, reps, clock=time.process_time)
    loads.append(os.getloadavg()[0])

    table = "\n".join(
        f"| {r['sweep']} | {r['runs']} | {r['ours']:.2f} | "
        + (f"{r['tl']:.2f} | **{r['tl'] / r['ours']:.1f}x** | {r['diff']:.1e}" if "tl" in r else "- | - | -")
        + f" | {r['attr']:.2f} | {r['corr']:.3f} |" for r in rows)
    base = edit_times["decompose"]
    edits = "\n".join(f"| {name} | {s * 1e3:.0f} | {s / base:.2f}x |" for name, s in edit_times.items())
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    block = f"""## Activation patching and edits (SmolLM2-135M-Instruct, IOI, T={T})

`python benchmarks/bench_patching.py{' --quick' if args.quick else ''}` on {platform.machine()}, {os.cpu_count()} CPUs,
torch {torch.__version__} ({torch.get_num_threads()} thread), {now}. **Times are CPU seconds of the benchmark's
process** (`time.process_time`, one torch thread): the machine is shared and was overloaded (load average
{min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores), so wall-clock times measured the other jobs. Prompts: "{CLEAN}" (clean) and
"...{CORRUPT[-22:]}" (corrupted), metric logit(" Mary") − logit(" John").
{'' if why is None else f'TransformerLens not measured: {why}.'}

(a, b) One sweep = every patch of that kind (the "runs" column). `rw.patching(method="exact")` starts each
patched run at the patched layer from the corrupted run's stored stream and runs {64} patches per forward;
TransformerLens's `get_act_patch_*` runs one full forward of the bridge per patch. "max diff" is the
largest difference of the two results (same weights, fp32). Attribution patching: one forward and one
backward pass; "corr" is its correlation with the exact values of the sweep.

| sweep | runs | rw exact (CPU s) | TL loop (CPU s) | speed-up | max diff | rw attribution (CPU s) | corr (attribution, exact) |
|---|---|---|---|---|---|---|---|
{table}

(c) `dec.edit(...)` re-runs the prompt with the edit's hooks and records the edited stream; median of
{reps} interleaved runs against a plain `rw.decompose` of the same prompt:

| run | CPU ms | vs decompose |
|---|---|---|
{edits}"""
    write_section(Path(args.out), f"{SECTION[0]}\n{block}\n{SECTION[1]}\n", SECTION)


if __name__ == "__main__":
    main()
