"""resid_widgets: how a transformer builds its prediction in the residual stream.

>>> import resid_widgets as rw
>>> dec = rw.decompose(model, "The capital of France is", tokenizer=tok)
>>> dec.contributions(" Paris", method="dla")   # [C] per component
"""
from importlib import metadata as _metadata

from .adapters import Adapter, register_adapter, supported_families
from .core import Decomposition, NeuronContribution
from .engine import decompose
from .backends.nnsight import RemoteDecomposition, decompose_remote
from .errors import (AdditivityError, NonFiniteWarning, PromptError, ReadoutError, ResidWidgetsError, TargetError,
                     TokenizerError, UnsupportedModelError)
from .lens import LensResult
from .sae import SAEFeatures, SparseAutoencoder
from .tuned_lens import TunedLens
from .export import SnapshotMixin, export_html
from .edits import Add, EditError, Patch, ProjectOut, Zero
from .patching import PatchingError, PatchingResult, logit_diff, patching
from . import analysis, buffers, models

# One source for the version: pyproject.toml, which pip writes into the package metadata.
try:
    __version__ = _metadata.version("resid_widgets")
except _metadata.PackageNotFoundError:  # imported from a source tree that was never pip-installed
    __version__ = "0+unknown"

__all__ = [
    "Adapter", "AdditivityError", "Decomposition", "LensResult", "NeuronContribution", "NonFiniteWarning",
    "PromptError", "ReadoutError", "ResidWidgetsError", "TargetError", "TokenizerError", "UnsupportedModelError", "buffers", "decompose", "export_html",
    "models",
    "register_adapter", "supported_families",
    "SAEFeatures", "SnapshotMixin", "SparseAutoencoder", "TunedLens", "analysis",
    "Add", "EditError", "Patch", "PatchingError", "PatchingResult", "ProjectOut", "Zero", "logit_diff", "patching",
    "RemoteDecomposition", "decompose_remote",
]

# ---- views (anywidget front end; resid_widgets/views/) ---------------------------------------
from .views import AttentionSources, BlockBudget, ContributionBars, Dashboard, LogitLens, StreamGrid, link  # noqa: E402

__all__ += ["StreamGrid", "ContributionBars", "LogitLens", "Dashboard", "BlockBudget", "AttentionSources", "link"]
from .views import AttentionPatterns  # noqa: E402

__all__ += ["AttentionPatterns"]
from .views import Compare, PatchingGrid  # noqa: E402

__all__ += ["Compare", "PatchingGrid"]
