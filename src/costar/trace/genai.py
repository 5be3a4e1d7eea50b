"""Normalise span attributes from the dialects agents emit into coSTAR's canonical ``gen_ai.*`` form.

Understood on input: the current OpenTelemetry GenAI conventions (messages as JSON strings or
structured), the deprecated ones (``gen_ai.prompt`` / ``gen_ai.completion``, also in the
indexed ``gen_ai.prompt.0.role`` form, ``prompt_tokens``, ``gen_ai.system``), OpenInference
(flattened ``llm.input_messages.N.message.*`` keys, ``llm.token_count.*``, ``input.value``)
and plain OpenAI chat messages wherever a message list appears.

Rules that keep the result predictable:

* non-``gen_ai`` keys are never changed or removed, so no information is lost;
* a canonical key already present wins over anything derived, and is only re-shaped (JSON
  string -> structure, OpenAI message -> parts message);
* ``normalize_attributes`` is idempotent.
"""

from __future__ import annotations

import ast
import contextlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from operator import methodcaller
from typing import Any

import orjson

from costar.trace.model import SpanKind

INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
TOOL_DEFINITIONS = "gen_ai.tool.definitions"
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
FINISH_REASONS = "gen_ai.response.finish_reasons"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
"""The part of the input tokens read from the provider's prompt cache."""
CACHE_CREATION_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
"""The part of the input tokens written to the provider's prompt cache."""
CACHE_CREATION_1H_TOKENS = "anthropic.usage.cache_creation.ephemeral_1h_input_tokens"
"""The part of the cache writes kept for an hour (Anthropic prices them apart; its SDK's own name)."""
_CACHE_WRITE_ALIAS = "gen_ai.usage.cache_write.input_tokens"
"""What the Anthropic SDK's own tracing calls ``gen_ai.usage.cache_creation.input_tokens``."""
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
TOOL_ARGUMENTS = "gen_ai.tool.call.arguments"
TOOL_RESULT = "gen_ai.tool.call.result"
TOOL_DESCRIPTION = "gen_ai.tool.description"
AGENT_NAME = "gen_ai.agent.name"

_ROLE_ALIASES = {"human": "user", "developer": "system", "ai": "assistant", "model": "assistant",
                 "bot": "assistant", "function": "tool", "ipython": "tool"}
# Provider-specific finish reasons mapped onto the OTel FinishReason enum.
_FINISH_ALIASES = {"tool_calls": "tool_call", "function_call": "tool_call", "tool_use": "tool_call",
                   "end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
                   "max_output_tokens": "length", "safety": "content_filter"}

_OPERATION_KINDS = {
    "chat": SpanKind.LLM, "text_completion": SpanKind.LLM, "generate_content": SpanKind.LLM,
    "execute_tool": SpanKind.TOOL, "invoke_agent": SpanKind.AGENT, "create_agent": SpanKind.AGENT,
    "embeddings": SpanKind.EMBEDDING, "retrieval": SpanKind.RETRIEVER,
}
_KIND_OPERATIONS = {SpanKind.LLM: "chat", SpanKind.TOOL: "execute_tool", SpanKind.AGENT: "invoke_agent",
                    SpanKind.EMBEDDING: "embeddings"}

# Request parameters worth lifting out of ``llm.invocation_parameters`` / a request body.
_REQUEST_PARAMS = {
    "temperature": "gen_ai.request.temperature", "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k", "seed": "gen_ai.request.seed",
    "max_tokens": "gen_ai.request.max_tokens", "max_completion_tokens": "gen_ai.request.max_tokens",
    "max_output_tokens": "gen_ai.request.max_tokens",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty", "n": "gen_ai.request.choice.count",
}

_TOKEN_SOURCES = {
    INPUT_TOKENS: ("gen_ai.usage.prompt_tokens", "llm.token_count.prompt"),
    OUTPUT_TOKENS: ("gen_ai.usage.completion_tokens", "llm.token_count.completion"),
    CACHE_READ_TOKENS: ("llm.token_count.prompt_details.cache_read",),
    CACHE_CREATION_TOKENS: ("llm.token_count.prompt_details.cache_write", _CACHE_WRITE_ALIAS),
    "gen_ai.usage.reasoning.output_tokens": ("llm.token_count.completion_details.reasoning",),
}



# --------------------------------------------------------------------------- small helpers


def parse_json(value: Any) -> Any:
    """Decode a JSON object or array held in a string; anything else comes back unchanged.

    Scalars are deliberately left alone: the string "42" returned by a tool is text, not a number.
    """
    if isinstance(value, str):
        s = value.strip()
        if s.startswith(("{", "[")):
            try:
                return orjson.loads(s)
            except orjson.JSONDecodeError:
                pass  # NaN, integers beyond 64 bits, lone surrogates: the standard library takes those
            try:
                return json.loads(s)
            except (ValueError, RecursionError):
                return value
    return value


def _parse_loose(value: Any) -> Any:
    """Like ``parse_json`` but also accepts Python reprs, which old ``gen_ai.prompt`` emitters wrote."""
    parsed = parse_json(value)
    if isinstance(parsed, str) and _looks_like_repr(parsed):
        with contextlib.suppress(ValueError, SyntaxError, TypeError, RecursionError, MemoryError):
            return ast.literal_eval(parsed.strip())
    return parsed


_REPR_START = re.compile(r"\s*[\[{(][\s\[{(]*['\"]")
# Python's parser takes about as long per node as the whole ingest path per span, and a few MB of
# memory per thousand: a repr is only parsed when it is small and mostly text, as messages are.
_REPR_MAX_CHARS = 64 * 1024
_REPR_MAX_NODES = 2000


def _looks_like_repr(text: str) -> bool:
    """Whether ``text`` may be the repr of a list or dict of strings, cheap enough to parse."""
    if len(text) > _REPR_MAX_CHARS or not _REPR_START.match(text):
        return False
    nodes = text.count(",") + text.count(":")
    return nodes <= min(_REPR_MAX_NODES, max(64, len(text) // 16))


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return int(value.strip())
    return None


def string_items(value: Any) -> list[str]:
    """The strings of a list attribute coSTAR writes (``costar.merged``…). Attributes also arrive from
    outside, so anything but a list there (a number, a string) counts as empty, and non-strings in it
    are skipped."""
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` when it is a dict, else an empty one: shapes from the outside are not trusted."""
    return value if isinstance(value, dict) else {}


def _first(attrs: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        v = attrs.get(k)
        if v is not None and v != "":
            return v
    return None


def _set_default(out: dict[str, Any], key: str, value: Any) -> None:
    if value is not None and value != "" and out.get(key) in (None, ""):
        out[key] = value


def unflatten(attrs: Mapping[str, Any], prefix: str) -> Any:
    """Rebuild ``prefix.0.message.role``-style flattened keys into nested lists and dicts.

    Only keys whose first segment after the prefix is an index are used, so ``gen_ai.prompt.name``
    is not mistaken for part of ``gen_ai.prompt.0.*``. Returns None when no such key exists.
    """
    direct = attrs.get(prefix)
    if isinstance(direct, list):
        return direct
    root: dict[str, Any] = {}
    dotted = prefix + "."
    if not any(map(methodcaller("startswith", dotted), attrs)):
        return None
    for key, value in attrs.items():
        if not key.startswith(dotted):
            continue
        path = key[len(dotted):].split(".")
        if not path[0].isdigit():
            continue
        node = root
        for seg in path[:-1]:
            child = node.get(seg)
            if not isinstance(child, dict):
                child = node[seg] = {}
            node = child
        node[path[-1]] = value
    return _listify(root) if root else None


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    items = {k: _listify(v) for k, v in node.items()}
    if items and all(k.isdigit() for k in items):
        return [items[k] for k in sorted(items, key=int)]
    return items


# --------------------------------------------------------------------------- message parts


def _role(value: Any) -> str:
    role = str(value or "user").strip().lower()
    return _ROLE_ALIASES.get(role, role)


def finish_reason(value: Any) -> str | None:
    """Map a provider finish reason onto the OTel enum (unknown reasons are kept as given)."""
    if value is None or value == "":
        return None
    reason = str(value).strip().lower()
    return _FINISH_ALIASES.get(reason, reason)


def _extras(part: Mapping[str, Any], used: Iterable[str]) -> dict[str, Any]:
    skip = set(used)
    return {k: v for k, v in part.items() if k not in skip and v is not None}


def _text_part(text: Any) -> dict[str, Any]:
    if isinstance(text, str):
        return {"type": "text", "content": text}
    return {"type": "text", "content": json.dumps(text, ensure_ascii=False, default=str)}


def _image_part(url: str, part: Mapping[str, Any]) -> dict[str, Any]:
    # Inline images (data: URLs) become blob parts so the bytes are not mistaken for a link.
    if url.startswith("data:") and ";base64," in url:
        head, data = url[5:].split(";base64,", 1)
        return {"type": "blob", "modality": "image", "mime_type": head or None, "content": data}
    return {"type": "uri", "modality": "image", "uri": url, **_extras(part, ("type", "image_url", "image", "url"))}


def _tool_call_part(call: Mapping[str, Any]) -> dict[str, Any] | None:
    """OpenAI ``tool_calls`` item, OpenInference ``tool_call`` dict, or an OTel part -> OTel part."""
    if isinstance(call.get("tool_call"), dict):
        call = call["tool_call"]
    fn = as_dict(call.get("function"))
    name = fn.get("name") or call.get("name")
    if not name:
        return None
    args = fn.get("arguments", call.get("arguments", call.get("input")))
    # OpenAI Responses items carry the id the result refers to in call_id, not id.
    call_id = call.get("call_id", call.get("id"))
    part: dict[str, Any] = {"type": "tool_call"}
    if call_id is not None:
        part["id"] = str(call_id)
    part["name"] = str(name)
    part["arguments"] = parse_json(args)
    return part


def normalize_part(part: Any) -> dict[str, Any] | None:
    """One content block in any supported dialect -> one OTel GenAI part (None when empty)."""
    if part is None:
        return None
    if not isinstance(part, dict):
        return _text_part(part)
    if isinstance(part.get("message_content"), dict):  # OpenInference contents.N.message_content
        part = part["message_content"]
    kind = part.get("type")
    if kind in ("text", "input_text", "output_text") or (kind is None and "text" in part):
        text = part["content"] if "content" in part else part.get("text", "")
        return {**_text_part(text), **_extras(part, ("type", "text", "content"))}
    if kind in ("tool_call", "tool_use", "function_call"):
        return _tool_call_part(part)
    if kind == "tool_call_response":
        return {"type": "tool_call_response", **_extras(part, ("type",)), "response": part.get("response")}
    if kind == "tool_result":
        out = {"type": "tool_call_response", "response": _block_text(part.get("content"))}
        if part.get("tool_use_id") is not None:
            out["id"] = str(part["tool_use_id"])
        if isinstance(part.get("is_error"), bool):  # Anthropic's own failure flag
            out["is_error"] = part["is_error"]
        return out
    if kind in ("thinking", "reasoning"):
        return {"type": "reasoning", "content": str(part.get("thinking", part.get("content", "")))}
    if kind == "image_url" or kind == "image":
        url = part.get("image_url") or part.get("image") or part.get("url")
        if isinstance(url, dict):  # {"url": ...} or OpenInference {"image": {"url": ...}}
            url = url.get("url") or (url.get("image") or {}).get("url")
        if isinstance(url, str):
            return _image_part(url, part)
    if isinstance(kind, str) and kind:
        return dict(part)
    return {"type": "unknown", **part}


def _block_text(content: Any) -> Any:
    """Text of a content value that may be a list of blocks; structured non-text stays as is."""
    if isinstance(content, list):
        texts = [normalize_part(b) for b in content]
        if texts and all(t is not None and t["type"] == "text" for t in texts):
            return "\n".join(t["content"] for t in texts if t is not None)
    return content


def _content_parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [_text_part(content)] if content else []
    if isinstance(content, list):
        return [p for p in map(normalize_part, content) if p is not None]
    return [p for p in [normalize_part(content)] if p is not None]


def _call_id(msg: Mapping[str, Any]) -> str | None:
    cid = msg.get("tool_call_id")
    ids = msg.get("tool_call_ids")
    if cid is None and isinstance(ids, list) and ids:
        cid = ids[0]
    return None if cid is None else str(cid)


def _tool_response_parts(msg: Mapping[str, Any], parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A tool message's content becomes one tool_call_response part (unless it already is one)."""
    if any(p["type"] == "tool_call_response" for p in parts):
        return parts
    content = msg.get("content")
    if content is None and parts:
        content = "\n".join(p.get("content", "") for p in parts if p["type"] == "text")
    response = _block_text(content)
    out: dict[str, Any] = {"type": "tool_call_response"}
    cid = _call_id(msg)
    if cid is not None:
        out["id"] = cid
    out["response"] = "" if response is None else response
    if isinstance(msg.get("is_error"), bool):
        out["is_error"] = msg["is_error"]
    return [out]


_CANONICAL_ROLES = frozenset({"user", "assistant", "system", "tool"})
_MESSAGE_KEYS = frozenset({"role", "parts", "name", "finish_reason"})
_TOOL_CALL_KEYS = frozenset({"type", "id", "name", "arguments"})


def _canonical_part(p: Any) -> bool:
    """Whether :func:`normalize_part` would return ``p`` unchanged (an equal dict)."""
    if type(p) is not dict:
        return False
    kind = p.get("type")
    if kind == "text":
        return len(p) == 2 and type(p.get("content")) is str
    if kind == "tool_call":
        name = p.get("name")
        return (p.keys() <= _TOOL_CALL_KEYS and "arguments" in p and type(name) is str and bool(name)
                and type(p.get("id", "")) is str and not isinstance(p["arguments"], str))
    if kind == "tool_call_response":
        return "response" in p and all(v is not None for k, v in p.items() if k != "response")
    return False


def _canonical_message(msg: Any) -> bool:
    """Whether ``msg`` is in the OTel GenAI parts shape already, so converting it changes nothing."""
    if type(msg) is not dict or not msg.keys() <= _MESSAGE_KEYS or msg.get("role") not in _CANONICAL_ROLES:
        return False
    parts = msg.get("parts")
    if type(parts) is not list or not all(map(_canonical_part, parts)):
        return False
    name = msg.get("name")
    if name is not None and (type(name) is not str or not name):
        return False
    reason = msg.get("finish_reason")
    return reason is None or (type(reason) is str and finish_reason(reason) == reason)


def to_parts_message(msg: Any) -> dict[str, Any] | None:
    """Convert one message in any supported dialect to the OTel GenAI parts shape."""
    if _canonical_message(msg):  # the common case at ingest: copy it, nothing to convert
        return {**msg, "parts": [dict(p) for p in msg["parts"]]}
    return _to_parts_message(msg)


def _to_parts_message(msg: Any) -> dict[str, Any] | None:
    if isinstance(msg, str):
        return {"role": "user", "parts": [_text_part(msg)]}
    if not isinstance(msg, dict):
        return None
    if isinstance(msg.get("message"), dict) and "role" not in msg:  # OpenInference N.message.*
        msg = msg["message"]
    role = _role(msg.get("role"))
    if isinstance(msg.get("parts"), list):
        parts = [p for p in map(normalize_part, msg["parts"]) if p is not None]
    else:
        content = msg.get("content")
        parts = _content_parts(content if content is not None else msg.get("contents"))
        parts += _legacy_tool_calls(msg)
        if role == "tool":
            parts = _tool_response_parts(msg, parts)
        elif not parts and isinstance(content, str):
            parts = [_text_part(content)]
    out: dict[str, Any] = {"role": role, "parts": parts}
    if msg.get("name"):
        out["name"] = str(msg["name"])
    reason = finish_reason(msg.get("finish_reason"))
    if reason:
        out["finish_reason"] = reason
    return out


def _legacy_tool_calls(msg: Mapping[str, Any]) -> list[dict[str, Any]]:
    calls = msg.get("tool_calls")
    candidates = [c for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []
    if isinstance(msg.get("function_call"), dict):  # OpenAI's pre-tools function calling
        candidates.append(msg["function_call"])
    if msg.get("function_call_name"):  # OpenInference's keys for the same
        candidates.append({"name": msg["function_call_name"], "arguments": msg.get("function_call_arguments_json")})
    return [p for p in map(_tool_call_part, candidates) if p is not None]


def openai_messages_to_parts(messages: Any) -> list[dict[str, Any]]:
    """OpenAI chat messages (or parts messages, or OpenInference dicts) -> OTel parts messages."""
    if not isinstance(messages, list):
        return []
    return [m for m in map(to_parts_message, messages) if m is not None]


def _owned_parts_message(msg: Any) -> dict[str, Any] | None:
    """:func:`to_parts_message` for a message nobody else holds (just parsed): a canonical one is kept."""
    return msg if _canonical_message(msg) else _to_parts_message(msg)


_NOT_CONTENT = ("tool_call", "tool_call_response", "reasoning")


def _openai_block(p: dict[str, Any]) -> dict[str, Any]:
    if p["type"] == "text":
        return {"type": "text", "text": p["content"]}
    if p["type"] == "uri" and p.get("modality") == "image":
        return {"type": "image_url", "image_url": {"url": p["uri"]}}
    if p["type"] == "blob" and p.get("modality") == "image":
        return {"type": "image_url",
                "image_url": {"url": f"data:{p.get('mime_type') or 'image/png'};base64,{p['content']}"}}
    return dict(p)


def _openai_content(parts: list[dict[str, Any]]) -> Any:
    """Plain text stays a string (the common case); anything richer becomes a list of blocks."""
    content = [p for p in parts if p["type"] not in _NOT_CONTENT]
    if all(p["type"] == "text" for p in content):
        return "\n".join(p["content"] for p in content) if content else None
    return [_openai_block(p) for p in content]


def _openai_tool_call(part: Mapping[str, Any]) -> dict[str, Any]:
    args = part.get("arguments")
    return {"id": part.get("id"), "type": "function",
            "function": {"name": part["name"],
                         "arguments": args if isinstance(args, str)
                         else json.dumps(args, ensure_ascii=False, default=str)}}


def parts_to_openai_messages(messages: Any) -> list[dict[str, Any]]:
    """OTel parts messages -> OpenAI chat messages (one tool message per tool_call_response part)."""
    out: list[dict[str, Any]] = []
    for m in openai_messages_to_parts(messages):
        responses = [p for p in m["parts"] if p["type"] == "tool_call_response"]
        rest = [p for p in m["parts"] if p["type"] != "tool_call_response"]
        # Tool results come first: OpenAI wants them right after the call, before any new user text.
        out.extend(_openai_tool_message(r, None if rest else m.get("name")) for r in responses)
        if rest or not responses:
            msg: dict[str, Any] = {"role": m["role"], "content": _openai_content(rest)}
            calls = [_openai_tool_call(p) for p in rest if p["type"] == "tool_call"]
            if calls:
                msg["tool_calls"] = calls
            if m.get("name"):
                msg["name"] = m["name"]
            out.append(msg)
    return out


def _openai_tool_message(part: Mapping[str, Any], name: str | None) -> dict[str, Any]:
    resp = part.get("response")
    msg = {"role": "tool", "tool_call_id": part.get("id"),
           "content": resp if isinstance(resp, str) else json.dumps(resp, ensure_ascii=False, default=str)}
    if name:
        msg["name"] = name
    return msg


def message_text(msg: Any) -> str:
    """The text of a message in either shape (text parts joined by newlines; tool calls omitted)."""
    if isinstance(msg, str):
        return msg
    if not isinstance(msg, dict):
        return ""
    if isinstance(msg.get("parts"), list):
        return "\n".join(p["content"] for p in map(normalize_part, msg["parts"])
                         if p is not None and p["type"] == "text")
    content = msg.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["content"] for p in _content_parts(content) if p["type"] == "text")
    return ""


# --------------------------------------------------------------------------- span kind


def _kind_from_value(value: Any) -> SpanKind | None:
    if isinstance(value, str) and value.strip().upper() in SpanKind.__members__:
        return SpanKind[value.strip().upper()]
    return None


def _has_prefix(attrs: Mapping[str, Any], *prefixes: str) -> bool:
    return any(k.startswith(prefixes) for k in attrs)


def infer_kind(attrs: Mapping[str, Any], name: str = "") -> SpanKind:
    """Explicit kinds first (coSTAR's, then OpenInference's), then the GenAI operation, then hints."""
    for key in ("costar.span.kind", "openinference.span.kind"):
        kind = _kind_from_value(attrs.get(key))
        if kind is not None:
            return kind
    op = attrs.get(OPERATION)
    if isinstance(op, str) and op.strip().lower() in _OPERATION_KINDS:
        return _OPERATION_KINDS[op.strip().lower()]
    # OTel span names are "{operation} {target}"; only trust that pattern for short names.
    words = (name or "").split()
    if 0 < len(words) <= 2 and words[0].lower() in _OPERATION_KINDS:
        return _OPERATION_KINDS[words[0].lower()]
    if TOOL_NAME in attrs or "tool.name" in attrs or "tool_call.function.name" in attrs:
        return SpanKind.TOOL
    if (REQUEST_MODEL in attrs or "llm.model_name" in attrs or INPUT_MESSAGES in attrs
            or "gen_ai.prompt" in attrs or "gen_ai.completion" in attrs
            or _has_prefix(attrs, "llm.input_messages", "gen_ai.prompt.0", "llm.token_count")):
        return SpanKind.LLM
    return SpanKind.UNKNOWN


def default_span_name(attrs: Mapping[str, Any], kind: SpanKind) -> str:
    """The OTel-style span name for a span that arrived without one (e.g. an attribute dict)."""
    op = attrs.get(OPERATION) or _KIND_OPERATIONS.get(kind)
    target = {SpanKind.LLM: attrs.get(REQUEST_MODEL) or attrs.get(RESPONSE_MODEL),
              SpanKind.TOOL: attrs.get(TOOL_NAME), SpanKind.AGENT: attrs.get(AGENT_NAME)}.get(kind)
    if op:
        return f"{op} {target}" if target else str(op)
    return kind.value.lower()


# --------------------------------------------------------------------------- normalisation


# Keys of the conventions normalisation maps from (OpenInference, OpenLLMetry, older GenAI semantic
# conventions). A span with none of them is in the canonical form already (what the OTel GenAI
# instrumentations and coSTAR's own exporter send) and takes a shorter path with the same result.
_FOREIGN_PREFIXES = ("llm.", "embedding.", "gen_ai.prompt", "gen_ai.completion", "gen_ai.usage.prompt_tokens",
                     "gen_ai.usage.completion_tokens", "gen_ai.system", "agent.name", "session.id")
_LLM_RAW_KEYS = frozenset({"input.value", "input", "output.value", "output"})
"""On an LLM span, raw request and response bodies (OpenInference records them there)."""


def _is_canonical(attrs: Mapping[str, Any], kind: SpanKind) -> bool:
    for key in attrs:
        if key.startswith(_FOREIGN_PREFIXES):
            return False
    return kind != SpanKind.LLM or _LLM_RAW_KEYS.isdisjoint(attrs)


def normalize_attributes(attrs: Mapping[str, Any], kind: SpanKind | None = None) -> dict[str, Any]:
    """Return a copy of ``attrs`` with the canonical ``gen_ai.*`` keys filled in and re-shaped."""
    kind = kind or infer_kind(attrs)
    return _normalize(attrs, kind, canonical=_is_canonical(attrs, kind))


def _normalize(attrs: Mapping[str, Any], kind: SpanKind, *, canonical: bool) -> dict[str, Any]:
    """``canonical``: the attributes hold no key of another convention, so nothing is derived from
    one (only the canonical values are re-shaped)."""
    out = dict(attrs)
    request = {} if canonical else _request_body(out, kind)
    response = {} if canonical else _response_body(out, kind)
    if not canonical:
        _provider_and_models(out, request, response)
    _usage(out, response, canonical=canonical)
    if not canonical:
        _request_params(out, request)
    _tool_definitions(out, request, canonical=canonical)
    _system_instructions(out, request)
    _input_messages(out, kind, request, canonical=canonical)
    _output_messages(out, kind, response, canonical=canonical)
    if kind == SpanKind.TOOL:
        _tool_call(out)
    if not canonical:
        _set_default(out, AGENT_NAME, out.get("agent.name"))
        _set_default(out, "gen_ai.conversation.id", out.get("session.id"))
    _set_default(out, OPERATION, _KIND_OPERATIONS.get(kind))
    return out


def _json_value(out: Mapping[str, Any], *keys: str) -> Any:
    return parse_json(_first(out, *keys))


def _request_body(out: Mapping[str, Any], kind: SpanKind) -> dict[str, Any]:
    """An LLM request body found in ``input.value`` (OpenInference records the raw request there)."""
    if kind != SpanKind.LLM:
        return {}
    body = _json_value(out, "input.value", "input")
    if isinstance(body, dict) and ("messages" in body or "model" in body or "prompt" in body):
        return body
    return {}


def _response_body(out: Mapping[str, Any], kind: SpanKind) -> dict[str, Any]:
    """A completion document: deprecated ``gen_ai.completion``, or an LLM span's raw output."""
    body = _parse_loose(_deprecated(out, "gen_ai.completion"))
    if not isinstance(body, dict) and kind == SpanKind.LLM:
        body = parse_json(_first(out, "output.value", "output"))
    return body if isinstance(body, dict) else {}


def _provider_and_models(out: dict[str, Any], request: Mapping[str, Any], response: Mapping[str, Any]) -> None:
    _set_default(out, PROVIDER, _first(out, "gen_ai.system", "llm.provider", "llm.system"))
    params = _json_value(out, "llm.invocation_parameters")
    params = params if isinstance(params, dict) else {}
    model_name = _first(out, "llm.model_name", "embedding.model_name")
    _set_default(out, REQUEST_MODEL, _first(params, "model") or request.get("model") or model_name)
    _set_default(out, RESPONSE_MODEL, response.get("model") or model_name)
    _set_default(out, RESPONSE_ID, response.get("id") if isinstance(response.get("id"), str) else None)


_TOKEN_SOURCE_KEYS = tuple(s for sources in _TOKEN_SOURCES.values() for s in sources)


def _usage(out: dict[str, Any], response: Mapping[str, Any], *, canonical: bool = False) -> None:
    usage = as_dict(response.get("usage"))
    # Canonical keys only: just make them ints.
    if canonical or (not usage and not any(s in out for s in _TOKEN_SOURCE_KEYS)):
        if CACHE_CREATION_TOKENS not in out and _CACHE_WRITE_ALIAS in out:
            out[CACHE_CREATION_TOKENS] = out[_CACHE_WRITE_ALIAS]
        for key in _TOKEN_SOURCES:
            given = out.get(key)
            if given is not None and type(given) is not int:
                current = _as_int(given)
                if current is not None:
                    out[key] = current
        return
    body_tokens = _body_tokens(usage)
    for key, sources in _TOKEN_SOURCES.items():
        given = out.get(key)
        if type(given) is int:  # already canonical (the common case): nothing to derive
            continue
        current = _as_int(given)
        if current is None:
            current = next((v for v in (_as_int(out.get(s)) for s in sources) if v is not None), None)
        if current is None:
            current = _as_int(body_tokens.get(key))
        if current is not None:
            out[key] = current


def _body_tokens(usage: Mapping[str, Any]) -> dict[str, Any]:
    """Token counts of a raw response body's usage (OpenAI chat completions, OpenAI Responses,
    Anthropic), the prompt counted whole as the GenAI conventions do: Anthropic's ``input_tokens``
    leaves out the cached parts, OpenAI's ``prompt_tokens`` / ``input_tokens`` include them."""
    details = as_dict(usage.get("prompt_tokens_details") or usage.get("input_tokens_details"))
    read = _as_int(_first(usage, "cache_read_input_tokens")) or _as_int(details.get("cached_tokens"))
    write = _as_int(_first(usage, "cache_creation_input_tokens")) or _as_int(details.get("cache_write_tokens"))
    inp = _as_int(_first(usage, "prompt_tokens", "input_tokens"))
    if inp is not None and ("cache_read_input_tokens" in usage or "cache_creation_input_tokens" in usage):
        inp += (read or 0) + (write or 0)
    return {INPUT_TOKENS: inp, OUTPUT_TOKENS: _first(usage, "completion_tokens", "output_tokens"),
            CACHE_READ_TOKENS: read, CACHE_CREATION_TOKENS: write}


def _request_params(out: dict[str, Any], request: Mapping[str, Any]) -> None:
    params = _json_value(out, "llm.invocation_parameters")
    if not request and not isinstance(params, dict):
        return  # nothing to lift request parameters from
    for source in (params if isinstance(params, dict) else {}, request):
        for name, key in _REQUEST_PARAMS.items():
            _set_default(out, key, source.get(name))
        stop = source.get("stop")
        _set_default(out, "gen_ai.request.stop_sequences", [stop] if isinstance(stop, str) else stop)


def _tool_definition(tool: Any) -> Any:
    tool = parse_json(tool)
    if isinstance(tool, dict) and isinstance(tool.get("tool"), dict):  # OpenInference llm.tools.N.tool
        tool = parse_json(tool["tool"].get("json_schema", tool["tool"]))
    if not isinstance(tool, dict):
        return tool
    fn = tool.get("function")
    if isinstance(fn, dict):  # OpenAI {"type": "function", "function": {...}}
        return {"type": tool.get("type", "function"), **fn}
    if "input_schema" in tool and "parameters" not in tool:  # Anthropic
        rest = {k: v for k, v in tool.items() if k != "input_schema"}
        return {"type": "function", **rest, "parameters": tool["input_schema"]}
    return tool if "type" in tool else {"type": "function", **tool}


def _tool_definitions(out: dict[str, Any], request: Mapping[str, Any], *, canonical: bool = False) -> None:
    tools = parse_json(out.get(TOOL_DEFINITIONS))
    if not isinstance(tools, list) and not canonical:
        tools = unflatten(out, "llm.tools") or request.get("tools")
    if isinstance(tools, list) and tools:
        out[TOOL_DEFINITIONS] = [_tool_definition(t) for t in tools]


def _system_instructions(out: dict[str, Any], request: Mapping[str, Any]) -> None:
    value = out.get(SYSTEM_INSTRUCTIONS)
    if value is None:
        value = request.get("system")  # Anthropic-style request bodies
    value = parse_json(value)
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, str | list) and value:
        out[SYSTEM_INSTRUCTIONS] = _content_parts(value)


def _message_list(value: Any) -> list[dict[str, Any]]:
    parsed = _parse_loose(value)
    if isinstance(parsed, dict):
        parsed = parsed.get("messages", [parsed] if "role" in parsed or "parts" in parsed else None)
    if not isinstance(parsed, list):
        return []
    if isinstance(value, str):  # parsed from text just now: the messages need no defensive copy
        return [m for m in map(_owned_parts_message, parsed) if m is not None]
    return openai_messages_to_parts(parsed)


def _input_messages(out: dict[str, Any], kind: SpanKind, request: Mapping[str, Any], *,
                    canonical: bool = False) -> None:
    candidates: list[Callable[[], Any]] = [lambda: out.get(INPUT_MESSAGES)]
    if not canonical:
        candidates += [lambda: unflatten(out, "llm.input_messages"), lambda: _deprecated(out, "gen_ai.prompt")]
        if kind == SpanKind.LLM:
            candidates += [lambda: request.get("messages"), lambda: _json_value(out, "input.value", "input")]
    for get in candidates:
        messages = _message_list(get())
        if messages:
            out[INPUT_MESSAGES] = messages
            return
    if canonical:
        return
    prompt = _first(request, "prompt") or _plain_text(out, "gen_ai.prompt")
    if kind == SpanKind.LLM:
        prompt = prompt or _plain_text(out, "input.value", "input")
    if isinstance(prompt, str) and prompt:
        out[INPUT_MESSAGES] = [{"role": "user", "parts": [_text_part(prompt)]}]


def _deprecated(out: Mapping[str, Any], key: str) -> Any:
    """``gen_ai.prompt``/``gen_ai.completion``: one JSON (or repr) string, or indexed keys."""
    value = out.get(key)
    return value if value is not None else unflatten(out, key)


def _plain_text(out: Mapping[str, Any], *keys: str) -> str | None:
    """A value that is text rather than JSON: on an LLM span, the prompt or completion itself."""
    value = _first(out, *keys)
    if isinstance(value, str) and parse_json(value) is value:
        return value
    return None


def _response_messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Messages from a completion document: OpenAI choices, a message, or ``{"text": ...}``."""
    choices = body.get("choices")
    if isinstance(choices, list):
        messages = []
        for c in choices:
            if not isinstance(c, dict):
                continue
            msg = as_dict(c.get("message")) or {"role": "assistant", "content": c.get("text")}
            msg = {**msg, "finish_reason": msg.get("finish_reason") or c.get("finish_reason")}
            messages.append(to_parts_message(msg))
        return [m for m in messages if m]
    if "role" in body or "parts" in body:
        msg = dict(body)
        msg.setdefault("finish_reason", body.get("stop_reason"))
        return [m for m in [to_parts_message(msg)] if m]
    text = _first(body, "text", "content", "completion")
    if text is not None:
        return [{"role": "assistant", "parts": _content_parts(text) or [_text_part("")]}]
    return []


def _output_messages(out: dict[str, Any], kind: SpanKind, response: Mapping[str, Any], *,
                     canonical: bool = False) -> None:
    messages = _message_list(out.get(OUTPUT_MESSAGES))
    if not messages and canonical:
        return
    if not messages:
        messages = _message_list(unflatten(out, "llm.output_messages"))
    if not messages:
        completion = _parse_loose(_deprecated(out, "gen_ai.completion"))
        messages = _message_list(completion) if isinstance(completion, list) else []
    if not messages and response:
        messages = _response_messages(response)
    if not messages:
        text = _plain_text(out, "gen_ai.completion")
        if kind == SpanKind.LLM:
            text = text or _plain_text(out, "output.value", "output")
        messages = [{"role": "assistant", "parts": [_text_part(text)]}] if text else []
    if not messages:
        return
    reasons = out.get(FINISH_REASONS)
    reasons = reasons if isinstance(reasons, list) else []
    doc_reason = _first(response, "finish_reason", "stop_reason")
    for i, m in enumerate(messages):
        if not m.get("finish_reason"):
            given = reasons[i] if i < len(reasons) else doc_reason
            m["finish_reason"] = finish_reason(given) or _implied_finish(m)
    out[OUTPUT_MESSAGES] = messages
    _set_default(out, FINISH_REASONS, [m["finish_reason"] for m in messages])


def _implied_finish(msg: Mapping[str, Any]) -> str:
    # The output-message schema requires a finish reason; a tool call implies "tool_call".
    return "tool_call" if any(p["type"] == "tool_call" for p in msg["parts"]) else "stop"


def _tool_call(out: dict[str, Any]) -> None:
    _set_default(out, TOOL_NAME, _first(out, "tool.name", "tool_call.function.name"))
    _set_default(out, TOOL_DESCRIPTION, out.get("tool.description"))
    _set_default(out, TOOL_CALL_ID, out.get("tool_call.id"))
    args = _first(out, TOOL_ARGUMENTS, "tool_call.function.arguments", "input.value", "input")
    if args is not None:
        out[TOOL_ARGUMENTS] = parse_json(args)
    result = _first(out, TOOL_RESULT, "output.value", "output")
    if result is not None:
        result = parse_json(result)
        message = _langchain_tool_message(result)
        if message is not None:  # OpenInference records LangChain's ToolMessage whole
            _set_default(out, TOOL_CALL_ID, message.get("tool_call_id"))
            result = parse_json(message.get("content"))
        out[TOOL_RESULT] = result


def _langchain_tool_message(value: Any) -> dict[str, Any] | None:
    """A serialised LangChain ``ToolMessage`` (``{"type": "tool", "data": {...}}`` or flat), else None."""
    if not isinstance(value, dict) or value.get("type") != "tool":
        return None
    data = value["data"] if isinstance(value.get("data"), dict) else value
    return data if "content" in data and "tool_call_id" in data else None
