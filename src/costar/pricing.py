"""Token prices (USD per million tokens) and the cost of a call.

The built-in table holds list prices of common OpenAI and Anthropic models; prices change, so a
project can override or extend it from a YAML/JSON file or a dict (``prices:`` in costar.yaml).
Dated snapshots (``gpt-4o-2024-08-06``) match their family by the longest known prefix.

It sits below the project file (``costar.config`` parses ``prices:`` at load) and is re-exported by
``costar.models.pricing``, where the model client uses it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from costar._util.yamlfile import read_config_file
from costar.errors import ConfigError

__all__ = ["BUILTIN", "BUILTIN_PRICES", "FREE_PROVIDERS", "MAX_PRICE_PER_MTOK", "Price", "PriceError", "PriceTable",
           "load_price_table", "model_name_problem"]

BUILTIN = "built-in"
"""The source of the prices coSTAR ships (:meth:`PriceTable.source_of`)."""

MAX_PRICE_PER_MTOK = 1_000_000.0
"""The highest price accepted, in USD per million tokens ($1 a token): far above any real model's
price, and low enough that no call's cost can overflow a float (see :meth:`Price.cost`)."""

# A token count above this (the largest 64-bit integer, what spans and stores hold) is counted as this.
_MAX_TOKENS = 2**63 - 1


def _usd(value: Any) -> float | None:
    """A non-negative number as a float (inf for an integer too large for a float); None otherwise."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer of 309 digits or more: a number, far above any limit
        return math.inf if isinstance(value, int) and value > 0 else None
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _shown(value: Any) -> str:
    """``value`` for an error message: its repr, with a huge integer told by its length, not its digits."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**16:
        try:
            digits = len(str(abs(value)))
        except ValueError:  # more digits than Python turns into text
            digits = int(math.log10(abs(value))) + 1
        return f"{'a negative' if value < 0 else 'an'} integer of {digits} digits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Price:
    """A model's list prices in USD per million tokens.

    Cached prompt tokens are billed apart from the rest of the prompt: reads from the provider's
    prompt cache at ``cache_read_per_mtok``, writes to it at ``cache_write_per_mtok`` (Anthropic's
    5-minute cache) or ``cache_write_1h_per_mtok`` (its 1-hour cache). A cache price left unset
    means those tokens cost what other input tokens cost (``input_per_mtok``; a 1-hour write
    without its own price costs a 5-minute write's).
    """

    input_per_mtok: float
    """Prompt tokens that neither came from nor went to the prompt cache."""
    output_per_mtok: float
    """Completion tokens (reasoning tokens included)."""
    cache_read_per_mtok: float | None = None
    """Prompt tokens read from the prompt cache (None: the input price)."""
    cache_write_per_mtok: float | None = None
    """Prompt tokens written to the prompt cache (None: the input price)."""
    cache_write_1h_per_mtok: float | None = None
    """Prompt tokens written to a 1-hour cache entry (None: the cache write price)."""

    def __post_init__(self) -> None:
        for name in ("input_per_mtok", "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok",
                     "cache_write_1h_per_mtok"):
            value = getattr(self, name)
            if value is None and name.startswith("cache_"):
                continue
            number = _usd(value) if isinstance(value, int | float) else None  # not text: cost() multiplies it
            if number is None or number > MAX_PRICE_PER_MTOK:
                raise ValueError(f"Price.{name} must be a number of USD per 1M tokens from 0 to "
                                 f"{MAX_PRICE_PER_MTOK:,.0f}, got {_shown(value)}")

    def cost(self, input_tokens: int, output_tokens: int, *, cache_read: int = 0, cache_write: int = 0,
             cache_write_1h: int = 0) -> float:
        """The price of one call. ``input_tokens`` is the whole prompt, cached parts included (the
        OpenTelemetry GenAI convention); ``cache_read`` and ``cache_write`` are the parts read from
        and written to the cache, ``cache_write_1h`` the part of ``cache_write`` kept for an hour.
        Counts that do not add up (cached parts larger than the prompt) are clamped, never negative; a count
        beyond 64 bits counts as the largest 64-bit one, so the cost is always finite (at most about 5e19)."""
        read = _tokens(cache_read)
        write = _tokens(cache_write)
        write_1h = min(_tokens(cache_write_1h), write)
        plain = max(0, _tokens(input_tokens) - read - write)
        read_price = self.input_per_mtok if self.cache_read_per_mtok is None else self.cache_read_per_mtok
        write_price = self.input_per_mtok if self.cache_write_per_mtok is None else self.cache_write_per_mtok
        write_1h_price = write_price if self.cache_write_1h_per_mtok is None else self.cache_write_1h_per_mtok
        return (plain * self.input_per_mtok + read * read_price + (write - write_1h) * write_price
                + write_1h * write_1h_price + _tokens(output_tokens) * self.output_per_mtok) / 1_000_000


def _tokens(count: int) -> int:
    return min(max(0, count), _MAX_TOKENS)


def _openai(input_per_mtok: float, output_per_mtok: float, cached_input_per_mtok: float | None = None) -> Price:
    # OpenAI bills cached input at a per-family discount and publishes no separate write price.
    return Price(input_per_mtok, output_per_mtok, cache_read_per_mtok=cached_input_per_mtok)


def _anthropic(input_per_mtok: float, output_per_mtok: float) -> Price:
    # Anthropic's multipliers of the input price: cache reads 0.1x, 5-minute writes 1.25x, 1-hour writes 2x.
    return Price(input_per_mtok, output_per_mtok, cache_read_per_mtok=round(input_per_mtok * 0.1, 6),
                 cache_write_per_mtok=round(input_per_mtok * 1.25, 6),
                 cache_write_1h_per_mtok=round(input_per_mtok * 2, 6))


BUILTIN_PRICES: dict[str, Price] = {
    # OpenAI (cached input: gpt-5 family 10% of input, gpt-4.1 family, o3 and o4-mini 25%,
    # gpt-4o family, o1 and o3-mini 50%; gpt-4-turbo and gpt-3.5-turbo have no prompt caching)
    "gpt-5": _openai(1.25, 10.00, 0.125),
    "gpt-5-mini": _openai(0.25, 2.00, 0.025),
    "gpt-5-nano": _openai(0.05, 0.40, 0.005),
    "gpt-4.1": _openai(2.00, 8.00, 0.50),
    "gpt-4.1-mini": _openai(0.40, 1.60, 0.10),
    "gpt-4.1-nano": _openai(0.10, 0.40, 0.025),
    "gpt-4o": _openai(2.50, 10.00, 1.25),
    "gpt-4o-mini": _openai(0.15, 0.60, 0.075),
    "gpt-4-turbo": _openai(10.00, 30.00),
    "gpt-3.5-turbo": _openai(0.50, 1.50),
    "o1": _openai(15.00, 60.00, 7.50),
    "o1-mini": _openai(1.10, 4.40, 0.55),
    "o3": _openai(2.00, 8.00, 0.50),
    "o3-mini": _openai(1.10, 4.40, 0.55),
    "o4-mini": _openai(1.10, 4.40, 0.275),
    # Anthropic
    "claude-opus-4-5": _anthropic(5.00, 25.00),
    "claude-opus-4-1": _anthropic(15.00, 75.00),
    "claude-opus-4": _anthropic(15.00, 75.00),
    "claude-sonnet-4-5": _anthropic(3.00, 15.00),
    "claude-sonnet-4": _anthropic(3.00, 15.00),
    "claude-haiku-4-5": _anthropic(1.00, 5.00),
    "claude-3-7-sonnet": _anthropic(3.00, 15.00),
    "claude-3-5-sonnet": _anthropic(3.00, 15.00),
    "claude-3-5-haiku": _anthropic(0.80, 4.00),
    "claude-3-opus": _anthropic(15.00, 75.00),
    "claude-3-haiku": _anthropic(0.25, 1.25),
}

# Providers whose calls cost nothing to the user (the machine's time is not billed per token).
FREE_PROVIDERS = frozenset({"local"})


class PriceTable:
    """Look-ups by ``provider:/model`` first, then the bare model name, then the longest model prefix."""

    def __init__(self, prices: Mapping[str, Price] | None = None, *,
                 sources: Mapping[str, str] | None = None) -> None:
        self._prices: dict[str, Price] = dict(BUILTIN_PRICES if prices is None else prices)
        # Where each price came from (the built-in table, a price file, costar.yaml), for listing.
        self._sources: dict[str, str] = {name: (sources or {}).get(name, BUILTIN) for name in self._prices}
        # Longest first, so "gpt-4o-mini-2024-07-18" finds gpt-4o-mini before gpt-4o.
        self._prefixes = sorted(self._prices, key=len, reverse=True)

    def with_overrides(self, overrides: Mapping[str, Any], *, source: str = "overrides") -> PriceTable:
        """This table with ``overrides`` (model -> price entry) added; an entry replaces the model's
        whole price, cache prices included. ``source`` names where they came from in errors."""
        parsed = _parse_prices(overrides, source=source)
        return PriceTable({**self._prices, **parsed}, sources={**self._sources, **dict.fromkeys(parsed, source)})

    @property
    def is_builtin(self) -> bool:
        """Whether every price is the built-in one (nothing overridden or added)."""
        return all(source == BUILTIN for source in self._sources.values()) and self._prices == BUILTIN_PRICES

    def models(self) -> list[str]:
        """The model names (and ``provider:/model`` keys) this table prices, sorted."""
        return sorted(self._prices)

    def price(self, name: str) -> Price:
        """The price stored under ``name`` exactly (KeyError when there is none; see :meth:`lookup`)."""
        return self._prices[name]

    def source_of(self, name: str) -> str:
        """Where the price stored under ``name`` came from: ``built-in`` or the file or setting that set it."""
        return self._sources[name]

    def to_mapping(self) -> dict[str, dict[str, float]]:
        """The whole table in the price-file format (model -> {input, output, cache_*}), so that
        ``PriceTable().with_overrides(table.to_mapping())`` prices every model as this table does."""
        out: dict[str, dict[str, float]] = {}
        for name, price in self._prices.items():
            entry = {"input": price.input_per_mtok, "output": price.output_per_mtok}
            for field, attr in _FIELDS.items():
                value = getattr(price, attr)
                if field not in entry and value is not None:
                    entry[field] = value
            out[name] = entry
        return out

    def lookup(self, provider: str, model: str) -> Price | None:
        for key in (f"{provider}:/{model}", model):
            if key in self._prices:
                return self._prices[key]
        for key in self._prefixes:
            if ":/" not in key and model.startswith(key) and model[len(key):][:1] in ("", "-", "@", ":"):
                return self._prices[key]
        return None

    def cost(self, provider: str, model: str, input_tokens: int, output_tokens: int, *, cache_read: int = 0,
             cache_write: int = 0, cache_write_1h: int = 0) -> tuple[float, bool]:
        """(cost in USD, whether the price is known). Unknown models cost 0 and say so.
        ``input_tokens`` includes the cached parts (see :meth:`Price.cost`)."""
        if provider in FREE_PROVIDERS:
            return 0.0, True
        price = self.lookup(provider, model)
        if price is None:
            return 0.0, False
        return price.cost(input_tokens, output_tokens, cache_read=cache_read, cache_write=cache_write,
                          cache_write_1h=cache_write_1h), True


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
    return PriceTable().with_overrides(_section(data, path), source=f"price file {path}")


def _section(data: Any, path: Path) -> Mapping[str, Any]:
    models = data.get("models") if isinstance(data, Mapping) else None
    if isinstance(models, Mapping):
        return models
    if isinstance(data, Mapping):
        return data
    raise ConfigError(f"price file {path} must map model names to {{input: USD/Mtok, output: USD/Mtok}}")


# Price-file field -> Price field.
_FIELDS = {"input": "input_per_mtok", "output": "output_per_mtok", "cache_read": "cache_read_per_mtok",
           "cache_write": "cache_write_per_mtok", "cache_write_1h": "cache_write_1h_per_mtok"}
_SHAPE = ("{input: <USD per 1M tokens>, output: <USD per 1M tokens>, optionally cache_read, cache_write, "
          "cache_write_1h}")


_NAME = object()  # PriceError's key defaults to its model name (None is a key YAML can read: ``~:``)


class PriceError(ConfigError):
    """A price entry is malformed. ``model`` and ``field`` say where, so the project file can name its line."""

    def __init__(self, model: str, field: str | None, problem: str, source: str, *, key: Any = _NAME) -> None:
        self.model = model
        """The model whose entry is wrong."""
        self.key = model if key is _NAME else key
        """The entry's key as it was read (not a string when YAML read the model name as a number, null
        or a boolean), to find its line."""
        self.field = field
        """The entry's field that is wrong (None: the entry as a whole)."""
        self.problem = problem
        """What is wrong and how to fix it, without the place."""
        super().__init__(f"price for '{model}' in {source}: {problem}")


def model_name_problem(key: Any, written: str | None = None) -> str:
    """Why ``key``, a model name YAML read as something other than text, is refused, and the fix;
    ``written`` is the key as the file spells it, when known."""
    if key is None:
        kind, text = "null", "~"
    elif isinstance(key, bool):
        kind, text = "a boolean", str(key).lower()
    elif isinstance(key, int | float):
        kind, text = "a number", str(key)
    else:
        kind, text = f"a {type(key).__name__}", str(key)
    text = written if written is not None else text
    quoted = "'" + text.replace("'", "''") + "'"
    return f"the model name {text} reads as {kind}, not text; quote it: {quoted}:"


def _parse_prices(raw: Mapping[Any, Any], *, source: str) -> dict[str, Price]:
    out: dict[str, Price] = {}
    for name, entry in raw.items():
        if not isinstance(name, str):
            raise PriceError(str(name), None, model_name_problem(name), source, key=name)
        if isinstance(entry, Price):
            out[str(name)] = entry
        elif isinstance(entry, Mapping):
            out[str(name)] = _price_entry(str(name), entry, source)
        elif isinstance(entry, (list, tuple)) and len(entry) == 2:
            out[str(name)] = _price_entry(str(name), {"input": entry[0], "output": entry[1]}, source)
        else:
            raise PriceError(str(name), None, f"must be {_SHAPE}", source)
    return out


def _price_entry(name: str, entry: Mapping[str, Any], source: str) -> Price:
    unknown = [str(k) for k in entry if k not in _FIELDS]
    if unknown:
        raise PriceError(name, unknown[0], f"has unknown field '{unknown[0]}'; the fields are {', '.join(_FIELDS)} "
                         "(USD per 1M tokens)", source)
    missing = [k for k in ("input", "output") if k not in entry]
    if missing:
        raise PriceError(name, None, f"lacks '{missing[0]}': it must be {_SHAPE}", source)
    values: dict[str, float] = {}
    for key, value in entry.items():
        if value is None and key not in ("input", "output"):
            continue  # an explicit null: no cache price, as if the field were absent
        number = _usd(value)
        if number is None:
            raise PriceError(name, str(key), f"'{key}' must be a non-negative number of USD per 1M tokens, "
                             f"got {_shown(value)}", source)
        if number > MAX_PRICE_PER_MTOK:
            raise PriceError(name, str(key), f"'{key}' must be at most {MAX_PRICE_PER_MTOK:,.0f} USD per 1M tokens "
                             f"($1 a token), got {_shown(value)}; write the price in USD per million tokens", source)
        values[_FIELDS[str(key)]] = number
    return Price(**values)
