"""Backends: the engines behind :func:`resid_widgets.decompose`, one per model framework.

Each backend runs one forward pass of its framework's model, records what every component adds
to the residual stream, and returns a :class:`~resid_widgets.Decomposition` checked with
:mod:`resid_widgets.checks`. Its weights object implements
:class:`~resid_widgets.weights.WeightsReader`.
"""
