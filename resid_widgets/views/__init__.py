"""anywidget views of a Decomposition: StreamGrid, ContributionBars, LogitLens, Dashboard.

>>> import resid_widgets as rw
>>> dec = rw.decompose(model, "The capital of France is", tokenizer=tok)
>>> rw.Dashboard(dec)                     # grid + bars + lens, linked (also in HTML snapshots)
>>> grid = rw.StreamGrid(dec); grid       # rows = states, columns = tokens
>>> grid.selected = (3, 5)                # moves the highlight; a click updates grid.selected
>>> grid.metric = "dla"                   # "norm" | "delta" | "prob" | "dla"
>>> bars = rw.ContributionBars(dec, target=" Paris", position=-1)
>>> bars.method = "logprob"               # or "dla"
>>> rw.LogitLens(dec).figure()            # a plotly Figure of what the view shows
>>> rw.BlockBudget(dec, position=-1, k=10) # slider k = 0..L: top-k next tokens with blocks 0..k-1
>>> rw.AttentionSources(dec, " Paris")     # head x source-token DLA heatmap, layer selector
>>> rw.link(grid, rw.LogitLens(dec), bars) # views in separate cells follow one selection/target
>>> rw.AttentionPatterns(dec, layer=17)    # every head's pattern; click one to open it; head scores
>>> rw.LogitLens(dec, tuned_lens=tl)       # logit lens | tuned lens toggle (``lens`` trait)
>>> rw.StreamGrid(dec, saes={"mlp.14": sae}) # the vector pane's "features" mode (``pane_mode``)
>>> rw.PatchingGrid(rw.patching(clean, corrupt, metric=rw.logit_diff(" Mary", " John")))
>>> rw.Compare(clean, corrupt, metric=rw.logit_diff(" Mary", " John"))  # both grids, paired bars, patching

All share one ESM bundle (``resid_widgets/static/widget.js``, built from ``js/`` by
``npm run build``) that dispatches on the ``_rw_view`` trait. Numbers travel as binary buffers
(float16/float32/int32 with dtype and shape; top-k lens entries only). The vector pane of a
clicked cell is fetched from the kernel on demand; ``_snapshot_state(budget_bytes)`` embeds the
panes (float16) and per-head values for offline HTML snapshots.
"""

from ._base import ResidView
from .attention_patterns import AttentionPatterns
from .attention_sources import AttentionSources
from .block_budget import BlockBudget
from .compare import Compare
from .contribution_bars import ContributionBars
from .dashboard import Dashboard
from .linking import link
from .logit_lens import LogitLens
from .patching_grid import PatchingGrid
from .stream_grid import StreamGrid

#: every view class, in the order the docs list them; each has a ``short_name`` (the CLI's ``--view``)
VIEWS = (Dashboard, StreamGrid, ContributionBars, LogitLens, BlockBudget, AttentionSources, AttentionPatterns)
#: the views of two prompts (a patching result, a clean/corrupt pair): not made from one Decomposition
TWO_PROMPT_VIEWS = (PatchingGrid, Compare)

__all__ = ["StreamGrid", "ContributionBars", "LogitLens", "Dashboard", "BlockBudget", "AttentionSources",
           "AttentionPatterns", "PatchingGrid", "Compare", "ResidView", "link", "VIEWS", "TWO_PROMPT_VIEWS"]
