"""Analyses on top of a :class:`~resid_widgets.Decomposition`, from the papers named in docs/METHODS.md
(Yu & Ananiadou's neuron and head attribution; Elhage et al. 2021's paths, bandwidth and induction
heads; the block budget of the lesson "The residual stream as the object").

>>> dec = rw.decompose(model, "The capital of France is", tokenizer=tok)
>>> rw.analysis.ffn_subvalues(dec, " Paris").rows[:3]          # FFN neurons (Yu & Ananiadou)
>>> rw.analysis.attention_subvalues(dec, " Paris").figure()    # head × source token
>>> rw.analysis.neuron_input_shares(dec, layer=20, neuron=7)    # what switches a neuron on
>>> rw.analysis.block_budget(dec, target=" Paris").figure()    # the bigram floor and up
>>> rw.analysis.induction_scores(model, tokenizer=tok).top()    # [L, H] induction heads
>>> rw.analysis.bandwidth(dec).figure()                          # residual bandwidth
>>> rw.analysis.head_scores(dec).figure()                        # previous-token / sink / induction heads
>>> rw.analysis.induction_circuit(model, tokenizer=tok).rows     # which heads the induction keys read

Every result has ``.rows`` (list of dicts), ``.to_pandas()`` (with pandas) and ``.figure()``
(a plotly Figure).
"""
from ._common import AnalysisError, AttentionCapture, capture_attention
from .attention import AttentionSubvalues, attention_subvalues
from .circuit import InductionCircuit, induction_circuit
from .budget import BlockBudgetResult, DropOne, block_budget, drop_one
from .cross_layer import CrossLayer, NeuronInputShares, cross_layer, neuron_input_shares
from .ffn import FFNSubvalues, ffn_subvalues, neuron_subvalue
from .induction import InductionScores, induction_prompt, induction_scores
from .paths import Bandwidth, BlockPaths, DirectPath, bandwidth, block_paths, direct_path
from .patterns import SCORE_KINDS, HeadScores, LayerPattern, head_scores

__all__ = [
    "AnalysisError", "AttentionCapture", "AttentionSubvalues", "Bandwidth", "BlockBudgetResult", "BlockPaths",
    "CrossLayer", "DirectPath", "DropOne", "FFNSubvalues", "HeadScores", "InductionCircuit", "InductionScores",
    "LayerPattern", "NeuronInputShares", "SCORE_KINDS",
    "attention_subvalues", "bandwidth", "block_budget", "block_paths", "capture_attention", "cross_layer",
    "direct_path", "drop_one", "ffn_subvalues", "head_scores", "induction_circuit", "induction_prompt",
    "induction_scores", "neuron_input_shares", "neuron_subvalue",
]
