"""OTLP (protobuf and JSON) <-> coSTAR spans and traces.

Two directions with different promises:

* receiving (``parse_export_request``): spans from any OpenTelemetry-instrumented agent are
  decoded and their attributes normalised to the canonical ``gen_ai.*`` form;
* exporting coSTAR traces (``traces_to_otlp_json`` / ``otlp_json_to_traces``): a lossless round
  trip. Trace-level fields travel as ``costar.trace.*`` resource attributes (structured values as
  kvlist/array AnyValues so ints, floats, lists and dicts keep their types), one ResourceSpans
  per trace, and spans coming back from such a resource are not re-normalised.

OTLP/JSON differs from protobuf's canonical JSON mapping in one way that matters: trace and span
ids are hex strings, not base64. Both encodings are accepted on input; hex is written.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Status
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from costar._util.text import valid_unicode
from costar.trace.genai import infer_kind, message_text, normalize_attributes
from costar.trace.model import (
    AgentInfo,
    Span,
    SpanEvent,
    SpanKind,
    StatusCode,
    Trace,
    TraceStatus,
    compute_totals,
    make_span,
)

SCOPE_NAME = "costar"
TRACE_PREFIX = "costar.trace."
KIND_ATTR = "costar.span.kind"
OTLP_KIND_ATTR = "costar.otlp.kind"
LINKS_ATTR = "costar.otlp.links"
ADDED_ATTR = "costar.otlp.added_attributes"
ORIGINAL_ID_ATTR = "costar.otlp.original_id."
OPENINFERENCE_KIND = "openinference.span.kind"

# Bounds for untrusted bodies: a gzip bomb and very deep nesting are refused, not followed.
MAX_DECOMPRESSED_BYTES = 256 * 1024 * 1024
MAX_JSON_DEPTH = 200

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_HEX = re.compile(r"[0-9a-f]+")

_OTLP_KIND_VALUES: dict[str, PbSpan.SpanKind.ValueType] = dict(PbSpan.SpanKind.items())
_OTLP_KIND_NAMES = {v: k for k, v in _OTLP_KIND_VALUES.items()}
# Calls that leave the process are CLIENT spans in OTel; the rest happen inside the agent.
_CLIENT_KINDS = {SpanKind.LLM, SpanKind.TOOL, SpanKind.EMBEDDING, SpanKind.RETRIEVER, SpanKind.RERANKER}
_STATUS_TO_PB = {StatusCode.UNSET: Status.STATUS_CODE_UNSET, StatusCode.OK: Status.STATUS_CODE_OK,
                 StatusCode.ERROR: Status.STATUS_CODE_ERROR}
_STATUS_FROM_PB = {v: k for k, v in _STATUS_TO_PB.items()}


class OtlpDecodeError(ValueError):
    """The body is not a valid OTLP trace export request (the receiver answers 400)."""


class PayloadTooLarge(OtlpDecodeError):
    """The body is, or inflates to, more than the receiver takes (it answers 413)."""


@dataclass
class ReceivedSpan:
    """A decoded span plus the context OTLP carried with it."""

    span: Span
    resource_attributes: dict[str, Any] = field(default_factory=dict)
    scope_name: str = ""
    scope_version: str = ""


# --------------------------------------------------------------------------- AnyValue


def to_any_value(value: Any) -> AnyValue:
    """Python value -> AnyValue. None is the empty AnyValue; tuples become arrays; lone surrogates in
    text (which protobuf cannot encode) become U+FFFD."""
    if value is None:
        return AnyValue()
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            return AnyValue(int_value=value)
        return AnyValue(string_value=str(value))  # OTLP ints are 64-bit; keep the digits
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=valid_unicode(value))  # protobuf refuses lone surrogates
    if isinstance(value, bytes | bytearray):
        return AnyValue(bytes_value=bytes(value))
    if isinstance(value, Mapping):
        return AnyValue(kvlist_value=KeyValueList(values=to_key_values(value)))
    if isinstance(value, list | tuple | set | frozenset):
        return AnyValue(array_value=ArrayValue(values=[to_any_value(v) for v in value]))
    return AnyValue(string_value=str(value))


def to_key_values(attrs: Mapping[Any, Any]) -> list[KeyValue]:
    return [KeyValue(key=valid_unicode(str(k)), value=to_any_value(v)) for k, v in attrs.items()]


def from_any_value(value: AnyValue) -> Any:
    """AnyValue -> Python: kvlist -> dict, array -> list, bytes -> base64 text, empty -> None."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "kvlist_value":
        return from_key_values(value.kvlist_value.values)
    if which == "array_value":
        return [from_any_value(v) for v in value.array_value.values]
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return getattr(value, which)


def from_key_values(values: Iterable[KeyValue]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in values:
        value = kv.value
        # Most attributes are strings: read those without the general conversion's call (the hot path
        # of ingest; a later key wins, as in a dict display).
        out[kv.key] = value.string_value if value.WhichOneof("value") == "string_value" else from_any_value(value)
    return out


# --------------------------------------------------------------------------- ids


def _encode_id(value: str | None, size: int, attrs: dict[str, Any], name: str) -> bytes:
    """Our ids are lowercase hex of the OTel size; any other id is hashed and kept in an attribute."""
    if not value:
        return b""
    if len(value) == 2 * size and _HEX.fullmatch(value):
        return bytes.fromhex(value)
    attrs[ORIGINAL_ID_ATTR + name] = value
    return hashlib.sha256(value.encode()).digest()[:size]


def _decode_id(raw: bytes, size: int, what: str, span_name: str, *, optional: bool = False) -> str | None:
    if not raw and optional:
        return None
    if len(raw) != size:
        raise OtlpDecodeError(f"span {span_name!r}: {what} must be {size} bytes, got {len(raw)}")
    return raw.hex()


# --------------------------------------------------------------------------- coSTAR -> OTLP


def _otlp_kind(span: Span) -> PbSpan.SpanKind.ValueType:
    named = span.attributes.get(OTLP_KIND_ATTR)
    if isinstance(named, str) and named in _OTLP_KIND_VALUES:
        return _OTLP_KIND_VALUES[named]
    return PbSpan.SPAN_KIND_CLIENT if span.kind in _CLIENT_KINDS else PbSpan.SPAN_KIND_INTERNAL


def span_to_pb(span: Span) -> PbSpan:
    """One coSTAR span -> OTLP span, with the kind carried in attributes so it survives."""
    attrs = dict(span.attributes)
    trace_id = _encode_id(span.trace_id, 16, attrs, "trace_id")
    span_id = _encode_id(span.span_id, 8, attrs, "span_id")
    parent_id = _encode_id(span.parent_id, 8, attrs, "parent_id")
    attrs[KIND_ATTR] = span.kind.value
    if OPENINFERENCE_KIND not in attrs:
        # Viewers such as Phoenix key on this; remember that we added it so import can drop it.
        attrs[OPENINFERENCE_KIND] = span.kind.value
        attrs[ADDED_ATTR] = [OPENINFERENCE_KIND]
    links = attrs.pop(LINKS_ATTR, None)
    pb = PbSpan(
        trace_id=trace_id, span_id=span_id, parent_span_id=parent_id, name=span.name,
        kind=_otlp_kind(span), start_time_unix_nano=span.start_ns, end_time_unix_nano=span.end_ns or 0,
        attributes=to_key_values(attrs),
        events=[PbSpan.Event(time_unix_nano=e.time_ns, name=e.name, attributes=to_key_values(e.attributes))
                for e in span.events],
        status=Status(code=_STATUS_TO_PB[span.status.code], message=span.status.message or ""),
    )
    pb.links.extend(_links_to_pb(links))
    return pb


def _links_to_pb(links: Any) -> list[PbSpan.Link]:
    out = []
    for link in links if isinstance(links, list) else []:
        if not isinstance(link, dict):
            continue
        try:
            trace_id = bytes.fromhex(str(link.get("trace_id", "")))
            span_id = bytes.fromhex(str(link.get("span_id", "")))
        except ValueError:
            continue  # not a link this module wrote; an OTLP link needs real ids
        out.append(PbSpan.Link(trace_id=trace_id, span_id=span_id,
                               attributes=to_key_values(link.get("attributes") or {})))
    return out


def spans_to_export_request(spans: Sequence[Span],
                            resource_attributes: Mapping[str, Any] | None = None) -> ExportTraceServiceRequest:
    """Spans -> one ExportTraceServiceRequest (one resource, one ``costar`` scope)."""
    resource = Resource(attributes=to_key_values(resource_attributes or {}))
    scope = ScopeSpans(spans=[span_to_pb(s) for s in spans])
    scope.scope.name = SCOPE_NAME
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(resource=resource, scope_spans=[scope])])


def _trace_resource(trace: Trace) -> dict[str, Any]:
    head = trace.model_dump(mode="json", exclude={"spans"})
    attrs: dict[str, Any] = {"service.name": trace.agent.name}
    if trace.agent.version:
        attrs["service.version"] = trace.agent.version
    attrs.update({TRACE_PREFIX + k: v for k, v in head.items()})
    return attrs


def traces_to_export_request(traces: Iterable[Trace]) -> ExportTraceServiceRequest:
    """Whole traces -> OTLP, one ResourceSpans per trace (see ``otlp_json_to_traces``)."""
    req = ExportTraceServiceRequest()
    for t in traces:
        req.resource_spans.extend(spans_to_export_request(t.spans, _trace_resource(t)).resource_spans)
    return req


def traces_to_otlp_json(traces: Iterable[Trace]) -> dict[str, Any]:
    """Whole traces -> an OTLP/JSON document (hex ids, lowerCamelCase, integer enums)."""
    data = json_format.MessageToDict(traces_to_export_request(traces), use_integers_for_enums=True)
    return _rewrite_ids(data, _b64_to_hex)


# --------------------------------------------------------------------------- id encodings in JSON


def _b64_to_hex(value: str, size: int) -> str:
    try:
        return base64.b64decode(value, validate=True).hex() if value else value
    except (binascii.Error, ValueError):
        return value


def _hex_to_b64(value: str, size: int) -> str:
    """OTLP/JSON ids are hex; protobuf's JSON mapping (and some producers) use base64."""
    if len(value) == 2 * size and re.fullmatch(r"[0-9a-fA-F]+", value):
        return base64.b64encode(bytes.fromhex(value)).decode("ascii")
    return value


_IdConverter = Callable[[str, int], str]


def _fix_ids(obj: dict[str, Any], convert: _IdConverter) -> dict[str, Any]:
    out = dict(obj)
    for key, size in (("traceId", 16), ("spanId", 8), ("parentSpanId", 8),
                      ("trace_id", 16), ("span_id", 8), ("parent_span_id", 8)):
        if isinstance(out.get(key), str):
            out[key] = convert(out[key], size)
    return out


def _rewrite_ids(data: dict[str, Any], convert: _IdConverter) -> dict[str, Any]:
    """Copy of an OTLP/JSON document with span and link ids converted (the input is not mutated)."""
    out = dict(data)
    rs_key = "resourceSpans" if "resourceSpans" in data else "resource_spans"
    new_rs = []
    for rs in _as_list(data.get(rs_key), "resourceSpans"):
        rs = dict(_as_dict(rs, "resourceSpans[]"))
        ss_key = "scopeSpans" if "scopeSpans" in rs else "scope_spans"
        new_ss = []
        for ss in _as_list(rs.get(ss_key), "scopeSpans"):
            ss = dict(_as_dict(ss, "scopeSpans[]"))
            spans = []
            for sp in _as_list(ss.get("spans"), "spans"):
                sp = _fix_ids(_as_dict(sp, "spans[]"), convert)
                if "links" in sp:
                    sp["links"] = [_fix_ids(_as_dict(lk, "links[]"), convert)
                                   for lk in _as_list(sp["links"], "links")]
                spans.append(sp)
            if "spans" in ss:
                ss["spans"] = spans
            new_ss.append(ss)
        if ss_key in rs:
            rs[ss_key] = new_ss
        new_rs.append(rs)
    if rs_key in data:
        out[rs_key] = new_rs
    return out


def _as_list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise OtlpDecodeError(f"OTLP JSON: '{what}' must be an array, got {type(value).__name__}")
    return value


def _as_dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise OtlpDecodeError(f"OTLP JSON: each '{what}' entry must be an object, got {type(value).__name__}")
    return value


# --------------------------------------------------------------------------- parsing


def _maybe_gunzip(body: bytes, max_bytes: int) -> bytes:
    # A gzip stream can never be a valid protobuf or JSON body, so sniffing the magic is safe.
    if body[:2] != b"\x1f\x8b":
        return body
    try:
        d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        out = d.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise OtlpDecodeError(f"OTLP body is corrupt gzip: {exc}") from None
    if d.unconsumed_tail or len(out) > max_bytes:
        raise PayloadTooLarge(f"OTLP body inflates beyond the {max_bytes}-byte limit; refused")
    if not d.eof:
        raise OtlpDecodeError("OTLP body is corrupt gzip: the stream is truncated")
    return out


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    if media in ("application/json", "text/json") or media.endswith("+json"):
        return True
    if media in ("application/x-protobuf", "application/protobuf", "application/octet-stream", ""):
        return False
    raise OtlpDecodeError(f"unsupported content type {content_type!r}; send application/x-protobuf "
                          "or application/json")


def request_from_protobuf(body: bytes) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    try:
        req.ParseFromString(body)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise OtlpDecodeError(f"OTLP protobuf body could not be decoded ({len(body)} bytes): {exc}") from None
    # Protobuf keeps unknown fields aside, so arbitrary bytes can "parse" into nothing at all.
    if body and not req.resource_spans:
        raise OtlpDecodeError(f"OTLP protobuf body ({len(body)} bytes) holds no ExportTraceServiceRequest "
                              "fields; is it really OTLP traces?")
    return req


def request_from_json(data: Any) -> ExportTraceServiceRequest:
    """An OTLP/JSON document (already parsed) -> ExportTraceServiceRequest."""
    if not isinstance(data, dict):
        raise OtlpDecodeError(f"OTLP JSON must be an object with 'resourceSpans', got {type(data).__name__}")
    if data and "resourceSpans" not in data and "resource_spans" not in data:
        keys = ", ".join(repr(k)[:40] for k in sorted(map(str, data))[:5])
        raise OtlpDecodeError(f"OTLP JSON has no 'resourceSpans' (keys: {keys}); is it a trace export?")
    fixed = _rewrite_ids(data, _hex_to_b64)
    req = ExportTraceServiceRequest()
    try:
        try:
            json_format.ParseDict(fixed, req, ignore_unknown_fields=True, max_recursion_depth=MAX_JSON_DEPTH)
        except (SystemError, UnicodeError):
            # JSON may escape lone surrogates ("\ud800", e.g. from JavaScript strings); protobuf strings
            # are UTF-8, so they become U+FFFD rather than costing the whole request.
            req = ExportTraceServiceRequest()
            json_format.ParseDict(_without_surrogates(fixed), req, ignore_unknown_fields=True,
                                  max_recursion_depth=MAX_JSON_DEPTH)
    except (json_format.ParseError, TypeError, ValueError, AttributeError, RecursionError, SystemError) as exc:
        raise OtlpDecodeError(f"OTLP JSON has the wrong shape: {_one_line(exc)}") from None
    return req


def _without_surrogates(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8") if not value.isascii() else value
    if depth > MAX_JSON_DEPTH:
        raise RecursionError("nested too deeply")
    if isinstance(value, dict):
        return {_without_surrogates(k, depth + 1): _without_surrogates(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_surrogates(v, depth + 1) for v in value]
    return value


def _one_line(exc: BaseException) -> str:
    # Parser messages quote the body: keep them one line and encodable (no lone surrogates).
    return valid_unicode(" ".join(str(exc).split())[:300])


def _load_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except RecursionError:
        raise OtlpDecodeError("OTLP JSON body is nested too deeply to decode") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise OtlpDecodeError(f"OTLP JSON body is not valid JSON: {_one_line(exc)}") from None


def decode_request(body: bytes, content_type: str, *,
                   max_bytes: int = MAX_DECOMPRESSED_BYTES) -> ExportTraceServiceRequest:
    """An OTLP/HTTP trace export body (protobuf or JSON; gzip even without its header, inflated to at
    most ``max_bytes``: :class:`PayloadTooLarge` beyond) -> the request message."""
    body = _maybe_gunzip(bytes(body), max_bytes)
    if _is_json(content_type):
        return request_from_json(_load_json(body))
    return request_from_protobuf(body)


def parse_export_request(body: bytes, content_type: str, *,
                         max_bytes: int = MAX_DECOMPRESSED_BYTES) -> list[ReceivedSpan]:
    """An OTLP/HTTP trace export body -> received spans with normalised ``gen_ai.*`` attributes."""
    return received_spans(decode_request(body, content_type, max_bytes=max_bytes))


def received_spans(req: ExportTraceServiceRequest, *, normalize: bool = True) -> list[ReceivedSpan]:
    return [r for rs in req.resource_spans for r in _resource_received(rs, normalize=normalize)]


def _resource_received(rs: ResourceSpans, *, normalize: bool) -> list[ReceivedSpan]:
    resource = from_key_values(rs.resource.attributes)
    return [ReceivedSpan(span=span_from_pb(pb, normalize=normalize), resource_attributes=resource,
                         scope_name=ss.scope.name, scope_version=ss.scope.version)
            for ss in rs.scope_spans for pb in ss.spans]


_ORIGINAL_TRACE_ID = ORIGINAL_ID_ATTR + "trace_id"
_ORIGINAL_SPAN_ID = ORIGINAL_ID_ATTR + "span_id"
_ORIGINAL_PARENT_ID = ORIGINAL_ID_ATTR + "parent_id"


def _restore_ids(pb: PbSpan, attrs: dict[str, Any]) -> tuple[str, str, str | None]:
    raw_trace, raw_span, raw_parent = pb.trace_id, pb.span_id, pb.parent_span_id
    if len(raw_trace) != 16 or len(raw_span) != 8 or (raw_parent and len(raw_parent) != 8):
        name = pb.name  # read only for the error: each read of a protobuf string builds a new one
        _decode_id(raw_trace, 16, "traceId", name)
        _decode_id(raw_span, 8, "spanId", name)
        _decode_id(raw_parent, 8, "parentSpanId", name, optional=True)
    trace_id: Any = raw_trace.hex()
    span_id: Any = raw_span.hex()
    parent_id: Any = raw_parent.hex() if raw_parent else None
    if attrs:
        trace_id = _original_id(attrs.pop(_ORIGINAL_TRACE_ID, None), trace_id)
        span_id = _original_id(attrs.pop(_ORIGINAL_SPAN_ID, None), span_id)
        parent_id = _original_id(attrs.pop(_ORIGINAL_PARENT_ID, None), parent_id)
    return str(trace_id), str(span_id), None if parent_id is None else str(parent_id)


MAX_ORIGINAL_ID = 256
"""Characters of an id restored from its attribute: the sender chooses it, and a database index
refuses keys of a few KB (one such trace would fail every commit it is in)."""


def _original_id(value: Any, wire: Any) -> Any:
    if value is None:
        return wire
    text = str(value)
    return text if 0 < len(text) <= MAX_ORIGINAL_ID else wire


def _drop_added(attrs: dict[str, Any]) -> None:
    added = attrs.pop(ADDED_ATTR, None)
    for key in added if isinstance(added, list) else []:
        if isinstance(key, str):  # the attribute is the producer's: anything else names nothing
            attrs.pop(key, None)


def _links_from_pb(links: Sequence[PbSpan.Link]) -> list[dict[str, Any]]:
    return [{"trace_id": lk.trace_id.hex(), "span_id": lk.span_id.hex(),
             "attributes": from_key_values(lk.attributes)} for lk in links]


AttributeHook = Callable[[dict[str, Any]], dict[str, Any]]
"""Applied to a span's attributes as received, before normalisation (ingest's attribute-name
redaction: a value normalisation would copy under a canonical key must be gone before it is)."""


def _pb_parts(pb: PbSpan, normalize: bool, before_normalize: AttributeHook | None = None
              ) -> tuple[str, str, str | None, str, SpanKind, dict[str, Any]]:
    """The ids, name, kind and (normalised) attributes of an OTLP span: the mapping both span forms share."""
    attrs = from_key_values(pb.attributes)
    trace_id, span_id, parent_id = _restore_ids(pb, attrs)
    name = pb.name
    kind = infer_kind(attrs, name)
    attrs.pop(KIND_ATTR, None)
    _drop_added(attrs)
    if before_normalize is not None:
        attrs = before_normalize(attrs)
    if normalize:
        attrs = normalize_attributes(attrs, kind)
    default_otlp = PbSpan.SPAN_KIND_CLIENT if kind in _CLIENT_KINDS else PbSpan.SPAN_KIND_INTERNAL
    if pb.kind != default_otlp and OTLP_KIND_ATTR not in attrs:
        # Only recorded when it says something our own mapping would not reproduce.
        attrs[OTLP_KIND_ATTR] = _OTLP_KIND_NAMES.get(pb.kind, "SPAN_KIND_UNSPECIFIED")
    if pb.links:
        attrs[LINKS_ATTR] = _links_from_pb(pb.links)
    return trace_id, span_id, parent_id, name, kind, attrs


def span_from_pb(pb: PbSpan, *, normalize: bool = True) -> Span:
    """OTLP span -> coSTAR span. ``normalize=False`` is for spans coSTAR itself exported."""
    trace_id, span_id, parent_id, name, kind, attrs = _pb_parts(pb, normalize)
    # Protobuf already typed every field, so the span is assembled without validating it again.
    status = pb.status
    return make_span(trace_id, span_id, parent_id, name, kind, pb.start_time_unix_nano,
                     pb.end_time_unix_nano or None, _STATUS_FROM_PB.get(status.code, StatusCode.UNSET),
                     status.message or None, attrs,
                     [SpanEvent.model_construct(name=e.name, time_ns=e.time_unix_nano,
                                                attributes=from_key_values(e.attributes)) for e in pb.events])


# --------------------------------------------------------------------------- spans as rows
#
# A *row* is a span as the plain list of its fields, JSON-ready: what costar server's write-ahead log
# stores, built straight from the protobuf message without a Span object (the server's assembler
# builds those):
#
#   [trace_id, span_id, parent_id, name, kind, start_ns, end_ns, status code, status message,
#    attributes, events]
#
# ``kind`` and the status code are the SpanKind / StatusCode values; ``events`` is None or a list
# of ``[name, time_ns, attributes]``. The mapping is the same as ``span_from_pb``'s:
# ``span_from_row(span_row_from_pb(pb))`` equals ``span_from_pb(pb)``.

ResourceRows = list[tuple[dict[str, Any], list[list[Any]]]]
"""Per OTLP resource: its attributes and its spans as rows."""
_STATUS_VALUES_FROM_PB = {k: v.value for k, v in _STATUS_FROM_PB.items()}
_KINDS_BY_VALUE = {k.value: k for k in SpanKind}
_CODES_BY_VALUE = {c.value: c for c in StatusCode}


def span_row_from_pb(pb: PbSpan, *, normalize: bool = True, before_normalize: AttributeHook | None = None) -> list[Any]:
    """OTLP span -> a row (see above), with the mapping of :func:`span_from_pb`."""
    trace_id, span_id, parent_id, name, kind, attrs = _pb_parts(pb, normalize, before_normalize)
    status = pb.status
    events = [[e.name, e.time_unix_nano, from_key_values(e.attributes)] for e in pb.events] if pb.events else None
    return [trace_id, span_id, parent_id, name, kind.value, pb.start_time_unix_nano, pb.end_time_unix_nano or None,
            _STATUS_VALUES_FROM_PB.get(status.code, "UNSET"), status.message or None, attrs, events]


def span_row(s: Span) -> list[Any]:
    """A span as a row (:func:`span_from_row` reverses it)."""
    events = [[e.name, e.time_ns, e.attributes] for e in s.events] if s.events else None
    return [s.trace_id, s.span_id, s.parent_id, s.name, s.kind.value, s.start_ns, s.end_ns, s.status.code.value,
            s.status.message, s.attributes, events]


def span_from_row(f: Sequence[Any]) -> Span:
    """The span a row holds, built without validation (rows come from :func:`span_row_from_pb` or
    :func:`span_row`, whose values were typed and bounded; unknown kinds and codes become UNKNOWN and
    UNSET)."""
    events = [SpanEvent.model_construct(name=e[0], time_ns=e[1], attributes=e[2]) for e in f[10]] if f[10] else []
    return make_span(f[0], f[1], f[2], f[3], _KINDS_BY_VALUE.get(f[4], SpanKind.UNKNOWN), f[5], f[6],
                     _CODES_BY_VALUE.get(f[7], StatusCode.UNSET), f[8], f[9], events)


def resource_rows(req: ExportTraceServiceRequest, *, normalize: bool = True) -> ResourceRows:
    """Each ResourceSpans of a request as (its resource attributes, its spans as rows)."""
    return [(from_key_values(rs.resource.attributes),
             [span_row_from_pb(pb, normalize=normalize) for ss in rs.scope_spans for pb in ss.spans])
            for rs in req.resource_spans]


def parse_export_rows(body: bytes, content_type: str) -> ResourceRows:
    """An OTLP/HTTP trace export body (protobuf or JSON, maybe gzip) -> per resource, its attributes
    and its spans as rows with normalised ``gen_ai.*`` attributes: :func:`parse_export_request`'s
    mapping and bounds, without building Span objects."""
    return resource_rows(decode_request(body, content_type))


# --------------------------------------------------------------------------- OTLP -> traces


def otlp_json_to_traces(data: Any) -> list[Trace]:
    """An OTLP/JSON document -> traces.

    Resources written by ``traces_to_otlp_json`` come back exactly as they were; spans from any
    other producer are normalised and grouped by trace id (see ``spans_to_traces``).
    """
    return request_to_traces(request_from_json(data))


def request_to_traces(req: ExportTraceServiceRequest) -> list[Trace]:
    traces: list[Trace] = []
    foreign: list[ReceivedSpan] = []
    for rs in req.resource_spans:
        resource = from_key_values(rs.resource.attributes)
        if TRACE_PREFIX + "trace_id" in resource:
            traces.append(_costar_trace(rs, resource))
        else:
            foreign.extend(_resource_received(rs, normalize=True))
    return traces + spans_to_traces(foreign)


def _costar_trace(rs: ResourceSpans, resource: dict[str, Any]) -> Trace:
    head = {k[len(TRACE_PREFIX):]: v for k, v in resource.items() if k.startswith(TRACE_PREFIX)}
    spans = [span_from_pb(pb, normalize=False) for ss in rs.scope_spans for pb in ss.spans]
    try:
        return Trace.model_validate({**head, "spans": spans})
    except ValueError as exc:
        raise OtlpDecodeError(f"coSTAR trace {head.get('trace_id')!r} in OTLP JSON is invalid: "
                              f"{_one_line(exc)}") from None


def spans_to_traces(received: Sequence[ReceivedSpan]) -> list[Trace]:
    """Group spans from an OTel producer into traces, deriving the trace-level fields.

    Input and output come from the root span's ``input.value``/``output.value`` when set, else
    from the first LLM call's last user message and the last LLM call's output.
    """
    groups: dict[str, list[ReceivedSpan]] = {}
    for r in received:
        groups.setdefault(r.span.trace_id, []).append(r)
    return [assemble_trace(trace_id, [r.span for r in group], group[0].resource_attributes)
            for trace_id, group in groups.items()]


def assemble_trace(trace_id: str, spans: Sequence[Span], resource: Mapping[str, Any] | None = None) -> Trace:
    """A Trace around spans that carry no trace-level facts: status, input, output and totals derived."""
    resource = dict(resource or {})
    spans = sorted(spans, key=lambda s: s.start_ns)
    if not spans:
        return Trace(trace_id=trace_id, metadata={"otel.resource": resource} if resource else {})
    ids = {s.span_id for s in spans}
    roots = [s for s in spans if s.parent_id is None or s.parent_id not in ids]
    root = roots[0] if roots else spans[0]
    start = min(s.start_ns for s in spans)
    end = max((s.end_ns or s.start_ns) for s in spans)
    error = next((s for s in roots if s.is_error), None)
    agent = AgentInfo(name=str(root.attributes.get("gen_ai.agent.name") or resource.get("service.name")
                               or "agent"),
                      version=_str_or_none(resource.get("service.version")))
    return Trace(
        trace_id=trace_id, agent=agent, start_ns=start, end_ns=end,
        status=TraceStatus.ERROR if error else TraceStatus.OK,
        error=(error.status.message or error.name) if error else None,
        input=_trace_input(root, spans), output=_trace_output(root, spans),
        totals=compute_totals(spans, max(0, end - start) / 1e9), spans=spans,
        metadata={"otel.resource": resource} if resource else {},
    )


def _str_or_none(v: Any) -> str | None:
    return None if v is None else str(v)


def _llm_spans(spans: Sequence[Span]) -> list[Span]:
    return [s for s in spans if s.kind == SpanKind.LLM]


def _trace_input(root: Span, spans: Sequence[Span]) -> Any:
    # An LLM root's input.value is usually the raw request dump; its messages say more.
    if root.kind != SpanKind.LLM and root.attributes.get("input.value") is not None:
        return root.attributes["input.value"]
    for s in _llm_spans(spans):
        messages = s.attributes.get("gen_ai.input.messages")
        users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"] \
            if isinstance(messages, list) else []
        if users:
            return message_text(users[0])
    return root.attributes.get("input.value")


def _trace_output(root: Span, spans: Sequence[Span]) -> str | None:
    value = root.attributes.get("output.value") if root.kind != SpanKind.LLM else None
    if value is not None:
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    for s in reversed(_llm_spans(spans)):
        messages = s.attributes.get("gen_ai.output.messages")
        for m in reversed(messages if isinstance(messages, list) else []):
            text = message_text(m)
            if text:
                return text
    return None

