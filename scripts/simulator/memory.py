"""The simulator process's own memory: the allocator it runs under, and freed memory handed back to the system.

A thousand phones decode hundreds of thousands of pulled households, a few megabytes of short-lived
objects per page, while each phone keeps a few small objects (its cursor, its counters) made during
those pages. Under CPython's small-object allocator each kept object pins the 1 MiB arena it was made
in, and under glibc's malloc freed memory stays with the process: measured with 1,000 phones, 1.3 GB
resident for 240 MB of live data. Under plain malloc with few arenas, trimmed every second, the
process stays near what it holds.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping

LEAN_ALLOCATOR = {"PYTHONMALLOC": "malloc", "MALLOC_ARENA_MAX": "2"}
TRIM_EVERY_S = 1.0


def lean_environment(environ: Mapping[str, str]) -> dict[str, str] | None:
    """The environment to run the simulator in, or None when ``environ`` already is one (or chose its own)."""
    if all(name in environ for name in LEAN_ALLOCATOR):
        return None
    return {**LEAN_ALLOCATOR, **environ}


def run_lean(argv: list[str]) -> int | None:
    """Run this program again under the lean allocator and return its exit status, or None when this
    process already runs under one. The allocator is chosen when an interpreter starts, so it takes a new
    one; this process only waits for it."""
    environ = lean_environment(os.environ)
    if environ is None:
        return None
    return subprocess.run([sys.executable, *argv], env=environ, check=False).returncode


def _malloc_trim() -> Callable[[], None] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


class Trimmer:
    """While in use, hands freed memory back to the system every ``every_s`` (a no-op without glibc)."""

    def __init__(self, every_s: float = TRIM_EVERY_S) -> None:
        self.every_s = every_s
        self.trim = _malloc_trim()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Trimmer:
        if self.trim is not None:
            self._thread = threading.Thread(target=self._run, name="malloc-trim", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        assert self.trim is not None
        while not self._stop.wait(self.every_s):
            self.trim()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
