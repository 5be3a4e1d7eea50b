"""The paged span tree (costar.store.span_tree): depth-first rows with collapsed subtrees hidden,
located spans, hostile shapes (orphans, cycles, repeated ids), on both stores."""

from __future__ import annotations

import random

import pytest

from costar.store.span_tree import SpanTrees, build_tree, locate, tree_page
from costar.trace.model import Span, SpanKind, Trace


def brute_rows(outline: list[tuple[int, str, str | None, int, int | None]], collapsed: set[str]) -> list[str]:
    """The visible rows, computed the slow obvious way: a recursive walk from the roots."""
    ids = [o[1] for o in outline]
    first = {}
    for i, sid in enumerate(ids):
        first.setdefault(sid, i)
    kids: dict[int, list[int]] = {}
    roots = []
    for i, (_, _, parent, _, _) in enumerate(outline):
        p = first.get(parent) if parent is not None else None
        if p is None or p == i:
            roots.append(i)
        else:
            kids.setdefault(p, []).append(i)
    key = lambda i: (outline[i][3], outline[i][0])  # noqa: E731
    out: list[str] = []

    def walk(i: int) -> None:
        out.append(ids[i])
        if ids[i] in collapsed and first[ids[i]] == i:
            return
        for c in sorted(kids.get(i, []), key=key):
            walk(c)

    for r in sorted(roots, key=key):
        walk(r)
    return out


def random_outline(rng: random.Random, n: int) -> list[tuple[int, str, str | None, int, int | None]]:
    rows: list[tuple[int, str, str | None, int, int | None]] = []
    for i in range(n):
        parent = None if i == 0 or rng.random() < 0.05 else f"s{rng.randrange(i)}"
        if rng.random() < 0.02:
            parent = "missing-parent"
        start = rng.randrange(1000)
        rows.append((i, f"s{i}", parent, start, start + rng.randrange(50)))
    rng.shuffle(rows)  # recorded order is not tree order
    return [(seq, sid, parent, start, end) for seq, (_, sid, parent, start, end) in enumerate(rows)]


class FakeSpans:
    """spans_at over an outline, for the pure tree tests (the store tests below use real stores)."""

    def __init__(self, outline: list[tuple[int, str, str | None, int, int | None]]) -> None:
        self.by_seq = {seq: Span(trace_id="t", span_id=sid, parent_id=parent, name=sid, start_ns=start, end_ns=end)
                       for seq, sid, parent, start, end in outline}

    def spans_at(self, trace_id: str, seqs: list[int]) -> dict[int, Span]:
        return {s: self.by_seq[s] for s in seqs}


@pytest.mark.parametrize("seed", range(6))
def test_rows_match_a_plain_walk_with_any_collapsed_set(seed: int) -> None:
    rng = random.Random(seed)
    outline = random_outline(rng, 300)
    tree = build_tree("t", outline)
    fake = FakeSpans(outline)
    for _ in range(5):
        collapsed = {f"s{rng.randrange(300)}" for _ in range(rng.randrange(12))}
        expected = brute_rows(outline, collapsed)
        page = tree_page(fake, tree, offset=0, limit=1000, collapsed=collapsed)  # type: ignore[arg-type]
        assert page.visible == len(expected)
        assert [r.span_id for r in page.rows] == expected
        # Any window of rows is the same slice of them.
        offset = rng.randrange(len(expected))
        window = tree_page(fake, tree, offset=offset, limit=17, collapsed=collapsed)  # type: ignore[arg-type]
        assert [r.span_id for r in window.rows] == expected[offset:offset + 17]
        assert [r.index for r in window.rows] == list(range(offset, offset + len(window.rows)))


@pytest.mark.parametrize("seed", range(3))
def test_locate_expands_ancestors_and_finds_the_row(seed: int) -> None:
    rng = random.Random(100 + seed)
    outline = random_outline(rng, 200)
    tree = build_tree("t", outline)
    collapsed = {f"s{rng.randrange(200)}" for _ in range(8)}
    for target in rng.sample([o[1] for o in outline], 20):
        where = locate(tree, target, collapsed)
        assert where is not None
        shown = collapsed - set(where.ancestors)
        assert brute_rows(outline, shown)[where.index] == target
        # Ancestors run from a root down to the span's parent.
        if where.ancestors:
            assert tree.parents[tree.position(target)] == where.ancestors[-1]
    assert locate(tree, "no-such-span") is None


def test_depth_children_descendants_and_hostile_shapes() -> None:
    outline = [
        (0, "root", None, 0, 100),
        (1, "b", "root", 20, 30),
        (2, "a", "root", 10, 20),          # starts earlier: shown before b
        (3, "a1", "a", 11, 12),
        (4, "orphan", "gone", 5, 6),        # parent not in the trace: a root, marked
        (5, "x", "y", 1, 2),                # x and y are each other's parent: a cycle, cut loose
        (6, "y", "x", 1, 2),
        (7, "self", "self", 3, 4),          # its own parent: a root, marked
        (8, "a", "root", 40, 50),           # a repeated id: its own row, children go to the first "a"
    ]
    tree = build_tree("t", outline)
    fake = FakeSpans(outline)
    page = tree_page(fake, tree, limit=100)  # type: ignore[arg-type]
    rows = {(r.span_id, r.start_ns): r for r in page.rows}
    assert page.visible == 9
    assert len(page.rows) == 9
    assert [r.span_id for r in page.rows][:5] == ["root", "a", "a1", "b", "a"]
    assert rows[("root", 0)].children == 3
    assert rows[("root", 0)].descendants == 4
    assert rows[("a1", 11)].depth == 2
    assert rows[("orphan", 5)].orphan
    assert rows[("orphan", 5)].depth == 0
    assert rows[("self", 3)].depth == 0
    assert rows[("self", 3)].orphan
    cycle = [r for r in page.rows if r.span_id in ("x", "y")]
    assert len(cycle) == 2
    assert cycle[0].orphan
    assert cycle[1].depth == 1
    assert (tree.start_ns, tree.end_ns) == (0, 100)


def test_an_empty_trace_has_no_rows() -> None:
    tree = build_tree("t", [])
    page = tree_page(FakeSpans([]), tree)  # type: ignore[arg-type]
    assert (page.visible, page.rows, page.spans_total) == (0, [], 0)


def _trace(n: int) -> Trace:
    spans = [Span(trace_id="big", span_id="r", name="root", kind=SpanKind.AGENT, start_ns=0, end_ns=n * 10)]
    spans += [Span(trace_id="big", span_id=f"c{i}", parent_id="r" if i % 10 == 0 else f"c{i - i % 10}",
                   name=f"child {i}", kind=SpanKind.TOOL, start_ns=i * 10, end_ns=i * 10 + 5,
                   attributes={"gen_ai.tool.name": "t", "blob": "x" * 200}) for i in range(n)]
    return Trace(trace_id="big", spans=spans)


def test_outline_and_spans_at_on_the_store(store) -> None:
    store.write_trace(_trace(250))
    outline = store.span_outline("big")
    assert len(outline) == 251
    assert outline[0][:3] == (0, "r", None)
    assert outline[5][1:3] == ("c4", "c0")
    got = store.spans_at("big", [3, 0, 250, 9999])
    assert sorted(got) == [0, 3, 250]
    assert got[0].span_id == "r"
    assert got[250].attributes["blob"] == "x" * 200

    trees = SpanTrees()
    tree = trees.get(store, "big")
    assert trees.get(store, "big") is tree  # cached while the trace is unchanged
    page = tree_page(store, tree, offset=0, limit=12, collapsed=["c0"])
    assert [r.span_id for r in page.rows][:3] == ["r", "c0", "c10"]
    assert page.rows[1].descendants == 9
    assert page.rows[0].children == 25
    assert page.visible == 251 - 9
    last = tree_page(store, tree, offset=240, limit=100)
    assert last.rows[-1].span_id == "c249"
    assert last.rows[-1].tool == "t"
    assert tree_page(store, tree, offset=10_000).rows == []


class CountingOutlines:
    """A real store whose span_outline calls are counted."""

    def __init__(self, store) -> None:
        self.store, self.outlines = store, 0

    def count_spans(self, trace_id: str) -> int:
        return self.store.count_spans(trace_id)

    def span_outline(self, trace_id: str):
        self.outlines += 1
        return self.store.span_outline(trace_id)


def test_concurrent_requests_for_a_cold_trace_index_it_once(store) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store.write_trace(_trace(3000))
    counting, trees = CountingOutlines(store), SpanTrees()
    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(lambda _: trees.get(counting, "big"), range(6)))  # type: ignore[arg-type]
    assert counting.outlines == 1
    assert all(tree is got[0] for tree in got)
    store.write_trace(_trace(3001))  # the trace changed: indexed again
    assert trees.get(counting, "big").total == 3002
    assert counting.outlines == 2  # type: ignore[arg-type]
