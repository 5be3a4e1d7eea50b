"""Model URIs (``provider:/model?key=value``) parsed into a ``ModelSpec``."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote

from pydantic import BaseModel, ConfigDict, Field

from costar.errors import ConfigError

if TYPE_CHECKING:
    from costar.models.registry import ProviderRegistry

# Query parameters with a meaning of their own; every other one is passed to the provider as an option.
_RESERVED = ("base_url", "api_key_env", "context_window")


class ModelSpec(BaseModel):
    """A resolved model address. Providers fill in their defaults (base URL, API key variable)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    uri: str
    provider: str
    model: str
    base_url: str | None = None
    api_key_env: str | None = None
    api_key_required: bool = False
    context_window: int | None = Field(None, gt=0)
    """Tokens the model reads and writes per call (``?context_window=``), when the URI says; the
    client falls back to what its provider knows (a local model's ``n_ctx``)."""
    options: dict[str, str] = Field(default_factory=dict)

    @property
    def endpoint_key(self) -> str:
        """Identity of the model behind an endpoint: what limits and caches are shared by."""
        return f"{self.provider}|{self.base_url or ''}|{self.model}"

    def __str__(self) -> str:
        return self.uri


def parse_model_uri(uri: str, *, registry: ProviderRegistry | None = None) -> ModelSpec:
    """Parse ``provider:/model`` (``provider:model`` is accepted too) and apply the provider's defaults."""
    from costar.models.registry import default_registry

    reg = registry or default_registry()
    text = uri.strip()
    provider, sep, rest = text.partition(":")
    if not sep or not provider:
        raise ConfigError(f"model URI '{uri}' has no provider: write it as provider:/model, "
                          f"e.g. openai:/gpt-4.1-mini (providers: {', '.join(reg.names())})")
    path, _, query = rest.partition("?")
    model = unquote(path[1:] if path.startswith("/") else path)
    if not model:
        raise ConfigError(f"model URI '{uri}' names no model: write it as {provider}:/MODEL, "
                          "e.g. openai:/gpt-4.1-mini")
    params = dict(parse_qsl(query, keep_blank_values=True))
    factory = reg.get(provider.lower())
    window = params.get("context_window") or None
    if window is not None and (not window.isdigit() or int(window) <= 0):
        raise ConfigError(f"?context_window= in model URI '{uri}' must be a positive number of tokens")
    spec = ModelSpec(
        uri=text, provider=provider.lower(), model=model,
        base_url=(params.get("base_url") or None),
        api_key_env=(params.get("api_key_env") or None),
        context_window=int(window) if window is not None else None,
        options={k: v for k, v in params.items() if k not in _RESERVED},
    )
    return factory.configure(spec)
