"""Judge definitions: YAML and Python files in judges/, templates, judge types, entry points, re-scoring."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

import pytest

from costar.assess import Assessor
from costar.errors import ConfigError
from costar.judges.agentic import AgenticJudge
from costar.judges.checks import CheckJudge
from costar.judges.definitions import (
    JudgeDefinition,
    JudgeDefinitionError,
    JudgeTypeRegistry,
    discover_judges,
    load_judge_yaml,
    template_names,
)
from costar.judges.llm import LlmJudge
from costar.judges.registry import FunctionJudge, JudgeRegistry, project_registry
from costar.scenario import JudgeRef, Scenario
from costar.store.base import Run
from costar.store.sqlite import SQLiteStore
from costar.testing import Rule, ScriptedModelServer
from costar.trace.model import Trace, new_trace_id

URI = "openai-compatible:/judge?base_url=http://127.0.0.1:9/v1"  # never called in tests that only build


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def _scenario(**kw: Any) -> Scenario:
    return Scenario.model_validate({"id": "s1", "prompt": "Sum the numbers.", **kw})


@pytest.fixture
def server(scripted_model_server: Any) -> ScriptedModelServer:
    return scripted_model_server()


def test_yaml_files_hold_one_or_many_judges(tmp_path: Path) -> None:
    judges = tmp_path / "judges"
    _write(judges, "polite.yaml", f"""
        name: polite
        model: {URI}
        description: Replies are polite.
        instructions: "Is this polite? {{{{outputs}}}}"
        agreement_floor: {{metric: kappa, min: 0.6}}
        """)
    _write(judges, "many.yml", f"""
        judges:
          - name: score
            model: {URI}
            instructions: "Rate {{{{outputs}}}}"
            value: {{type: number, min: 1, max: 5, threshold: 4}}
          - name: has-total
            type: check
            check: {{output_contains: total}}
            gate: false
        """)
    _write(judges, "docs.yaml", f"""
        - name: tone
          model: {URI}
          instructions: "Tone of {{{{outputs}}}}"
          value: {{type: label, labels: [warm, neutral, cold], pass_labels: [warm, neutral]}}
        ---
        name: explorer
        type: agentic
        model: {URI}
        instructions: Explore.
        tools: [trace_info, list_spans]
        max_iterations: 4
        scan_spans: 2500
        """)
    entries = {e.name: e for e in discover_judges(tmp_path)}
    assert sorted(entries) == ["explorer", "has-total", "polite", "score", "tone"]
    assert entries["polite"].source == f"{judges / 'polite.yaml'}:1"
    assert entries["score"].source.endswith("many.yml:2")
    assert entries["explorer"].source.endswith("docs.yaml:6")
    assert entries["polite"].agreement_floor is not None
    assert entries["polite"].agreement_floor.min == 0.6
    assert isinstance(entries["polite"].judge(), LlmJudge)
    assert entries["polite"].judge().model == URI
    assert entries["score"].judge().value.threshold == 4  # type: ignore[attr-defined]
    check = entries["has-total"].judge()
    assert isinstance(check, CheckJudge)
    assert check.name == "has-total"
    assert check.gating is False
    explorer = entries["explorer"].judge()
    assert isinstance(explorer, AgenticJudge)
    assert explorer.tools == ["trace_info", "list_spans"]
    assert explorer.budget.max_iterations == 4
    assert explorer.tool_limits.scan_spans == 2500


@pytest.mark.parametrize(("text", "line", "needle"), [
    ("name: a\nmodel: m\ninstructions: x\nvalu: bool\n", 4, "field 'valu': unknown field"),
    ("name: a\ninstructions: x\nvalue:\n  type: number\n  threshold: nope\n", 5, "field 'value.threshold'"),
    ("name: a\ninstructions: |\n  Judge {{ouputs}} now\n", 2, "unknown template variable {{ouputs}}"),
    ("name: a\ntype: magic\ninstructions: x\n", 2, "unknown judge type 'magic'"),
    ("name: a\ntemplate: nonesuch\n", 2, "unknown judge template 'nonesuch'"),
    ("- name: ok\n  instructions: x\n- name: bad name!\n  instructions: x\n", 3, "field 'name'"),
    ("name: a\ninstructions: [unclosed\n", 3, "invalid YAML"),
    ("name: a\ninstructions: x\ninstructions_file: y.md\n", 1, "exactly one of 'instructions'"),
    ("name: a\ntype: agentic\ninstructions: x\ntools: [trace_info, rm_rf]\n", 4, "unknown tool(s) ['rm_rf']"),
    ("name: a\ntype: agentic\ninstructions: x\nscan_seconds: 3\n", 1,
     "'scan_seconds' was replaced by 'scan_spans'"),
    ("name: a\ninstructions: x\ndocs: [missing.md]\n", 3, "'missing.md' does not exist"),
    ("name: a\ntype: check\ncheck: {output_contians: x}\n", 3, "unknown check 'output_contians'"),
    ("judges: {name: a}\n", 1, "'judges' must be a list"),
    ("name: a\ninstructions: x\nmodel: nosuch:/m\n", 3, "field 'model': unknown model provider 'nosuch'"),
    ("name: a\nvalue: {type: label, labels: [x], pass_labels: [y]}\ninstructions: x\n", 2, "not among labels"),
    ("name: a\ninstructions: x\nagreement_floor:\n  metric: accuracy\n  min: -0.2\n", 3,
     "field 'agreement_floor': a floor on accuracy must be between 0 and 1"),
])
def test_yaml_errors_name_file_line_and_field(tmp_path: Path, text: str, line: int, needle: str) -> None:
    path = _write(tmp_path / "judges", "bad.yaml", text)
    with pytest.raises(JudgeDefinitionError) as info:
        discover_judges(tmp_path)
    msg = str(info.value)
    assert msg.startswith(f"{path}:{line}: "), msg
    assert needle in msg, msg
    assert isinstance(info.value, ConfigError)
    assert "\n" not in msg


def test_duplicate_names_across_files_are_an_error(tmp_path: Path) -> None:
    _write(tmp_path / "judges", "a.yaml", "name: same\ninstructions: x\n")
    _write(tmp_path / "judges", "b.yaml", "name: same\ninstructions: y\n")
    with pytest.raises(JudgeDefinitionError, match=r"duplicate judge name 'same' \(also defined at .*a.yaml:1\)"):
        discover_judges(tmp_path)


def test_python_modules_expose_judges_and_python_type_and_helpers(tmp_path: Path) -> None:
    judges = tmp_path / "judges"
    _write(judges, "_helpers.py", "def mentions_total(ctx, word='total'):\n    return word in (ctx.trace.output or '')\n")
    _write(judges, "code_judges.py", f"""
        from costar.judges.llm import LlmJudge
        from costar.judges.registry import FunctionJudge
        from _helpers import mentions_total

        concise = LlmJudge("concise", "Is it concise? {{{{outputs}}}}", model="{URI}")
        total = FunctionJudge(mentions_total, "mentions-total")
        _private = FunctionJudge(mentions_total, "hidden")
        """)
    _write(judges, "fn.yaml", """
        name: says-sum
        type: python
        function: _helpers:mentions_total
        options: {word: sum}
        """)
    entries = {e.name: e for e in discover_judges(tmp_path)}
    assert sorted(entries) == ["concise", "mentions-total", "says-sum"]
    assert entries["concise"].type == "llm"
    assert entries["mentions-total"].type == "python"
    fn = entries["says-sum"].judge()
    assert isinstance(fn, FunctionJudge)
    assert fn.options == {"word": "sum"}
    from costar.judges.base import JudgeContext

    v = asyncio.run(fn.judge(JudgeContext(trace=Trace(trace_id="t", output="the sum is 3"))))
    assert v.passed is True


def test_python_module_errors_name_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "judges", "broken.py", "x = 1\n\nraise RuntimeError('nope')\n")
    with pytest.raises(JudgeDefinitionError, match=rf"^{path}:3: importing it failed: RuntimeError: nope"):
        discover_judges(tmp_path)
    path.write_text("def f(:\n    pass\n")
    with pytest.raises(JudgeDefinitionError, match=rf"^{path}:1: syntax error"):
        discover_judges(tmp_path)


def test_templates_load_by_name_in_scenarios_and_as_project_bases(tmp_path: Path) -> None:
    assert template_names() == ["best_practices", "outcome", "skill_invocation"]
    _write(tmp_path / "judges", "mine.yaml", f"""
        name: strict-outcome
        template: outcome
        model: {URI}
        max_iterations: 5
        """)
    _write(tmp_path / "docs", "views.md", "# Views\nCreate permanent views with CREATE VIEW, never temporary ones.\n")
    reg = project_registry(tmp_path, default_model=URI)
    sc = _scenario(metadata={"target_skills": ["data-cleaning"]},
                   judges=["skill_invocation", "strict-outcome",
                           {"name": "best_practices", "options": {"docs": ["docs/views.md"]}, "gate": False}])
    skill, mine, practices = reg.judges_for(sc)[1:]
    assert isinstance(skill, AgenticJudge)
    assert skill.name == "skill_invocation"
    assert skill.model == URI
    assert "{{target_skills}}" in skill.instructions
    assert isinstance(mine, AgenticJudge)
    assert mine.name == "strict-outcome"
    assert mine.budget.max_iterations == 5
    assert "run_python" in mine.tools
    assert "{{criteria}}" in mine.instructions
    assert isinstance(practices, AgenticJudge)
    assert practices.gating is False
    assert "permanent views" in practices.docs["docs/views.md"]
    assert "read_doc" in practices.tools
    # The best-practices template needs documents: without them it is a clear config error.
    with pytest.raises(ConfigError, match="needs reference documents"):
        reg.resolve(JudgeRef(name="best_practices"))
    assert reg.resolve(JudgeRef(name="outcome")).fingerprint() != reg.resolve(
        JudgeRef(name="outcome", options={"max_iterations": 3})).fingerprint()


def test_template_judges_fill_target_skills_from_the_scenario(server: ScriptedModelServer, store: SQLiteStore) -> None:
    server.set_rules([Rule(tool_calls=[{"name": "submit_verdict", "arguments": {
        "value": True, "rationale": "loaded", "evidence": []}}])])
    judge = JudgeRegistry().resolve(JudgeRef(name="skill_invocation", options={"model": server.model_uri()}))
    from costar.judges.base import JudgeContext

    sc = _scenario(expectations={"checks": [{"skill_invoked": "csv-profiling"}], "criteria": ["Profiles the file."]})
    v = asyncio.run(judge.judge(JudgeContext(trace=Trace(trace_id="t", output="ok"), scenario=sc, store=store)))
    assert v.passed is True
    prompt = server.requests[0].body["messages"][1]["content"]
    assert "Target skills: csv-profiling" in prompt
    assert "- Profiles the file." in prompt


def test_fingerprint_changes_when_instructions_or_docs_change(tmp_path: Path) -> None:
    judges = tmp_path / "judges"
    _write(tmp_path, "guide.md", "Use median imputation for skewed columns.")
    path = _write(judges, "j.yaml", f"name: j\nmodel: {URI}\ninstructions: 'Polite? {{{{outputs}}}}'\n"
                                    "docs: [../guide.md]\n")

    def fp() -> str:
        (entry,) = load_judge_yaml(path, project_dir=tmp_path)
        return entry.judge().fingerprint()

    first = fp()
    assert fp() == first
    path.write_text(path.read_text().replace("Polite?", "Courteous?"))
    second = fp()
    assert second != first
    (tmp_path / "guide.md").write_text("Use mean imputation.")
    assert fp() != second


def test_definition_gate_holds_unless_the_scenario_sets_one(tmp_path: Path) -> None:
    _write(tmp_path / "judges", "diag.yaml", f"name: diag\nmodel: {URI}\ninstructions: x\ngate: false\n")
    reg = project_registry(tmp_path)
    assert reg.resolve(JudgeRef(name="diag")).gating is False
    assert reg.resolve(JudgeRef(name="diag", gate=True)).gating is True
    with pytest.raises(ConfigError, match="cannot change 'name'"):
        reg.resolve(JudgeRef(name="diag", options={"name": "other"}))
    with pytest.raises(ConfigError, match="samples"):
        reg.resolve(JudgeRef(name="diag", options={"samples": 0}))


def test_judge_types_and_judges_from_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "site"
    _write(pkg, "myjudges.py", """
        from dataclasses import dataclass
        from costar.judges.definitions import JudgeDefinition
        from costar.judges.registry import FunctionJudge

        class LengthDefinition(JudgeDefinition):
            max_chars: int = 100

        @dataclass(frozen=True)
        class LengthType:
            name: str = "length"
            definition: type = LengthDefinition

            def build(self, d, ctx):
                limit = d.max_chars
                return FunctionJudge(lambda c: len(c.trace.output or "") <= limit, d.name, gate=d.gate)

        LENGTH = LengthType()
        SHORT = FunctionJudge(lambda c: len(c.trace.output or "") < 10, "plugin-short")
        """)
    dist = pkg / "costar_test_plugin-0.1.dist-info"
    _write(dist, "METADATA", "Metadata-Version: 2.1\nName: costar-test-plugin\nVersion: 0.1\n")
    _write(dist, "entry_points.txt", "[costar.judge_types]\nlength = myjudges:LENGTH\n\n"
                                     "[costar.judges]\nplugin-short = myjudges:SHORT\n")
    monkeypatch.syspath_prepend(str(pkg))
    types = JudgeTypeRegistry()
    assert {"llm", "agentic", "check", "python", "length"} <= set(types.names())
    assert types.get("llm").definition.__name__ == "ModelJudgeDefinition"  # built-ins resolve by reference too
    _write(tmp_path / "proj" / "judges", "len.yaml", "name: short-answer\ntype: length\nmax_chars: 5\n")
    reg = JudgeRegistry()
    reg.load_project(tmp_path / "proj", types=types)
    assert isinstance(reg.resolve(JudgeRef(name="short-answer")), FunctionJudge)
    assert reg.resolve(JudgeRef(name="plugin-short")).name == "plugin-short"
    infos = {i.name: i for i in reg.infos()}
    assert infos["short-answer"].type == "length"
    assert infos["plugin-short"].source == "plugin costar-test-plugin 0.1 (myjudges:SHORT)"


def test_list_judges(tmp_path: Path) -> None:
    _write(tmp_path / "judges", "polite.yaml", f"""
        name: polite
        model: {URI}
        description: Replies are polite.
        instructions: "Polite? {{{{outputs}}}}"
        gate: false
        agreement_floor: {{metric: kappa, min: 0.6}}
        apply_to: all
        """)
    infos = {i.name: i for i in project_registry(tmp_path, default_model=URI).infos()}
    assert {"polite", "outcome", "skill_invocation", "best_practices"} <= set(infos)
    p = infos["polite"]
    assert (p.type, p.model, p.gating, p.description) == ("llm", URI, False, "Replies are polite.")
    assert p.source.endswith("polite.yaml:1")
    assert p.fingerprint
    assert len(p.fingerprint) == 16
    assert p.agreement_floor == {"metric": "kappa", "min": 0.6, "golden": None, "split": "test",
                                 "use_lower_bound": False}
    assert p.applies_to == {"ids": ["*"]}
    assert infos["outcome"].source == "template outcome"
    assert infos["outcome"].model == URI
    assert infos["best_practices"].fingerprint is None
    assert "needs reference documents" in (infos["best_practices"].error or "")
    assert issubclass(JudgeDefinition, object)


# --------------------------------------------------------------------------- assess integration


def _stored_run(store: SQLiteStore, sc: Scenario, n: int) -> str:
    run = Run()
    store.create_run(run)
    store.save_scenarios(run.run_id, [sc])
    store.write_traces([Trace(trace_id=new_trace_id(), run_id=run.run_id, scenario_id=sc.id, trial=i,
                              input="Sum the numbers.", output=f"The total is {40 + i}.") for i in range(n)])
    return run.run_id


def _assess(store: SQLiteStore, project: Path, run_id: str, sc: Scenario) -> Any:
    reg = project_registry(project)
    return asyncio.run(Assessor(store, reg, concurrency=4).assess_run(run_id, scenarios={sc.id: sc}))


def test_assess_rescores_only_the_changed_judge_and_new_judges_score_every_trace(
        tmp_path: Path, server: ScriptedModelServer, store: SQLiteStore) -> None:
    server.set_rules([Rule(json={"rationale": "fine", "value": True})])
    uri = server.model_uri()
    judges = tmp_path / "judges"
    _write(judges, "a.yaml", f"name: polite\nmodel: '{uri}'\ninstructions: 'Polite? {{{{outputs}}}}'\n")
    b = _write(judges, "b.yaml", f"name: correct\nmodel: '{uri}'\ninstructions: 'Correct? {{{{outputs}}}}'\n")
    sc = _scenario(judges=["polite", "correct"])
    run_id = _stored_run(store, sc, 3)

    first = _assess(store, tmp_path, run_id, sc)
    assert (first.judged, first.cached, server.request_count) == (9, 0, 6)  # agent_completed + 2 LLM judges

    b.write_text(b.read_text().replace("Correct?", "Is the total correct?"))
    second = _assess(store, tmp_path, run_id, sc)
    assert (second.judged, second.cached, server.request_count) == (3, 6, 9)
    assert all("Is the total correct?" in r.body["messages"][1]["content"] for r in server.requests[6:])

    third = _assess(store, tmp_path, run_id, sc)
    assert (third.judged, third.cached, server.request_count) == (0, 9, 9)

    # A judge added to judges/ that applies to every scenario scores every stored trace on the next assess.
    _write(judges, "c.yaml", f"name: concise\nmodel: '{uri}'\ninstructions: 'Concise? {{{{outputs}}}}'\napply_to: all\n")
    fourth = _assess(store, tmp_path, run_id, sc)
    assert (fourth.judged, fourth.cached, server.request_count) == (3, 9, 12)
    names = {(v.trace_id, v.name) for v in store.verdicts(run_id=run_id)}
    assert len({t for t, n in names if n == "concise"}) == 3

    # Rolling the changed judge back restores its old verdicts without a single model call.
    b.write_text(b.read_text().replace("Is the total correct?", "Correct?"))
    fifth = _assess(store, tmp_path, run_id, sc)
    assert (fifth.judged, fifth.restored, server.request_count) == (0, 3, 12)
