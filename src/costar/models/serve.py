"""Expose any ``ModelClient`` as an OpenAI-compatible HTTP endpoint (``/v1/chat/completions``, ``/v1/models``),
so command agents in any language can use e.g. the embedded local model."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from costar._util.server import BackgroundServer
from costar.errors import ConfigError
from costar.models.client import ModelClient
from costar.models.errors import (
    EndpointUnreachableError,
    ModelAuthError,
    ModelError,
    ModelNotFoundError,
    ModelRateLimitError,
    ModelRequestError,
    ModelTimeoutError,
)

_STATUS: list[tuple[type[ModelError], int]] = [
    (ModelRequestError, 400), (ModelAuthError, 401), (ModelNotFoundError, 404), (ModelRateLimitError, 429),
    (ModelTimeoutError, 504), (EndpointUnreachableError, 502),
]
_PARAMS = ("tools", "tool_choice", "response_format", "temperature", "max_tokens", "top_p", "seed", "stop")


def build_openai_app(client: ModelClient | str, **client_kwargs: Any) -> FastAPI:
    """A FastAPI app answering OpenAI chat-completions requests with ``client`` (or a new one for a URI)."""
    model = client if isinstance(client, ModelClient) else ModelClient(client, **client_kwargs)
    app = FastAPI(title=f"coSTAR model server ({model.spec.uri})")

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model.spec.model, "object": "model", "created": 0,
                                            "owned_by": model.spec.provider}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _error(400, "request body is not valid JSON", "invalid_request_error")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "'messages' must be a list of chat messages", "invalid_request_error")
        if body.get("stream"):
            return _error(400, "streaming is not supported by this server: send stream=false",
                          "invalid_request_error")
        kwargs = {k: body[k] for k in _PARAMS if body.get(k) is not None}
        if body.get("max_completion_tokens") is not None:
            kwargs["max_tokens"] = body["max_completion_tokens"]
        try:
            result = await model.achat(body["messages"], **kwargs)
        except ModelError as exc:
            status = next((s for cls, s in _STATUS if isinstance(exc, cls)), 502)
            return _error(status, str(exc), "model_error")
        except ConfigError as exc:
            return _error(400, str(exc), "invalid_request_error")
        return JSONResponse({
            "id": result.response_id or f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": result.model,
            "choices": [{"index": 0, "message": result.message(), "finish_reason": result.finish_reason or "stop"}],
            "usage": {"prompt_tokens": result.usage.input_tokens, "completion_tokens": result.usage.output_tokens,
                      "total_tokens": result.usage.total_tokens},
        })

    return app


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


def serve_openai_compatible(model_uri: str | ModelClient, host: str = "127.0.0.1", port: int = 8000,
                            **client_kwargs: Any) -> None:
    """Serve ``model_uri`` on ``http://host:port/v1`` until interrupted (what `costar model serve` runs)."""
    import uvicorn

    uvicorn.run(build_openai_app(model_uri, **client_kwargs), host=host, port=port, log_level="info")


def start_openai_compatible(model_uri: str | ModelClient, host: str = "127.0.0.1", port: int = 0,
                            **client_kwargs: Any) -> BackgroundServer:
    """Serve in a background thread; ``.url + "/v1"`` is the base URL, ``.stop()`` ends it."""
    return BackgroundServer(build_openai_app(model_uri, **client_kwargs), host=host, port=port).start()
