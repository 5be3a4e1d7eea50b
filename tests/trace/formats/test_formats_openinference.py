"""OpenInference / OTel GenAI attribute files import as equivalent spans."""

from __future__ import annotations

import json

import pytest

from costar.errors import ConfigError
from costar.trace.formats.openinference import import_openinference, openinference_from_data
from costar.trace.model import SpanKind
from tests.support.paths import EXTERNAL

FIXTURES = EXTERNAL / "openinference"
LLM_FIXTURES = sorted(p.name for p in FIXTURES.glob("*.json") if "tool_execution" not in p.name)

CANONICAL = ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.usage.input_tokens",
             "gen_ai.usage.output_tokens", "gen_ai.request.model", "gen_ai.response.model")


def test_the_four_llm_fixtures_import_to_equivalent_spans() -> None:
    assert len(LLM_FIXTURES) == 4
    spans = []
    for name in LLM_FIXTURES:
        (trace,) = import_openinference(FIXTURES / name)
        (span,) = trace.spans
        assert (span.kind, span.name) == (SpanKind.LLM, "chat gpt-4")
        assert trace.run_id is None
        assert trace.metadata["costar.synthetic_timing"] is True
        assert trace.input == "Weather in Paris?"
        assert trace.output == "The weather in Paris is currently rainy with a temperature of 57°F."
        assert (trace.totals.input_tokens, trace.totals.output_tokens, trace.totals.llm_calls) == (97, 52, 1)
        spans.append(span)
    canonical = [{k: s.attributes[k] for k in CANONICAL} for s in spans]
    assert all(c == canonical[0] for c in canonical)


def test_tool_execution_fixture_is_a_tool_span() -> None:
    (trace,) = import_openinference(FIXTURES / "otel_genai_tool_execution_span.json")
    (span,) = trace.spans
    assert (span.kind, span.name) == (SpanKind.TOOL, "execute_tool get_weather")
    assert span.attributes["gen_ai.tool.call.id"] == "1234"
    assert span.attributes["gen_ai.tool.call.arguments"] == {"city": "New York"}
    assert span.attributes["gen_ai.tool.call.result"]["status"] == "success"
    assert trace.totals.tool_calls == 1


def test_a_list_of_attribute_dicts_is_one_trace_of_sibling_spans() -> None:
    items = [json.loads((FIXTURES / n).read_text(encoding="utf-8"))
             for n in ("otel_genai_client_span_tool_calls.json", "otel_genai_tool_execution_span.json")]
    (trace,) = openinference_from_data(items)
    assert [s.kind for s in trace.spans] == [SpanKind.LLM, SpanKind.TOOL]
    assert [s.parent_id for s in trace.spans] == [None, None]
    assert trace.spans[0].end_ns is not None
    assert trace.spans[0].end_ns <= trace.spans[1].start_ns
    assert openinference_from_data(items)[0] == trace  # ids are derived from content


@pytest.mark.parametrize("data", [{"name": "x"}, [], [{"llm.model_name": "m"}, {"other": 1}], "text"])
def test_other_json_is_refused_with_the_file_named(data: object) -> None:
    with pytest.raises(ConfigError, match=r"^spans\.json: not OpenInference span attributes"):
        openinference_from_data(data, source="spans.json")
