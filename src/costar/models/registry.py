"""Provider registry. Built-ins and plugins are resolved the same way: a lazy ``module:attr`` reference
to a ``ProviderFactory``; plugins come from the ``costar.model_providers`` entry-point group."""

from __future__ import annotations

import functools
import importlib
import threading
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from costar.errors import ConfigError
from costar.models.errors import UnknownProviderError

if TYPE_CHECKING:
    from costar.models.providers.base import Provider, ProviderSettings
    from costar.models.uri import ModelSpec

ENTRY_POINT_GROUP = "costar.model_providers"

_OPENAI_COMPAT = "costar.models.providers.openai_compat"
# The same references a packaging entry point would hold, so built-ins import nothing until used.
BUILTIN_PROVIDERS: dict[str, str] = {
    "openai": f"{_OPENAI_COMPAT}:OPENAI",
    "openai-compatible": f"{_OPENAI_COMPAT}:OPENAI_COMPATIBLE",
    "vllm": f"{_OPENAI_COMPAT}:VLLM",
    "ollama": f"{_OPENAI_COMPAT}:OLLAMA",
    "llama-server": f"{_OPENAI_COMPAT}:LLAMA_SERVER",
    "lmstudio": f"{_OPENAI_COMPAT}:LMSTUDIO",
    "databricks": f"{_OPENAI_COMPAT}:DATABRICKS",
    "anthropic": "costar.models.providers.anthropic:ANTHROPIC",
    "local": "costar.models.providers.local:LOCAL",
}


@runtime_checkable
class ProviderFactory(Protocol):
    """What a provider plugin exposes: defaults for its URIs, and a client for one model."""

    def configure(self, spec: ModelSpec) -> ModelSpec:
        """Fill in defaults (base URL, API-key variable) and reject URIs the provider cannot serve."""
        ...

    def create(self, spec: ModelSpec, settings: ProviderSettings) -> Provider:
        """Build the provider client. Must fail (ModelConfigError) before any network on bad config."""
        ...


_Ref = str | EntryPoint | ProviderFactory


class ProviderRegistry:
    def __init__(self, *, builtins: bool = True, load_entry_points: bool = True) -> None:
        self._refs: dict[str, _Ref] = dict(BUILTIN_PROVIDERS) if builtins else {}
        self._loaded: dict[str, ProviderFactory] = {}
        self._want_entry_points = load_entry_points
        self._entry_points_done = False
        self._lock = threading.Lock()

    def register(self, name: str, factory: ProviderFactory | str) -> None:
        """Add or replace a provider; ``factory`` may be a ``"module:attr"`` reference."""
        with self._lock:
            self._refs[name.lower()] = factory
            self._loaded.pop(name.lower(), None)

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._refs)

    def get(self, name: str) -> ProviderFactory:
        self._load_entry_points()
        key = name.lower()
        with self._lock:
            if key in self._loaded:
                return self._loaded[key]
            ref = self._refs.get(key)
        if ref is None:
            raise UnknownProviderError(f"unknown model provider '{name}': use one of "
                                       f"{', '.join(self.names())} (or install a costar.model_providers plugin)")
        factory = _resolve(key, ref)
        with self._lock:
            self._loaded[key] = factory
        return factory

    def _load_entry_points(self) -> None:
        if not self._want_entry_points or self._entry_points_done:
            return
        with self._lock:
            if self._entry_points_done:
                return
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                # An installed plugin wins over a built-in of the same name: that is how one is replaced.
                self._refs[ep.name.lower()] = ep
            self._entry_points_done = True


def _resolve(name: str, ref: _Ref) -> ProviderFactory:
    if not isinstance(ref, str | EntryPoint):
        return ref
    target = ref if isinstance(ref, str) else ref.value
    try:
        if isinstance(ref, EntryPoint):
            obj = ref.load()
        else:
            module, _, attr = ref.partition(":")
            obj = getattr(importlib.import_module(module), attr)
    except Exception as exc:
        raise ConfigError(f"model provider '{name}' ({target}) failed to load: {type(exc).__name__}: {exc}; "
                          "reinstall or uninstall the package that provides it") from exc
    if not isinstance(obj, ProviderFactory):
        raise ConfigError(f"model provider '{name}' ({target}) is not a ProviderFactory "
                          "(it needs configure(spec) and create(spec, settings))")
    return obj


@functools.cache
def default_registry() -> ProviderRegistry:
    return ProviderRegistry()
