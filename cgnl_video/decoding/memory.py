"""Process memory: glibc's allocator told what loader and run processes want (elsewhere: nothing done).

A loader process allocates and frees buffers of tens of MiB for every item (decoded frames, a
test item's views: 45 MiB for 10 x 3 views of 8 x 256 x 256). glibc serves blocks that large by
``mmap`` and unmaps them when freed, so every item faults its pages in afresh: at 4 KiB a page,
about 11 ms of a 10 x 3 item's 22 ms of view cutting (measured; 9 ms with the memory kept).

- :func:`keep_freed_memory`: freed memory stays in the process for the next item (large blocks
  from the heap, no trimming), as a caching allocator would; the process keeps its peak size.
  Called in DataLoader workers and the decoding child, whose working set is a few items, and in
  the main process of a run (``engine.run_setup.setup_run``) and of ``tools/predict.py``, where
  every step or view frees and asks again for the same activations: one 8 x 224 x 224 view of
  ``I3D_8x8_R50_CGNL1`` on CPU took 0.84x the time with it (60,000 page faults fewer), a demo
  training step 0.97x (docs/PERFORMANCE.md).
- :func:`trim`: gives freed memory back to the system now (after a failed decode, which frees a
  lot at once).
"""

import ctypes
import functools
from typing import Optional

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
# Blocks up to this size come from the heap, and the heap is not trimmed below this much free.
KEPT_BYTES = 1 << 30


@functools.lru_cache(maxsize=None)
def _libc() -> Optional[ctypes.CDLL]:
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc
        return None


def keep_freed_memory(*_) -> None:
    """Keeps freed memory for reuse in this process (see the module docstring); takes and
    ignores a DataLoader worker id, to serve as ``worker_init_fn``."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, KEPT_BYTES)
        libc.mallopt(_M_TRIM_THRESHOLD, KEPT_BYTES)


def trim() -> None:
    """Returns the freed memory of this process to the system."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
