"""The reference of every check, generated from the check models, so it cannot drift from them.

``docs/CHECKS.md`` is :func:`checks_markdown` (``costar checks --markdown``); a test fails when the
committed file differs. Each check's text comes from its class docstring, each option's from its
attribute docstring, types and defaults from its fields, and the examples from its ``example``
(which the test also parses, so they stay valid). Checks a plugin adds are listed the same way.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from costar.scenario.checks import CHECKS, COMMON_KEYS, CheckOptions, option_names

_INTRO = """\
# Checks

Deterministic checks of a trace, written in a scenario's `expectations.checks`. Each becomes a
verdict with a rationale. This page is generated from the check models
(`costar checks --markdown > docs/CHECKS.md`); `costar checks` lists them in the terminal, with
the ones plugins add.

```yaml
expectations:
  checks:
    - output_contains: "total"                   # a bare value sets the check's main option
    - csv: {file: out.csv, columns: [a, b], min_rows: 1}
    - not: {output_contains: "Traceback"}        # any check, negated
    - not_output_contains: "Traceback"           # the same, as a prefix
      gate: false                                # a diagnostic: reported, never fails the trial
      name: no-traceback                         # the verdict's name (default: derived from the options)
      description: the agent never crashes       # why the check is there
```

Every check entry may also carry `name`, `gate` and `description`. A workspace file is named
`file` in every check (`path` is accepted too). Unknown options are errors that list the options
the check takes. Every scenario also gets `agent_completed` unless
`expectations.require_completion: false`.

"""


_COMMON = {
    "name": "the verdict's name (default: the check and its options, e.g. `max_tokens(20000)`)",
    "gate": "`false` makes the check a diagnostic: reported, never failing the trial (default `true`)",
    "description": "what the check is for, in your words (shown with its verdicts)",
}


def _type_text(schema: dict[str, Any]) -> str:
    """A JSON Schema type in words: ``string``, ``list of string``, ``mapping``, ``number or null``."""
    if "anyOf" in schema:
        return " or ".join(dict.fromkeys(_type_text(s) for s in schema["anyOf"]))
    if "enum" in schema:
        return "one of " + ", ".join(f"`{v}`" for v in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        return f"list of {_type_text(schema.get('items', {}))}"
    if kind == "object":
        return "mapping"
    if "$ref" in schema:
        return "one of " + ", ".join(f"`{v}`" for v in _ref_enum(schema["$ref"]))
    return {"integer": "integer", "number": "number", "string": "text", "boolean": "true/false",
            "null": "null"}.get(str(kind), "any")


_DEFS: dict[str, Any] = {}


def _ref_enum(ref: str) -> list[Any]:
    return list(_DEFS.get(ref.rsplit("/", 1)[-1], {}).get("enum", []))


def _default_text(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    default = info.default if info.default is not PydanticUndefined else info.get_default(call_default_factory=True)
    if hasattr(default, "value"):
        default = default.value
    return f"`{json.dumps(default, default=str)}`"


def _options_table(cls: type[CheckOptions]) -> list[str]:
    schema = cls.model_json_schema(by_alias=True)
    _DEFS.clear()
    _DEFS.update(schema.get("$defs", {}))
    props = schema.get("properties", {})
    rows = ["| option | type | default | meaning |", "|---|---|---|---|"]
    for (name, info), written in zip(cls.model_fields.items(), option_names(cls), strict=True):
        key = info.alias or name
        meaning = " ".join((info.description or "").split()).replace("|", "\\|")
        shown = f"`{key}`" + written.removeprefix(key).replace("(or ", "(or `").replace(")", "`)")
        rows.append(f"| {shown} | {_type_text(props.get(key, {}))} | {_default_text(info)} | {meaning} |")
    return rows


def _check_section(kind: str, cls: type[CheckOptions]) -> list[str]:
    doc = " ".join((cls.__doc__ or "").split()) or "(no description)"
    out = [f"## `{kind}`", "", doc, ""]
    if cls.model_fields:
        out += [*_options_table(cls), ""]
    if cls.primary:
        out += [f"A bare value sets `{cls.primary}`: `{kind}: VALUE`.", ""]
    if cls.uses_spans:
        out += ["Reads the trace's spans.", ""]
    if cls.example:
        out += ["```yaml", cls.example.rstrip(), "```", ""]
    return out


def checks_markdown() -> str:
    """docs/CHECKS.md: every check, with its options and an example."""
    kinds = CHECKS.names()
    out = [_INTRO.rstrip("\n"), "", "| check | what it checks |", "|---|---|"]
    for kind in kinds:
        first = " ".join((CHECKS.get(kind).__doc__ or "").split()).split(". ")[0].rstrip(".")
        out.append(f"| [`{kind}`](#{kind}) | {first} |")
    out.append("")
    for kind in kinds:
        out += _check_section(kind, CHECKS.get(kind))
    out += ["## Keys of every check entry", "", "| key | meaning |", "|---|---|",
            *(f"| `{k}` | {_COMMON[k]} |" for k in sorted(COMMON_KEYS)), ""]
    return "\n".join(out).rstrip("\n") + "\n"


def checks_summary() -> list[tuple[str, str, str]]:
    """(kind, what it checks, its options) per check, for the terminal."""
    rows = []
    for kind in CHECKS.names():
        cls = CHECKS.get(kind)
        first = " ".join((cls.__doc__ or "").split()).split(". ")[0].rstrip(".")
        rows.append((kind, first, ", ".join(option_names(cls))))
    return rows
