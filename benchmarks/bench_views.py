"""View benchmarks (issue 11): how long each view takes to appear after ``decompose``, and an
export, for SmolLM2-135M prompts of 10 and 207 tokens on this CPU.

Run: python benchmarks/bench_views.py [--quick]   (CPU; updates its section of benchmarks/results.md)

For each prompt length: ``rw.decompose``, then, on that one Decomposition, the first ``Dashboard``
(the logit lens of the positions nearest the shown one only, past ``FIRST_LENS_CELLS`` cells), the
rest of its lens (what the kernel computes once the view is up; cached on the Decomposition for the
views after it), a second ``Dashboard``, ``StreamGrid``, ``LogitLens``, ``ContributionBars``,
``BlockBudget`` (drop-one effects on demand past 48 tokens; timed separately as ``compute_drop``),
``AttentionSources`` and ``export_html`` of the Dashboard (default budget). Each number is one
wall-clock run (the first view's cost is a one-off by nature); ``--quick`` measures 10 tokens
only. Goals: every view under 3 s and exports under 10 s at 207 tokens. A second table gives the
bytes of binary buffers each view's saved widget state holds (what "Save widget state" writes,
as base64, plus ~110 KB of JSON per view, mostly the bundle).
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


def state_bytes(widget) -> int:
    """Bytes of binary buffers in ``widget.get_state()``."""
    from ipywidgets.widgets.widget import _remove_buffers

    return sum(len(bytes(b)) for b in _remove_buffers(widget.get_state())[2])


def bench_one(model, tok, T: int) -> tuple[dict, dict]:
    ids = prompt_ids(tok, T)
    dec, t_dec = timed(lambda: rw.decompose(model, ids, tokenizer=tok))
    row = {"T": T, "decompose": t_dec}
    sizes = {"T": T}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dash, row["Dashboard (first)"] = timed(lambda: rw.Dashboard(dec))
        row["Dashboard: rest of the lens"] = timed(dash._complete_lens)[1] if "lens_positions" in dash._meta else None
        _, row["Dashboard (again)"] = timed(lambda: rw.Dashboard(dec))
        views = {"Dashboard": dash}
        for cls in (rw.StreamGrid, rw.LogitLens, rw.ContributionBars):
            views[cls.__name__], row[cls.__name__] = timed(lambda cls=cls: cls(dec))
        budget, row["BlockBudget"] = timed(lambda: rw.BlockBudget(dec))
        row["BlockBudget.compute_drop"] = timed(budget.compute_drop)[1] if budget._data.get("drop_pending") else None
        views["BlockBudget"] = budget
        views["AttentionSources"], row["AttentionSources"] = timed(lambda: rw.AttentionSources(dec))
        with tempfile.TemporaryDirectory() as tmp:
            path, row["export_html(Dashboard)"] = timed(lambda: rw.export_html(dash, Path(tmp) / "d.html", progress=False))
            sizes["snapshot file (Dashboard)"] = path.stat().st_size
        for name, view in views.items():
            sizes[name] = state_bytes(view)
    return row, sizes


def report(rows: list[dict], sizes: list[dict], args) -> str:
    cols = [k for k in rows[0] if k != "T"]
    lines = [SECTION[0], "## Views: time to appear (bench_views.py)", "",
             f"SmolLM2-135M fp32 on CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"torch {torch.__version__}, {torch.get_num_threads()} threads; load average {args.load:.1f} when it "
             "started: other jobs shared the cores, compare steps within a column); one wall-clock run each, seconds. "
             "The first Dashboard computes the lens of the positions nearest the shown one; the rest of its "
             "lens follows once it is up (cached for the views after it).", "",
             "| step | " + " | ".join(f"T = {r['T']}" for r in rows) + " |",
             "|---|" + "---:|" * len(rows)]
    for c in cols:
        cells = ["—" if r[c] is None else f"{r[c]:.2f}" for r in rows]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    lines += ["", "Saved widget state, bytes of binary buffers (base64 in the notebook), and the snapshot file:", "",
              "| view | " + " | ".join(f"T = {r['T']}" for r in sizes) + " |", "|---|" + "---:|" * len(sizes)]
    for c in [k for k in sizes[0] if k != "T"]:
        lines.append(f"| {c} | " + " | ".join(f"{r[c]:,}" for r in sizes) + " |")
    lines += ["", SECTION[1]]
    return "\n".join(lines)


def main():
    args = bench_args("10 tokens only", lambda what, T: {})
    if args is None:
        return
    args.load = os.getloadavg()[0]
    model, tok = rw.models.smollm2()
    rows, sizes = [], []
    for T in ([10] if args.quick else [10, 207]):
        print(f"T={T} ...", flush=True)
        row, size = bench_one(model, tok, T)
        rows.append(row)
        sizes.append(size)
        print(row, size, flush=True)
    write_section(Path(args.out), report(rows, sizes, args), SECTION)


if __name__ == "__main__":
    main()
