"""The cyclic garbage collector's settings for the server's processes.

Ingest builds tens of thousands of dicts and lists per request (decoded attributes, messages), and
the assembler holds the open traces' spans: with CPython's defaults (a young collection every 700
container allocations, and a full one every hundred of those) the collector walks the assembler's
whole heap again and again, which cost the assembler process about a third of its CPU per span and
the ingest process a fifth (docs/BENCHMARKS.md). What the server allocates is freed by reference
counting (spans, attributes and messages form no cycles), so collections rarely find anything.

:func:`tune_gc` moves everything alive at start (modules, the app) out of the collector's sight
(``gc.freeze``) and collects the young generation every :data:`YOUNG` allocations instead of 700.
Memory stays bounded: the full collection still runs (every ``YOUNG * MIDDLE * OLD`` allocations at
most, when the old generation grew by a quarter), so cycles are still reclaimed, only less often.
Only the processes ``costar server`` starts call it; a server embedded in another program (tests, a
notebook) leaves its host's collector alone.
"""

from __future__ import annotations

import gc

__all__ = ["MIDDLE", "OLD", "YOUNG", "tune_gc"]

YOUNG = 50_000
"""Container allocations (minus deallocations) between two collections of the young generation."""
MIDDLE = 20
"""Young collections between two collections of the middle generation."""
OLD = 10
"""Middle collections between two (possible) full collections."""


def tune_gc() -> tuple[int, int, int]:
    """Freeze what is alive now and raise the thresholds; returns the previous thresholds."""
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, MIDDLE, OLD)
    return before
