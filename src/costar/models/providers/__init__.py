"""Built-in providers: :mod:`~costar.models.providers.openai_compat` (OpenAI and every
OpenAI-compatible server), :mod:`~costar.models.providers.anthropic` and
:mod:`~costar.models.providers.local` (the embedded model). Each module exposes ``ProviderFactory``
objects that the ``costar.model_providers`` entry points name; :mod:`costar.models` is the public API.
"""

__all__: list[str] = []  # reached through costar.models and the entry points, not from here
