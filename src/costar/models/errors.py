"""Errors raised by the model layer. Each message is one line naming the fix."""

from __future__ import annotations

from costar.errors import ConfigError, CostarError


class ModelError(CostarError):
    """A model call failed in a way the caller cannot fix by retrying the same code."""


class ModelConfigError(ModelError, ConfigError):
    """The model URI, credentials or optional dependencies are wrong; nothing was sent."""


class UnknownProviderError(ModelConfigError):
    pass


class MissingAPIKeyError(ModelConfigError):
    pass


class LocalModelUnavailableError(ModelConfigError):
    pass


class EndpointUnreachableError(ModelError):
    """No TCP connection could be made to the endpoint."""


class ModelNotFoundError(ModelError):
    pass


class ModelAuthError(ModelError):
    pass


class ModelRateLimitError(ModelError):
    pass


class ModelServerError(ModelError):
    """The endpoint kept failing (5xx, or a body that is not valid JSON)."""


class ModelTimeoutError(ModelError):
    pass


class ModelRequestError(ModelError):
    """The endpoint rejected the request itself (HTTP 4xx other than 401/403/404/429)."""


class ContextWindowError(ModelRequestError):
    """The request does not fit the model's context window (prompt plus the tokens asked for)."""

    def __init__(self, message: str, *, window: int | None = None) -> None:
        super().__init__(message)
        self.window = window
        """The model's context window in tokens, when the server's answer said it (None otherwise)."""


class ModelBudgetExceededError(ModelError):
    """The money budget for model calls is spent: no further call is made."""


class ModelOutputError(ModelError):
    """The model kept answering with malformed tool calls or JSON that fails the requested schema."""


class CassetteMissError(ModelError):
    """Replay mode found no recorded response for a request."""
