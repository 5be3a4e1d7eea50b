"""Every stored trace is bounded by the Sanitizer: strings one by one, and a list or dict attribute
value as a whole (costar.trace.sanitize.Limits.max_value)."""

from __future__ import annotations

from pathlib import Path

from costar.store.sqlite import SQLiteStore
from costar.trace.model import Span, SpanKind, Trace, new_trace_id
from costar.trace.sanitize import Limits, Sanitizer


def _trace(attrs: dict[str, object]) -> Trace:
    tid = new_trace_id()
    return Trace(trace_id=tid, input="i", output="o",
                 spans=[Span(trace_id=tid, span_id="root", name="agent", kind=SpanKind.AGENT, start_ns=0, end_ns=1,
                             attributes=attrs)])


def test_a_huge_list_attribute_is_stored_bounded_and_a_large_one_whole(tmp_path: Path) -> None:
    huge = ["x" * 1000 + str(i) for i in range(20_000)]  # 20 MB: each string alone is within bounds
    large = ["y" * 1000] * 1000  # 1 MB: kept as it is
    store = SQLiteStore(tmp_path / "store")
    try:
        t = _trace({"huge": huge, "large": large, "nested": {"rows": huge}})
        store.write_trace(t)
        attrs = store.get_trace(t.trace_id).spans[0].attributes
    finally:
        store.close()
    assert attrs["large"] == large
    for key in ("huge", "nested"):
        value = attrs[key]
        assert isinstance(value, str), key
        assert len(value) < Limits().max_string + 100, key
        assert value.startswith('["xxxx') or value.startswith('{"rows":["xxxx'), key
        assert "…[truncated " in value, key
    assert attrs["huge"].endswith('x19999"]')  # both ends are kept


def test_the_bound_is_a_limit_a_sanitizer_is_given() -> None:
    small = Sanitizer(limits=Limits(max_value=100))
    attrs = small.attributes({"ok": [1, 2, 3], "big": list(range(100)), "text": "z" * 150})
    assert attrs["ok"] == [1, 2, 3]
    assert attrs["big"] == "[" + ",".join(map(str, range(100))) + "]"  # its JSON text, within max_string
    assert attrs["text"] == "z" * 150  # a string is bounded by max_string, not max_value
