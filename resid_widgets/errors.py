"""Exceptions that name the problem and the fix."""


class ResidWidgetsError(Exception):
    """Base class of every error resid_widgets raises on purpose."""


class UnsupportedModelError(ResidWidgetsError, TypeError):
    """The model's architecture has no adapter (or is not a causal language model)."""


class PromptError(ResidWidgetsError, ValueError):
    """The prompt cannot be run: empty, too long, or of an unknown type."""


class TargetError(ResidWidgetsError, ValueError):
    """A target token is not a single known token of the vocabulary."""


class TokenizerError(ResidWidgetsError, ValueError):
    """The tokenizer does not belong to the model (its vocabulary or special tokens differ)."""


class AdditivityError(ResidWidgetsError, RuntimeError):
    """The recorded deltas do not add up to the model's own residual stream."""


class ReadoutError(ResidWidgetsError, RuntimeError):
    """The final norm and unembedding, as declared, do not reproduce the model's own output."""


class NonFiniteWarning(RuntimeWarning):
    """NaN or inf appeared in the model's activations."""


class TunedLensError(ResidWidgetsError, ValueError):
    """A tuned lens does not fit the model (another model, size or layer count) or its folder."""


class SAEError(ResidWidgetsError, ValueError):
    """A sparse autoencoder does not fit the state it is applied to, or its folder is not readable."""
