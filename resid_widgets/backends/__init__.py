"""Backends: model frameworks other than plain Hugging Face transformers that ``rw.decompose``
accepts (one module each)."""
