"""A trace's span tree, paged: the rows a tree view shows, read from the store a page at a time.

A 100,000-span trace cannot be sent to a browser, nor read whole on every request. The tree's
*shape* is small (a position, an id and a parent per span), so it is indexed once from
:meth:`~costar.store.base.Store.span_outline` (no attributes read) and kept in a bounded cache; a
page of rows then reads only its own spans, by key (:meth:`~costar.store.base.Store.spans_at`).

Rows are the tree in depth-first order (children by start time, then recorded order), minus the
descendants of collapsed spans, so "row N" of what a reader sees is computed without walking the
tree: each span's subtree is one contiguous range of positions.

Trace content is untrusted, including its shape: a span whose parent is not in the trace is shown
as a root (``orphan``), and spans caught in a parent cycle are cut loose at the earliest recorded one.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import is_not
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from costar.store.base import Store
from costar.trace.model import Span, SpanKind

MAX_PAGE = 1000
"""Most rows one page may ask for."""
MAX_COLLAPSED = 2000
"""Most collapsed spans a request may name."""


class TreeRow(BaseModel):
    """One row of the tree view: a span's place in the tree and the facts a reader scans for."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    index: int
    """The row's position among the visible rows (0-based)."""
    span_id: str
    parent_id: str | None
    depth: int
    """How deep the span is (roots are 0)."""
    children: int
    """Direct children."""
    descendants: int
    """Every span below it."""
    orphan: bool = False
    """True when its parent is not in the trace (shown as a root)."""
    name: str
    kind: SpanKind
    start_ns: int
    end_ns: int | None
    status: str
    """``UNSET``, ``OK`` or ``ERROR``."""
    status_message: str | None = None
    model: str | None = None
    """The model an LLM span called."""
    tool: str | None = None
    """The tool a TOOL span ran."""
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None


class TreePage(BaseModel):
    """``GET /api/v1/traces/{id}/tree``: visible rows ``offset`` to ``offset + len(rows)``."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    trace_id: str
    spans_total: int
    """Spans in the trace."""
    visible: int
    """Rows visible with the given spans collapsed."""
    offset: int
    start_ns: int
    """The earliest span start (the timeline's origin)."""
    end_ns: int
    """The latest span end (the timeline's end)."""
    rows: list[TreeRow] = Field(default_factory=list)


class TreeLocation(BaseModel):
    """``GET /api/v1/traces/{id}/tree/locate``: where a span's row is."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    span_id: str
    index: int
    """Its row once ``ancestors`` are expanded."""
    ancestors: list[str]
    """Its ancestors, root first: a collapsed one hides it, so the view expands them."""


@dataclass
class SpanTree:
    """The depth-first order of a trace's spans and each subtree's extent (lists indexed by tree
    position)."""

    trace_id: str
    seqs: list[int]
    """``seqs[pos]``: the stored position of the span at tree position ``pos``."""
    ids: list[str]
    parents: list[str | None]
    depth: list[int]
    size: list[int]
    """Spans in the subtree at ``pos`` (itself included)."""
    children: list[int]
    orphan: list[bool]
    parent_pos: list[int]
    start_ns: int
    end_ns: int
    _index_of: dict[str, int]
    _pos_of_index: list[int]

    @property
    def total(self) -> int:
        return len(self.seqs)

    def position(self, span_id: str) -> int | None:
        """The tree position of a span (of its first record, should an id repeat)."""
        i = self._index_of.get(span_id)
        return None if i is None else self._pos_of_index[i]


def _preorder(roots: list[int], order: list[int], ptr: list[int], n: int) -> list[int]:
    """Depth-first order from ``roots`` over children ``order[ptr[i]:ptr[i + 1]]`` (a forest)."""
    pre: list[int] = []
    stack = roots[::-1]
    push, pop, visit = stack.extend, stack.pop, pre.append
    while stack:
        i = pop()
        visit(i)
        a, b = ptr[i], ptr[i + 1]
        if b > a:
            push(order[b - 1:a - 1:-1] if a else order[b - 1::-1])
    return pre


def build_tree(trace_id: str, outline: Sequence[tuple[int, str, str | None, int, int | None]]) -> SpanTree:
    """Index an outline (seq, span id, parent id, start, end) into a :class:`SpanTree`."""
    n = len(outline)
    if n == 0:
        return SpanTree(trace_id, [], [], [], [], [], [], [], [], 0, 0, {}, [])
    seqs, ids, parent_ids, starts, ends = (list(col) for col in zip(*outline, strict=True))
    # The first record of a repeated id is the one its children name.
    index_of = dict(zip(reversed(ids), range(n - 1, -1, -1), strict=True))
    parent = np.fromiter(map(index_of.get, parent_ids, repeat(-1)), dtype=np.int64, count=n)
    here = np.arange(n, dtype=np.int64)
    parent[parent == here] = -1
    orphan = (parent < 0) & np.fromiter(map(is_not, parent_ids, repeat(None)), dtype=bool, count=n)
    start = np.asarray(starts, dtype=np.int64)
    # Children grouped under their parent, each group by start time then recorded order; roots first.
    grouped = np.lexsort((np.asarray(seqs, dtype=np.int64), start, parent))
    counts = np.bincount(parent[parent >= 0], minlength=n)
    n_roots = n - int(counts.sum())
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    ptr += n_roots
    order = grouped.tolist()
    pre = _preorder(order[:n_roots], order, ptr.tolist(), n)
    if len(pre) < n:  # parent cycles: nothing reaches them from a root; cut each at its earliest record
        seen = np.zeros(n, dtype=bool)
        seen[pre] = True
        kids: dict[int, list[int]] = {}
        for i in order[n_roots:]:
            kids.setdefault(int(parent[i]), []).append(i)
        for i in range(n):
            if seen[i]:
                continue
            orphan[i] = True
            parent[i] = -1
            stack = [i]
            while stack:
                j = stack.pop()
                if seen[j]:
                    continue
                seen[j] = True
                pre.append(j)
                stack.extend(c for c in reversed(kids.get(j, [])) if not seen[c])
    pre_arr = np.asarray(pre, dtype=np.int64)
    pos_of_index = np.empty(n, dtype=np.int64)
    pos_of_index[pre_arr] = np.arange(n, dtype=np.int64)
    par = parent[pre_arr]
    parent_pos = np.where(par >= 0, pos_of_index[np.maximum(par, 0)], -1).tolist()
    depth = [0] * n
    for pos in range(n):
        pp = parent_pos[pos]
        if pp >= 0:
            depth[pos] = depth[pp] + 1
    size = [1] * n
    for pos in range(n - 1, 0, -1):
        pp = parent_pos[pos]
        if pp >= 0:
            size[pp] += size[pos]
    children = np.bincount(np.asarray([p for p in parent_pos if p >= 0], dtype=np.int64), minlength=n).tolist()
    end_values = [e if e is not None else s for s, e in zip(starts, ends, strict=True)]
    return SpanTree(
        trace_id=trace_id, seqs=[seqs[i] for i in pre], ids=[ids[i] for i in pre],
        parents=[parent_ids[i] for i in pre], depth=depth, size=size, children=children,
        orphan=orphan[pre_arr].tolist(), parent_pos=parent_pos, start_ns=min(starts), end_ns=max(end_values),
        _index_of=index_of, _pos_of_index=pos_of_index.tolist())


class _Hidden:
    """The ranges of tree positions that collapsed spans hide, merged and sorted."""

    def __init__(self, tree: SpanTree, collapsed: Iterable[str]) -> None:
        ranges: list[tuple[int, int]] = []
        for span_id in collapsed:
            pos = tree.position(span_id)
            if pos is not None and tree.size[pos] > 1:
                ranges.append((pos + 1, pos + tree.size[pos]))
        ranges.sort()
        merged: list[tuple[int, int]] = []
        for start, end in ranges:
            if merged and start < merged[-1][1]:  # nested in an earlier collapsed subtree
                continue
            merged.append((start, end))
        self.starts = [s for s, _ in merged]
        self.ends = [e for _, e in merged]
        self.before: list[int] = [0]  # hidden positions before range k
        for s, e in merged:
            self.before.append(self.before[-1] + e - s)

    @property
    def count(self) -> int:
        return self.before[-1]

    def position(self, row: int) -> int:
        """The tree position of visible row ``row``."""
        lo, hi = 0, len(self.starts)
        while lo < hi:  # the number of ranges wholly before the row's position
            mid = (lo + hi) // 2
            if self.starts[mid] <= row + self.before[mid]:
                lo = mid + 1
            else:
                hi = mid
        return row + self.before[lo]

    def row(self, pos: int) -> int | None:
        """The visible row of tree position ``pos`` (None when a collapsed span hides it)."""
        k = bisect_right(self.starts, pos) - 1
        if k >= 0 and pos < self.ends[k]:
            return None
        return pos - self.before[k + 1]


class SpanTrees:
    """Indexed trees of recently viewed traces, bounded by their total spans."""

    def __init__(self, *, max_spans: int = 3_000_000, ttl: float = 300.0) -> None:
        self.max_spans = max_spans
        self.ttl = ttl
        self._trees: OrderedDict[str, tuple[float, int, SpanTree]] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[str, threading.Lock] = {}

    def get(self, store: Store, trace_id: str) -> SpanTree:
        """The tree of ``trace_id`` (a whole id), indexed again when its span count changed (the
        server amends traces) or the cached index is older than ``ttl`` seconds."""
        count = store.count_spans(trace_id)
        now = time.monotonic()
        with self._lock:
            hit = self._fresh(trace_id, count, now)
            if hit is not None:
                return hit
            # The page asks for several windows of a trace at once: one request indexes it, the
            # others wait for that index instead of building their own.
            gate = self._building.setdefault(trace_id, threading.Lock())
        with gate:
            with self._lock:
                hit = self._fresh(trace_id, count, now)
            if hit is not None:
                return hit
            tree = build_tree(trace_id, store.span_outline(trace_id))
            with self._lock:
                self._trees[trace_id] = (now, tree.total, tree)
                self._trees.move_to_end(trace_id)
                while sum(t.total for _, _, t in self._trees.values()) > self.max_spans and len(self._trees) > 1:
                    self._trees.popitem(last=False)
                self._building.pop(trace_id, None)
        return tree

    def _fresh(self, trace_id: str, count: int, now: float) -> SpanTree | None:
        """The cached tree of ``trace_id`` if it still holds ``count`` spans and is not too old
        (call with the lock held)."""
        hit = self._trees.get(trace_id)
        if hit is not None and hit[1] == count and now - hit[0] < self.ttl:
            self._trees.move_to_end(trace_id)
            return hit[2]
        return None


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _float_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def span_facts(span: Span) -> dict[str, Any]:
    """The facts a reader scans a span for first (name, kind, times, status, model, tool, tokens,
    cost), as the fields of a :class:`TreeRow` and of ``costar traces show --json``'s span rows.
    Attributes are untrusted: a value of the wrong type is left out (None), never an error."""
    a = span.attributes
    model = a.get("gen_ai.response.model") or a.get("gen_ai.request.model")
    tool = a.get("gen_ai.tool.name")
    return {"name": span.name, "kind": span.kind, "start_ns": span.start_ns, "end_ns": span.end_ns,
            "status": span.status.code.value, "status_message": span.status.message,
            "model": str(model) if model else None, "tool": str(tool) if tool else None,
            "input_tokens": _int_or_none(a.get("gen_ai.usage.input_tokens")),
            "output_tokens": _int_or_none(a.get("gen_ai.usage.output_tokens")),
            "cost_usd": _float_or_none(a.get("costar.usage.cost_usd"))}


def _row(tree: SpanTree, pos: int, index: int, span: Span | None) -> TreeRow:
    place = {"index": index, "span_id": tree.ids[pos], "parent_id": tree.parents[pos], "depth": tree.depth[pos],
             "children": tree.children[pos], "descendants": tree.size[pos] - 1, "orphan": tree.orphan[pos]}
    if span is None:  # deleted between the index and the read (retention): shown, but empty
        return TreeRow.model_validate({**place, "name": "(span no longer stored)", "kind": SpanKind.UNKNOWN,
                                       "start_ns": 0, "end_ns": None, "status": "UNSET"})
    return TreeRow.model_validate({**place, **span_facts(span)})


def tree_page(store: Store, tree: SpanTree, *, offset: int = 0, limit: int = 200,
              collapsed: Iterable[str] = ()) -> TreePage:
    """Visible rows ``offset`` .. ``offset + limit`` with the subtrees of ``collapsed`` hidden."""
    limit = max(0, min(limit, MAX_PAGE))
    hidden = _Hidden(tree, collapsed)
    visible = tree.total - hidden.count
    positions: list[int] = []
    if offset < visible and limit:
        pos = hidden.position(offset)
        k = bisect_right(hidden.starts, pos)
        while len(positions) < limit and pos < tree.total:
            positions.append(pos)
            pos += 1
            if k < len(hidden.starts) and pos == hidden.starts[k]:
                pos = hidden.ends[k]
                k += 1
    spans = store.spans_at(tree.trace_id, [tree.seqs[p] for p in positions])
    rows = [_row(tree, p, offset + n, spans.get(tree.seqs[p])) for n, p in enumerate(positions)]
    return TreePage(trace_id=tree.trace_id, spans_total=tree.total, visible=visible, offset=offset,
                    start_ns=tree.start_ns, end_ns=tree.end_ns, rows=rows)


def locate(tree: SpanTree, span_id: str, collapsed: Iterable[str] = ()) -> TreeLocation | None:
    """Where ``span_id``'s row is once its ancestors are expanded (None: no such span)."""
    pos = tree.position(span_id)
    if pos is None:
        return None
    ancestors: list[str] = []
    p = tree.parent_pos[pos]
    while p >= 0:
        ancestors.append(tree.ids[p])
        p = tree.parent_pos[p]
    ancestors.reverse()
    shown = set(collapsed) - set(ancestors)
    row = _Hidden(tree, shown).row(pos)
    assert row is not None  # no ancestor is collapsed any more
    return TreeLocation(span_id=span_id, index=row, ancestors=ancestors)


__all__ = ["MAX_COLLAPSED", "MAX_PAGE", "SpanTree", "SpanTrees", "TreeLocation", "TreePage", "TreeRow",
           "build_tree", "locate", "span_facts", "tree_page"]
