"""OpenAI and every OpenAI-compatible endpoint (vLLM, Ollama, llama-server, LM Studio, Databricks),
through the official ``openai`` SDK with its own retries disabled (the client's loop counts them)."""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from typing import Any

import openai

from costar.errors import ConfigError
from costar.models.errors import MissingAPIKeyError, ModelConfigError
from costar.models.providers.base import Failure, ProviderSettings, classify_sdk_error
from costar.models.types import ChatRequest, OutputFormat, ProviderReply, RawToolCall
from costar.models.uri import ModelSpec

# Local servers ignore the key, but the SDK refuses to send a request without one.
_PLACEHOLDER_KEY = "not-needed"


async def _close_when_cancelled(client: openai.AsyncOpenAI) -> None:
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        await client.close()
        raise


class OpenAICompatibleFactory:
    def __init__(self, name: str, *, default_base_url: str | None = None, api_key_env: str | None = None,
                 key_required: bool = False, uses_max_completion_tokens: bool = False,
                 base_url_in_uri: bool = False) -> None:
        self.name = name
        self.default_base_url = default_base_url
        self.api_key_env = api_key_env
        self.key_required = key_required
        self.uses_max_completion_tokens = uses_max_completion_tokens
        # True when the URI itself must carry ?base_url= (no default, nothing in the environment).
        self.base_url_in_uri = base_url_in_uri

    def configure(self, spec: ModelSpec) -> ModelSpec:
        base_url = spec.base_url or self._default_base_url()
        if base_url is None and self.base_url_in_uri:
            raise ConfigError(f"{spec.uri} needs a base URL: write {self.name}:/{spec.model}"
                              "?base_url=http://127.0.0.1:8000/v1")
        # A variable named in the URI must be set; a provider's default variable only when it is required.
        required = self.key_required or spec.api_key_env is not None
        return spec.model_copy(update={"base_url": base_url.rstrip("/") if base_url else None,
                                       "api_key_env": spec.api_key_env or self.api_key_env,
                                       "api_key_required": required})

    def _default_base_url(self) -> str | None:
        return self.default_base_url

    def create(self, spec: ModelSpec, settings: ProviderSettings) -> OpenAIProvider:
        if not spec.base_url:
            raise ModelConfigError(f"{spec.uri} has no base URL: {self._missing_base_hint()}")
        key = settings.api_key or (os.environ.get(spec.api_key_env) if spec.api_key_env else None)
        if not key:
            if spec.api_key_required:
                var = spec.api_key_env or "OPENAI_API_KEY"
                raise MissingAPIKeyError(f"{var} is not set: export {var}=<your key> or pass api_key= "
                                         f"(needed for {spec.uri})")
            key = _PLACEHOLDER_KEY
        return OpenAIProvider(self, spec, key, settings.timeout)

    def _missing_base_hint(self) -> str:
        return f"pass ?base_url=http://HOST:PORT/v1 to the {self.name} URI"


class DatabricksFactory(OpenAICompatibleFactory):
    """Databricks serving endpoints speak the OpenAI chat API under ``$DATABRICKS_HOST/serving-endpoints``."""

    def _default_base_url(self) -> str | None:
        host = os.environ.get("DATABRICKS_HOST", "").strip().rstrip("/")
        if not host:
            return None
        if "://" not in host:
            host = "https://" + host
        return f"{host}/serving-endpoints"

    def _missing_base_hint(self) -> str:
        return ("DATABRICKS_HOST is not set: export DATABRICKS_HOST=https://<workspace>.cloud.databricks.com "
                "or pass ?base_url=")


class OpenAIProvider:
    def __init__(self, factory: OpenAICompatibleFactory, spec: ModelSpec, api_key: str, timeout: float) -> None:
        self.name = factory.name
        self.endpoint = spec.base_url or ""
        self._spec = spec
        self._factory = factory
        self._api_key = api_key
        self._timeout = timeout
        self._sync = openai.OpenAI(api_key=api_key, base_url=self.endpoint, max_retries=0, timeout=timeout)
        # An async HTTP pool belongs to the event loop that opened it; keep one client per loop.
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, openai.AsyncOpenAI] = (
            weakref.WeakKeyDictionary())
        self._async_lock = threading.Lock()
        self._closers: set[asyncio.Task[None]] = set()

    def complete(self, request: ChatRequest, *, timeout: float) -> ProviderReply:
        resp = self._sync.chat.completions.create(**self._kwargs(request), timeout=timeout)
        return _reply(resp)

    async def acomplete(self, request: ChatRequest, *, timeout: float) -> ProviderReply:
        resp = await self._async_client().chat.completions.create(**self._kwargs(request), timeout=timeout)
        return _reply(resp)

    def classify(self, exc: BaseException) -> Failure | None:
        return classify_sdk_error(exc, openai)

    def close(self) -> None:
        self._sync.close()

    def _async_client(self) -> openai.AsyncOpenAI:
        loop = asyncio.get_running_loop()
        with self._async_lock:
            client = self._async.get(loop)
            if client is None:
                client = openai.AsyncOpenAI(api_key=self._api_key, base_url=self.endpoint, max_retries=0,
                                            timeout=self._timeout)
                self._async[loop] = client
                # Close the pool while its loop still runs: asyncio.run() cancels pending tasks on exit.
                closer = loop.create_task(_close_when_cancelled(client))
                # A loop closed without cancelling its tasks (a long-lived background loop) just drops it.
                closer._log_destroy_pending = False  # type: ignore[attr-defined]
                self._closers.add(closer)  # the loop keeps only a weak reference to its tasks
                closer.add_done_callback(self._closers.discard)
            return client

    def _kwargs(self, request: ChatRequest) -> dict[str, Any]:
        kw: dict[str, Any] = {"model": self._spec.model, "messages": request.messages}
        if request.tools:
            kw["tools"] = [t.openai() for t in request.tools]
        if request.tool_choice is not None:
            kw["tool_choice"] = request.tool_choice
        if request.output is not None:
            kw["response_format"] = response_format(request.output)
        for name, value in request.params.items():
            if name == "max_tokens" and self._factory.uses_max_completion_tokens:
                # OpenAI's reasoning models reject max_tokens; max_completion_tokens works on all of them.
                kw["max_completion_tokens"] = value
            else:
                kw[name] = value
        if request.extra:
            kw["extra_body"] = request.extra
        return kw


def response_format(output: OutputFormat) -> dict[str, Any]:
    if output.kind == "json_object" or output.schema is None:
        return {"type": "json_object"}
    return {"type": "json_schema",
            "json_schema": {"name": output.name, "schema": output.schema, "strict": output.strict}}


def _reply(resp: Any) -> ProviderReply:
    usage = getattr(resp, "usage", None)
    raw = resp.model_dump(mode="json", exclude_none=True, warnings=False) if hasattr(resp, "model_dump") else {}
    details = getattr(usage, "prompt_tokens_details", None)
    base = ProviderReply(
        input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        # prompt_tokens includes these parts.
        cache_read_tokens=int(getattr(details, "cached_tokens", 0) or 0),
        cache_write_tokens=int(getattr(details, "cache_write_tokens", 0) or 0),
        output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        model=getattr(resp, "model", None), response_id=getattr(resp, "id", None), raw=raw)
    choices = getattr(resp, "choices", None) or []
    if not choices:
        return base
    choice = choices[0]
    msg = choice.message
    calls = []
    for i, tc in enumerate(getattr(msg, "tool_calls", None) or []):
        fn = getattr(tc, "function", None)
        if fn is None:
            continue
        calls.append(RawToolCall(id=tc.id or f"call_{i}", name=fn.name or "", arguments=fn.arguments))
    return base.model_copy(update={"text": msg.content, "tool_calls": calls,
                                   "finish_reason": choice.finish_reason})


OPENAI = OpenAICompatibleFactory("openai", default_base_url="https://api.openai.com/v1",
                                 api_key_env="OPENAI_API_KEY", key_required=True,
                                 uses_max_completion_tokens=True)
OPENAI_COMPATIBLE = OpenAICompatibleFactory("openai-compatible", base_url_in_uri=True)
VLLM = OpenAICompatibleFactory("vllm", default_base_url="http://127.0.0.1:8000/v1", api_key_env="VLLM_API_KEY")
OLLAMA = OpenAICompatibleFactory("ollama", default_base_url="http://127.0.0.1:11434/v1")
LLAMA_SERVER = OpenAICompatibleFactory("llama-server", default_base_url="http://127.0.0.1:8080/v1",
                                       api_key_env="LLAMA_API_KEY")
LMSTUDIO = OpenAICompatibleFactory("lmstudio", default_base_url="http://127.0.0.1:1234/v1")
DATABRICKS = DatabricksFactory("databricks", api_key_env="DATABRICKS_TOKEN", key_required=True)
