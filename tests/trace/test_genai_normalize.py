"""Attribute normalisation: every dialect of the same LLM call ends up in the same canonical form."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from costar.trace.genai import (
    infer_kind,
    message_text,
    normalize_attributes,
    openai_messages_to_parts,
    parts_to_openai_messages,
    unflatten,
)
from costar.trace.model import SpanKind
from tests.support.paths import EXTERNAL

FIXTURES = EXTERNAL / "openinference"
SEMCONV = EXTERNAL / "otel-genai-semconv"

LLM_FIXTURES = [
    "openinference_client_span_input_output_only.json",
    "openinference_client_span_tool_calls.json",
    "otel_genai_client_span_tool_calls.json",
    "otel_genai_deprecated_client_span_tool_calls.json",
]

EXPECTED_INPUT = [
    {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
    {"role": "assistant", "parts": [
        {"type": "text", "content": "Absolutely! Let me check the weather for you."},
        {"type": "tool_call", "id": "1234", "name": "get_weather", "arguments": {"location": "Paris"}}]},
    {"role": "tool", "parts": [{"type": "tool_call_response", "id": "1234", "response": "rainy, 57°F"}]},
]
EXPECTED_OUTPUT = [
    {"role": "assistant", "finish_reason": "stop",
     "parts": [{"type": "text", "content": "The weather in Paris is currently rainy with a temperature of 57°F."}]},
]


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def schema(name: str) -> jsonschema.protocols.Validator:
    s = json.loads((SEMCONV / name).read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(s, default=jsonschema.Draft202012Validator)
    return cls(s)


INPUT_SCHEMA = schema("gen-ai-input-messages.json")
OUTPUT_SCHEMA = schema("gen-ai-output-messages.json")


@pytest.mark.parametrize("name", LLM_FIXTURES)
def test_every_llm_dialect_normalises_to_the_same_call(name: str) -> None:
    attrs = normalize_attributes(load(name))

    assert attrs["gen_ai.input.messages"] == EXPECTED_INPUT
    assert attrs["gen_ai.output.messages"] == EXPECTED_OUTPUT
    assert attrs["gen_ai.usage.input_tokens"] == 97
    assert attrs["gen_ai.usage.output_tokens"] == 52
    assert attrs["gen_ai.request.model"] == "gpt-4"
    assert attrs["gen_ai.response.model"] == "gpt-4-0613"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.max_tokens"] == 200
    assert attrs["gen_ai.response.finish_reasons"] == ["stop"]
    INPUT_SCHEMA.validate(attrs["gen_ai.input.messages"])
    OUTPUT_SCHEMA.validate(attrs["gen_ai.output.messages"])


@pytest.mark.parametrize("name", LLM_FIXTURES)
def test_llm_fixtures_are_llm_spans(name: str) -> None:
    assert infer_kind(load(name), "") == SpanKind.LLM


@pytest.mark.parametrize("name", [*LLM_FIXTURES, "otel_genai_tool_execution_span.json"])
def test_normalisation_keeps_originals_and_is_idempotent(name: str) -> None:
    raw = load(name)
    once = normalize_attributes(raw)
    assert normalize_attributes(once) == once
    for key, value in raw.items():
        if not key.startswith("gen_ai."):
            assert once[key] == value, key
    assert raw == load(name), "the input dict must not be mutated"


def test_tool_execution_fixture() -> None:
    raw = load("otel_genai_tool_execution_span.json")
    attrs = normalize_attributes(raw)
    assert infer_kind(raw, "") == SpanKind.TOOL
    assert attrs["gen_ai.tool.name"] == "get_weather"
    assert attrs["gen_ai.tool.call.id"] == "1234"
    assert attrs["gen_ai.tool.call.arguments"] == {"city": "New York"}
    assert attrs["gen_ai.tool.call.result"] == {
        "status": "success",
        "report": "The weather in New York is sunny with a temperature of 25 degrees Celsius (77 degrees Fahrenheit).",
    }


def test_openinference_tool_span_keys() -> None:
    attrs = normalize_attributes({
        "openinference.span.kind": "TOOL", "tool.name": "search", "tool.description": "web search",
        "tool_call.id": "c9", "tool_call.function.arguments": '{"q": "otel"}',
        "output.value": "no results", "output.mime_type": "text/plain",
    })
    assert attrs["gen_ai.operation.name"] == "execute_tool"
    assert (attrs["gen_ai.tool.name"], attrs["gen_ai.tool.call.id"]) == ("search", "c9")
    assert attrs["gen_ai.tool.call.arguments"] == {"q": "otel"}
    assert attrs["gen_ai.tool.call.result"] == "no results"
    assert attrs["gen_ai.tool.description"] == "web search"


@pytest.mark.parametrize(("attrs", "name", "kind"), [
    ({"openinference.span.kind": "chain"}, "", SpanKind.CHAIN),
    ({"costar.span.kind": "GUARDRAIL", "openinference.span.kind": "LLM"}, "", SpanKind.GUARDRAIL),
    ({"gen_ai.operation.name": "text_completion"}, "", SpanKind.LLM),
    ({"gen_ai.operation.name": "generate_content"}, "", SpanKind.LLM),
    ({"gen_ai.operation.name": "execute_tool"}, "", SpanKind.TOOL),
    ({"gen_ai.operation.name": "invoke_agent"}, "", SpanKind.AGENT),
    ({"gen_ai.operation.name": "create_agent"}, "", SpanKind.AGENT),
    ({"gen_ai.operation.name": "embeddings"}, "", SpanKind.EMBEDDING),
    ({"gen_ai.operation.name": "retrieval"}, "", SpanKind.RETRIEVER),
    ({}, "chat gpt-4o", SpanKind.LLM),
    ({}, "chat with the customer about their refund", SpanKind.UNKNOWN),
    ({"http.method": "GET"}, "GET /", SpanKind.UNKNOWN),
])
def test_infer_kind(attrs: dict[str, Any], name: str, kind: SpanKind) -> None:
    assert infer_kind(attrs, name) == kind


def test_openinference_flattened_messages_with_tools_and_images() -> None:
    attrs = normalize_attributes({
        "openinference.span.kind": "LLM",
        "llm.input_messages.0.message.role": "system",
        "llm.input_messages.0.message.content": "Be brief.",
        "llm.input_messages.1.message.role": "user",
        "llm.input_messages.1.message.contents.0.message_content.type": "text",
        "llm.input_messages.1.message.contents.0.message_content.text": "What is this?",
        "llm.input_messages.1.message.contents.1.message_content.type": "image",
        "llm.input_messages.1.message.contents.1.message_content.image.image.url": "https://x.test/cat.png",
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.tool_calls.0.tool_call.id": "t1",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "describe",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": "not json",
        "llm.tools.0.tool.json_schema": json.dumps({"type": "function", "function": {
            "name": "describe", "parameters": {"type": "object"}}}),
        "llm.token_count.prompt": "12", "llm.token_count.completion": 3,
    })
    assert attrs["gen_ai.input.messages"] == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "What is this?"},
                                   {"type": "uri", "modality": "image", "uri": "https://x.test/cat.png"}]},
    ]
    assert attrs["gen_ai.output.messages"] == [{"role": "assistant", "finish_reason": "tool_call", "parts": [
        {"type": "tool_call", "id": "t1", "name": "describe", "arguments": "not json"}]}]
    assert attrs["gen_ai.tool.definitions"] == [
        {"type": "function", "name": "describe", "parameters": {"type": "object"}}]
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (12, 3)
    INPUT_SCHEMA.validate(attrs["gen_ai.input.messages"])
    OUTPUT_SCHEMA.validate(attrs["gen_ai.output.messages"])
    schema("gen-ai-tool-definitions.json").validate(attrs["gen_ai.tool.definitions"])


def test_deprecated_indexed_and_python_repr_prompts() -> None:
    indexed = normalize_attributes({
        "gen_ai.system": "anthropic", "gen_ai.prompt.name": "support-v2",
        "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "hi",
        "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": "hello",
        "gen_ai.completion.0.finish_reason": "end_turn",
        "gen_ai.usage.prompt_tokens": 4, "gen_ai.usage.completion_tokens": 2,
    })
    assert indexed["gen_ai.input.messages"] == [{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]
    assert indexed["gen_ai.output.messages"] == [
        {"role": "assistant", "parts": [{"type": "text", "content": "hello"}], "finish_reason": "stop"}]
    assert indexed["gen_ai.provider.name"] == "anthropic"
    assert indexed["gen_ai.prompt.name"] == "support-v2"
    assert (indexed["gen_ai.usage.input_tokens"], indexed["gen_ai.usage.output_tokens"]) == (4, 2)

    # The semconv registry's own example of the deprecated attribute is a Python repr.
    legacy = normalize_attributes({"gen_ai.operation.name": "chat",
                                   "gen_ai.prompt": "[{'role': 'user', 'content': 'What is the capital of France?'}]",
                                   "gen_ai.completion": "[{'role': 'assistant', 'content': 'Paris.'}]"})
    assert message_text(legacy["gen_ai.input.messages"][0]) == "What is the capital of France?"
    assert message_text(legacy["gen_ai.output.messages"][0]) == "Paris."


def test_openai_request_and_response_bodies_in_input_and_output_value() -> None:
    request = {"model": "gpt-4o-mini", "temperature": 0, "stop": "END",
               "messages": [{"role": "developer", "content": "You are terse."},
                            {"role": "user", "content": [{"type": "text", "text": "2+2?"}]}],
               "tools": [{"type": "function", "function": {"name": "calc", "parameters": {"type": "object"}}}]}
    response = {"id": "chatcmpl-1", "model": "gpt-4o-mini-2024-07-18",
                "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                    "role": "assistant", "content": None,
                    "tool_calls": [{"id": "c1", "type": "function",
                                    "function": {"name": "calc", "arguments": '{"expr": "2+2"}'}}]}}],
                "usage": {"prompt_tokens": 20, "completion_tokens": 7}}
    attrs = normalize_attributes({"openinference.span.kind": "LLM", "input.value": json.dumps(request),
                                  "output.value": json.dumps(response)})
    assert attrs["gen_ai.request.model"] == "gpt-4o-mini"
    assert attrs["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert attrs["gen_ai.response.id"] == "chatcmpl-1"
    assert attrs["gen_ai.request.temperature"] == 0
    assert attrs["gen_ai.request.stop_sequences"] == ["END"]
    assert attrs["gen_ai.input.messages"][0] == {"role": "system",
                                                 "parts": [{"type": "text", "content": "You are terse."}]}
    assert attrs["gen_ai.output.messages"] == [{"role": "assistant", "finish_reason": "tool_call", "parts": [
        {"type": "tool_call", "id": "c1", "name": "calc", "arguments": {"expr": "2+2"}}]}]
    assert attrs["gen_ai.tool.definitions"] == [{"type": "function", "name": "calc", "parameters": {"type": "object"}}]
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (20, 7)


def test_plain_text_input_and_output_on_an_llm_span() -> None:
    attrs = normalize_attributes({"openinference.span.kind": "LLM", "input.value": "Say hi",
                                  "output.value": "Hi!", "gen_ai.system_instructions": "Be kind."})
    assert attrs["gen_ai.input.messages"] == [{"role": "user", "parts": [{"type": "text", "content": "Say hi"}]}]
    assert attrs["gen_ai.output.messages"][0]["parts"] == [{"type": "text", "content": "Hi!"}]
    assert attrs["gen_ai.system_instructions"] == [{"type": "text", "content": "Be kind."}]


def test_non_llm_spans_do_not_grow_messages() -> None:
    attrs = {"openinference.span.kind": "CHAIN", "input.value": "question", "output.value": '{"text": "x"}'}
    assert normalize_attributes(attrs) == attrs


TAU_LIKE = [
    {"role": "system", "content": "policy"},
    {"role": "user", "content": "Book me a flight."},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "find", "arguments": '{"to":"SEA"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "name": "find", "content": '[{"flight": "HAT1"}]'},
    {"role": "assistant", "content": "Found HAT1."},
]


def test_openai_messages_round_trip_through_parts() -> None:
    parts = openai_messages_to_parts(TAU_LIKE)
    INPUT_SCHEMA.validate(parts)
    assert parts[2]["parts"] == [{"type": "tool_call", "id": "call_1", "name": "find", "arguments": {"to": "SEA"}}]
    assert parts[3] == {"role": "tool", "name": "find", "parts": [
        {"type": "tool_call_response", "id": "call_1", "response": '[{"flight": "HAT1"}]'}]}
    back = parts_to_openai_messages(parts)
    assert [m["role"] for m in back] == [m["role"] for m in TAU_LIKE]
    assert [m["content"] for m in back] == [m["content"] for m in TAU_LIKE]
    assert json.loads(back[2]["tool_calls"][0]["function"]["arguments"]) == {"to": "SEA"}
    assert back[2]["tool_calls"][0]["id"] == "call_1"
    assert back[3]["tool_call_id"] == "call_1"
    assert openai_messages_to_parts(back) == parts


def test_message_text_in_both_shapes() -> None:
    assert message_text(TAU_LIKE[4]) == "Found HAT1."
    assert message_text(openai_messages_to_parts(TAU_LIKE)[4]) == "Found HAT1."
    assert message_text({"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}) \
        == "a\nb"
    assert message_text(TAU_LIKE[2]) == ""


def test_unflatten_ignores_non_indexed_keys() -> None:
    attrs = {"gen_ai.prompt.name": "p", "gen_ai.prompt.1.content": "b", "gen_ai.prompt.0.content": "a",
             "gen_ai.prompt.10.content": "k"}
    assert unflatten(attrs, "gen_ai.prompt") == [{"content": "a"}, {"content": "b"}, {"content": "k"}]
    assert unflatten({"gen_ai.prompt.name": "p"}, "gen_ai.prompt") is None


def _as_exported(attrs: dict[str, Any]) -> dict[str, Any]:
    """Canonical attributes as an exporter sends them: only ``gen_ai.*`` keys, structured values as JSON."""
    return {k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in attrs.items()
            if k.startswith("gen_ai.") and not k.startswith(("gen_ai.prompt", "gen_ai.completion", "gen_ai.system."))
            and k != "gen_ai.system"}


@pytest.mark.parametrize("name", [*LLM_FIXTURES, "otel_genai_tool_execution_span.json"])
def test_spans_in_canonical_form_take_the_short_path_to_the_same_result(name: str) -> None:
    from costar.trace.genai import _is_canonical, _normalize, infer_kind

    raw = load(name)
    kind = infer_kind(raw)
    assert _normalize(raw, kind, canonical=False) == normalize_attributes(raw, kind)
    canonical = _as_exported(normalize_attributes(raw, kind))
    if kind == SpanKind.TOOL:
        canonical = {**canonical, "input": raw["input"], "output": raw["output"]}  # a tool's own input and output
    assert _is_canonical(canonical, kind)
    short = normalize_attributes(canonical, kind)
    assert short == _normalize(canonical, kind, canonical=False)
    assert short["gen_ai.input.messages" if kind == SpanKind.LLM else "gen_ai.tool.name"]
    # Plain text that is not JSON, empty and absent messages, a bare output message without a reason.
    for extra in ({"gen_ai.input.messages": "not json"}, {"gen_ai.output.messages": "[]"},
                  {"gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [
                      {"type": "text", "content": "hi"}]}])}, {"gen_ai.tool.definitions": "[]"}):
        attrs = {**canonical, **extra}
        assert _is_canonical(attrs, kind)
        assert normalize_attributes(attrs, kind) == _normalize(attrs, kind, canonical=False)


@pytest.mark.parametrize("attrs", [
    {"llm.model_name": "gpt-4"}, {"gen_ai.prompt.0.content": "hi"}, {"gen_ai.completion": "x"},
    {"gen_ai.system": "openai"}, {"agent.name": "a"}, {"session.id": "s"}, {"gen_ai.usage.prompt_tokens": 3},
    {"embedding.model_name": "e"}, {"input.value": "{}"}, {"output": "x"},
])
def test_any_key_of_another_convention_takes_the_full_path(attrs: dict[str, Any]) -> None:
    from costar.trace.genai import _is_canonical

    assert not _is_canonical({"gen_ai.operation.name": "chat", **attrs}, SpanKind.LLM)


CANONICAL_MESSAGES = [
    *EXPECTED_INPUT, *EXPECTED_OUTPUT,
    {"role": "system", "parts": [], "name": "rules"},
    {"role": "assistant", "parts": [{"type": "tool_call", "name": "f", "arguments": None}], "finish_reason": "tool_call"},
    {"role": "tool", "parts": [{"type": "tool_call_response", "response": None}]},
    {"role": "tool", "parts": [{"type": "tool_call_response", "response": {"ok": True}, "id": "7"}]},
]
NOT_CANONICAL = [
    {"role": "Human", "parts": [{"type": "text", "content": "hi"}]},
    {"role": "user", "parts": [{"type": "text", "text": "hi"}]},
    {"role": "user", "parts": [{"type": "text", "content": 3}]},
    {"role": "user", "parts": [{"type": "text", "content": "hi", "extra": None}]},
    {"role": "user", "content": "hi"},
    {"role": "user", "parts": [], "name": ""},
    {"role": "assistant", "parts": [], "finish_reason": "end_turn"},
    {"role": "assistant", "parts": [], "finish_reason": " Stop"},
    {"role": "assistant", "parts": [{"type": "tool_call", "name": "f", "arguments": '{"a": 1}'}]},
    {"role": "assistant", "parts": [{"type": "tool_call", "name": "f"}]},
    {"role": "assistant", "parts": [{"type": "tool_call", "name": "f", "arguments": {}, "id": 3}]},
    {"role": "tool", "parts": [{"type": "tool_call_response", "id": None, "response": "x"}]},
    {"role": "tool", "parts": [{"type": "tool_call_response"}]},
    {"role": "user", "parts": [{"type": "image_url", "image_url": {"url": "https://x"}}]},
    {"role": "user", "parts": "hi"},
    {"role": "user", "parts": [], "metadata": {}},
]


@pytest.mark.parametrize("message", CANONICAL_MESSAGES + NOT_CANONICAL)
def test_canonical_messages_are_copied_and_give_what_the_full_conversion_gives(message: dict[str, Any]) -> None:
    from costar.trace.genai import _canonical_message, _to_parts_message, to_parts_message

    assert _canonical_message(message) is (message in CANONICAL_MESSAGES)
    converted = to_parts_message(message)
    assert converted == _to_parts_message(message)
    if message in CANONICAL_MESSAGES:
        assert converted == message
        assert converted is not message
        assert all(a is not b for a, b in zip(converted["parts"], message["parts"], strict=True))
