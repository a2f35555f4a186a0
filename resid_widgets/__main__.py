"""``python -m resid_widgets``: the demo, offline. Decomposes "The capital of France is" in the
embedded SmolLM2-135M-Instruct, prints where " Paris" comes from, and writes a dashboard snapshot."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resid_widgets", description=__doc__)
    parser.add_argument("--prompt", default="The capital of France is")
    parser.add_argument("-o", "--output", default="resid_widgets_demo.html",
                        help="where to write the dashboard snapshot (HTML, opens offline)")
    args = parser.parse_args(argv)

    import resid_widgets as rw

    model, tok = rw.models.smollm2(progress=True)
    dec = rw.decompose(model, args.prompt, tokenizer=tok)
    print(dec.summary())
    export = getattr(rw, "export_html", None)
    dashboard = getattr(rw, "Dashboard", None)
    if export and dashboard:
        export(dashboard(dec), args.output)
        print(f"\nDashboard snapshot written to {args.output} (open it in any browser, no kernel needed).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
