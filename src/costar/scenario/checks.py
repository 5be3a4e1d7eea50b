"""Checks as a scenario writes them, parsed and validated once, when the scenario loads.

A check is written in a scenario as a mapping with exactly one check key::

    - output_contains: "total"                 # shorthand for the check's main option
    - csv: {file: out.csv, columns: [a, b], min_rows: 1}
    - not: {output_contains: "Traceback"}      # negation of any check
    - not_output_contains: "Traceback"         # the same, prefix form
      gate: false                              # a diagnostic: reported, never gates
      name: no-traceback                       # the verdict's name (default: derived)

The scenario layer knows a check by its options only: :class:`CheckOptions`, one pydantic model per
kind. What a check does with a trace lives above, in :class:`costar.judges.checks.Check` (a
subclass that adds ``run``), and the judges layer turns a :class:`CheckSpec` into a judge without
parsing it again. The kinds are the ``costar.checks`` plugin group (:mod:`costar.plugins`), built-ins
included, so a check a plugin adds is validated at load exactly like a built-in one.
"""

from __future__ import annotations

import difflib
import json
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_serializer, model_validator

from costar import plugins
from costar.plugins import PluginError, PluginGroup

COMMON_KEYS = frozenset({"name", "gate", "description"})
"""Keys any check entry may carry beside its check key."""


class CheckOptions(BaseModel):
    """The options of one kind of check, as a scenario writes them. Subclasses declare the options as
    fields and set ``kind``; :class:`costar.judges.checks.Check` adds what the check does."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    kind: ClassVar[str] = ""
    """The check key in a scenario, e.g. ``output_contains``."""
    primary: ClassVar[str | None] = None
    """The option a bare value sets (``output_contains: "x"`` means ``{value: "x"}``)."""
    version: ClassVar[int] = 1
    """Part of the check's fingerprint: raise it when the check's meaning changes."""
    uses_spans: ClassVar[bool] = False
    """True when the check reads spans (the trace head is enough for the rest)."""
    example: ClassVar[str] = ""
    """How a scenario writes it: YAML list entries of ``expectations.checks`` (docs/CHECKS.md shows them)."""

    def describe(self) -> str:
        """The verdict name a check gets when the scenario names none, e.g. ``max_tokens(100)``."""
        params = self.model_dump(exclude_defaults=True, by_alias=True)
        if not params:
            return self.kind
        if self.primary and set(params) == {self.primary}:
            return f"{self.kind}({_clipped(json.dumps(params.get(self.primary), default=str), 60)})"
        args = ", ".join(f"{k}={_clipped(json.dumps(v, default=str), 40)}" for k, v in params.items())
        return f"{self.kind}({args})"


def _clipped(text: str, limit: int) -> str:
    """An argument in a verdict name: whole, or its start marked as cut (never a silent cut that
    would read as another value)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _not_a_check(obj: Any) -> str | None:
    if isinstance(obj, type) and issubclass(obj, CheckOptions) and obj.kind:
        return None
    return "it must be a subclass of costar.judges.checks.Check that sets 'kind'"


CHECKS: PluginGroup[type[CheckOptions]] = PluginGroup(plugins.CHECKS, "check", accept=_not_a_check)
"""Every kind of check by its key: the ``costar.checks`` plugin group."""


class CheckSpec(BaseModel):
    """One entry of ``expectations.checks``: the check's validated options, whether it is negated,
    and how its verdict is named and gates. Built from what a scenario file says (any of the forms
    above); it dumps back to that form, so a stored scenario reloads to the same spec."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    options: CheckOptions
    """The check kind's options model, validated (its class says the kind)."""
    negate: bool = False
    """True for ``not:`` / ``not_<kind>``: the verdict passes when the check fails."""
    name: str | None = None
    """The verdict's name as the scenario wrote it (None: derived from the options)."""
    gate: bool = True
    """False makes the check a diagnostic: reported, never failing the trial."""
    description: str | None = None
    """What the check is for, in the scenario author's words."""

    @property
    def kind(self) -> str:
        """The check's key (``output_contains``...)."""
        return self.options.kind

    @classmethod
    def parse(cls, written: Any) -> CheckSpec:
        """The spec of one check entry as written; ValueError names what is wrong."""
        if isinstance(written, CheckSpec):
            return written
        return cls(**_parse(written))

    @model_validator(mode="before")
    @classmethod
    def _from_written(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("options"), CheckOptions):
            return data
        return _parse(data)

    @model_serializer(mode="plain")
    def written(self) -> dict[str, Any]:
        """The check as a scenario file writes it (parses back to an equal spec)."""
        params = self.options.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        key = ("not_" if self.negate else "") + self.kind
        out: dict[str, Any] = {key: params}
        if self.options.primary and set(params) == {self.options.primary}:
            out[key] = params[self.options.primary]
        if not self.gate:
            out["gate"] = False
        if self.name:
            out["name"] = self.name
        if self.description:
            out["description"] = self.description
        return out


def _check_class(kind: str) -> type[CheckOptions] | None:
    try:
        return CHECKS.find(kind)
    except PluginError as exc:  # a broken plugin is reported where the scenario uses it
        raise ValueError(str(exc)) from None


def _is_check_key(key: str, kinds: set[str]) -> bool:
    return key == "not" or key in kinds or (key.startswith("not_") and key[4:] in kinds)


def _parse(spec: Any) -> dict[str, Any]:
    """The fields of a CheckSpec from one written entry; ValueError names what is wrong."""
    if isinstance(spec, str):
        cls = _check_class(spec) if spec in CHECKS else None
        spec = {spec: True} if cls is not None and cls.primary == "enabled" else spec
    if not isinstance(spec, dict):
        raise ValueError(f"a check must be a mapping like {{output_contains: 'text'}}, got {spec!r}")
    kinds = set(CHECKS.names())
    keys = [k for k in spec if k not in COMMON_KEYS]
    if len(keys) != 1:
        known = [k for k in keys if _is_check_key(k, kinds)]
        if len(known) == 1:
            others = ", ".join(repr(k) for k in keys if k != known[0])
            raise ValueError(f"unknown option {others} next to check {known[0]!r} "
                             f"(options: {', '.join(sorted(COMMON_KEYS))})")
        raise ValueError(f"a check needs exactly one check key (plus optional {', '.join(sorted(COMMON_KEYS))}), "
                         f"got {keys}")
    key = keys[0]
    extra: dict[str, Any] = {"name": spec.get("name"), "gate": spec.get("gate", True),
                             "description": spec.get("description")}
    if not isinstance(extra["gate"], bool):
        raise ValueError(f"'gate' must be true or false, got {extra['gate']!r}")
    if key == "not":
        inner = _parse(spec[key])
        return {"options": inner["options"], "negate": not inner["negate"], **extra}
    negate, kind = False, key
    if key not in kinds and key.startswith("not_") and key[4:] in kinds:
        negate, kind = True, key[4:]
    cls = _check_class(kind) if kind in kinds else None
    if cls is None:
        close = difflib.get_close_matches(kind, sorted(kinds), n=1) or [
            k for k in sorted(kinds) if k.split("_")[0] in kind or kind in k]
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown check {key!r}{hint} (known: {', '.join(sorted(kinds))})")
    params = spec[key]
    if not isinstance(params, dict):
        if cls.primary is None:
            raise ValueError(f"check {kind!r} takes a mapping of parameters, got {params!r}")
        params = {cls.primary: params}
    try:
        options = cls.model_validate(params)
    except ValidationError as exc:
        raise ValueError(f"check {kind!r}: {options_problems(cls, exc)}") from None
    return {"options": options, "negate": negate, **extra}


def option_names(cls: type[CheckOptions]) -> list[str]:
    """The options a check takes, as a scenario writes them, with their aliases: ``file (or path)``."""
    names = []
    for name, info in cls.model_fields.items():
        written = info.alias or name
        aliases = [a for a in getattr(info.validation_alias, "choices", []) if isinstance(a, str) and a != written]
        names.append(written + (f" (or {', '.join(aliases)})" if aliases else ""))
    return names


def options_problems(cls: type[CheckOptions], exc: ValidationError) -> str:
    """Every problem with a check's options on one line: unknown options (with the closest known
    name), missing ones, wrong values, and the options the check takes."""
    known = [n.split(" ")[0] for n in option_names(cls)]
    canonical = {a: info.alias or name for name, info in cls.model_fields.items()
                 for a in getattr(info.validation_alias, "choices", []) if isinstance(a, str)}
    accepted = set(canonical) | set(known)
    unknown, missing, wrong = [], [], []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden" and where not in accepted:
            close = difflib.get_close_matches(where, known, n=1, cutoff=0.5)
            unknown.append(f"{where!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        elif err["type"] == "extra_forbidden":
            wrong.append(f"{where!r} is another name for {canonical.get(where, where)!r}; give only one of them")
        elif err["type"] == "missing":
            missing.append(repr(where))
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
            wrong.append(f"{where}: {msg}" if where else msg)
    parts = []
    if unknown:
        parts.append(f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}")
    if missing:
        parts.append(f"missing option{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    parts += wrong
    text = "; ".join(parts)
    if unknown or missing:
        text += f" (options: {', '.join(option_names(cls))})"
    return text


def check_json_schema() -> dict[str, Any]:
    """JSON Schema for one entry of ``expectations.checks`` (for editors), over every check kind."""
    variants: list[dict[str, Any]] = []
    defs: dict[str, Any] = {}
    fields = CheckSpec.model_fields
    common = {key: {"type": kind, "description": fields[key].description}
              for key, kind in (("name", "string"), ("gate", "boolean"), ("description", "string"))}
    for kind in CHECKS.names():
        cls = CHECKS.get(kind)
        params = cls.model_json_schema(by_alias=True)
        params.pop("title", None)
        # Hoisted so "#/$defs/..." references resolve from the document root.
        defs.update(params.pop("$defs", {}))
        value_schema: dict[str, Any] = params
        if cls.primary:
            prim = params.get("properties", {}).get(cls.primary, {})
            value_schema = {"anyOf": [params, prim]}
        for key in (kind, f"not_{kind}"):
            variants.append({"type": "object", "properties": {key: value_schema, **common},
                             "required": [key], "additionalProperties": False})
    negated = {"type": "object", "description": "Any check, negated: passes when that check fails."}
    variants.append({"type": "object", "properties": {"not": negated, **common},
                     "required": ["not"], "additionalProperties": False})
    return {"oneOf": variants, "$defs": defs}
