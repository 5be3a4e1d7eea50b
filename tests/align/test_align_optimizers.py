"""Alignment optimizers end to end: a real SQLite store, golden sets, judges answering through the
scripted model server on loopback, and the real ``gepa`` package.

The world: a code-review judge asked "is this answer complete?" about 20 answers; half of them
leave a ``TODO`` where the implementation should be, and the human expert fails exactly those,
saying so in the rationale. The scripted judge model passes everything unless its prompt carries
what alignment is supposed to add (a guideline, a precedent case, better instructions).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from costar.align.golden import create_golden_set
from costar.align.labeling import new_label
from costar.align.memalign import MemAlign, MemoryJudge
from costar.align.optimize import AlignBudget, AlignmentError, SplitAgreement, decide_promotion
from costar.align.versions import VersionRegistry, active_definitions, align_judge, resolve_definition
from costar.labels import Split
from costar.store.sqlite import SQLiteStore
from costar.testing import Rule, ScriptedModelServer
from costar.trace.model import Trace

JUDGE = "review"
JUDGE_SYSTEM = "careful judge"
OUTPUT_HAS_TODO = r"## The agent's final output\n[^\n]*TODO"
GUIDELINE = "Fail any answer that still contains a TODO placeholder."
FAIL_RATIONALE = "Leaves a TODO placeholder instead of the implementation."
PASS_RATIONALE = "A complete, working implementation."
REFLECTION = "I provided an assistant with the following instructions"


# --------------------------------------------------------------------------- the world


def answer(i: int) -> str:
    if i % 2 == 0:
        return f"Answer A{i:02d}: def parse(rows): TODO implement the parser"
    return f"Answer A{i:02d}: def parse(rows): return [r.split(',') for r in rows]"


def build_world(store: SQLiteStore, project: Path, model_uri: str, *, n: int = 20,
                fractions: tuple[float, float, float] = (0.6, 0.2, 0.2), judge_name: str = JUDGE) -> None:
    """Traces, one expert's labels with rationales, a golden set and the judge's YAML definition."""
    (project / "judges").mkdir(exist_ok=True)
    (project / "judges" / f"{judge_name}.yaml").write_text(
        f"name: {judge_name}\ntype: llm\nmodel: '{model_uri}'\n"
        "instructions: Is this code answer complete and acceptable?\n", encoding="utf-8")
    ids = [f"t{i:02d}" for i in range(n)]
    store.write_traces([Trace(trace_id=t, input=f"Write a CSV row parser (task {i}).", output=answer(i))
                        for i, t in enumerate(ids)])
    store.write_labels([new_label(t, judge_name, i % 2 == 1, labeler="ana",
                                  rationale=PASS_RATIONALE if i % 2 else FAIL_RATIONALE)
                        for i, t in enumerate(ids)])
    create_golden_set(store, "gs", judge_name, seed=1, fractions=fractions)


def judge_says(value: bool, *, when: str | None = None, name: str | None = None) -> Rule:
    return Rule(name=name, system=JUDGE_SYSTEM, last_user=when,
                json={"rationale": "It leaves a TODO." if not value else "The code looks fine.", "value": value})


def both(*patterns: str) -> str:
    return "(?s)^" + "".join(f"(?=.*{p})" for p in patterns)


def judge_prompts(server: ScriptedModelServer) -> list[str]:
    out = []
    for req in server.requests:
        msgs = req.body.get("messages", [])
        if any(JUDGE_SYSTEM in str(m.get("content")) for m in msgs if m.get("role") == "system"):
            out.append(next(m["content"] for m in msgs if m["role"] == "user"))
    return out


@pytest.fixture
def server(scripted_model_server: Any) -> ScriptedModelServer:
    return scripted_model_server()


@pytest.fixture
def world(store: SQLiteStore, tmp_path: Path, server: ScriptedModelServer) -> tuple[SQLiteStore, Path]:
    build_world(store, tmp_path, server.model_uri())
    return store, tmp_path


# --------------------------------------------------------------------------- MemAlign


def test_memalign_distils_the_flaw_into_a_guideline_and_is_promoted(world: tuple[SQLiteStore, Path],
                                                                     server: ScriptedModelServer) -> None:
    store, project = world
    server.set_rules([Rule(name="distil", system="distil the judgment", json={"guidelines": [GUIDELINE]}),
                      judge_says(False, when=both(GUIDELINE, OUTPUT_HAS_TODO)),
                      judge_says(True)])
    result, recorded = align_judge(store, JUDGE, MemAlign(embedder="hashing"), project_dir=project)
    report = result.report

    # The judge passed everything: half the held-out examples were wrong, kappa 0.
    assert (report.before["test"].accuracy, report.before["test"].kappa) == (0.5, 0.0)
    assert (report.before["train"].accuracy, report.before["train"].kappa) == (0.5, 0.0)
    # With the distilled guideline it agrees with the expert everywhere, held-out split included.
    for split in ("train", "validation", "test"):
        assert (report.after[split].accuracy, report.after[split].kappa) == (1.0, 1.0), split
    # 4 held-out examples: kappa gets no interval (it printed [1.000, 1.000]) and promotion warns (issue 9, item 7).
    assert report.after["test"].kappa_ci is None
    assert report.after["test"].compared == 4
    assert "(no interval: too few)" in report.after["test"].short()
    assert report.decision.warnings
    assert "4 compared example(s): too few" in report.decision.warnings[0]
    assert "warning: the held-out split has 4" in report.format()
    assert report.details["guideline_source"] == "model"
    assert report.details["guidelines"] == [GUIDELINE]
    assert report.details["train_disagreements"] == 6
    assert report.details["cases"] == 12
    assert report.decision.promote
    assert report.decision.metric == "kappa"
    assert "rose 0.000 -> 1.000" in report.decision.reason
    assert recorded is not None
    assert (recorded.baseline, recorded.version, recorded.active) == (1, 2, 2)
    assert recorded.promoted

    # The distillation saw the disagreements with the expert's words, never a trace id.
    distil = next(r for r in server.requests if r.rule == "distil")
    text = json.dumps(distil.body["messages"])
    assert FAIL_RATIONALE in text
    assert "t00" not in text
    assert "Judge said: pass" in text

    # Every "after" prompt carries the guideline in the instructions and precedent cases.
    prompts = [p for p in judge_prompts(server) if GUIDELINE in p]
    assert len(prompts) == 20
    assert all("## Similar cases judged by human experts" in p for p in prompts)

    # The project now resolves the judge to the active version: a MemoryJudge reading the stored memory.
    (entry,) = active_definitions(project)
    judge = entry.judge()
    assert isinstance(judge, MemoryJudge)
    assert judge.fingerprint() == report.fingerprint_after
    assert judge.fingerprint() != report.fingerprint_before
    assert "v2, memalign" in entry.source
    assert GUIDELINE in judge.instructions
    # The fingerprint covers the memory: other guidelines or other cases, another judge version.
    relearned = judge.memory.model_copy(update={"guidelines": ["Pass everything."]})
    assert MemoryJudge(judge.inner, relearned, judge.embedder, k=3).fingerprint() != judge.fingerprint()
    assert MemoryJudge(judge.inner, judge.memory, judge.embedder, k=3).fingerprint() == judge.fingerprint()
    assert MemoryJudge(judge.inner, judge.memory, judge.embedder, k=2).fingerprint() != judge.fingerprint()
    print(report.format())


def test_memalign_episodic_memory_alone_retrieves_failing_precedents(world: tuple[SQLiteStore, Path],
                                                                     server: ScriptedModelServer) -> None:
    store, project = world
    precedent = r"Output: [^\n]*TODO[^\n]*\nExpert verdict: fail"
    server.set_rules([judge_says(False, when=both(precedent, OUTPUT_HAS_TODO)), judge_says(True)])
    result, recorded = align_judge(store, JUDGE, MemAlign(embedder="hashing", max_guidelines=0, k=3),
                                   project_dir=project)
    report = result.report
    assert report.details["guidelines"] == []
    assert report.details["guideline_source"] == "none"
    assert (report.after["test"].accuracy, report.after["test"].kappa) == (1.0, 1.0)
    assert recorded is not None
    assert recorded.promoted
    # No model call distilled anything, and no prompt retrieved its own trace as a precedent.
    assert all(r.rule != "distil" for r in server.requests)
    spec = VersionRegistry(store.root, project).spec(JUDGE, 2)
    judge = spec.build()
    assert isinstance(judge, MemoryJudge)
    train = store.golden_set("gs").trace_ids("train")
    hits = judge.retrieve(store.get_trace(train[0], spans=False))
    assert len(hits) == 3
    assert train[0] not in {ex.trace_id for ex, _ in hits}
    assert all(ex.label is False for ex, _ in hits) == ("TODO" in (store.get_trace(train[0]).output or ""))


def test_memalign_falls_back_to_the_rationales_when_the_model_cannot_distil(
        world: tuple[SQLiteStore, Path], server: ScriptedModelServer) -> None:
    store, project = world
    guide_section = r"## Guidelines from human experts\n[^#]*" + FAIL_RATIONALE
    server.set_rules([Rule(name="distil", system="distil the judgment", status=400, error_message="bad request"),
                      judge_says(False, when=both(guide_section, OUTPUT_HAS_TODO)), judge_says(True)])
    result, recorded = align_judge(store, JUDGE, MemAlign(embedder="hashing", k=0), project_dir=project)
    report = result.report
    assert report.details["guideline_source"] == "rationales"
    # The expert's rationales, deduplicated: the disagreements' first.
    assert report.details["guidelines"] == [FAIL_RATIONALE, PASS_RATIONALE]
    assert any("distillation failed" in n for n in report.notes)
    assert report.after["test"].kappa == 1.0
    assert recorded is not None
    assert recorded.promoted


def test_memalign_aligns_an_agentic_judge_too(world: tuple[SQLiteStore, Path], server: ScriptedModelServer) -> None:
    from costar.testing import ScriptedToolCall

    store, project = world
    (project / "judges" / f"{JUDGE}.yaml").write_text(
        f"name: {JUDGE}\ntype: agentic\nmodel: '{server.model_uri()}'\nmax_iterations: 2\n"
        "instructions: \"Is this code answer complete?\\n## Answer under review\\n{{outputs}}\"\n", encoding="utf-8")

    def submit(value: bool, when: str | None = None) -> Rule:
        return Rule(has_tools=True, last_user=when, tool_calls=[ScriptedToolCall(
            name="submit_verdict", arguments={"rationale": "read the answer", "value": value})])

    server.set_rules([Rule(name="distil", system="distil the judgment", json={"guidelines": [GUIDELINE]}),
                      submit(False, both(GUIDELINE, r"## Answer under review\n[^\n]*TODO")), submit(True)])
    result, recorded = align_judge(store, JUDGE, MemAlign(embedder="hashing"), project_dir=project)
    report = result.report
    assert result.base_definition.type == "agentic"
    assert result.new_definition.raw["base"]["type"] == "agentic"
    assert (report.before["test"].kappa, report.after["test"].kappa) == (0.0, 1.0)
    assert recorded is not None
    assert recorded.promoted
    judge = active_definitions(project)[0].judge()
    assert isinstance(judge, MemoryJudge)
    assert type(judge.inner).__name__ == "EpisodicAgenticJudge"


# --------------------------------------------------------------------------- GEPA


GENERAL = "Is this code answer complete? Fail every answer containing the word TODO: unfinished work fails."


def general_rules() -> list[Rule]:
    """A reflection model that writes instructions which generalise, and a judge that follows them."""
    return [Rule(name="reflect", last_user=REFLECTION, text=f"Better:\n```\n{GENERAL}\n```"),
            judge_says(False, when=both("Fail every answer containing the word TODO", OUTPUT_HAS_TODO))]


def overfit_rules(server: ScriptedModelServer, store: SQLiteStore) -> str:
    """A reflection model that memorises the answers of the train and validation splits, and a judge
    that follows the memorised list but gets everything else backwards. Returns the instructions."""
    golden = store.golden_set("gs")
    seen = golden.trace_ids("train") + golden.trace_ids("validation")
    fails = [f"A{int(t[1:]):02d}" for t in seen if int(t[1:]) % 2 == 0]
    passes = [f"A{int(t[1:]):02d}" for t in seen if int(t[1:]) % 2 == 1]
    memorised = (f"MEMORISED VERDICTS. Fail: {', '.join(fails)}. Pass: {', '.join(passes)}. "
                 "Anything else: judge by instinct.")
    output_is = r"## The agent's final output\nAnswer ({}):"
    server.set_rules([
        Rule(name="reflect", last_user=REFLECTION, text=f"```\n{memorised}\n```"),
        judge_says(False, when=both("MEMORISED VERDICTS", output_is.format("|".join(fails)))),
        judge_says(True, when=both("MEMORISED VERDICTS", output_is.format("|".join(passes)))),
        judge_says(True, when=both("MEMORISED VERDICTS", OUTPUT_HAS_TODO)),
        judge_says(False, when="MEMORISED VERDICTS"),
        judge_says(True)])
    return memorised


def test_gepa_end_to_end_with_a_scripted_reflection_model(world: tuple[SQLiteStore, Path],
                                                          server: ScriptedModelServer) -> None:
    from costar.align.gepa_opt import GepaOptimizer

    store, project = world
    server.set_rules([*general_rules(), judge_says(True)])
    budget = AlignBudget(max_metric_calls=40, seed=3)
    result, recorded = align_judge(store, JUDGE, GepaOptimizer(), project_dir=project, budget=budget)
    report = result.report
    assert result.new_definition.raw["instructions"] == GENERAL
    assert result.new_definition.type == "llm"
    assert report.details["best"] >= 1
    assert report.details["reflection_calls"] >= 1
    assert report.details["metric_calls"] <= 40 + 4  # GEPA may finish the iteration it is in
    assert (report.after["validation"].kappa, report.after["test"].kappa) == (1.0, 1.0)
    assert report.decision.promote
    assert recorded is not None
    assert recorded.promoted

    # The reflection model saw the expert's feedback but no trace ids.
    reflect = next(r for r in server.requests if r.rule == "reflect")
    prompt = reflect.body["messages"][-1]["content"]
    assert "Wrong: the human experts said fail" in prompt
    assert FAIL_RATIONALE in prompt
    assert "t0" not in prompt.replace("the", "")

    # Same seed, same answers: the same search (fresh meter, so judges are asked again).
    again, _ = align_judge(store, result.base_definition, GepaOptimizer(), project_dir=project, budget=budget,
                           record=False)
    assert again.report.details["candidates"] == report.details["candidates"]
    assert again.report.details["best"] == report.details["best"]


def test_gepa_overfitting_the_train_split_is_stored_but_not_promoted(world: tuple[SQLiteStore, Path],
                                                                      server: ScriptedModelServer) -> None:
    """A reflection that memorises answers: train (and the validation split GEPA selects on) go up,
    the untouched test split goes down, so the version is kept but not made active."""
    from costar.align.gepa_opt import GepaOptimizer

    store, project = world
    memorised = overfit_rules(server, store)
    result, recorded = align_judge(store, JUDGE, GepaOptimizer(), project_dir=project,
                                   budget=AlignBudget(max_metric_calls=40))
    report = result.report
    assert result.new_definition.raw["instructions"] == memorised
    assert (report.before["train"].kappa, report.after["train"].kappa) == (0.0, 1.0)
    assert (report.before["validation"].kappa, report.after["validation"].kappa) == (0.0, 1.0)
    assert (report.before["test"].kappa, report.after["test"].kappa) == (0.0, -1.0)
    assert not report.decision.promote
    assert "dropped" in report.decision.reason
    assert recorded is not None
    assert recorded.version == 2
    assert not recorded.promoted
    assert recorded.active is None
    registry = VersionRegistry(store.root, project)
    assert [v.version for v in registry.versions(JUDGE)] == [1, 2]
    assert registry.active(JUDGE) is None
    assert active_definitions(project) == []  # the project's own definition stays in use


# --------------------------------------------------------------------------- bad inputs and the rule


def test_a_judge_without_labels_is_refused(store: SQLiteStore, tmp_path: Path, server: ScriptedModelServer) -> None:
    (tmp_path / "judges").mkdir()
    (tmp_path / "judges" / "fresh.yaml").write_text(
        f"name: fresh\nmodel: '{server.model_uri()}'\ninstructions: Is it good?\n", encoding="utf-8")
    store.write_traces([Trace(trace_id="t1", output="x")])
    with pytest.raises(AlignmentError, match=r"judge 'fresh' has no human labels .*costar label fresh"):
        align_judge(store, "fresh", "memalign", project_dir=tmp_path)
    assert not (store.root / "judges").exists()
    assert server.request_count == 0


def test_a_golden_set_too_small_for_the_optimizer_says_what_each_split_needs(
        store: SQLiteStore, tmp_path: Path, server: ScriptedModelServer) -> None:
    build_world(store, tmp_path, server.model_uri(), n=8, fractions=(0.5, 0.0, 0.5))
    with pytest.raises(AlignmentError, match=r"too small for gepa: it has train 4, validation 0, test 4, and gepa "
                                             r"needs at least train 2, validation 2, test 2"):
        align_judge(store, JUDGE, "gepa", project_dir=tmp_path)
    with pytest.raises(AlignmentError, match=r"too small for memalign: .* needs at least train 6, test 2"):
        align_judge(store, JUDGE, "memalign", project_dir=tmp_path, options={"needs": _needs(6, 0, 2)})
    assert not (store.root / "judges").exists()
    assert server.request_count == 0


def test_an_unknown_gepa_candidate_selection_is_a_clear_error_before_any_judge_runs(
        world: tuple[SQLiteStore, Path], server: ScriptedModelServer) -> None:
    from costar.errors import ConfigError

    store, project = world
    with pytest.raises(ConfigError, match=r"gepa candidate_selection is 'best'; give one of pareto, current_best"):
        align_judge(store, JUDGE, "gepa", project_dir=project, options={"candidate_selection": "best"})
    assert server.request_count == 0


def _needs(train: int, validation: int, test: int) -> Any:
    from costar.align.optimize import SplitNeeds

    return SplitNeeds(train=train, validation=validation, test=test)


def test_judges_without_instructions_cannot_be_aligned(store: SQLiteStore, tmp_path: Path) -> None:
    (tmp_path / "judges").mkdir()
    (tmp_path / "judges" / "has_csv.yaml").write_text("name: has_csv\ntype: check\ncheck: {file_exists: out.csv}\n",
                                                      encoding="utf-8")
    (tmp_path / "judges" / "coded.py").write_text(
        "from costar.judges.registry import FunctionJudge\n"
        "coded = FunctionJudge(lambda ctx: True, 'coded')\n", encoding="utf-8")
    with pytest.raises(AlignmentError, match=r"'has_csv' is a 'check' judge .*only llm and agentic judges"):
        resolve_definition(tmp_path, "has_csv", store_dir=store.root)
    with pytest.raises(AlignmentError, match=r"'coded' is a Python object .*define it in YAML"):
        resolve_definition(tmp_path, "coded", store_dir=store.root)
    with pytest.raises(AlignmentError, match="unknown judge 'nope'"):
        resolve_definition(tmp_path, "nope", store_dir=store.root)
    with pytest.raises(AlignmentError, match="unknown optimizer 'dspy'"):
        align_judge(store, "has_csv", "dspy", project_dir=tmp_path)


def _agreement(kappa: float | None, accuracy: float, *, errors: int = 0, compared: int = 10,
               split: Split = "test") -> SplitAgreement:
    return SplitAgreement(split=split, examples=compared + errors, compared=compared, errors=errors,
                          kappa=kappa, accuracy=accuracy)


def test_the_promotion_rule_on_the_held_out_split() -> None:
    assert decide_promotion(_agreement(0.4, 0.7), _agreement(0.6, 0.8)).promote
    # A version that improved nothing is not promoted (issue 9, item 5): a tie everywhere is no change.
    same = {"train": _agreement(0.6, 0.8, split="train"), "test": _agreement(0.5, 0.75)}
    tie = decide_promotion(_agreement(0.5, 0.75), _agreement(0.5, 0.75), before=same, after=same)
    assert not tie.promote, tie.reason
    assert tie.reason.startswith("no change, not promoted"), tie.reason
    assert "train kappa 0.600 -> 0.600" in tie.reason
    assert not decide_promotion(_agreement(0.5, 0.75), _agreement(0.5, 0.75)).promote
    # A tie on the held-out split is not a drop when the version improved elsewhere.
    better = {"train": _agreement(0.8, 0.9, split="train"), "test": _agreement(0.5, 0.75)}
    tie_up = decide_promotion(_agreement(0.5, 0.75), _agreement(0.5, 0.75), before=same, after=better)
    assert tie_up.promote, tie_up.reason
    assert "train kappa 0.600 -> 0.800" in tie_up.reason, tie_up.reason
    drop = decide_promotion(_agreement(0.5, 0.75), _agreement(0.45, 0.9))
    assert not drop.promote
    assert drop.metric == "kappa"  # kappa decides even when accuracy rose
    # A single class on both sides leaves kappa undefined: accuracy decides.
    by_acc = decide_promotion(_agreement(None, 0.8), _agreement(None, 0.9))
    assert by_acc.promote
    assert by_acc.metric == "accuracy"
    # Errors are excluded from agreement, so more of them could flatter it: never promoted.
    flattering = decide_promotion(_agreement(0.5, 0.75), _agreement(1.0, 1.0, errors=3, compared=7))
    assert not flattering.promote
    assert "3 test examples" in flattering.reason
    empty = decide_promotion(_agreement(0.5, 0.75), SplitAgreement(split="test", examples=4, errors=4))
    assert not empty.promote
