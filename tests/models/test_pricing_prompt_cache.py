"""Prompt-cache pricing: the price table's cache prices, price-file overrides of them (and a bad
value refused in one line), the model client's cost, spans that arrive over OpenTelemetry with the
GenAI conventions' or OpenInference's cache counts, and a trace's totals adding up."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path

import pytest

from costar.errors import ConfigError
from costar.models import ModelClient
from costar.models.pricing import Price, PriceTable, load_price_table
from costar.run.agents import make_agent
from costar.run.harness import Harness, HarnessOptions
from costar.scenario import Scenario
from costar.store.base import Run
from costar.store.sqlite import SQLiteStore
from costar.testing import Rule, ScriptedModelServer
from costar.trace.model import SpanKind

pytest.importorskip("opentelemetry.sdk", reason="the OpenTelemetry SDK is a dev dependency (scripts/setup --dev)")


# --------------------------------------------------------------------------- the table


def test_builtin_cache_prices_follow_the_providers_multipliers() -> None:
    table = PriceTable()
    sonnet = table.lookup("anthropic", "claude-sonnet-4-5-20250929")
    assert sonnet == Price(3.00, 15.00, cache_read_per_mtok=0.30, cache_write_per_mtok=3.75,
                           cache_write_1h_per_mtok=6.00)
    assert table.lookup("openai", "gpt-4o-mini") == Price(0.15, 0.60, cache_read_per_mtok=0.075)
    assert table.lookup("openai", "gpt-4.1") == Price(2.00, 8.00, cache_read_per_mtok=0.50)
    assert table.lookup("openai", "gpt-5") == Price(1.25, 10.00, cache_read_per_mtok=0.125)


def test_cached_tokens_without_a_cache_price_cost_the_input_price() -> None:
    plain = Price(2.00, 8.00)
    # 1000 prompt tokens, 600 of them cached, all at 2.00; 50 out at 8.00.
    assert plain.cost(1000, 50, cache_read=600, cache_write=100) == pytest.approx((1000 * 2.00 + 50 * 8.00) / 1e6)
    assert plain.cost(1000, 50, cache_read=600) == plain.cost(1000, 50)


def test_counts_that_do_not_add_up_are_clamped() -> None:
    price = Price(3.00, 15.00, cache_read_per_mtok=0.30, cache_write_per_mtok=3.75)
    # More cached tokens than the prompt holds (a span from elsewhere): nothing is priced negative.
    assert price.cost(100, 0, cache_read=500) == pytest.approx(500 * 0.30 / 1e6)
    assert price.cost(100, 0, cache_read=-5) == pytest.approx(100 * 3.00 / 1e6)


# --------------------------------------------------------------------------- price files


def test_a_yaml_price_file_sets_cache_prices(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(textwrap.dedent("""
        models:
          my-model: {input: 4.0, output: 16.0, cache_read: 0.4, cache_write: 5.0, cache_write_1h: 8.0}
          gpt-4o: {input: 2.5, output: 10.0}        # replaces the entry: no cache price any more
          other: [1.0, 2.0]
    """))
    table = load_price_table(path)
    cost, known = table.cost("openai", "my-model", 1000, 50, cache_read=600, cache_write=300, cache_write_1h=100)
    assert known
    assert cost == pytest.approx((100 * 4.0 + 600 * 0.4 + 200 * 5.0 + 100 * 8.0 + 50 * 16.0) / 1e6, rel=1e-12)
    cost, _ = table.cost("openai", "gpt-4o", 1000, 50, cache_read=600)
    assert cost == pytest.approx((1000 * 2.5 + 50 * 10.0) / 1e6, rel=1e-12)
    assert table.lookup("x", "other") == Price(1.0, 2.0)
    assert table.lookup("x", "gpt-4o-mini") == PriceTable().lookup("x", "gpt-4o-mini")  # the rest stays built in


def test_a_json_price_file_sets_cache_prices(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"claude-sonnet-4-5": {"input": 3, "output": 15, "cache_read": 0.5, "cache_write": None}}))
    cost, _ = load_price_table(path).cost("anthropic", "claude-sonnet-4-5", 1000, 0, cache_read=600, cache_write=300)
    # cache_write null: writes cost the input price.
    assert cost == pytest.approx((100 * 3 + 600 * 0.5 + 300 * 3) / 1e6, rel=1e-12)


@pytest.mark.parametrize(("entry", "says"), [
    ("{input: 1, output: 2, cache_read: cheap}", "'cache_read' must be a non-negative number of USD per 1M tokens, got 'cheap'"),
    ("{input: 1, output: 2, cache_write: -1}", "'cache_write' must be a non-negative number"),
    ("{input: 1, output: 2, cache_write_1h: [1]}", "'cache_write_1h' must be a non-negative number"),
    ("{input: 1, output: 2, cached_input: 0.5}", "unknown field 'cached_input'; the fields are input, output, "
                                                  "cache_read, cache_write, cache_write_1h"),
    ("{input: 1}", "lacks 'output'"),
    ("{input: .nan, output: 2}", "'input' must be a non-negative number"),
])
def test_a_bad_cache_price_is_one_line_naming_the_field(tmp_path: Path, entry: str, says: str) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(f"models:\n  my-model: {entry}\n")
    with pytest.raises(ConfigError) as err:
        load_price_table(path)
    message = str(err.value)
    assert "\n" not in message
    assert f"price for 'my-model' in price file {path}" in message
    assert says in message


# --------------------------------------------------------------------------- the model client (judges)


def test_the_model_client_prices_cached_tokens() -> None:
    rules = [Rule(api="anthropic", text="ok", input_tokens=1000, output_tokens=50, cache_read_tokens=600,
                  cache_write_tokens=300),
             Rule(api="openai", text="ok", input_tokens=1000, output_tokens=50, cache_read_tokens=600)]
    with ScriptedModelServer(rules) as srv:
        claude = ModelClient(srv.model_uri("claude-sonnet-4-5", provider="anthropic"), api_key="sk-ant-test",
                             cache="off").chat("hi")
        gpt = ModelClient(srv.model_uri("gpt-4o-mini"), cache="off").chat("hi")
    assert (claude.usage.input_tokens, claude.usage.cache_read_tokens, claude.usage.cache_write_tokens) == (1000, 600, 300)
    assert claude.cost_usd == pytest.approx((100 * 3.00 + 600 * 0.30 + 300 * 3.75 + 50 * 15.00) / 1e6, rel=1e-12)
    assert (gpt.usage.input_tokens, gpt.usage.cache_read_tokens, gpt.usage.cache_write_tokens) == (1000, 600, 0)
    assert gpt.cost_usd == pytest.approx((400 * 0.15 + 600 * 0.075 + 50 * 0.60) / 1e6, rel=1e-12)


# --------------------------------------------------------------------------- spans over OpenTelemetry, totals

AGENT = """
import anthropic
from opentelemetry.sdk.trace import TracerProvider

def run(task):
    tracer = TracerProvider().get_tracer("framework")
    # A framework's span in the GenAI conventions, with no cost: coSTAR prices it.
    with tracer.start_as_current_span("chat claude-sonnet-4-5", attributes={
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-sonnet-4-5", "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.output_tokens": 50, "gen_ai.usage.cache_read.input_tokens": 600,
            "gen_ai.usage.cache_creation.input_tokens": 300}):
        pass
    # An OpenInference span: its token counts map onto the same attributes.
    with tracer.start_as_current_span("ChatOpenAI", attributes={
            "openinference.span.kind": "LLM", "llm.provider": "openai", "llm.model_name": "gpt-4.1",
            "llm.token_count.prompt": 2000, "llm.token_count.completion": 100,
            "llm.token_count.prompt_details.cache_read": 1500}):
        pass
    # And a call through the Anthropic SDK, captured.
    client = anthropic.Anthropic(base_url=task.env["MODEL_URL"], api_key="sk-ant-test")
    client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    return "done"
"""

SEMCONV_COST = (100 * 3.00 + 600 * 0.30 + 300 * 3.75 + 50 * 15.00) / 1e6
OPENINFERENCE_COST = (500 * 2.00 + 1500 * 0.50 + 100 * 8.00) / 1e6
# claude-haiku-4-5 (1.00 input): 200 uncached, 700 read at 0.10, 100 written at 1.25, 20 out at 5.00.
CAPTURED_COST = (200 * 1.00 + 700 * 0.10 + 100 * 1.25 + 20 * 5.00) / 1e6


def test_spans_received_over_opentelemetry_are_priced_with_their_cache_counts(project: Path) -> None:
    (project / "cacheagent.py").write_text(textwrap.dedent(AGENT))
    store = SQLiteStore(project / ".costar")
    try:
        rule = Rule(api="anthropic", text="hi", input_tokens=1000, output_tokens=20, cache_read_tokens=700,
                    cache_write_tokens=100)
        with ScriptedModelServer([rule]) as srv:
            sc = Scenario.model_validate({"id": "cache", "prompt": "go",
                                          "setup": {"env": {"MODEL_URL": srv.anthropic_base_url}}})
            agent = make_agent({"type": "python", "target": "cacheagent:run"})
            run = Run(agent=agent.info)
            store.create_run(run)
            res = asyncio.run(Harness(agent, store, HarnessOptions()).run([sc], run))
        trace = store.get_trace(res.trace_ids[0])
    finally:
        store.close()
    assert trace.status.value == "ok", trace.error
    llm = {s.name: s.attributes for s in trace.spans if s.kind == SpanKind.LLM}
    assert set(llm) == {"chat claude-sonnet-4-5", "ChatOpenAI", "chat claude-haiku-4-5"}

    semconv = llm["chat claude-sonnet-4-5"]
    assert semconv["costar.usage.cost_usd"] == pytest.approx(SEMCONV_COST, rel=1e-12)
    assert semconv["costar.cost_known"] is True

    oi = llm["ChatOpenAI"]
    assert oi["gen_ai.usage.input_tokens"] == 2000
    assert oi["gen_ai.usage.cache_read.input_tokens"] == 1500
    assert oi["costar.usage.cost_usd"] == pytest.approx(OPENINFERENCE_COST, rel=1e-12)

    captured = llm["chat claude-haiku-4-5"]
    assert captured["gen_ai.usage.input_tokens"] == 1000
    assert captured["gen_ai.usage.cache_read.input_tokens"] == 700
    assert captured["gen_ai.usage.cache_creation.input_tokens"] == 100
    assert captured["costar.usage.cost_usd"] == pytest.approx(CAPTURED_COST, rel=1e-12)

    # The trace's totals are the sums of its spans: whole prompts, every part priced at its rate.
    assert trace.totals.llm_calls == 3
    assert trace.totals.input_tokens == 1000 + 2000 + 1000
    assert trace.totals.output_tokens == 50 + 100 + 20
    assert trace.totals.total_tokens == 4000 + 170
    assert trace.totals.cost_usd == pytest.approx(SEMCONV_COST + OPENINFERENCE_COST + CAPTURED_COST, rel=1e-12)
