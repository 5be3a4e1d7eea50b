"""The breaking-change rules of ``costar.mcp.diff``, one test per rule (docs/MCP.md lists them)."""

from __future__ import annotations

from typing import Any

import pytest

from costar.mcp.diff import CatalogSide, ToolCatalog, compare_schemas, compare_tools, diff_catalogs
from costar.trace.tool_definition import ToolDefinition
from costar.trace.tools import PromptArgument, PromptDefinition, ResourceDefinition


def obj(props: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required or [], **extra}


S = {"type": "string"}
I = {"type": "integer"}  # noqa: E741


def kinds(old: Any, new: Any, direction: str = "input") -> list[tuple[str, bool]]:
    return [(c.kind, c.breaking) for c in compare_schemas(old, new, direction)]  # type: ignore[arg-type]


@pytest.mark.parametrize(("old", "new", "expected"), [
    (obj({"a": S}, ["a"]), obj({"a": S, "b": S}, ["a", "b"]), [("required field added", True)]),
    (obj({"a": S}, ["a"]), obj({"a": S, "b": S}, ["a"]), [("optional field added", False)]),
    (obj({"a": S, "b": S}, ["a"]), obj({"a": S}, ["a"]), [("field removed", True)]),
    (obj({"a": S}, ["a"]), obj({"b": S}, ["b"]), [("field renamed", True)]),
    (obj({"a": S}), obj({"a": I}), [("type changed", True)]),
    (obj({"a": I}), obj({"a": {"type": "number"}}), [("type changed", False)]),  # widened: old calls still valid
    (obj({"a": S}), obj({"a": {"type": ["string", "null"]}}), [("type changed", False)]),
    (obj({"a": {"enum": ["x", "y"]}}), obj({"a": {"enum": ["x"]}}), [("enum value removed", True)]),
    (obj({"a": {"enum": ["x"]}}), obj({"a": {"enum": ["x", "y"]}}), [("enum value added", False)]),
    (obj({"a": S}), obj({"a": {"type": "string", "enum": ["x"]}}), [("enum added", True)]),
    (obj({"a": {"type": "string", "enum": ["x"]}}), obj({"a": S}), [("enum removed", False)]),
    (obj({"a": I}), obj({"a": {"type": "integer", "maximum": 10}}), [("constraint tightened", True)]),
    (obj({"a": {"type": "integer", "maximum": 10}}), obj({"a": {"type": "integer", "maximum": 20}}),
     [("constraint loosened", False)]),
    (obj({"a": {"type": "string", "minLength": 1}}), obj({"a": {"type": "string", "minLength": 3}}),
     [("constraint tightened", True)]),
    (obj({"a": S}), obj({"a": {"type": "string", "pattern": "^C-"}}), [("pattern changed", True)]),
    (obj({"a": S}, ["a"]), obj({"a": S}), [("field made optional", False)]),
    (obj({"a": S}), obj({"a": S}, ["a"]), [("field made required", True)]),
    (obj({"a": S}), obj({"a": S}, additionalProperties=False), [("additional fields refused", True)]),
    (obj({"a": S}, additionalProperties=False), obj({"a": S}), [("additional fields allowed", False)]),
    (obj({"a": {**S, "description": "old"}}), obj({"a": {**S, "description": "new"}}), [("description changed", False)]),
    (obj({"a": {**S, "default": "x"}}), obj({"a": {**S, "default": "y"}}), [("default changed", False)]),
    (obj({"a": {"type": "array", "items": S}}), obj({"a": {"type": "array", "items": I}}), [("type changed", True)]),
])
def test_input_schema_rules(old: Any, new: Any, expected: list[tuple[str, bool]]) -> None:
    assert kinds(old, new, "input") == expected


@pytest.mark.parametrize(("old", "new", "expected"), [
    (obj({"a": S}, ["a"]), obj({}, []), [("field removed", True)]),
    (obj({"a": S}), obj({"a": S, "b": S}), [("field added", False)]),
    (obj({"a": {"enum": ["x"]}}), obj({"a": {"enum": ["x", "y"]}}), [("enum value added", True)]),
    (obj({"a": {"enum": ["x", "y"]}}), obj({"a": {"enum": ["x"]}}), [("enum value removed", False)]),
    (obj({"a": I}), obj({"a": {"type": "number"}}), [("type changed", True)]),  # the agent may get a float
    (obj({"a": {"type": ["string", "null"]}}), obj({"a": S}), [("type changed", False)]),
    (obj({"a": S}, ["a"]), obj({"a": S}), [("field made optional", True)]),
    (obj({"a": S}), obj({"a": S}, ["a"]), [("field made required", False)]),
])
def test_output_schema_rules(old: Any, new: Any, expected: list[tuple[str, bool]]) -> None:
    assert kinds(old, new, "output") == expected


def test_output_schema_added_and_removed() -> None:
    assert kinds(None, obj({"a": S}), "output") == [("output schema added", False)]
    assert kinds(obj({"a": S}), None, "output") == [("output schema removed", True)]


def test_optional_fields_in_pydantic_form_and_nested_models_compare_by_content() -> None:
    # Optional[str] = None as pydantic writes it, and a nested model behind a $ref.
    old = {"type": "object", "$defs": {"Addr": obj({"city": S}, ["city"])},
           "properties": {"note": {"anyOf": [S, {"type": "null"}], "default": None},
                          "addr": {"$ref": "#/$defs/Addr"}}}
    same = {"type": "object", "$defs": {"Address": obj({"city": S}, ["city"])},
            "properties": {"note": {"anyOf": [S, {"type": "null"}], "default": None},
                           "addr": {"$ref": "#/$defs/Address"}}}
    assert kinds(old, same) == []
    changed = {**same, "$defs": {"Address": obj({"city": S, "zip": S}, ["city", "zip"])}}
    assert kinds(old, changed) == [("required field added", True)]
    assert compare_schemas(old, changed, "input")[0].path == "input.addr.zip"


def _tool(name: str = "t", description: str = "Does it.", inp: Any = None, out: Any = None,
          server: str | None = "s") -> ToolDefinition:
    return ToolDefinition(name=name, description=description, input_schema=inp or obj({"a": S}, ["a"]),
                          output_schema=out, server=server)


def test_tool_level_changes() -> None:
    assert compare_tools(_tool(), _tool()) is None
    reworded = compare_tools(_tool(), _tool(description="Does it, politely."))
    assert reworded is not None
    assert (reworded.change, reworded.breaking) == ("changed", False)
    assert [c.kind for c in reworded.changes] == ["description changed"]
    assert "Does it, politely." in reworded.schema_diff
    removed = compare_tools(_tool(), None)
    assert removed is not None
    assert (removed.change, removed.breaking) == ("removed", True)
    added = compare_tools(None, _tool())
    assert added is not None
    assert (added.change, added.breaking) == ("added", False)


def _catalog(tools: list[ToolDefinition], prompts: list[PromptDefinition] | None = None,
             resources: list[ResourceDefinition] | None = None, kind: str = "snapshot") -> ToolCatalog:
    return ToolCatalog(side=CatalogSide(kind=kind, ref=kind, servers={"s": "1"}), tools=tools,  # type: ignore[arg-type]
                       prompts=prompts, resources=resources)


def test_a_catalog_diff_matches_tools_by_server_and_name_and_hints_renamed_tools() -> None:
    base = _catalog([_tool("a"), _tool("b"), _tool("a", server="other")])
    head = _catalog([_tool("a"), _tool("b2"), _tool("a", server="other", description="changed")])
    d = diff_catalogs(base, head)
    changes = {(t.server, t.name): t for t in d.tools}
    assert set(changes) == {("s", "b"), ("s", "b2"), ("other", "a")}
    assert changes[("s", "b")].change == "removed"
    assert "renamed to b2" in changes[("s", "b")].changes[0].detail
    assert changes[("other", "a")].breaking is False
    assert d.breaking is True
    assert d.exit_code == 1
    assert d.unchanged_tools == 1


def test_a_run_compared_with_a_snapshot_is_restricted_to_the_snapshot_server() -> None:
    snapshot = _catalog([_tool("a")])
    run = _catalog([_tool("a"), _tool("x", server="weather")], kind="run")
    assert diff_catalogs(snapshot, run).tools == []


def test_prompt_and_resource_rules() -> None:
    p1 = PromptDefinition(name="reply", arguments=[PromptArgument(name="who", required=True)])
    p2 = PromptDefinition(name="reply", arguments=[PromptArgument(name="who", required=True),
                                                   PromptArgument(name="tone", required=True)])
    gone = PromptDefinition(name="old")
    r1 = ResourceDefinition(name="policy", uri="shop://policy", mime_type="text/plain")
    r2 = ResourceDefinition(name="policy", uri="shop://policy", mime_type="application/json")
    d = diff_catalogs(_catalog([], [p1, gone], [r1]), _catalog([], [p2], [r2]))
    assert [(p.key, p.change, p.breaking) for p in d.prompts] == [("reply", "changed", True), ("old", "removed", True)]
    assert d.prompts[0].changes[0].kind == "required argument added"
    assert [(r.key, r.breaking, r.changes[0].kind) for r in d.resources] == [("shop://policy", True, "mime type changed")]
    # runs record no prompts or resources: nothing to compare, nothing reported
    assert diff_catalogs(_catalog([], [p1]), _catalog([], None, kind="run")).prompts == []


def test_a_diff_survives_a_json_round_trip() -> None:
    d = diff_catalogs(_catalog([_tool("a")]), _catalog([_tool("a", description="new")]))
    again = type(d).model_validate_json(d.model_dump_json())
    assert again == d
    assert again.exit_code == 0
