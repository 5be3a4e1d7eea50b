"""An LLM span's duration is the model call's: what capture does after the response (pricing it, the
first time loading the price table) is not counted as the model's latency."""

from __future__ import annotations

import time
from typing import Any

import pytest

from costar.capture import instrument, sdk
from costar.testing import Rule, ScriptedModelServer
from costar.trace.recorder import Recording


def test_pricing_the_response_is_not_the_calls_latency(monkeypatch: pytest.MonkeyPatch) -> None:
    anthropic = pytest.importorskip("anthropic")
    instrument()
    real = sdk._prices

    def slow_prices() -> Any:
        time.sleep(0.5)  # the thing under test: bookkeeping after the response that takes long
        return real()

    monkeypatch.setattr(sdk, "_prices", slow_prices)
    with ScriptedModelServer([], default=Rule(name="r", text="hi")) as srv:
        client = anthropic.Anthropic(base_url=srv.anthropic_base_url, api_key="sk-ant-test")
        with Recording("trial") as rec:
            started = time.perf_counter()
            client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
            wall = time.perf_counter() - started
    [llm] = [s for s in rec.spans() if s.kind.value == "LLM"]
    assert llm.end_ns is not None
    assert wall >= 0.5
    assert (llm.end_ns - llm.start_ns) / 1e9 < wall - 0.4
    assert llm.attributes["costar.usage.cost_usd"] > 0  # still priced
