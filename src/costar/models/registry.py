"""Model providers by name: the ``provider`` of a model URI (``openai:/gpt-4.1-mini``) names a
``ProviderFactory`` in the ``costar.model_providers`` plugin group (:mod:`costar.plugins`), where the
built-in providers are declared too."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from costar.models.errors import UnknownProviderError
from costar.plugins import MODEL_PROVIDERS, PluginGroup

if TYPE_CHECKING:
    from costar.models.providers.base import Provider, ProviderSettings
    from costar.models.uri import ModelSpec

ENTRY_POINT_GROUP = MODEL_PROVIDERS


@runtime_checkable
class ProviderFactory(Protocol):
    """What a provider plugin exposes: defaults for its URIs, and a client for one model."""

    def configure(self, spec: ModelSpec) -> ModelSpec:
        """Fill in defaults (base URL, API-key variable) and reject URIs the provider cannot serve."""
        ...

    def create(self, spec: ModelSpec, settings: ProviderSettings) -> Provider:
        """Build the provider client. Must fail (ModelConfigError) before any network on bad config."""
        ...


def _not_a_factory(obj: Any) -> str | None:
    return None if isinstance(obj, ProviderFactory) else "it needs configure(spec) and create(spec, settings)"


class ProviderRegistry:
    """Model providers by (case-insensitive) name. ``load_entry_points=False`` leaves installed
    plugins out (built-ins stay); ``builtins=False`` leaves the built-in providers out."""

    def __init__(self, *, builtins: bool = True, load_entry_points: bool = True) -> None:
        self._group: PluginGroup[ProviderFactory] = PluginGroup(
            MODEL_PROVIDERS, "model provider", accept=_not_a_factory, builtins=builtins,
            plugins=load_entry_points, fold_case=True)

    def register(self, name: str, factory: ProviderFactory | str) -> None:
        """Add or replace a provider; ``factory`` may be a ``"module:attr"`` reference."""
        self._group.register(name, factory)

    def names(self) -> list[str]:
        return self._group.names()

    def get(self, name: str) -> ProviderFactory:
        factory = self._group.find(name)
        if factory is None:
            raise UnknownProviderError(f"unknown model provider '{name}': use one of "
                                       f"{', '.join(self.names())} (or install a costar.model_providers plugin)")
        return factory


@functools.cache
def default_registry() -> ProviderRegistry:
    return ProviderRegistry()
