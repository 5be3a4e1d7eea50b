"""costar.yaml ``prices:`` prices every cost of the project's runs: an in-process agent's captured SDK
calls, a command agent's (in its own process, through ``costar run``), LLM spans an agent sends over
OpenTelemetry, and the judges' model calls. Real HTTP to the scripted model server, real child processes.

``acme-llm`` is a model the built-in table lacks (a local vLLM model behind an OpenAI-compatible URL);
``gpt-4o`` is overridden at a negotiated price (built-in: 2.50 input / 10.00 output per 1M tokens).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from costar import api
from costar.config import load_config
from costar.store.sqlite import SQLiteStore
from costar.testing import Rule, ScriptedModelServer
from costar.trace.model import Span, SpanKind, Trace
from costar.verdict import Verdict
from tests.support.cli import child_env, costar_cmd

openai = pytest.importorskip("openai")

IN, OUT = 1000, 200
ACME = {"input": 4.0, "output": 16.0}
GPT_4O = {"input": 1.0, "output": 2.0}
JUDGE = {"input": 3.0, "output": 9.0}
ACME_COST = (IN * 4.0 + OUT * 16.0) / 1e6
GPT_4O_COST = (IN * 1.0 + OUT * 2.0) / 1e6
JUDGE_IN, JUDGE_OUT = 500, 40
JUDGE_COST = (JUDGE_IN * 3.0 + JUDGE_OUT * 9.0) / 1e6

RULES = [
    Rule(name="judge", system="careful judge", json={"rationale": "it answered", "value": True},
         input_tokens=JUDGE_IN, output_tokens=JUDGE_OUT),
    Rule(name="agent", text="the answer", input_tokens=IN, output_tokens=OUT),
]

# The agent asks two models: one the built-in table lacks, one whose built-in price the project overrides.
AGENT = """
import os, sys
import openai

client = openai.OpenAI(base_url=os.environ["MODEL_BASE_URL"], api_key="sk-test")
answers = [client.chat.completions.create(model=m, messages=[{"role": "user", "content": "hi"}])
           for m in ("acme-llm", "gpt-4o")]
print(answers[0].choices[0].message.content)
"""


@pytest.fixture(scope="module")
def server() -> ScriptedModelServer:
    with ScriptedModelServer(RULES) as srv:
        yield srv


def llm_spans(trace: Trace) -> dict[str, Span]:
    return {s.attributes["gen_ai.request.model"]: s for s in trace.spans if s.kind == SpanKind.LLM}


def assert_priced(span: Span, cost: float) -> None:
    assert span.attributes["costar.cost_known"] is True
    assert span.attributes["costar.usage.cost_usd"] == pytest.approx(cost, rel=1e-12)


def make_project(root: Path, server: ScriptedModelServer, agent: dict[str, object], *,
                 prices: object, judge: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "scenarios").mkdir()
    (root / "scenarios" / "ask.yaml").write_text(yaml.safe_dump(
        {"id": "ask", "prompt": "hi", "trials": 1, **({"judges": ["answered"]} if judge else {})}))
    if judge:
        (root / "judges").mkdir()
        (root / "judges" / "answered.yaml").write_text(yaml.safe_dump({
            "name": "answered", "type": "llm", "model": server.model_uri("acme-judge"),
            "instructions": "Did the agent answer? {{outputs}}"}))
    (root / "costar.yaml").write_text(yaml.safe_dump({"suite": "scenarios", "agent": agent, "prices": prices}))
    return root


def costar(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*costar_cmd(), *args], cwd=cwd, env=child_env(), capture_output=True, text=True,
                          timeout=300)


def only_trace(root: Path) -> tuple[Trace, list[Verdict]]:
    with SQLiteStore(root / ".costar") as st:
        (trace_id,) = st.trace_ids()
        return st.get_trace(trace_id), list(st.verdicts(trace_ids=[trace_id]))


def test_a_command_agent_and_the_judge_are_priced_from_a_price_file_through_costar_run(
        tmp_path: Path, server: ScriptedModelServer) -> None:
    (tmp_path / "agent.py").write_text(textwrap.dedent(AGENT))
    (tmp_path / "prices.yaml").write_text(yaml.safe_dump(
        {"models": {"acme-llm": ACME, "gpt-4o": GPT_4O, "acme-judge": JUDGE}}))
    root = make_project(tmp_path, server, {"type": "command", "command": ["python", "agent.py"],
                                           "env": {"MODEL_BASE_URL": server.base_url}},
                        prices="prices.yaml", judge=True)
    done = costar(root, "run")
    assert done.returncode == 0, done.stdout + done.stderr
    trace, verdicts = only_trace(root)
    spans = llm_spans(trace)
    assert spans["acme-llm"].attributes["costar.capture"] == "sdk"  # captured in the agent's own process
    assert_priced(spans["acme-llm"], ACME_COST)
    assert_priced(spans["gpt-4o"], GPT_4O_COST)  # the override, not the built-in 2.50/10.00
    assert trace.totals.cost_usd == pytest.approx(ACME_COST + GPT_4O_COST, rel=1e-9)
    (verdict,) = [v for v in verdicts if v.name == "answered"]
    assert verdict.passed is True
    assert verdict.cost.cost_usd == pytest.approx(JUDGE_COST, rel=1e-9)
    assert "~prices.json" not in {a.path for a in trace.artifacts}
    assert not (root / ".costar" / "workspaces").exists() or not any((root / ".costar" / "workspaces").iterdir())

    # costar assess re-scores with the project's judge prices too.
    again = costar(root, "assess", "latest", "--force")
    assert again.returncode == 0, again.stdout + again.stderr
    _, verdicts = only_trace(root)
    assert [v.cost.cost_usd for v in verdicts if v.name == "answered"] == [pytest.approx(JUDGE_COST, rel=1e-9)]


def test_without_prices_the_unknown_model_costs_nothing_and_says_so(tmp_path: Path,
                                                                    server: ScriptedModelServer) -> None:
    (tmp_path / "agent.py").write_text(textwrap.dedent(AGENT))
    root = make_project(tmp_path, server, {"type": "command", "command": ["python", "agent.py"],
                                           "env": {"MODEL_BASE_URL": server.base_url}}, prices=None)
    done = costar(root, "run")
    assert done.returncode == 0, done.stdout + done.stderr
    spans = llm_spans(only_trace(root)[0])
    assert spans["acme-llm"].attributes["costar.cost_known"] is False
    assert spans["acme-llm"].attributes["costar.usage.cost_usd"] == 0
    assert_priced(spans["gpt-4o"], (IN * 2.50 + OUT * 10.00) / 1e6)


IN_PROCESS_AGENT = """
import os
import openai


def run(prompt: str) -> str:
    client = openai.OpenAI(base_url=os.environ["PRICES_TEST_BASE_URL"], api_key="sk-test")
    for model in ("acme-llm", "gpt-4o"):
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}])
    return "done"
"""


def test_an_in_process_agent_is_priced_from_inline_prices_through_the_library(
        tmp_path: Path, server: ScriptedModelServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from costar.capture import sdk

    monkeypatch.setenv("PRICES_TEST_BASE_URL", server.base_url)
    (tmp_path / "acme_agent.py").write_text(IN_PROCESS_AGENT)  # an in-process agent: captured in this process
    monkeypatch.syspath_prepend(str(tmp_path))
    root = make_project(tmp_path, server, {"type": "python", "target": "acme_agent:run"},
                        prices={"acme-llm": ACME, "gpt-4o": [GPT_4O["input"], GPT_4O["output"]]})
    cfg = load_config(root / "costar.yaml")
    before = sdk._PRICES
    outcome = api.run_suite([cfg.path(s) for s in cfg.suite], cfg.agent_spec(), store=root / ".costar",
                            options=api.HarnessOptions(prices=cfg.price_table()), registry=api.project_judges(cfg))
    assert outcome.exit_code == 0
    spans = llm_spans(only_trace(root)[0])
    assert_priced(spans["acme-llm"], ACME_COST)
    assert_priced(spans["gpt-4o"], GPT_4O_COST)
    assert sdk._PRICES is before  # the run's prices end with the run


OTLP_AGENT = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
tracer = provider.get_tracer("acme-agent")
with tracer.start_as_current_span("chat acme-llm") as chat:
    chat.set_attribute("gen_ai.operation.name", "chat")
    chat.set_attribute("gen_ai.request.model", "acme-llm")
    chat.set_attribute("gen_ai.usage.input_tokens", IN_TOKENS)
    chat.set_attribute("gen_ai.usage.output_tokens", OUT_TOKENS)
provider.shutdown()
print("done")
""".replace("IN_TOKENS", str(IN)).replace("OUT_TOKENS", str(OUT))


def test_llm_spans_received_over_otlp_are_priced_with_the_projects_table(tmp_path: Path,
                                                                         server: ScriptedModelServer) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    (tmp_path / "agent.py").write_text(OTLP_AGENT)
    root = make_project(tmp_path, server, {"type": "command", "command": [sys.executable, "agent.py"]},
                        prices={"acme-llm": ACME})
    done = costar(root, "run")
    assert done.returncode == 0, done.stdout + done.stderr
    span = llm_spans(only_trace(root)[0])["acme-llm"]
    assert "costar.capture" not in span.attributes  # sent by the agent's own OpenTelemetry SDK
    assert_priced(span, ACME_COST)


def child_prices(tmp_path: Path, prices_file: Path) -> list[str]:
    """What a command agent's process prices with, given COSTAR_PRICES_FILE."""
    code = ("from costar.capture.sdk import _prices\n"
            "for m in ('acme-llm', 'gpt-4o'):\n"
            "    cost, known = _prices().cost('openai', m, 1000000, 0)\n"
            "    print(m, cost, known)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env=child_env(COSTAR_PRICES_FILE=str(prices_file)))
    assert done.returncode == 0, done.stderr
    return [done.stdout, done.stderr]


def test_a_child_with_an_unreadable_price_file_falls_back_to_the_built_in_table(tmp_path: Path) -> None:
    missing = child_prices(tmp_path, tmp_path / "nowhere.json")
    assert missing[0].splitlines() == ["acme-llm 0.0 False", "gpt-4o 2.5 True"]
    assert "pricing with the built-in table" in missing[1]
    broken = tmp_path / "broken.json"
    broken.write_text('{"models": {"acme-llm": {"input": 4.0, "output": "free"}}}')
    bad = child_prices(tmp_path, broken)
    assert bad[0].splitlines() == ["acme-llm 0.0 False", "gpt-4o 2.5 True"]
    assert "'output' must be a non-negative number" in bad[1]
    good = tmp_path / "good.json"
    good.write_text('{"models": {"acme-llm": {"input": 4.0, "output": 16.0}}}')
    assert child_prices(tmp_path, good)[0].splitlines() == ["acme-llm 4.0 True", "gpt-4o 2.5 True"]
