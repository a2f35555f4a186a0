"""resid_widgets: how a transformer builds its prediction in the residual stream.

>>> import resid_widgets as rw
>>> dec = rw.decompose(model, "The capital of France is", tokenizer=tok)
>>> dec.contributions(" Paris", method="dla")   # [C] per component
"""
from .adapters import Adapter, register_adapter, supported_families
from .core import Decomposition, NeuronContribution
from .engine import decompose
from .errors import (AdditivityError, NonFiniteWarning, PromptError, ResidWidgetsError, TargetError,
                     UnsupportedModelError)
from .lens import LensResult
from .export import SnapshotMixin, export_html
from . import analysis, buffers, models

__version__ = "0.1.0"

__all__ = [
    "Adapter", "AdditivityError", "Decomposition", "LensResult", "NeuronContribution", "NonFiniteWarning",
    "PromptError", "ResidWidgetsError", "TargetError", "UnsupportedModelError", "buffers", "decompose", "export_html",
    "models",
    "register_adapter", "supported_families",
]

# ---- views (anywidget front end; resid_widgets/views/) ---------------------------------------
from .views import AttentionSources, BlockBudget, ContributionBars, Dashboard, LogitLens, StreamGrid, link  # noqa: E402

__all__ += ["StreamGrid", "ContributionBars", "LogitLens", "Dashboard", "BlockBudget", "AttentionSources", "link"]
