"""Recycled CPU memory for large capture buffers.

A Decomposition keeps ~100 MB of new data for a 135M-parameter model at T=256 (deltas, and the
inputs of the output projections). Fresh memory costs the kernel one page fault per 4 KiB on
first touch: on the CPU that was most of what ``decompose`` added to a forward.
The model's own temporaries don't pay it, because the C allocator recycles them; this pool does
the same for ours: when every tensor (and view) on a buffer is gone, its memory, still resident,
waits here for the next buffer of about its size. At most :data:`MAX_IDLE_BYTES` wait;
:func:`release_memory` hands them back to the system.
"""
from __future__ import annotations

import mmap
import threading
import weakref

import torch

# Below this, the C allocator's own heap recycles buffers well: not worth a mapping.
MIN_BYTES = 1 * 2**20
# Idle memory the pool may keep resident (the oldest idle buffers are unmapped first).
MAX_IDLE_BYTES = 512 * 2**20
# A buffer is served from an idle region at most this much larger than it.
MAX_SLACK = 1.5
_PAGE = mmap.PAGESIZE

# Anonymous private mappings: Linux and macOS; elsewhere (Windows) buffers are plain tensors.
_CAN_MAP = hasattr(mmap, "MAP_PRIVATE") and hasattr(mmap, "MAP_ANONYMOUS")

_lock = threading.RLock()  # re-entrant: a release can run from a GC pass inside an allocation
_idle: list[mmap.mmap] = []  # oldest first


def _release(region: mmap.mmap) -> None:
    """Called when the last tensor on ``region`` is freed: keep it for reuse, within the cap."""
    with _lock:
        _idle.append(region)
        total = sum(len(idle) for idle in _idle)
        while _idle and total > MAX_IDLE_BYTES:
            total -= len(_idle[0])
            _idle.pop(0).close()


def empty(shape, dtype: torch.dtype, device: torch.device | str = "cpu") -> torch.Tensor:
    """Like ``torch.empty(shape, dtype=dtype, device=device)``; large CPU buffers reuse the
    resident memory of freed ones. Contents are undefined (as with ``torch.empty``).

    Args:
        shape: the tensor's shape.
        dtype: its dtype.
        device: its device (the pool serves the CPU only).
    """
    shape = torch.Size(shape)
    nbytes = shape.numel() * dtype.itemsize
    if torch.device(device).type != "cpu" or nbytes < MIN_BYTES or not _CAN_MAP:
        return torch.empty(shape, dtype=dtype, device=device)
    size = -(-nbytes // _PAGE) * _PAGE
    with _lock:
        fits = [idle for idle in _idle if size <= len(idle) <= size * MAX_SLACK]
        region = min(fits, key=len) if fits else None
        if region is not None:
            _idle.remove(region)
    if region is None:
        try:
            region = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        except OSError:  # e.g. a map-count limit: the allocator may still find memory
            return torch.empty(shape, dtype=dtype, device=device)
    # The tensor's storage holds this view of the region, and only it: when the storage is
    # freed (every tensor and view on it gone), the view dies and the region comes back.
    view = memoryview(region)
    weakref.finalize(view, _release, region).atexit = False
    return torch.frombuffer(view, dtype=dtype, count=shape.numel()).view(shape)


def idle_bytes() -> int:
    """Bytes of freed buffers the pool keeps resident for reuse."""
    with _lock:
        return sum(len(idle) for idle in _idle)


def release_memory() -> int:
    """Unmap every idle buffer (returns the bytes given back to the system)."""
    with _lock:
        freed = sum(len(idle) for idle in _idle)
        while _idle:
            _idle.pop().close()
    return freed
