"""Property-based tests: random and mutated inputs to the OTLP JSON and protobuf mapping, the receiver
and every importer give a one-line error or a trace the store keeps, never a traceback.

The "ci" Hypothesis profile (tests/conftest.py) keeps this quick and reproducible; run
``HYPOTHESIS_PROFILE=deep pytest tests/hostile/test_property_inputs.py`` after touching a parser.
"""

from __future__ import annotations

import copy
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from costar.errors import CostarError
from costar.store.sqlite import SQLiteStore
from costar.trace.formats import FORMATS, import_file
from costar.trace.formats.jsonl import write_jsonl
from costar.trace.formats.transcript import transcript_to_trace
from costar.trace.model import Span, SpanEvent, SpanKind, Trace
from costar.trace.otlp import (
    OtlpDecodeError,
    otlp_json_to_traces,
    parse_export_request,
    spans_to_export_request,
    spans_to_traces,
    traces_to_otlp_json,
)
from costar.trace.receiver import OtlpReceiver
from costar.transfer import import_into_store
from tests.support.paths import EXTERNAL

# --------------------------------------------------------------------------- seeds: real, small documents

SAMPLE_SPANS = [
    Span(trace_id="ab" * 16, span_id="01" * 8, name="invoke_agent a", kind=SpanKind.AGENT, start_ns=1, end_ns=9,
         attributes={"gen_ai.operation.name": "invoke_agent", "n": 3, "f": 0.5, "l": [1, "x"], "d": {"k": True}}),
    Span(trace_id="ab" * 16, span_id="02" * 8, parent_id="01" * 8, name="chat m", kind=SpanKind.LLM, start_ns=2,
         end_ns=5, attributes={"gen_ai.usage.input_tokens": 10, "gen_ai.input.messages": [
             {"role": "user", "parts": [{"type": "text", "content": "hi"}]}]},
         events=[SpanEvent(name="e", time_ns=3, attributes={"a": 1})]),
]
SAMPLE_TRACE = Trace(trace_id="ab" * 16, scenario_id="s", trial=1, output="done", spans=SAMPLE_SPANS)
CHAT = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get", "arguments": "{\"city\": 1}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "rain"}, {"role": "assistant", "content": "Rain."}]


def _load(relative: str) -> Any:
    return json.loads((EXTERNAL / relative).read_text(encoding="utf-8"))


def _small_swe() -> Any:
    data = _load("swe-agent/pydicom__pydicom-1458.traj")
    return {**data, "trajectory": data["trajectory"][:3], "history": data["history"][:6]}


def _small_tau() -> Any:
    runs = _load("tau-bench/gpt-4o-airline.json")[:2]
    return [{**r, "traj": r["traj"][:6]} for r in runs]


SEEDS: dict[str, Any] = {
    "otlp-json": traces_to_otlp_json([SAMPLE_TRACE]),
    "jsonl": json.loads(SAMPLE_TRACE.model_dump_json()),
    "tau-bench": _small_tau(),
    "swe-agent": _small_swe(),
    "group-chat": {**_load("whowhen/10.json"), "history": _load("whowhen/10.json")["history"][:4]},
    "openinference": _load("openinference/openinference_client_span_tool_calls.json"),
    "transcript": {"messages": CHAT},
}
assert set(SEEDS) == set(FORMATS)

# --------------------------------------------------------------------------- strategies

KEYS = ["resourceSpans", "scopeSpans", "spans", "traceId", "spanId", "parentSpanId", "name", "kind",
        "startTimeUnixNano", "endTimeUnixNano", "attributes", "events", "timeUnixNano", "key", "value", "intValue",
        "stringValue", "doubleValue", "arrayValue", "kvlistValue", "values", "status", "code", "history", "role",
        "content", "trajectory", "action", "observation", "task_id", "traj", "reward", "trial", "messages",
        "tool_calls", "trace_id", "span_id", "start_ns", "gen_ai.operation.name", "llm.model_name", "info"]
EXTREMES = [2**63, 2**64, 2**64 - 1, -1, -(2**63) - 1, 10**30, 1e308, -1e308, "18446744073709551616", "NaN",
            "Infinity", "", "\x00", "\x1b[2J", "\ud800", "x" * 5000, None, True, [], {}, "00" * 8, "zz" * 16]

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20), st.sampled_from(EXTREMES))
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner,
                                                                max_size=5),
    max_leaves=25)


def _paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*path, i))


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        node = node[p]
    return node


@st.composite
def mutated(draw: st.DrawFn, seed: Any) -> Any:
    """The seed with one to four random edits: a value replaced (often by an extreme), a key or an item
    deleted, an item duplicated, or a deep nest put in."""
    doc = copy.deepcopy(seed)
    for _ in range(draw(st.integers(1, 4))):
        paths = list(_paths(doc))
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["replace", "extreme", "delete", "duplicate", "nest"]))
        if not path:
            if op in ("replace", "extreme"):
                doc = draw(json_values)
            continue
        parent, last = _get(doc, path[:-1]), path[-1]
        if op == "replace":
            parent[last] = draw(json_values)
        elif op == "extreme":
            parent[last] = draw(st.sampled_from(EXTREMES))
        elif op == "delete":
            del parent[last]
        elif op == "duplicate" and isinstance(parent, list):
            parent.insert(last, copy.deepcopy(parent[last]))
        elif op == "nest":
            nest: Any = "bottom"
            for _ in range(draw(st.sampled_from([10, 70, 250]))):
                nest = [nest]
            parent[last] = nest
    return doc


def documents(fmt: str) -> st.SearchStrategy[Any]:
    return st.one_of(mutated(SEEDS[fmt]), json_values)


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def store() -> Iterator[SQLiteStore]:
    st_ = SQLiteStore(Path(tempfile.mkdtemp(prefix="costar-prop-")) / ".costar")
    yield st_
    st_.close()


def assert_one_line(exc: BaseException) -> None:
    text = str(exc)
    assert text, repr(text)
    assert "\n" not in text, repr(text)


def stored_back(store: SQLiteStore, traces: list[Trace]) -> None:
    """The store keeps what was produced, and gives it back."""
    for t in store.write_traces(traces):
        back = store.get_trace(t.trace_id)
        assert len(back.spans) == len(t.spans)


# --------------------------------------------------------------------------- OTLP JSON and protobuf


@given(doc=documents("otlp-json"))
def test_otlp_json_gives_spans_or_a_one_line_error(store: SQLiteStore, doc: Any) -> None:
    body = json.dumps(doc).encode()
    try:
        received = parse_export_request(body, "application/json")
    except OtlpDecodeError as exc:
        assert_one_line(exc)
    else:
        stored_back(store, spans_to_traces(received))
    try:
        traces = otlp_json_to_traces(doc)
    except OtlpDecodeError as exc:
        assert_one_line(exc)
    else:
        stored_back(store, traces)


PB_SEED = spans_to_export_request(SAMPLE_SPANS, {"service.name": "x"}).SerializeToString()


@st.composite
def protobuf_bodies(draw: st.DrawFn) -> bytes:
    body = bytearray(PB_SEED)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        at = draw(st.integers(0, max(0, len(body) - 1)))
        if op == "flip" and body:
            body[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del body[at:]
        elif op == "insert":
            body[at:at] = draw(st.binary(min_size=1, max_size=12))
        elif op == "delete" and body:
            del body[at:at + draw(st.integers(1, 8))]
    return bytes(body)


@given(body=st.one_of(protobuf_bodies(), st.binary(max_size=200)))
def test_otlp_protobuf_gives_spans_or_a_one_line_error(store: SQLiteStore, body: bytes) -> None:
    try:
        received = parse_export_request(body, "application/x-protobuf")
    except OtlpDecodeError as exc:
        assert_one_line(exc)
    else:
        stored_back(store, spans_to_traces(received))


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver(max_body=1 << 20) as rx:
        rx.endpoint_for("k")
        yield rx


@pytest.mark.slow
@given(payload=st.one_of(protobuf_bodies().map(lambda b: (b, "application/x-protobuf")),
                         documents("otlp-json").map(lambda d: (json.dumps(d).encode(), "application/json")),
                         st.tuples(st.binary(max_size=300), st.sampled_from(["application/json",
                                                                             "application/x-protobuf"]))))
def test_the_receiver_never_fails_on_a_body(receiver: OtlpReceiver, payload: tuple[bytes, str]) -> None:
    body, ctype = payload
    r = httpx.post(receiver.endpoint_for("k") + "/v1/traces", content=body, headers={"Content-Type": ctype})
    assert r.status_code in (200, 400, 413), (r.status_code, r.text)
    receiver.take("k")
    receiver.errors("k")


# --------------------------------------------------------------------------- importers


def _write(path: Path, fmt: str, doc: Any) -> None:
    if fmt == "jsonl" and isinstance(doc, dict):
        path.write_text(json.dumps(doc) + "\n" + json.dumps(doc) + "\n", encoding="utf-8")
    else:
        path.write_text(json.dumps(doc), encoding="utf-8")


@pytest.mark.parametrize("fmt", FORMATS)
@given(data=st.data())
def test_every_importer_gives_a_stored_trace_or_a_one_line_error(store: SQLiteStore, fmt: str,
                                                                  data: st.DataObject) -> None:
    doc = data.draw(documents(fmt))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("x.jsonl" if fmt == "jsonl" else "x.json")
        _write(path, fmt, doc)
        for forced in (None, fmt):
            try:
                result = import_file(path, forced)
            except CostarError as exc:
                assert_one_line(exc)
            else:
                assert result.stored <= result.read or result.unit == "traces"
                stored_back(store, result.traces)
        try:
            import_into_store(store, path)
        except CostarError as exc:
            assert_one_line(exc)


def test_the_seeds_themselves_import(tmp_path: Path) -> None:
    """The properties start from documents that import cleanly, so mutations probe real shapes."""
    for fmt, doc in SEEDS.items():
        path = tmp_path / f"{fmt}.json"
        _write(path, fmt, doc)
        assert import_file(path).format == fmt
    write_jsonl([transcript_to_trace(CHAT)], tmp_path / "t.jsonl")
    assert import_file(tmp_path / "t.jsonl").format == "jsonl"
