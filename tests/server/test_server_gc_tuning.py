"""The server's processes tune the cyclic garbage collector (costar.server.gc_tuning): fewer young
collections, startup objects frozen, and cyclic garbage still reclaimed, so memory stays bounded."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from costar.server.gc_tuning import MIDDLE, OLD, YOUNG


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_tune_gc_freezes_startup_objects_and_raises_the_thresholds() -> None:
    out = _run("""
        import gc
        from costar.server.gc_tuning import tune_gc
        before = tune_gc()
        print(before, gc.get_threshold(), gc.get_freeze_count() > 1000)
    """)
    assert out == f"(700, 10, 10) ({YOUNG}, {MIDDLE}, {OLD}) True"


def test_cyclic_garbage_is_still_reclaimed_after_tuning() -> None:
    # Many more cycles than one young generation holds: the collector must still free them, so memory
    # stays bounded (only the collections are fewer).
    out = _run("""
        import weakref
        from costar.server.gc_tuning import YOUNG, tune_gc
        tune_gc()
        class Node:
            pass
        freed = [0]
        def gone(_):
            freed[0] += 1
        refs = []
        n = 6 * YOUNG
        for _ in range(n):
            a = Node(); a.me = a  # a cycle: reference counting alone never frees it
            refs.append(weakref.ref(a, gone))
            del a
        print(n, freed[0])
    """)
    n, freed = map(int, out.split())
    assert freed >= n - 2 * YOUNG  # all but the last young generation's worth were collected

