"""The seeds' analyses on top of a :class:`~resid_widgets.Decomposition` (see METHODS.md).

>>> dec = rw.decompose(model, "The capital of France is", tokenizer=tok)
>>> rw.analysis.ffn_subvalues(dec, " Paris").rows[:3]          # FFN neurons (Yu & Ananiadou)
>>> rw.analysis.attention_subvalues(dec, " Paris").figure()    # head × source token
>>> rw.analysis.neuron_input_shares(dec, layer=20, neuron=7)    # what switches a neuron on
>>> rw.analysis.block_budget(dec, target=" Paris").figure()    # the bigram floor and up
>>> rw.analysis.induction_scores(model, tokenizer=tok).top()    # [L, H] induction heads
>>> rw.analysis.bandwidth(dec).figure()                          # residual bandwidth

Every result has ``.rows`` (list of dicts), ``.to_pandas()`` (with pandas) and ``.figure()``
(a plotly Figure).
"""
from ._common import AnalysisError, AttentionCapture, capture_attention, eager_attention
from .attention import AttentionSubvalues, attention_subvalues
from .budget import BlockBudget, DropOne, block_budget, drop_one
from .cross_layer import CrossLayer, NeuronInputShares, cross_layer, neuron_input_shares
from .ffn import FFNSubvalues, ffn_subvalues, neuron_subvalue
from .induction import InductionScores, induction_prompt, induction_scores
from .paths import Bandwidth, BlockPaths, DirectPath, bandwidth, block_paths, direct_path

__all__ = [
    "AnalysisError", "AttentionCapture", "AttentionSubvalues", "Bandwidth", "BlockBudget", "BlockPaths",
    "CrossLayer", "DirectPath", "DropOne", "FFNSubvalues", "InductionScores", "NeuronInputShares",
    "attention_subvalues", "bandwidth", "block_budget", "block_paths", "capture_attention", "cross_layer",
    "direct_path", "drop_one", "eager_attention", "ffn_subvalues", "induction_prompt", "induction_scores",
    "neuron_input_shares", "neuron_subvalue",
]
