"""Pausing Python's cyclic garbage collector while a push or pull builds objects that all live until it ends."""

# A push of 500 visits folds 500 households of dozens of fields each, and every object it makes
# lives until the batch is written; a pull page likewise keeps its 500 changes until the answer is
# sent. The cyclic collector, triggered by allocations, then traverses the growing heap again and
# again and finds nothing: measured, it was a quarter of a push's CPU (a field state cost 3.6 µs
# to make with it running, 0.6 µs without). These objects are freed by reference counting when
# the request ends; the collector resumes when the last paused request on the worker leaves.

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_paused = 0
_resume = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run the block with automatic collection off; nested and concurrent uses share one pause."""
    global _paused, _resume
    with _lock:
        if _paused == 0:
            _resume = gc.isenabled()
            gc.disable()
        _paused += 1
    try:
        yield
    finally:
        with _lock:
            _paused -= 1
            if _paused == 0 and _resume:
                gc.enable()
