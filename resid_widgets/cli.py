"""Command line: ``resid-widgets snapshot --prompt "..." -o out.html``.

Runs a causal LM on a prompt, decomposes its residual stream and writes an offline,
self-contained HTML snapshot of a view (any of ``resid_widgets.views.VIEWS``, by ``short_name``).
Every failure the user can fix ends in one line on stderr (exit status 1), never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import math
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence


def _view_classes() -> dict[str, type]:
    """{--view name: view class}, from the views package's one list."""
    from .views import VIEWS

    return {cls.short_name: cls for cls in VIEWS}


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

A missing output folder is created (and the CLI says so); an output that is a folder, a symbolic
link or a device is refused, never replaced.
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
    snap.add_argument("--position", type=int, default=-1,
                      help="prompt position to explain (default: -1, the last; negative counts from the end)")
    snap.add_argument("--view", choices=list(_view_classes()), default="dashboard", help="which view (default: dashboard)")
    snap.add_argument("-o", "--output", type=Path, default=Path("snapshot.html"),
                      help="output HTML file (default: snapshot.html); a missing folder is created")
    snap.add_argument(
        "--budget-mb", type=_budget_mb, default=None, metavar="MB",
        help="size budget of the file in MB (default: 4.5); what does not fit is listed in the file",
    )
    snap.add_argument("--title", default=None, help="page title")
    snap.add_argument("--device", default="cpu", help="torch device to run on (default: cpu)")
    snap.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return parser


def _budget_mb(text: str) -> float:
    """``--budget-mb``: a finite, positive number of megabytes."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of megabytes") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive, finite number of megabytes, got {text}")
    return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _checked_device(spec: str):
    """The torch device ``spec`` names, once a tensor was made there; a CLIError otherwise."""
    import torch

    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError, ValueError):
        raise CLIError(f"--device {spec!r} is not a torch device; use cpu, cuda, cuda:1, mps, ...") from None
    if device.type == "meta":
        raise CLIError("--device meta holds no numbers to run a prompt on; use cpu, cuda, mps, ...")
    try:
        torch.empty(1, device=device)
    except Exception as exc:  # no CUDA build, no driver, a missing GPU index, ...
        raise CLIError(f"--device {spec} is not available on this machine ({_first_line(exc)}); "
                       "leave --device out to run on the CPU") from None
    return device


def _load_model(spec: str | None, device: str):
    """(model, tokenizer) on ``device`` from None (bundled SmolLM2), a model folder or a .gguf file."""
    if spec is None:
        from . import models

        try:
            return models.smollm2(device=None if device == "cpu" else device)
        except (ImportError, FileNotFoundError) as exc:
            raise CLIError(f"the default model is not installed: {_first_line(exc)}") from None

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
        raise CLIError(f"could not load the model from {spec}: {_first_line(exc)}") from exc
    model.eval()
    if device != "cpu":
        try:
            model.to(device)
        except Exception as exc:  # e.g. out of device memory
            raise CLIError(f"could not move the model to {device}: {_first_line(exc)}") from exc
    return model, tokenizer


def _smollm2_cached() -> bool:
    try:
        from . import models

        return (models.cache_dir() / "smollm2-135m-instruct" / "config.json").is_file()
    except Exception:
        return True


def _make_view(view: str, dec: Any, targets: Sequence[str] | None, position: int):
    cls = _view_classes()[view]
    # the mixins' __init__ pass **kwargs on: what the view accepts is what any __init__ on its MRO names
    accepts = {name for klass in cls.__mro__ if "__init__" in vars(klass)
               for name in inspect.signature(klass.__init__).parameters}
    kwargs: dict[str, Any] = {"position": position}
    if targets:
        if "target" not in accepts:
            raise CLIError(f"--view {view} shows no target; leave --target out")
        kwargs["target"] = targets[0]
        if len(targets) > 1:
            if "targets" not in accepts:
                raise CLIError(f"--view {view} shows one target; give --target once")
            kwargs["targets"] = list(targets[1:])
    with warnings.catch_warnings():
        # a view that cannot be built warns and shows the reason in its cell; here it is our error line
        warnings.filterwarnings("ignore", message=r".*: cannot show", category=RuntimeWarning)
        widget = cls(dec, **kwargs)
    err = getattr(widget, "_error", "")
    if err:
        raise CLIError(err)
    return widget


class _Steps:
    """One tqdm line per step on stderr. On a terminal its clock ticks, so a long step never looks
    stuck; steps with countable work (writing the snapshot) fill their bar as they go."""

    FORMAT = "{desc:<26} {bar:24} {n_fmt}/{total_fmt} [{elapsed}<{remaining}]"

    def __init__(self, quiet: bool):
        self.quiet = quiet

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[Any]:
        from tqdm.auto import tqdm

        bar = tqdm(total=1, desc=name, unit="step", disable=self.quiet, file=sys.stderr, bar_format=self.FORMAT)
        stop = threading.Event()
        ticker = None
        if not self.quiet and sys.stderr.isatty():
            ticker = threading.Thread(target=self._tick, args=(bar, stop), daemon=True)
            ticker.start()
        try:
            yield bar
            bar.update(max(0, bar.total - bar.n))  # a finished step shows full
        finally:
            stop.set()
            if ticker is not None:
                ticker.join()
            bar.close()

    @staticmethod
    def _tick(bar, stop: threading.Event) -> None:
        while not stop.wait(0.5):
            bar.refresh()


def _check_writable(folder: Path) -> None:
    """Make and remove a temporary file in ``folder``: the one test that also holds for root and
    read-only file systems."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise CLIError(f"cannot write into the folder {folder}: {exc.strerror or _first_line(exc)}") from None


def _read_prompt(args: argparse.Namespace) -> str:
    if args.prompt_file is None:
        prompt = args.prompt
        try:  # bytes that are not UTF-8 reach argv as lone surrogates, which no tokenizer takes
            prompt.encode("utf-8")
        except UnicodeEncodeError:
            raise CLIError("--prompt is not valid UTF-8 text; set the terminal to UTF-8, or pass a UTF-8 "
                           "file with --prompt-file") from None
    else:
        try:
            prompt = args.prompt_file.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise CLIError(f"the prompt file {args.prompt_file} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} "
                           f"at offset {exc.start}); save it as UTF-8") from None
        except OSError as exc:
            raise CLIError(f"cannot read the prompt file: {exc.strerror or exc}: {args.prompt_file}") from None
    if not prompt or not prompt.strip():
        raise CLIError("the prompt is empty")
    return prompt


def snapshot(args: argparse.Namespace) -> Path:
    from .export import DEFAULT_BUDGET_BYTES, check_output_path, export_html

    prompt = _read_prompt(args)
    try:  # before the model runs: a bad output path fails at once, not after a minute
        out = check_output_path(args.output)
    except OSError as exc:
        raise CLIError(str(exc)) from None
    missing = [folder for folder in (out.parent, *out.parent.parents) if not folder.exists()]
    _check_writable(next(folder for folder in (out.parent, *out.parent.parents) if folder.exists()))
    device = _checked_device(args.device)

    try:  # our bars only (transformers' own bars would interleave with them)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except Exception:  # pragma: no cover
        pass

    steps = _Steps(args.quiet)
    t0 = time.perf_counter()
    with steps.step("loading the model") as bar:
        import resid_widgets as rw

        if args.model is None and not _smollm2_cached():
            bar.set_description("converting SmolLM2 (once, ~35 s)")
        model, tokenizer = _load_model(args.model, str(device))

    with steps.step("running the model"):
        try:
            dec = rw.decompose(model, prompt, tokenizer=tokenizer)
        except Exception as exc:
            raise CLIError(f"could not decompose this model: {type(exc).__name__}: {_first_line(exc)}") from exc

    with steps.step("building the view"):
        n_tokens = len(dec.tokens)
        if not -n_tokens <= args.position < n_tokens:
            raise CLIError(f"--position {args.position} is outside the prompt: it has {n_tokens} token"
                           f"{'s' if n_tokens != 1 else ''} (positions 0..{n_tokens - 1}, or -{n_tokens}..-1 from the end)")
        for tgt in args.target or ():
            try:
                dec.target_id(tgt)
            except Exception as exc:
                raise CLIError(f"target {tgt!r}: {_first_line(exc)}") from exc
        widget = _make_view(args.view, dec, args.target, args.position)

    with steps.step("writing the snapshot") as bar:
        budget = DEFAULT_BUDGET_BYTES if args.budget_mb is None else int(args.budget_mb * 1_000_000)
        try:
            path = export_html(widget, out, budget_bytes=budget, title=args.title, progress=False if args.quiet else bar)
        except OSError as exc:
            raise CLIError(f"could not write {out}: {exc.strerror or _first_line(exc)}") from None
    if missing:  # said even with --quiet: it changed more than the one file asked for
        print(f"resid-widgets: created the folder {missing[-1]}", file=sys.stderr)
    if not args.quiet:
        size = path.stat().st_size
        print(f"wrote {path} ({size / 1e6:.2f} MB, {time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return path


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line each (no source line): the CLI's output is for people."""
    print(f"resid-widgets: warning: {message}", file=sys.stderr)


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
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
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
