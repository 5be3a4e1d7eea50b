from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from costar.judges.base import JudgeContext
from costar.judges.checks import CheckJudge, parse_check
from costar.scenario.checks import CHECKS
from costar.store.sqlite import SQLiteStore
from costar.trace.model import (
    Artifact,
    Span,
    SpanKind,
    SpanStatus,
    StatusCode,
    Totals,
    Trace,
    TraceStatus,
)
from tests.support.paths import REPO

TID = "0" * 32


def tool(name: str, args: object, start: int, *, status: StatusCode = StatusCode.OK) -> Span:
    return Span(trace_id=TID, span_id=f"{start:016x}", parent_id="f" * 16, name=f"execute_tool {name}",
                kind=SpanKind.TOOL, start_ns=start, end_ns=start + 1, status=SpanStatus(code=status, message="boom"),
                attributes={"gen_ai.tool.name": name, "gen_ai.tool.call.arguments": args})


@pytest.fixture
def ctx(tmp_path: Path) -> JudgeContext:
    store = SQLiteStore(tmp_path / "s")
    files = {
        "out.csv": b"name,age,joined\nann,31,2024-01-02\nbob,,2024-02-03\ncid,40,2024-03-04\n",
        "bad.csv": b"name,age\nann,thirty\n",
        "data.json": b'{"rows": 3, "cols": ["a"]}',
        "conf.yaml": b"a: 1\nb: [x, y]\n",
        "notes/readme.md": b"hello world",
    }
    arts = []
    for path, data in files.items():
        sha = store.put_blob(data)
        arts.append(Artifact(path=path, sha256=sha, size=len(data), origin="agent" if path != "conf.yaml" else "setup"))
    spans = [
        Span(trace_id=TID, span_id="f" * 16, name="agent", kind=SpanKind.AGENT, start_ns=0, end_ns=100),
        tool("list_files", {}, 10),
        tool("load_skill", {"name": "csv-profiling"}, 20),
        tool("read_file", {"path": "data.csv", "max_bytes": 100}, 30),
        tool("read_file", '{"path": "other.csv"}', 40),
        tool("write_file", {"path": "out.csv"}, 50, status=StatusCode.ERROR),
    ]
    trace = Trace(trace_id=TID, output='Here you go:\n```json\n{"total": 42}\n```\nTotal revenue: 42 USD',
                  spans=spans, artifacts=arts,
                  totals=Totals(total_tokens=1500, cost_usd=0.02, latency_s=3.5, tool_calls=5, llm_calls=2))
    return JudgeContext(trace=trace, store=store)


def verdict(spec: object, ctx: JudgeContext):
    return asyncio.run(parse_check(spec).judge(ctx))


CASES = [
    ({"output_contains": "Total revenue"}, True),
    ({"output_contains": {"value": "total REVENUE", "ignore_case": True}}, True),
    ({"output_contains": {"value": ["42", "EUR"], "mode": "any"}}, True),
    ({"output_contains": ["42", "EUR"]}, False),
    ({"output_equals": "nope"}, False),
    ({"output_matches": r"revenue: \d+ USD"}, True),
    ({"output_matches": r"^\d+$"}, False),
    ({"json": None}, True),  # fenced JSON in the output
    ({"json": {"schema": {"type": "object", "required": ["total"]}}}, True),
    ({"json": {"schema": {"type": "object", "required": ["missing"]}}}, False),
    ({"json": {"file": "data.json", "schema": {"properties": {"rows": {"const": 3}}}}}, True),
    ({"json": "notes/readme.md"}, False),
    ({"json": "absent.json"}, False),
    ({"yaml": {"file": "conf.yaml", "schema": {"properties": {"b": {"type": "array"}}}}}, True),
    ({"file_exists": "out.csv"}, True),
    ({"file_exists": "notes/*.md"}, True),
    ({"file_exists": {"path": "conf.yaml", "created_by_agent": True}}, False),
    ({"file_exists": "missing.txt"}, False),
    ({"file_contains": {"path": "notes/readme.md", "value": "world"}}, True),
    ({"csv": {"file": "out.csv", "columns": ["name", "age"], "min_rows": 3, "max_rows": 3}}, True),
    ({"csv": {"file": "out.csv", "columns": ["name", "age"], "exact_columns": True}}, False),
    ({"csv": {"file": "out.csv", "types": {"age": "int", "joined": "date"}}}, True),
    ({"csv": {"file": "bad.csv", "types": {"age": "int"}}}, False),
    ({"csv": {"file": "out.csv", "no_missing": ["age"]}}, False),
    ({"csv": {"file": "out.csv", "max_rows": 2}}, False),
    ({"tool_called": "read_file"}, True),
    ({"tool_called": {"name": "read_file", "min": 2, "max": 2}}, True),
    ({"tool_called": {"name": "read_file", "args": {"path": "other.csv"}}}, True),  # arguments given as a string
    ({"tool_called": {"name": "read_file", "args": {"path": "*.csv"}, "min": 2}}, True),
    ({"tool_called": {"name": "run_python"}}, False),
    ({"tool_called": {"name": "list_files", "max": 0}}, False),
    ({"tool_order": ["list_files", "read_file", "write_file"]}, True),
    ({"tool_order": ["read_file", "list_files"]}, False),
    ({"skill_invoked": "csv-profiling"}, True),
    ({"skill_invoked": "plotting"}, False),
    ({"no_error_spans": True}, False),
    ({"no_error_spans": {"kinds": ["LLM"]}}, True),
    ({"max_tokens": 2000}, True),
    ({"max_tokens": 1000}, False),
    ({"max_cost": 0.01}, False),
    ({"max_latency": 5}, True),
    ({"max_tool_calls": 4}, False),
    ({"max_llm_calls": 2}, True),
    ({"not": {"output_contains": "Traceback"}}, True),
    ({"not_output_contains": "revenue"}, False),
    ({"not": {"not": {"file_exists": "out.csv"}}}, True),
]


@pytest.mark.parametrize(("spec", "expected"), CASES)
def test_check_outcomes(ctx: JudgeContext, spec: dict, expected: bool) -> None:
    v = verdict(spec, ctx)
    assert v.error is None, v.error
    assert v.passed is expected, v.rationale
    assert v.rationale, "every verdict explains itself"
    assert v.fingerprint
    assert v.trace_id == TID


def test_every_registered_check_is_exercised() -> None:
    used = set()
    for spec, _ in CASES:
        key = next(iter(spec))
        while key == "not":
            spec = spec["not"]
            key = next(iter(spec))
        used.add(key.removeprefix("not_"))
    assert set(CHECKS.names()) - used <= {"agent_completed", "python"}  # those two have their own tests


def test_agent_completed(ctx: JudgeContext) -> None:
    assert verdict("agent_completed", ctx).passed
    ctx.trace.status = TraceStatus.TIMEOUT
    ctx.trace.error = "timed out after 3s"
    v = verdict("agent_completed", ctx)
    assert not v.passed
    assert "timeout" in v.rationale


def test_python_check_and_broken_python_check_is_an_error(ctx: JudgeContext, project: Path) -> None:
    (project / "mychecks.py").write_text(
        "def mentions(ctx, word):\n    return word in (ctx.trace.output or ''), f'looked for {word}'\n"
        "def broken(ctx):\n    raise RuntimeError('bug in the check')\n"
        "def wrong_type(ctx):\n    return 42\n")
    v = verdict({"python": {"function": "mychecks:mentions", "args": {"word": "revenue"}}}, ctx)
    assert v.passed
    assert v.rationale == "looked for revenue"
    broken = verdict({"python": "mychecks:broken"}, ctx)
    assert broken.outcome == "error"
    assert broken.passed is None
    assert "bug in the check" in broken.error
    wrong = verdict({"python": "mychecks:wrong_type"}, ctx)
    assert wrong.outcome == "error"
    assert "expected bool" in wrong.error
    missing = verdict({"python": "nosuchmodule:fn"}, ctx)
    assert missing.outcome == "error"
    assert "cannot import module" in missing.error


def test_gate_and_name_options(ctx: JudgeContext) -> None:
    j = parse_check({"max_tokens": 10, "gate": False, "name": "token budget"})
    assert isinstance(j, CheckJudge)
    assert not j.gating
    assert j.name == "token budget"
    assert parse_check(j.spec()).name == "token budget"
    v = asyncio.run(j.judge(ctx))
    assert v.passed is False
    assert v.gating is False
    assert v.name == "token budget"


def test_fingerprint_changes_with_parameters_only() -> None:
    a, b, c = parse_check({"max_tokens": 10}), parse_check({"max_tokens": 10}), parse_check({"max_tokens": 11})
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert parse_check({"not": {"max_tokens": 10}}).fingerprint() != a.fingerprint()


@pytest.mark.parametrize(("spec", "fragment"), [
    ({"output_contain": "x"}, "unknown check 'output_contain'"),
    ({"output_contains": "x", "tool_called": "y"}, "exactly one check key"),
    ({"output_contains": "x", "gte": False}, "unknown option 'gte' next to check 'output_contains'"),
    ({"csv": {"file": "a.csv", "rows": 3}}, "unknown option 'rows' (did you mean 'min_rows'?) (options: file (or path), columns,"),
    # Every problem is named: the unknown option and the missing one (not only "Field required").
    ({"file_contains": {"file": "x", "text": "y"}},
     "check 'file_contains': unknown option 'text'; missing option 'value' (options: file (or path), value, ignore_case)"),
    ({"file_contains": {"path": "x", "file": "x", "value": "y"}}, "'path' is another name for 'file'; give only one"),
    ({"json": {"fil": "out.json"}}, "unknown option 'fil' (did you mean 'file'?)"),
    ({"csv": {"file": "a.csv", "types": {"a": "decimal"}}}, "unknown column type"),
    ({"max_tokens": -1}, "greater than or equal to 0"),
    ({"output_contains": "x", "gate": "yes"}, "'gate' must be true or false"),
    ({"tool_order": []}, "at least 1 item"),
    (["a list"], "must be a mapping"),
])
def test_bad_check_specs(spec: object, fragment: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_check(spec)
    assert fragment in str(err.value)


def test_every_check_names_a_workspace_file_the_same_way() -> None:
    from costar.scenario.checks import CHECKS, option_names

    for kind in ("json", "yaml", "csv", "file_exists", "file_contains"):
        assert option_names(CHECKS.get(kind))[0].split(" ")[0] == "file", kind
    # ``path`` stays an alias where it used to be the name, and writes back as ``file``.
    old = parse_check({"file_contains": {"path": "notes.md", "value": "x"}})
    assert old.spec() == {"file_contains": {"file": "notes.md", "value": "x"}}
    assert parse_check({"file_exists": {"path": "a.txt"}}).spec() == {"file_exists": "a.txt"}


def test_spec_round_trips() -> None:
    for spec, _ in CASES:
        j = parse_check(spec)
        again = parse_check(j.spec())
        assert again.fingerprint() == j.fingerprint(), spec


def test_checks_md_is_generated_from_the_check_models() -> None:
    """docs/CHECKS.md cannot drift: it must equal what the models generate (regenerate with
    `costar checks --markdown > docs/CHECKS.md`), list every check, and every example must parse."""
    import yaml

    from costar.scenario.checks import CHECKS, option_names
    from costar.scenario.checks_reference import checks_markdown
    from costar.scenario.model import Expectations

    committed = (REPO / "docs" / "CHECKS.md").read_text(encoding="utf-8")
    assert committed == checks_markdown(), "stale: run costar checks --markdown > docs/CHECKS.md"
    for kind in CHECKS.names():
        cls = CHECKS.get(kind)
        assert f"## `{kind}`" in committed, kind
        assert cls.__doc__, kind
        assert cls.example, kind
        for option in option_names(cls):
            assert f"`{option.split(' ')[0]}`" in committed, (kind, option)
        written = yaml.safe_load(cls.example)
        if isinstance(written, list):
            for entry in written:
                assert parse_check(entry).check.kind == kind.removeprefix("not_"), entry
        else:
            Expectations.model_validate(written["expectations"])
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "docs/CHECKS.md" in readme
