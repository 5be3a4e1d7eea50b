"""Provider-neutral model layer: ``ModelClient("openai:/gpt-4.1-mini").chat(messages)``.

Providers are plugins (entry-point group ``costar.model_providers``); OpenAI, every OpenAI-compatible
server, Anthropic and an embedded local model (``local:/smollm2``) are built in.
"""

from costar.models.cache import CacheMode, ResponseCache
from costar.models.cassette import Cassette, CassetteMode
from costar.models.client import ModelClient
from costar.models.errors import (
    CassetteMissError,
    ContextWindowError,
    EndpointUnreachableError,
    LocalModelUnavailableError,
    MissingAPIKeyError,
    ModelAuthError,
    ModelConfigError,
    ModelError,
    ModelNotFoundError,
    ModelOutputError,
    ModelRateLimitError,
    ModelRequestError,
    ModelServerError,
    ModelTimeoutError,
    UnknownProviderError,
)
from costar.models.limits import limits_for
from costar.models.pricing import Price, PriceTable, load_price_table
from costar.models.registry import ENTRY_POINT_GROUP, ProviderFactory, ProviderRegistry, default_registry
from costar.models.retry import RetryPolicy
from costar.models.types import ChatRequest, ChatResult, ProviderReply, ToolCall, Usage
from costar.models.uri import ModelSpec, parse_model_uri

__all__ = [
    "ENTRY_POINT_GROUP",
    "CacheMode",
    "Cassette",
    "CassetteMissError",
    "CassetteMode",
    "ChatRequest",
    "ChatResult",
    "ContextWindowError",
    "EndpointUnreachableError",
    "LocalModelUnavailableError",
    "MissingAPIKeyError",
    "ModelAuthError",
    "ModelClient",
    "ModelConfigError",
    "ModelError",
    "ModelNotFoundError",
    "ModelOutputError",
    "ModelRateLimitError",
    "ModelRequestError",
    "ModelServerError",
    "ModelSpec",
    "ModelTimeoutError",
    "Price",
    "PriceTable",
    "ProviderFactory",
    "ProviderRegistry",
    "ProviderReply",
    "ResponseCache",
    "RetryPolicy",
    "ToolCall",
    "UnknownProviderError",
    "Usage",
    "default_registry",
    "limits_for",
    "load_price_table",
    "parse_model_uri",
]
