"""View benchmarks (issue 11): how long each view takes to appear after ``decompose``, and an
export, for SmolLM2-135M prompts of 10 and 207 tokens on this CPU.

Run: python benchmarks/bench_views.py [--quick]   (CPU; updates its section of benchmarks/results.md)

For each prompt length: ``rw.decompose``, then, on that one Decomposition, the first ``Dashboard``
(pays the logit lens of every state, cached on the Decomposition for the views after it), a second
``Dashboard``, ``BlockBudget`` (drop-one effects on demand past 48 tokens; timed separately as
``compute_drop``), ``AttentionSources`` and ``export_html`` of the Dashboard (8 MB budget). Each
number is one wall-clock run (the first view's cost is a one-off by nature); ``--quick`` measures
10 tokens only. Goals: every view under 3 s and exports under 10 s at 207 tokens.
"""
from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

import resid_widgets as rw  # noqa: E402
from bench_core import bench_args, write_section  # noqa: E402

SECTION = ("<!-- bench_views: begin -->", "<!-- bench_views: end -->")
SENTENCE = "The capital of France is Paris, and the capital of Italy is Rome. "


def prompt_ids(tok, T: int) -> torch.Tensor:
    ids = tok(SENTENCE * (T // 8 + 2), return_tensors="pt").input_ids[:, :T]
    assert ids.shape[1] == T
    return ids


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def bench_one(model, tok, T: int) -> dict:
    ids = prompt_ids(tok, T)
    dec, t_dec = timed(lambda: rw.decompose(model, ids, tokenizer=tok))
    row = {"T": T, "decompose": t_dec}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dash, row["Dashboard (first)"] = timed(lambda: rw.Dashboard(dec))
        _, row["Dashboard (again)"] = timed(lambda: rw.Dashboard(dec))
        budget, row["BlockBudget"] = timed(lambda: rw.BlockBudget(dec))
        row["BlockBudget.compute_drop"] = timed(budget.compute_drop)[1] if budget._data.get("drop_pending") else None
        _, row["AttentionSources"] = timed(lambda: rw.AttentionSources(dec))
        with tempfile.TemporaryDirectory() as tmp:
            _, row["export_html(Dashboard)"] = timed(lambda: rw.export_html(dash, Path(tmp) / "d.html"))
    return row


def report(rows: list[dict], args) -> str:
    cols = [k for k in rows[0] if k != "T"]
    lines = [SECTION[0], "## Views: time to appear (bench_views.py)", "",
             f"SmolLM2-135M fp32 on CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"torch {torch.__version__}, {torch.get_num_threads()} threads); one wall-clock run each, seconds. "
             "The first Dashboard pays the logit lens of every state (cached for the views after it).", "",
             "| step | " + " | ".join(f"T = {r['T']}" for r in rows) + " |",
             "|---|" + "---:|" * len(rows)]
    for c in cols:
        cells = ["—" if r[c] is None else f"{r[c]:.2f}" for r in rows]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    lines += ["", SECTION[1]]
    return "\n".join(lines)


def main():
    args = bench_args("10 tokens only", lambda what, T: {})
    if args is None:
        return
    model, tok = rw.models.smollm2()
    rows = []
    for T in ([10] if args.quick else [10, 207]):
        print(f"T={T} ...", flush=True)
        rows.append(bench_one(model, tok, T))
        print(rows[-1], flush=True)
    write_section(Path(args.out), report(rows, args), SECTION)


if __name__ == "__main__":
    main()
