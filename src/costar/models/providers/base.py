"""The provider protocol, and the failure vocabulary the client's retry loop understands."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from costar.models.errors import (
    ContextWindowError,
    EndpointUnreachableError,
    ModelAuthError,
    ModelError,
    ModelNotFoundError,
    ModelRateLimitError,
    ModelRequestError,
    ModelServerError,
    ModelTimeoutError,
)
from costar.models.retry import parse_retry_after
from costar.models.types import ChatRequest, ProviderReply
from costar.models.uri import ModelSpec

# The window a server names when it rejects a request as too long (OpenAI, vLLM, llama.cpp's server).
_WINDOW_SAID = re.compile(r"(?:maximum context length is|context (?:window|length) of|n_ctx\D{0,16})\s*(\d{3,8})",
                          re.IGNORECASE)


@dataclass(frozen=True)
class ProviderSettings:
    api_key: str | None = None
    timeout: float = 60.0


class Provider(Protocol):
    #: ``gen_ai.provider.name`` for spans
    name: str
    #: the base URL requests go to, for error messages
    endpoint: str

    def complete(self, request: ChatRequest, *, timeout: float) -> ProviderReply: ...

    async def acomplete(self, request: ChatRequest, *, timeout: float) -> ProviderReply: ...

    def classify(self, exc: BaseException) -> Failure | None:
        """Describe a failure, or None when ``exc`` is not a transport/API failure (then it propagates)."""
        ...

    def close(self) -> None: ...


FailureKind = Literal["rate_limit", "server", "timeout", "connection", "bad_body", "not_found", "auth", "request",
                      "context"]
# How servers say a request is longer than the model's context (OpenAI, vLLM, llama-server, Ollama, Anthropic).
_CONTEXT_WORDS = re.compile(r"context[ _](length|window)|maximum context|too many tokens|prompt is too long|"
                            r"exceeds? the (available )?context", re.IGNORECASE)
_RETRYABLE: frozenset[str] = frozenset({"rate_limit", "server", "timeout", "connection", "bad_body"})


@dataclass(frozen=True)
class Failure:
    kind: FailureKind
    detail: str = ""
    status: int | None = None
    retry_after: float | None = None

    @property
    def retryable(self) -> bool:
        return self.kind in _RETRYABLE


def failure_from_status(status: int, headers: Any, body: Any, message: str) -> Failure:
    detail = _detail(body, message)
    retry_after = parse_retry_after(dict(headers) if headers is not None else None)
    if status == 429:
        return Failure("rate_limit", detail, status, retry_after)
    if status == 404:
        return Failure("not_found", detail, status)
    if status in (401, 403):
        return Failure("auth", detail, status)
    if status == 408:
        return Failure("timeout", detail, status, retry_after)
    if status == 409 or status >= 500:  # 409: lock contention, documented as retryable by OpenAI
        return Failure("server", detail, status, retry_after)
    if status in (400, 413) and _CONTEXT_WORDS.search(f"{detail} {body}"):
        return Failure("context", detail, status)
    return Failure("request", detail, status)


def classify_sdk_error(exc: BaseException, sdk: Any) -> Failure | None:
    """Shared by the OpenAI and Anthropic SDKs, whose exception hierarchies have the same shape."""
    if isinstance(exc, sdk.APITimeoutError):
        return Failure("timeout", "no response in time")
    if isinstance(exc, sdk.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        return Failure("connection", _one_line(str(cause or exc)))
    if isinstance(exc, sdk.APIStatusError):
        return failure_from_status(exc.status_code, exc.response.headers, exc.body, exc.message)
    if isinstance(exc, sdk.APIResponseValidationError | json.JSONDecodeError):
        return Failure("bad_body", _one_line(str(exc)))
    return None


def failure_error(failure: Failure, *, spec: ModelSpec, endpoint: str, attempts: int,
                  timeout: float) -> ModelError:
    """The one-line error for a failure that will not be retried (again)."""
    tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
    d = f": {failure.detail}" if failure.detail else ""
    status = f"HTTP {failure.status}{d}" if failure.status else failure.detail
    match failure.kind:
        case "connection":
            return EndpointUnreachableError(
                f"cannot connect to {endpoint} for {spec.uri} ({failure.detail}, {tries}): start the model "
                "server there (e.g. `costar model serve local:/smollm2 --port 8000`) or fix base_url")
        case "timeout":
            return ModelTimeoutError(
                f"{endpoint} did not answer {spec.uri} within {timeout:g}s ({tries}): raise timeout= "
                "or check that the server is not overloaded")
        case "rate_limit":
            return ModelRateLimitError(
                f"{endpoint} kept rate-limiting {spec.uri} ({status}, {tries}): lower max_concurrency "
                "or requests_per_minute, or raise RetryPolicy.max_retries")
        case "server":
            return ModelServerError(
                f"{endpoint} kept failing for {spec.uri} ({status}, {tries}): check the server's logs "
                "or retry later")
        case "bad_body":
            return ModelServerError(
                f"{endpoint} answered {spec.uri} with a body that is not valid JSON ({tries}): check that "
                "base_url points at an OpenAI-compatible API (usually ending in /v1)")
        case "not_found":
            return ModelNotFoundError(
                f"model '{spec.model}' not found at {endpoint} ({status}): check the model name "
                f"(GET {endpoint.rstrip('/')}/models lists served models) and that base_url is right")
        case "auth":
            var = spec.api_key_env or "the API key"
            return ModelAuthError(f"{endpoint} rejected the credentials for {spec.uri} ({status}): "
                                  f"check {var}")
        case "context":
            window = f" of {spec.context_window} tokens" if spec.context_window else ""
            said = _WINDOW_SAID.search(failure.detail)
            return ContextWindowError(
                f"the request does not fit the context window{window} of {spec.uri} ({status}): shorten it, or use "
                "a model with a longer context (a local model: ?n_ctx=8192)", window=int(said[1]) if said else None)
        case _:
            return ModelRequestError(f"{endpoint} rejected the request for {spec.uri} ({status}): "
                                     "fix the request (messages, tools, parameters)")


def _detail(body: Any, message: str) -> str:
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return _one_line(str(err["message"]))
        if isinstance(err, str):
            return _one_line(err)
    return _one_line(message)


def _one_line(text: str, limit: int = 200) -> str:
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
