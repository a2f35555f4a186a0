"""One run at a time per model, and the model left exactly as it was found.

Every run that hooks a model, switches its attention implementation or loads offloaded weights
holds that model's lock (:func:`model_lock`) from before its first hook is placed until its last
is removed. Without it, two threads running one model see each other's hooks fire in their
forward passes, and one thread's restore of the train/eval flags undoes the other's.
Runs on different models never wait for each other.
"""
from __future__ import annotations

import threading
import weakref
from contextlib import contextmanager
from typing import Iterator

import torch

# model -> its re-entrant lock (one run may call another on the same model, e.g. an analysis
# that re-runs the model while it reads weights). Weak keys: a dropped model drops its lock.
_locks: "weakref.WeakKeyDictionary[torch.nn.Module, threading.RLock]" = weakref.WeakKeyDictionary()
_locks_guard = threading.Lock()


def model_lock(model: torch.nn.Module) -> threading.RLock:
    """The re-entrant lock that every resid_widgets run on ``model`` holds.

    Args:
        model: the model (one lock per model object, kept as long as the model lives).
    """
    with _locks_guard:
        lock = _locks.get(model)
        if lock is None:
            lock = _locks[model] = threading.RLock()
        return lock


@contextmanager
def model_left_as_found(model: torch.nn.Module) -> Iterator[None]:
    """Hold the model's lock; eval() and no_grad for the run. Afterwards every module's
    train/eval flag and every parameter's requires_grad are exactly as before, also when the run
    raises. Place hooks inside the block (or inside :func:`hooks`), so no other run sees them.

    Args:
        model: the model the run uses.
    """
    with model_lock(model):
        modules = list(model.modules())  # one walk; Module.eval() and .parameters() walk again
        training = [module for module in modules if module.training]
        grads = [(param, param.requires_grad) for module in modules for param in module.parameters(recurse=False)]
        if training:  # eval() walks the whole model again: only when something trains
            model.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            if any(module.training for module in modules):  # something in the run switched it on
                model.eval()
            for module in training:
                module.training = True
            for param, flag in grads:
                if param.requires_grad != flag:
                    param.requires_grad_(flag)


@contextmanager
def hooks(model: torch.nn.Module) -> Iterator[list]:
    """A list to put hook handles in, while holding ``model``'s lock; every handle is removed on
    exit, also on errors.

    Args:
        model: the model whose lock is held.
    """
    handles: list = []
    with model_lock(model):
        try:
            yield handles
        finally:
            for handle in handles:
                handle.remove()
