"""JSON-schema helpers: bounding schemas for grammar-constrained decoding, and cached validators."""

from __future__ import annotations

import json
import threading
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

DEFAULT_MAX_STRING = 256
DEFAULT_MAX_ITEMS = 32

_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")
_SUBSCHEMA_ONE = ("items", "additionalProperties", "not", "if", "then", "else", "contains")


def bound_schema(schema: Any, *, max_string: int = DEFAULT_MAX_STRING,
                 max_items: int = DEFAULT_MAX_ITEMS) -> Any:
    """Copy of ``schema`` where every string has a maxLength and every array a maxItems.

    A grammar built from a schema lets a small model emit an unterminated string forever (it never
    has to close the quote); llama.cpp stops only at the context limit. Bounds make every grammar
    path finite, so output length is bounded even where llama-cpp passes no max_tokens.
    """
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    types = out.get("type")
    type_set = set(types) if isinstance(types, list) else {types}
    unconstrained = "enum" not in out and "const" not in out
    if "string" in type_set and "maxLength" not in out and unconstrained:
        out["maxLength"] = max_string
    if "array" in type_set and "maxItems" not in out:
        out["maxItems"] = max_items
    for key in _SUBSCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [bound_schema(s, max_string=max_string, max_items=max_items) for s in out[key]]
    for key in _SUBSCHEMA_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {k: bound_schema(s, max_string=max_string, max_items=max_items)
                        for k, s in out[key].items()}
    for key in _SUBSCHEMA_ONE:
        if isinstance(out.get(key), dict):
            out[key] = bound_schema(out[key], max_string=max_string, max_items=max_items)
    return out


_validators: dict[str, Draft202012Validator] = {}
_validators_lock = threading.Lock()
_MAX_VALIDATORS = 512


def validator_for(schema: dict[str, Any]) -> Draft202012Validator:
    """Compiled validators are cached: building one costs far more than a cache-hit chat call."""
    key = json.dumps(schema, sort_keys=True, default=str)
    with _validators_lock:
        v = _validators.get(key)
    if v is not None:
        return v
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        from costar.errors import ConfigError

        raise ConfigError(f"the requested JSON schema is invalid: {exc.message}; fix the schema") from exc
    v = Draft202012Validator(schema)
    with _validators_lock:
        if len(_validators) >= _MAX_VALIDATORS:
            _validators.clear()
        _validators[key] = v
    return v


def first_violation(schema: dict[str, Any], value: Any) -> str | None:
    err = next(iter(validator_for(schema).iter_errors(value)), None)
    if err is None:
        return None
    where = "/".join(str(p) for p in err.absolute_path) or "<root>"
    return f"{where}: {err.message}"
