"""Model-family adapters. See :class:`Adapter`."""
from .base import Adapter, adapter_for, get_module, register_adapter, supported_families
from . import families  # noqa: F401  (registers the built-in families)

__all__ = ["Adapter", "adapter_for", "get_module", "register_adapter", "supported_families"]
