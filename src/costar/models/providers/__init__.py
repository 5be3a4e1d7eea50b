"""Built-in providers. Each module exposes ``ProviderFactory`` objects referenced from the registry."""
