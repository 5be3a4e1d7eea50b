"""What changed between two views of the tools an agent can use, and whether each change can break it.

A view is an MCP snapshot (tools, prompts, resources) or the tool definitions recorded in a run or
a trace. Tools are matched by (server, name); prompts by name; resources by URI or URI template.
Each change is classified **breaking** (an agent that worked before may now fail) or not. The
direction matters: the agent *sends* a tool's arguments (input schema) and *receives* its result
(output schema), so a change that narrows what the server accepts, or widens what it may return,
is breaking. The full rule set is in docs/MCP.md ("Which changes break an agent"); each rule is
one branch below, named by the ``kind`` it reports.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from costar.trace.tool_definition import ToolDefinition
from costar.trace.tools import PromptDefinition, ResourceDefinition

Direction = Literal["input", "output"]
ChangeType = Literal["added", "removed", "changed"]

MAX_SCHEMA_DIFF_LINES = 120
_REF_DEPTH = 8
# Constraints that bound a value from below / above: raising a lower bound or lowering an upper
# bound narrows what is valid.
_LOWER = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_UPPER = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
_EXACT = ("pattern", "format", "multipleOf", "const")
_NOTES = ("description", "title", "examples")


class SchemaChange(BaseModel):
    """One difference inside a definition, at ``path`` (``input.customer_id``, ``output.orders[]``)."""

    model_config = ConfigDict(extra="forbid")

    path: str
    kind: str
    """What changed, from a fixed vocabulary (docs/MCP.md): ``field removed``, ``required field added`` …"""
    breaking: bool
    detail: str
    before: Any = None
    after: Any = None


class ToolChange(BaseModel):
    """A tool that was added, removed or changed between the two views."""

    model_config = ConfigDict(extra="forbid")

    name: str
    server: str | None = None
    change: ChangeType
    breaking: bool
    before_fingerprint: str | None = None
    after_fingerprint: str | None = None
    changes: list[SchemaChange] = Field(default_factory=list)
    schema_diff: str = ""
    """A unified diff of the definition as pretty JSON (bounded)."""

    @property
    def label(self) -> str:
        return f"{self.server}/{self.name}" if self.server else self.name

    def summary(self) -> str:
        """One line: what happened to the tool."""
        if self.change != "changed":
            return f"tool {self.change}" + (f" ({self.changes[0].detail})" if self.changes else "")
        shown = sorted(self.changes, key=lambda c: not c.breaking)[:3]
        more = len(self.changes) - len(shown)
        return "; ".join(c.detail for c in shown) + (f"; and {more} more" if more > 0 else "")


class ItemChange(BaseModel):
    """A prompt or resource that was added, removed or changed."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["prompt", "resource"]
    key: str
    change: ChangeType
    breaking: bool
    changes: list[SchemaChange] = Field(default_factory=list)


class CatalogSide(BaseModel):
    """One side of a diff: where its definitions came from."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["snapshot", "run", "trace", "definitions"]
    ref: str
    label: str = ""
    servers: dict[str, str | None] = Field(default_factory=dict)
    """server name -> version, as the definitions report them."""
    created_at: float | None = None


class ToolCatalog(BaseModel):
    """Definitions to compare: a snapshot's, or the ones a run or trace recorded."""

    model_config = ConfigDict(extra="forbid")

    side: CatalogSide
    tools: list[ToolDefinition] = Field(default_factory=list)
    prompts: list[PromptDefinition] | None = None
    """None when the source does not record prompts (runs and traces do not)."""
    resources: list[ResourceDefinition] | None = None
    warnings: list[str] = Field(default_factory=list)


class CatalogDiff(BaseModel):
    """BASE against HEAD. ``exit_code`` is 1 when a change is breaking, so CI can gate on it."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _drop_computed(cls, data: Any) -> Any:
        # The computed fields are written to JSON for scripts; reading that JSON back drops them.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if k not in cls.model_computed_fields}
        return data

    base: CatalogSide
    head: CatalogSide
    tools: list[ToolChange] = Field(default_factory=list)
    prompts: list[ItemChange] = Field(default_factory=list)
    resources: list[ItemChange] = Field(default_factory=list)
    unchanged_tools: int = 0
    server_versions: list[tuple[str, str | None, str | None]] = Field(default_factory=list)
    """(server, base version, head version) for servers whose version changed."""
    warnings: list[str] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]  # mypy rejects decorators above @property; pydantic documents this
    @property
    def breaking(self) -> bool:
        changes: list[ToolChange | ItemChange] = [*self.tools, *self.prompts, *self.resources]
        return any(c.breaking for c in changes)

    @computed_field  # type: ignore[prop-decorator]  # mypy rejects decorators above @property; pydantic documents this
    @property
    def changed(self) -> bool:
        return bool(self.tools or self.prompts or self.resources)

    @computed_field  # type: ignore[prop-decorator]  # mypy rejects decorators above @property; pydantic documents this
    @property
    def exit_code(self) -> int:
        return 1 if self.breaking else 0

    def tool(self, name: str, server: str | None = None) -> ToolChange | None:
        return next((t for t in self.tools if t.name == name and (server is None or t.server == server)), None)


# --------------------------------------------------------------------------- schema normalisation


def _resolve_refs(node: Any, root: Mapping[str, Any], depth: int = 0) -> Any:
    """Inline local ``$ref``s (``#/$defs/X``, ``#/definitions/X``) so nested models compare by content."""
    if isinstance(node, list):
        return [_resolve_refs(x, root, depth) for x in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/") and depth < _REF_DEPTH:
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        if isinstance(target, dict):
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return _resolve_refs({**target, **rest}, root, depth + 1)
    return {k: _resolve_refs(v, root, depth) for k, v in node.items() if k not in ("$defs", "definitions")}


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _simple_branch(branch: Any) -> bool:
    return isinstance(branch, dict) and set(branch) <= {"type", *_NOTES} and isinstance(branch.get("type"), str)


def _flatten_union(schema: dict[str, Any]) -> dict[str, Any]:
    """``anyOf``/``oneOf`` of plain types (pydantic's ``Optional[str]``) as one ``type`` list, and a
    single complex branch beside ``null`` as that branch, nullable."""
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if not isinstance(branches, list) or not branches:
            continue
        rest = {k: v for k, v in schema.items() if k != key}
        if all(_simple_branch(b) for b in branches):
            return {**rest, "type": sorted({b["type"] for b in branches})}
        complex_ = [b for b in branches if not (_simple_branch(b) and b["type"] == "null")]
        if len(complex_) == 1 and isinstance(complex_[0], dict) and len(branches) == 2:
            inner = _flatten_union(complex_[0])
            types = _types(inner)
            return {**rest, **inner, **({"type": sorted({*types, "null"})} if types else {})}
    return schema


def _types(schema: Mapping[str, Any]) -> set[str] | None:
    """The JSON types a schema allows; None for any."""
    t = schema.get("type")
    if isinstance(t, str):
        return {t}
    if isinstance(t, list):
        return {str(x) for x in t}
    if "enum" in schema or "const" in schema:
        values = schema.get("enum") if "enum" in schema else [schema.get("const")]
        return {_json_type(v) for v in values} if isinstance(values, list) else None
    if "properties" in schema:
        return {"object"}
    if "items" in schema:
        return {"array"}
    return None


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    return "array" if isinstance(v, list) else "object"


def _covers(wide: set[str] | None, narrow: set[str] | None) -> bool:
    """Every value of a ``narrow`` type is valid under ``wide`` (integers are numbers)."""
    if wide is None:
        return True
    if narrow is None:
        return False
    return all(t in wide or (t == "integer" and "number" in wide) for t in narrow)


def _fmt(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else _canon(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- schema comparison


class _Comparer:
    def __init__(self, direction: Direction, old_root: Mapping[str, Any], new_root: Mapping[str, Any]) -> None:
        self.direction = direction
        self.old_root, self.new_root = old_root, new_root
        self.out: list[SchemaChange] = []

    def add(self, path: str, kind: str, breaking: bool, detail: str, before: Any = None, after: Any = None) -> None:
        self.out.append(SchemaChange(path=path, kind=kind, breaking=breaking, detail=detail, before=before,
                                     after=after))

    # A narrowing breaks an input (the agent's old calls may be refused), a widening breaks an
    # output (the agent may receive what it never saw).
    def narrowing_breaks(self) -> bool:
        return self.direction == "input"

    def compare(self, old: Any, new: Any, path: str) -> None:
        if not isinstance(old, dict) or not isinstance(new, dict):
            if _canon(old) != _canon(new):
                self.add(path, "schema changed", True, f"{path}: schema changed", old, new)
            return
        old, new = _flatten_union(old), _flatten_union(new)
        self._types(old, new, path)
        self._enum(old, new, path)
        self._bounds(old, new, path)
        self._notes(old, new, path)
        self._default(old, new, path)
        self._object(old, new, path)
        if isinstance(old.get("items"), dict) or isinstance(new.get("items"), dict):
            self.compare(old.get("items") or {}, new.get("items") or {}, f"{path}[]")
        self._unions(old, new, path)

    def _types(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> None:
        before, after = _types(old), _types(new)
        if before == after:
            return
        narrowed = not _covers(after, before)  # some value valid before is not now
        widened = not _covers(before, after)  # some value valid now was not before
        breaking = (narrowed and self.narrowing_breaks()) or (widened and not self.narrowing_breaks())
        b = "any" if before is None else "|".join(sorted(before))
        a = "any" if after is None else "|".join(sorted(after))
        self.add(path, "type changed", breaking, f"{path}: type {b} → {a}", b, a)

    def _enum(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> None:
        def values(s: Mapping[str, Any]) -> list[Any] | None:
            if "enum" in s and isinstance(s["enum"], list):
                return s["enum"]
            return [s["const"]] if "const" in s else None

        before, after = values(old), values(new)
        if before is None and after is None:
            return
        if before is None:
            self.add(path, "enum added", self.narrowing_breaks(), f"{path}: now limited to {_fmt(after)}", None, after)
            return
        if after is None:
            self.add(path, "enum removed", not self.narrowing_breaks(), f"{path}: no longer limited to a set of values",
                     before, None)
            return
        b, a = {_canon(v) for v in before}, {_canon(v) for v in after}
        removed = [v for v in before if _canon(v) not in a]
        added = [v for v in after if _canon(v) not in b]
        if removed:
            self.add(path, "enum value removed", self.narrowing_breaks(),
                     f"{path}: value(s) {_fmt(removed)} no longer allowed", removed, None)
        if added:
            self.add(path, "enum value added", not self.narrowing_breaks(),
                     f"{path}: new value(s) {_fmt(added)}", None, added)

    def _bounds(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> None:
        for key in (*_LOWER, *_UPPER):
            b, a = old.get(key), new.get(key)
            if b == a or not all(isinstance(x, int | float) or x is None for x in (b, a)):
                continue
            # A bound that appeared narrows; otherwise a higher lower bound or a lower upper bound does.
            narrowed = (b is None) if (b is None or a is None) else (a > b if key in _LOWER else a < b)
            breaking = narrowed == self.narrowing_breaks()
            self.add(path, "constraint tightened" if narrowed else "constraint loosened", breaking,
                     f"{path}: {key} {_fmt(b)} → {_fmt(a)}", b, a)
        for key in _EXACT:
            if key == "const":
                continue
            b, a = old.get(key), new.get(key)
            if b == a:
                continue
            if b is None or a is None:
                narrowed = b is None
                breaking = narrowed == self.narrowing_breaks()
            else:
                breaking = True  # a different pattern or format: neither contains the other in general
            self.add(path, f"{key} changed", breaking, f"{path}: {key} {_fmt(b)} → {_fmt(a)}", b, a)
        if old.get("uniqueItems") != new.get("uniqueItems"):
            narrowed = bool(new.get("uniqueItems"))
            self.add(path, "constraint tightened" if narrowed else "constraint loosened",
                     narrowed == self.narrowing_breaks(),
                     f"{path}: uniqueItems {old.get('uniqueItems')} → {new.get('uniqueItems')}")

    def _notes(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> None:
        b, a = old.get("description"), new.get("description")
        if (b or "").strip() != (a or "").strip():
            self.add(path, "description changed", False, f"{path}: description reworded", b, a)

    def _default(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> None:
        if "default" in old or "default" in new:
            b, a = old.get("default"), new.get("default")
            if _canon(b) != _canon(a) or ("default" in old) != ("default" in new):
                self.add(path, "default changed", False, f"{path}: default {_fmt(b)} → {_fmt(a)}", b, a)

    def _object(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> None:
        op: Mapping[str, Any] = old["properties"] if isinstance(old.get("properties"), dict) else {}
        np_: Mapping[str, Any] = new["properties"] if isinstance(new.get("properties"), dict) else {}
        oreq = set(old.get("required") or []) if isinstance(old.get("required"), list) else set()
        nreq = set(new.get("required") or []) if isinstance(new.get("required"), list) else set()
        prefix = f"{path}." if path else ""
        removed = [k for k in op if k not in np_]
        added = [k for k in np_ if k not in op]
        for old_name, new_name in _renames(removed, added, op, np_):
            removed.remove(old_name)
            added.remove(new_name)
            self.add(f"{prefix}{old_name}", "field renamed", True,
                     f"{prefix}{old_name}: renamed to {new_name}", old_name, new_name)
            self.compare(op[old_name], np_[new_name], f"{prefix}{new_name}")
        for k in removed:
            what = "field removed"
            detail = (f"{prefix}{k}: removed (calls that send it may be refused or silently ignored)"
                      if self.direction == "input" else f"{prefix}{k}: removed from the result")
            self.add(f"{prefix}{k}", what, True, detail, op[k], None)
        for k in added:
            if self.direction == "input":
                required = k in nreq
                self.add(f"{prefix}{k}", "required field added" if required else "optional field added", required,
                         f"{prefix}{k}: new {'required' if required else 'optional'} field", None, np_[k])
            else:
                self.add(f"{prefix}{k}", "field added", False, f"{prefix}{k}: new field in the result", None, np_[k])
        for k in op:
            if k in np_:
                self.compare(op[k], np_[k], f"{prefix}{k}")
                if k in oreq and k not in nreq:
                    self.add(f"{prefix}{k}", "field made optional", self.direction == "output",
                             f"{prefix}{k}: no longer required" if self.direction == "input"
                             else f"{prefix}{k}: no longer always in the result")
                elif k in nreq and k not in oreq:
                    self.add(f"{prefix}{k}", "field made required", self.direction == "input",
                             f"{prefix}{k}: now required" if self.direction == "input"
                             else f"{prefix}{k}: now always in the result")
        b, a = old.get("additionalProperties"), new.get("additionalProperties")
        if (b is False) != (a is False):
            closed = a is False
            self.add(path or "(arguments)", "additional fields " + ("refused" if closed else "allowed"),
                     closed == self.narrowing_breaks(),
                     f"{path or 'arguments'}: fields not listed are {'now refused' if closed else 'now allowed'}",
                     b, a)
        elif isinstance(b, dict) and isinstance(a, dict):
            self.compare(b, a, f"{prefix}*")

    def _unions(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> None:
        for key in ("anyOf", "oneOf", "allOf"):
            b, a = old.get(key), new.get(key)
            if not isinstance(b, list) and not isinstance(a, list):
                continue
            bs, as_ = {_canon(x) for x in b or []}, {_canon(x) for x in a or []}
            if bs == as_:
                continue
            if key == "allOf":
                self.add(path, "schema changed", True, f"{path}: allOf changed", b, a)
                continue
            dropped, gained = bs - as_, as_ - bs
            narrowed = bool(dropped) or (not b and bool(a))
            widened = bool(gained) or (bool(b) and not a)
            breaking = (narrowed and self.narrowing_breaks()) or (widened and not self.narrowing_breaks())
            self.add(path, "alternatives changed", breaking,
                     f"{path}: {key} alternatives {len(dropped)} removed, {len(gained)} added", b, a)


def _shape(schema: Any) -> str:
    """A property's schema without its notes, to recognise a renamed field."""
    if not isinstance(schema, dict):
        return _canon(schema)
    return _canon({k: v for k, v in schema.items() if k not in _NOTES})


def _renames(removed: Sequence[str], added: Sequence[str], old: Mapping[str, Any],
             new: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Removed and added fields with the same schema (titles and descriptions aside), paired one to
    one in order: a rename is reported as one change rather than a removal and an addition."""
    pairs, taken = [], set()
    for r in removed:
        match = next((a for a in added if a not in taken and _shape(old[r]) == _shape(new[a])), None)
        if match is not None:
            taken.add(match)
            pairs.append((r, match))
    return pairs


def compare_schemas(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None,
                    direction: Direction, path: str = "") -> list[SchemaChange]:
    """The classified differences between two JSON Schemas of a tool's input or output."""
    root = path or direction
    if old is None and new is None:
        return []
    if old is None:
        return [SchemaChange(path=root, kind="output schema added", breaking=False,
                             detail="the tool now declares the shape of its result")] if direction == "output" else []
    if new is None:
        return [SchemaChange(path=root, kind="output schema removed", breaking=True,
                             detail="the tool no longer promises a structured result")] if direction == "output" else []
    cmp = _Comparer(direction, old, new)
    cmp.compare(_resolve_refs(dict(old), old), _resolve_refs(dict(new), new), root)
    # The schema's own title changes with generated names (pydantic's "xArguments"): not a change.
    return cmp.out


# --------------------------------------------------------------------------- tools, prompts, resources


def _pretty(d: ToolDefinition) -> list[str]:
    doc = {"name": d.name, "description": d.description, "input_schema": d.input_schema,
           "output_schema": d.output_schema}
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def schema_diff(before: ToolDefinition | None, after: ToolDefinition | None, label: str) -> str:
    lines = list(difflib.unified_diff(_pretty(before) if before else [], _pretty(after) if after else [],
                                      f"a/{label}", f"b/{label}", lineterm="", n=2))
    if len(lines) > MAX_SCHEMA_DIFF_LINES:
        lines = [*lines[:MAX_SCHEMA_DIFF_LINES], f"… {len(lines) - MAX_SCHEMA_DIFF_LINES} more lines"]
    return "\n".join(lines)


def compare_tools(before: ToolDefinition | None, after: ToolDefinition | None) -> ToolChange | None:
    """One tool in both views: None when its fingerprint did not change."""
    d = after or before
    assert d is not None
    if before is None:
        return ToolChange(name=d.name, server=d.server, change="added", breaking=False,
                          after_fingerprint=d.fingerprint, schema_diff=schema_diff(None, d, d.name),
                          changes=[SchemaChange(path="", kind="tool added", breaking=False, detail="new tool")])
    if after is None:
        return ToolChange(name=d.name, server=d.server, change="removed", breaking=True,
                          before_fingerprint=d.fingerprint, schema_diff=schema_diff(d, None, d.name),
                          changes=[SchemaChange(path="", kind="tool removed", breaking=True,
                                                detail="calls to it now fail")])
    if before.fingerprint == after.fingerprint:
        return None
    changes: list[SchemaChange] = []
    if before.description.strip() != after.description.strip():
        changes.append(SchemaChange(path="description", kind="description changed", breaking=False,
                                    detail="description reworded", before=before.description,
                                    after=after.description))
    changes += compare_schemas(before.input_schema, after.input_schema, "input")
    changes += compare_schemas(before.output_schema, after.output_schema, "output")
    if not changes:  # e.g. only a schema title or a reordered enum: the model is told something else
        changes.append(SchemaChange(path="", kind="definition changed", breaking=False,
                                    detail="definition changed (titles or ordering only)"))
    return ToolChange(name=d.name, server=d.server, change="changed", breaking=any(c.breaking for c in changes),
                      before_fingerprint=before.fingerprint, after_fingerprint=after.fingerprint, changes=changes,
                      schema_diff=schema_diff(before, after, d.name))


def _prompt_changes(before: PromptDefinition, after: PromptDefinition) -> list[SchemaChange]:
    out = []
    if before.description.strip() != after.description.strip():
        out.append(SchemaChange(path="description", kind="description changed", breaking=False,
                                detail="description reworded"))
    old = {a.name: a for a in before.arguments}
    new = {a.name: a for a in after.arguments}
    for name in old.keys() - new.keys():
        out.append(SchemaChange(path=name, kind="argument removed", breaking=True, detail=f"argument {name} removed"))
    for name in new.keys() - old.keys():
        req = new[name].required
        out.append(SchemaChange(path=name, kind="required argument added" if req else "optional argument added",
                                breaking=req, detail=f"new {'required' if req else 'optional'} argument {name}"))
    for name in old.keys() & new.keys():
        if old[name].required != new[name].required:
            req = new[name].required
            out.append(SchemaChange(path=name, kind="argument made required" if req else "argument made optional",
                                    breaking=req, detail=f"argument {name} now {'required' if req else 'optional'}"))
        elif old[name].description != new[name].description:
            out.append(SchemaChange(path=name, kind="description changed", breaking=False,
                                    detail=f"argument {name}: description reworded"))
    return out


def _resource_changes(before: ResourceDefinition, after: ResourceDefinition) -> list[SchemaChange]:
    out = []
    if before.mime_type != after.mime_type:
        out.append(SchemaChange(path="mime_type", kind="mime type changed", breaking=True,
                                detail=f"MIME type {before.mime_type} → {after.mime_type}"))
    if before.name != after.name or before.description.strip() != after.description.strip():
        out.append(SchemaChange(path="description", kind="description changed", breaking=False,
                                detail="name or description reworded"))
    return out


def _items(kind: Literal["prompt", "resource"], before: Iterable[Any], after: Iterable[Any],
           key: Any, changes: Any) -> list[ItemChange]:
    old = {key(x): x for x in before}
    new = {key(x): x for x in after}
    out = []
    for k in old:
        if k not in new:
            out.append(ItemChange(kind=kind, key=k, change="removed", breaking=True))
        else:
            found = changes(old[k], new[k])
            if found:
                out.append(ItemChange(kind=kind, key=k, change="changed", breaking=any(c.breaking for c in found),
                                      changes=found))
    out += [ItemChange(kind=kind, key=k, change="added", breaking=False) for k in new if k not in old]
    return out


def _by_key(tools: Iterable[ToolDefinition]) -> dict[tuple[str, str], ToolDefinition]:
    return {d.key: d for d in tools}


def diff_catalogs(base: ToolCatalog, head: ToolCatalog) -> CatalogDiff:
    """Every tool, prompt and resource change from ``base`` to ``head``, classified."""
    b, h = _by_key(base.tools), _by_key(head.tools)
    warnings = [*base.warnings, *head.warnings]
    # A snapshot describes one server: compare a run's definitions of that server only.
    servers_b = {k[0] for k in b}
    servers_h = {k[0] for k in h}
    if base.side.kind == "snapshot" and head.side.kind != "snapshot":
        h = {k: v for k, v in h.items() if k[0] in servers_b or not servers_b}
    elif head.side.kind == "snapshot" and base.side.kind != "snapshot":
        b = {k: v for k, v in b.items() if k[0] in servers_h or not servers_h}
    tools = []
    for key in [*b, *(k for k in h if k not in b)]:
        change = compare_tools(b.get(key), h.get(key))
        if change is not None:
            tools.append(change)
    _hint_renamed_tools(tools)
    prompts: list[ItemChange] = []
    resources: list[ItemChange] = []
    if base.prompts is not None and head.prompts is not None:
        prompts = _items("prompt", base.prompts, head.prompts, lambda p: p.name, _prompt_changes)
    if base.resources is not None and head.resources is not None:
        resources = _items("resource", base.resources, head.resources, lambda r: r.key, _resource_changes)
    versions = [(s, base.side.servers.get(s), head.side.servers.get(s))
                for s in sorted(base.side.servers.keys() & head.side.servers.keys())
                if base.side.servers.get(s) != head.side.servers.get(s)]
    return CatalogDiff(base=base.side, head=head.side, tools=tools, prompts=prompts, resources=resources,
                       unchanged_tools=sum(1 for k in b if k in h) - sum(t.change == "changed" for t in tools),
                       server_versions=versions, warnings=warnings)


def _hint_renamed_tools(tools: list[ToolChange]) -> None:
    """A removed tool whose definition reappears under a new name: say so on the removal."""
    added = [t for t in tools if t.change == "added"]
    for t in tools:
        if t.change != "removed":
            continue
        twin = next((a for a in added if a.server == t.server and a.schema_diff.count("+") > 0
                     and _same_body(t, a)), None)
        if twin is not None:
            t.changes[0] = t.changes[0].model_copy(update={"detail": f"calls to it now fail (renamed to {twin.name}?)"})


def _same_body(removed: ToolChange, added: ToolChange) -> bool:
    def body(diff: str) -> list[str]:
        return [ln[1:] for ln in diff.splitlines()[2:] if ln[:1] in "+-" and '"name"' not in ln]

    return body(removed.schema_diff) == body(added.schema_diff)
