"""``ModelClient``: one model behind a provider-neutral chat API, with retries, limits, cache,
cassettes, cost and tracing.

The retry logic is written once as a plan (a generator that asks for "call" or "sleep N" and receives
the outcome); a sync and an async driver execute it, so both APIs behave identically.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import BaseModel

from costar.models.cache import CacheMode, ResponseCache, is_cache_bypassed, resolve_cache
from costar.models.cassette import Cassette, CassetteMode
from costar.models.errors import ModelConfigError, ModelOutputError
from costar.models.limits import Limits, limits_for
from costar.models.output import MalformedOutput, ParsedReply, parse_reply
from costar.models.pricing import PriceTable, load_price_table
from costar.models.providers.base import Provider, ProviderSettings, failure_error
from costar.models.registry import ProviderRegistry, default_registry
from costar.models.request import build_request
from costar.models.retry import RetryPolicy
from costar.models.telemetry import fail_llm_span, finish_llm_span, record_usage, start_llm_span
from costar.models.types import ChatRequest, ChatResult, ProviderReply, Usage
from costar.models.uri import ModelSpec, parse_model_uri

DEFAULT_TIMEOUT = 60.0
DEFAULT_OUTPUT_RETRIES = 2

# What a plan step asks the driver to do: make one provider call, or sleep this many seconds.
_CALL = None
_Step = float | None
_Outcome = ProviderReply | Exception | None


@dataclass
class _Attempts:
    retries: int = 0


class ModelClient:
    """A chat client for one model URI (``openai:/gpt-4.1-mini``, ``local:/smollm2``, ...).

    Thread-safe and usable from any number of event loops. Construction fails fast, before any
    network, on an unknown provider or a missing API key (unless a replay-only cassette means the
    provider is never called).
    """

    def __init__(
        self,
        model: str | ModelSpec,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        output_retries: int = DEFAULT_OUTPUT_RETRIES,
        max_concurrency: int | None = None,
        requests_per_minute: float | None = None,
        cache: ResponseCache | CacheMode | str | None = None,
        cache_dir: str | Path | None = None,
        cassette: Cassette | str | Path | None = None,
        cassette_mode: CassetteMode | str | None = None,
        prices: PriceTable | Mapping[str, Any] | str | Path | None = None,
        registry: ProviderRegistry | None = None,
    ) -> None:
        registry = registry or default_registry()
        self.spec = model if isinstance(model, ModelSpec) else parse_model_uri(model, registry=registry)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.output_retries = max(0, output_retries)
        self.cache = resolve_cache(cache, cache_dir)
        self.cassette = (cassette if isinstance(cassette, Cassette) or cassette is None
                         else Cassette(cassette, cassette_mode))
        self.prices = load_price_table(prices)
        self.limits: Limits = limits_for(self.spec.endpoint_key, max_concurrency=max_concurrency,
                                              requests_per_minute=requests_per_minute)
        self._provider: Provider | None = None
        if self.cassette is None or self.cassette.needs_network:
            factory = registry.get(self.spec.provider)
            self._provider = factory.create(self.spec, ProviderSettings(api_key=api_key, timeout=timeout))

    # -- public API -------------------------------------------------------------------------------

    @property
    def context_window(self) -> int | None:
        """Tokens a call can hold (prompt and output), when known: ``?context_window=`` in the URI,
        else what the provider knows (a local model's ``n_ctx``); None when neither says."""
        if self.spec.context_window is not None:
            return self.spec.context_window
        window = getattr(self._provider, "context_window", None)
        return int(window) if isinstance(window, int) else None

    def chat(
        self,
        messages: str | Iterable[Any],
        *,
        tools: Iterable[Any] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        json_schema: Mapping[str, Any] | type[BaseModel] | None = None,
        response_format: Mapping[str, Any] | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop: str | list[str] | None = None,
        extra: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> ChatResult:
        request = build_request(messages, tools=tools, tool_choice=tool_choice, json_schema=json_schema,
                                response_format=response_format, extra=extra,
                                params={"temperature": temperature, "max_tokens": max_tokens, "top_p": top_p,
                                        "seed": seed, "stop": stop})
        return self.chat_request(request, timeout=timeout)

    async def achat(
        self,
        messages: str | Iterable[Any],
        *,
        tools: Iterable[Any] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        json_schema: Mapping[str, Any] | type[BaseModel] | None = None,
        response_format: Mapping[str, Any] | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop: str | list[str] | None = None,
        extra: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> ChatResult:
        request = build_request(messages, tools=tools, tool_choice=tool_choice, json_schema=json_schema,
                                response_format=response_format, extra=extra,
                                params={"temperature": temperature, "max_tokens": max_tokens, "top_p": top_p,
                                        "seed": seed, "stop": stop})
        return await self.achat_request(request, timeout=timeout)

    def chat_request(self, request: ChatRequest, *, timeout: float | None = None) -> ChatResult:
        started = time.perf_counter()
        attempts = _Attempts()
        with start_llm_span(self.spec, request) as span:
            try:
                stored = self._stored(request)
                if stored is not None:
                    result = self._result(request, *stored, started, attempts)
                else:
                    reply, parsed = self._drive_sync(request, timeout or self.timeout, attempts)
                    self._store(request, reply)
                    result = self._result(request, reply, parsed, "network", started, attempts)
                    self.limits.charge(result.cost_usd)
            except BaseException as exc:
                fail_llm_span(span, exc, attempts.retries)
                raise
            finish_llm_span(span, result)
        record_usage(result)
        return result

    async def achat_request(self, request: ChatRequest, *, timeout: float | None = None) -> ChatResult:
        started = time.perf_counter()
        attempts = _Attempts()
        with start_llm_span(self.spec, request) as span:
            try:
                stored = self._stored(request)
                if stored is not None:
                    result = self._result(request, *stored, started, attempts)
                else:
                    reply, parsed = await self._drive_async(request, timeout or self.timeout, attempts)
                    self._store(request, reply)
                    result = self._result(request, reply, parsed, "network", started, attempts)
                    self.limits.charge(result.cost_usd)
            except BaseException as exc:
                fail_llm_span(span, exc, attempts.retries)
                raise
            finish_llm_span(span, result)
        record_usage(result)
        return result

    def close(self) -> None:
        if self._provider is not None:
            self._provider.close()

    def __enter__(self) -> ModelClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ModelClient({self.spec.uri!r})"

    # -- stored answers (cache, cassette) ---------------------------------------------------------

    def _cache_key(self, request: ChatRequest) -> str:
        return request.fingerprint(provider=self.spec.provider, model=self.spec.model, base_url=self.spec.base_url)

    def _cassette_key(self, request: ChatRequest) -> str:
        # No base URL: a cassette recorded against one host replays against any other (e.g. in CI).
        return request.fingerprint(provider=self.spec.provider, model=self.spec.model, base_url=None)

    def _stored(self, request: ChatRequest) -> tuple[ProviderReply, ParsedReply, str] | None:
        if self.cache.enabled and not is_cache_bypassed():
            reply = self.cache.get(self._cache_key(request))
            parsed = _parse_stored(request, reply)
            if reply is not None and parsed is not None:
                return reply, parsed, "cache"
        if self.cassette is not None:
            reply = self.cassette.lookup(self._cassette_key(request))
            parsed = _parse_stored(request, reply)
            if reply is not None and parsed is not None:
                return reply, parsed, "cassette"
            if not self.cassette.needs_network:
                raise self.cassette.miss(request, self.spec.uri)
        return None

    def _store(self, request: ChatRequest, reply: ProviderReply) -> None:
        if self.cache.mode == CacheMode.READ_WRITE and not is_cache_bypassed():
            self.cache.put(self._cache_key(request), reply)
        if self.cassette is not None and self.cassette.needs_network:
            self.cassette.record(self._cassette_key(request), request, self.spec.uri, reply)

    def _result(self, request: ChatRequest, reply: ProviderReply, parsed: ParsedReply, source: str,
                started: float, attempts: _Attempts) -> ChatResult:
        cache_hit = source == "cache"
        if cache_hit:
            cost, known = 0.0, True  # nothing was spent on this call
        else:
            cost, known = self.prices.cost(self.spec.provider, reply.model or self.spec.model,
                                           reply.input_tokens, reply.output_tokens,
                                           cache_read=reply.cache_read_tokens, cache_write=reply.cache_write_tokens,
                                           cache_write_1h=reply.cache_write_1h_tokens)
        return ChatResult(
            text=parsed.text, tool_calls=parsed.tool_calls, parsed=parsed.parsed,
            finish_reason=reply.finish_reason,
            usage=Usage(input_tokens=reply.input_tokens, output_tokens=reply.output_tokens,
                        cache_read_tokens=reply.cache_read_tokens, cache_write_tokens=reply.cache_write_tokens),
            cost_usd=cost, cost_known=known, latency_s=time.perf_counter() - started,
            provider=self.spec.provider, model=reply.model or self.spec.model, response_id=reply.response_id,
            retries=attempts.retries, cache_hit=cache_hit, replayed=source == "cassette", raw=reply.raw)

    # -- the retry plan and its two drivers -------------------------------------------------------

    def _plan(self, request: ChatRequest, timeout: float,
              attempts: _Attempts) -> Generator[_Step, _Outcome, tuple[ProviderReply, ParsedReply]]:
        provider = self._require_provider()
        transport = malformed = 0
        while True:
            outcome = yield _CALL
            if isinstance(outcome, Exception):
                failure = provider.classify(outcome)
                if failure is None:
                    raise outcome
                too_long = failure.retry_after is not None and failure.retry_after > self.retry.max_retry_after
                if not failure.retryable or too_long or transport >= self.retry.max_retries:
                    raise failure_error(failure, spec=self.spec, endpoint=provider.endpoint,
                                        attempts=attempts.retries + 1, timeout=timeout) from outcome
                delay = self.retry.delay(transport, failure.retry_after)
                transport += 1
                attempts.retries += 1
                yield delay
                continue
            assert isinstance(outcome, ProviderReply)
            try:
                return outcome, parse_reply(request, outcome)
            except MalformedOutput as exc:
                if malformed >= self.output_retries:
                    raise ModelOutputError(
                        f"{self.spec.uri} returned malformed output {malformed + 1} time(s) in a row ({exc}): "
                        "simplify the tools/schema, use a stronger model, or raise output_retries") from exc
                malformed += 1
                attempts.retries += 1

    def _drive_sync(self, request: ChatRequest, timeout: float,
                    attempts: _Attempts) -> tuple[ProviderReply, ParsedReply]:
        provider = self._require_provider()
        plan = self._plan(request, timeout, attempts)
        step = next(plan)
        while True:
            outcome: _Outcome = None
            if step is _CALL:
                try:
                    with self.limits.slot():
                        outcome = provider.complete(request, timeout=timeout)
                except Exception as exc:
                    outcome = exc
            else:
                time.sleep(step)
            try:
                step = plan.send(outcome)
            except StopIteration as done:
                outcome_pair: tuple[ProviderReply, ParsedReply] = done.value
                return outcome_pair

    async def _drive_async(self, request: ChatRequest, timeout: float,
                           attempts: _Attempts) -> tuple[ProviderReply, ParsedReply]:
        provider = self._require_provider()
        plan = self._plan(request, timeout, attempts)
        step = next(plan)
        while True:
            outcome: _Outcome = None
            if step is _CALL:
                try:
                    async with self.limits.slot_async():
                        outcome = await provider.acomplete(request, timeout=timeout)
                except Exception as exc:
                    outcome = exc
            else:
                await asyncio.sleep(step)
            try:
                step = plan.send(outcome)
            except StopIteration as done:
                outcome_pair: tuple[ProviderReply, ParsedReply] = done.value
                return outcome_pair

    def _require_provider(self) -> Provider:
        if self._provider is None:
            raise ModelConfigError(f"{self.spec.uri} is in cassette replay mode and cannot call the provider: "
                                   "re-record with COSTAR_CASSETTE_MODE=record_missing")
        return self._provider


def _parse_stored(request: ChatRequest, reply: ProviderReply | None) -> ParsedReply | None:
    if reply is None:
        return None
    try:
        return parse_reply(request, reply)
    except MalformedOutput:
        return None  # only validated replies are stored, but never serve one that no longer validates
