"""Token prices (USD per million tokens) and the cost of a call.

The built-in table holds list prices of common OpenAI and Anthropic models; prices change, so a
project can override or extend it from a YAML/JSON file or a dict. Dated snapshots
(``gpt-4o-2024-08-06``) match their family by the longest known prefix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from costar._util.yamlfile import read_config_file
from costar.errors import ConfigError


@dataclass(frozen=True)
class Price:
    input_per_mtok: float
    output_per_mtok: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1_000_000


BUILTIN_PRICES: dict[str, Price] = {
    # OpenAI
    "gpt-5": Price(1.25, 10.00),
    "gpt-5-mini": Price(0.25, 2.00),
    "gpt-5-nano": Price(0.05, 0.40),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4-turbo": Price(10.00, 30.00),
    "gpt-3.5-turbo": Price(0.50, 1.50),
    "o1": Price(15.00, 60.00),
    "o1-mini": Price(1.10, 4.40),
    "o3": Price(2.00, 8.00),
    "o3-mini": Price(1.10, 4.40),
    "o4-mini": Price(1.10, 4.40),
    # Anthropic
    "claude-opus-4-5": Price(5.00, 25.00),
    "claude-opus-4-1": Price(15.00, 75.00),
    "claude-opus-4": Price(15.00, 75.00),
    "claude-sonnet-4-5": Price(3.00, 15.00),
    "claude-sonnet-4": Price(3.00, 15.00),
    "claude-haiku-4-5": Price(1.00, 5.00),
    "claude-3-7-sonnet": Price(3.00, 15.00),
    "claude-3-5-sonnet": Price(3.00, 15.00),
    "claude-3-5-haiku": Price(0.80, 4.00),
    "claude-3-opus": Price(15.00, 75.00),
    "claude-3-haiku": Price(0.25, 1.25),
}

# Providers whose calls cost nothing to the user (the machine's time is not billed per token).
FREE_PROVIDERS = frozenset({"local"})


class PriceTable:
    """Look-ups by ``provider:/model`` first, then the bare model name, then the longest model prefix."""

    def __init__(self, prices: Mapping[str, Price] | None = None) -> None:
        self._prices: dict[str, Price] = dict(BUILTIN_PRICES if prices is None else prices)
        # Longest first, so "gpt-4o-mini-2024-07-18" finds gpt-4o-mini before gpt-4o.
        self._prefixes = sorted(self._prices, key=len, reverse=True)

    def with_overrides(self, overrides: Mapping[str, Any]) -> PriceTable:
        merged = dict(self._prices)
        merged.update(_parse_prices(overrides, source="overrides"))
        return PriceTable(merged)

    def lookup(self, provider: str, model: str) -> Price | None:
        for key in (f"{provider}:/{model}", model):
            if key in self._prices:
                return self._prices[key]
        for key in self._prefixes:
            if ":/" not in key and model.startswith(key) and model[len(key):][:1] in ("", "-", "@", ":"):
                return self._prices[key]
        return None

    def cost(self, provider: str, model: str, input_tokens: int, output_tokens: int) -> tuple[float, bool]:
        """(cost in USD, whether the price is known). Unknown models cost 0 and say so."""
        if provider in FREE_PROVIDERS:
            return 0.0, True
        price = self.lookup(provider, model)
        if price is None:
            return 0.0, False
        return price.cost(input_tokens, output_tokens), True


def load_price_table(source: str | Path | Mapping[str, Any] | PriceTable | None) -> PriceTable:
    """The built-in table, extended by a file (YAML/JSON) or a dict of overrides."""
    if source is None:
        return PriceTable()
    if isinstance(source, PriceTable):
        return source
    if isinstance(source, Mapping):
        return PriceTable().with_overrides(source)
    path = Path(source)
    data = read_config_file(path, "price file")
    return PriceTable().with_overrides(_section(data, path))


def _section(data: Any, path: Path) -> Mapping[str, Any]:
    models = data.get("models") if isinstance(data, Mapping) else None
    if isinstance(models, Mapping):
        return models
    if isinstance(data, Mapping):
        return data
    raise ConfigError(f"price file {path} must map model names to {{input: USD/Mtok, output: USD/Mtok}}")


def _parse_prices(raw: Mapping[str, Any], *, source: str) -> dict[str, Price]:
    out: dict[str, Price] = {}
    for name, entry in raw.items():
        if isinstance(entry, Price):
            out[str(name)] = entry
            continue
        try:
            if isinstance(entry, Mapping):
                out[str(name)] = Price(float(entry["input"]), float(entry["output"]))
            else:
                inp, outp = entry
                out[str(name)] = Price(float(inp), float(outp))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"price for '{name}' in {source} must be {{input: <USD per 1M tokens>, "
                              "output: <USD per 1M tokens>}") from exc
    return out
