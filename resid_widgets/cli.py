"""Command line: ``resid-widgets snapshot --prompt "..." -o out.html``.

Runs a causal LM on a prompt, decomposes its residual stream and writes an offline,
self-contained HTML snapshot of a view (dashboard, grid, bars or lens).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Sequence

VIEWS = {
    "dashboard": "Dashboard",
    "grid": "StreamGrid",
    "bars": "ContributionBars",
    "lens": "LogitLens",
}

_EPILOG = """\
examples:
  resid-widgets snapshot --prompt "The capital of France is" --target " Paris" -o paris.html
  resid-widgets snapshot --prompt "..." --model ./my-hf-model-dir --view lens -o lens.html
  resid-widgets snapshot --prompt "..." --model ./model.Q8_0.gguf -o out.html

The default model is SmolLM2-135M-Instruct shipped with the package (no download).  A directory
is loaded with transformers' AutoModelForCausalLM / AutoTokenizer; a .gguf file is loaded by
transformers from its folder with gguf_file=<name> (dequantized to float32).  Nothing is ever
fetched from the network: the model must be on disk.

The HTML file works offline: open it in any browser, no Python needed.  Grid clicks, the
raw/decompose toggle, lens tooltips, the contribution method and the precomputed targets stay
interactive; what needs the kernel says so.
"""


class CLIError(Exception):
    """A problem the user can fix; printed without a traceback."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resid-widgets",
        description="See how a transformer LM builds its prediction in the residual stream.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `resid-widgets snapshot --help` for the snapshot options.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    snap = sub.add_parser(
        "snapshot",
        help="write an offline HTML snapshot of a view of a prompt",
        description="Run a model on a prompt and write a self-contained, offline HTML snapshot "
        "of a resid_widgets view.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_EPILOG,
    )
    src = snap.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", "-p", help="the prompt text")
    src.add_argument("--prompt-file", type=Path, metavar="FILE", help="read the prompt from a UTF-8 text file")
    snap.add_argument(
        "--model", "-m", default=None, metavar="DIR_OR_GGUF",
        help="a Hugging Face model folder or a .gguf file (default: the bundled SmolLM2-135M-Instruct)",
    )
    snap.add_argument(
        "--target", "-t", action="append", default=None, metavar="TOKEN",
        help='target token to explain, e.g. " Paris" (mind the leading space); repeat to precompute '
        "several targets that the snapshot can switch between (default: the model's top prediction)",
    )
    snap.add_argument("--position", type=int, default=-1, help="prompt position to explain (default: -1, the last)")
    snap.add_argument("--view", choices=sorted(VIEWS), default="dashboard", help="which view (default: dashboard)")
    snap.add_argument("-o", "--output", type=Path, default=Path("snapshot.html"), help="output HTML file (default: snapshot.html)")
    snap.add_argument(
        "--budget-mb", type=float, default=None, metavar="MB",
        help="size budget of the file in MB (default: 4.5); what does not fit is listed in the file",
    )
    snap.add_argument("--title", default=None, help="page title")
    snap.add_argument("--device", default="cpu", help="torch device to run on (default: cpu)")
    snap.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return parser


def _load_model(spec: str | None, device: str):
    """(model, tokenizer) from None (bundled SmolLM2), a model folder or a .gguf file."""
    if spec is None:
        from . import models

        return models.smollm2()

    path = Path(spec).expanduser()
    if not path.exists():
        raise CLIError(f"model not found: {spec} (give a Hugging Face model folder or a .gguf file)")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise CLIError(f"{spec} is a folder without config.json; is it a Hugging Face model folder?")
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
        elif path.suffix.lower() == ".gguf":
            tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
        else:
            raise CLIError(f"{spec}: expected a model folder or a .gguf file")
    except CLIError:
        raise
    except Exception as exc:  # transformers' messages are long; keep the first line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CLIError(f"could not load the model from {spec}: {first}") from exc
    model.eval()
    if device != "cpu":
        model.to(device)
    return model, tokenizer


def _smollm2_cached() -> bool:
    try:
        from . import models

        return (models.cache_dir() / "smollm2-135m-instruct" / "config.json").is_file()
    except Exception:
        return True


def _make_view(rw: Any, view: str, dec: Any, targets: Sequence[str] | None, position: int):
    cls = getattr(rw, VIEWS[view], None)
    if cls is None:
        from . import views as _views

        cls = getattr(_views, VIEWS[view])
    kwargs: dict[str, Any] = {"position": position}
    if targets:
        kwargs["target"] = targets[0]
        if len(targets) > 1:
            kwargs["targets"] = list(targets[1:])
    widget = cls(dec, **kwargs)
    err = getattr(widget, "_error", "")
    if err:
        raise CLIError(err)
    return widget


def snapshot(args: argparse.Namespace) -> Path:
    from tqdm.auto import tqdm

    if args.prompt_file is not None:
        try:
            prompt = args.prompt_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise CLIError(f"cannot read the prompt file: {exc}") from exc
    else:
        prompt = args.prompt
    if not prompt or not prompt.strip():
        raise CLIError("the prompt is empty")
    out = args.output
    if out.exists() and out.is_dir():
        raise CLIError(f"{out} is a folder; give a file name such as {out / 'snapshot.html'}")

    try:  # one progress bar: ours (transformers' own bars would interleave with it)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except Exception:  # pragma: no cover
        pass

    steps = ["loading the model", "running the model", "building the view", "writing the snapshot"]
    bar = tqdm(total=len(steps), unit="step", disable=args.quiet, file=sys.stderr,
               bar_format="{desc:<24} {bar} {n_fmt}/{total_fmt} [{elapsed}]")
    t0 = time.perf_counter()
    try:
        bar.set_description(steps[0])
        import resid_widgets as rw

        if args.model is None and not _smollm2_cached():
            bar.set_description("converting SmolLM2 (once, ~35 s)")
        from .export import DEFAULT_BUDGET_BYTES, export_html

        model, tokenizer = _load_model(args.model, args.device)
        bar.update()

        bar.set_description(steps[1])
        try:
            dec = rw.decompose(model, prompt, tokenizer=tokenizer)
        except Exception as exc:
            raise CLIError(f"could not decompose this model: {type(exc).__name__}: {exc}") from exc
        bar.update()

        bar.set_description(steps[2])
        if args.targets_checked:
            for tgt in args.targets_checked:
                try:
                    dec.target_id(tgt)
                except Exception as exc:
                    raise CLIError(f"target {tgt!r}: {exc}") from exc
        widget = _make_view(rw, args.view, dec, args.targets_checked, args.position)
        bar.update()

        bar.set_description(steps[3])
        budget = DEFAULT_BUDGET_BYTES if args.budget_mb is None else int(args.budget_mb * 1_000_000)
        path = export_html(widget, out, budget_bytes=budget, title=args.title)
        bar.update()
    finally:
        bar.close()
    size = path.stat().st_size
    if not args.quiet:
        print(f"wrote {path} ({size / 1e6:.2f} MB, {time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.version:
        from .export import _version

        print(f"resid-widgets {_version()}")
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    args.targets_checked = args.target
    if args.budget_mb is not None and args.budget_mb <= 0:
        parser.error("--budget-mb must be positive")
    try:
        snapshot(args)
    except CLIError as exc:
        print(f"resid-widgets: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("resid-widgets: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
