"""Pausing the cyclic garbage collector around bulk object construction."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Building thousands of spans triggers the cyclic GC again and again (several times the
    cost of the work itself); the objects built form no cycles, so collection waits until done."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
