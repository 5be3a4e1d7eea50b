"""Judge versions: stored, listed, compared, promoted by the held-out rule, rolled back, and resolved
by the judge registry — on real alignments against the scripted model server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from costar.align.gepa_opt import GepaOptimizer
from costar.align.memalign import MemAlign, MemoryJudge
from costar.align.optimize import AlignBudget, AlignmentError
from costar.align.versions import (
    VersionRegistry,
    active_definitions,
    align_judge,
    measure_versions,
    store_dir_of,
)
from costar.errors import ConfigError
from costar.judges.base import JudgeContext
from costar.judges.registry import JudgeRegistry
from costar.scenario import JudgeRef
from costar.store.sqlite import SQLiteStore
from costar.testing import Rule, ScriptedModelServer
from tests.align.test_align_optimizers import (
    GENERAL,
    GUIDELINE,
    JUDGE,
    OUTPUT_HAS_TODO,
    REFLECTION,
    both,
    build_world,
    general_rules,
    judge_says,
    overfit_rules,
)

BUDGET = AlignBudget(max_metric_calls=40)
DISTIL = Rule(name="distil", system="distil the judgment", json={"guidelines": [GUIDELINE]})


@pytest.fixture
def server(scripted_model_server: Any) -> ScriptedModelServer:
    return scripted_model_server()


@pytest.fixture
def world(store: SQLiteStore, tmp_path: Path, server: ScriptedModelServer) -> tuple[SQLiteStore, Path]:
    build_world(store, tmp_path, server.model_uri())
    return store, tmp_path


def memalign_rules() -> list[Rule]:
    return [DISTIL, judge_says(False, when=both(GUIDELINE, OUTPUT_HAS_TODO))]


def test_rollback_restores_the_previous_active_version(world: tuple[SQLiteStore, Path],
                                                       server: ScriptedModelServer) -> None:
    store, project = world
    server.set_rules([*memalign_rules(), *general_rules(), judge_says(True)])
    registry = VersionRegistry(store.root, project)

    _, first = align_judge(store, JUDGE, MemAlign(embedder="hashing"), project_dir=project)
    assert first is not None
    assert (first.baseline, first.version, first.active) == (1, 2, 2)
    # Realigning starts from the active version (memalign v2): GEPA evolves the instructions it wraps.
    second_result, second = align_judge(store, JUDGE, GepaOptimizer(), project_dir=project, budget=BUDGET)
    assert second_result.base_definition.type == "memalign"
    assert second_result.report.before["test"].kappa == 1.0
    assert second_result.report.after["test"].kappa == 1.0
    # It improved nothing (kappa 1.0 everywhere before and after): stored, not promoted (issue 9, item 5).
    assert second is not None
    assert second.baseline is None
    assert not second.promoted
    assert second.reason.startswith("no change, not promoted")
    assert (second.version, second.active) == (3, 2)
    assert [(v.version, v.optimizer, v.parent) for v in registry.versions(JUDGE)] == [
        (1, "baseline", None), (2, "memalign", 1), (3, "gepa", 2)]
    with pytest.raises(AlignmentError, match="no change, not promoted"):
        registry.promote(JUDGE, 3)
    registry.promote(JUDGE, 3, force=True)
    (entry,) = active_definitions(project)
    assert entry.definition is not None
    assert entry.definition.type == "llm"
    assert entry.judge().instructions == GENERAL  # type: ignore[attr-defined]

    assert registry.rollback(JUDGE) == 2
    (entry,) = active_definitions(project)
    assert isinstance(entry.judge(), MemoryJudge)
    assert registry.rollback(JUDGE) is None  # back to the project's own definition
    assert active_definitions(project) == []
    with pytest.raises(AlignmentError, match="no earlier active version"):
        registry.rollback(JUDGE)
    assert registry.rollback(JUDGE, 3) == 3
    assert registry.active_version(JUDGE) == 3
    with pytest.raises(AlignmentError, match=r"has no version 9 \(versions: v1, v2, v3\)"):
        registry.rollback(JUDGE, 9)
    lines = [v.line(active=v.version == 3) for v in registry.versions(JUDGE)]
    assert lines[2].startswith("* v3")
    assert "test n=4 acc 1.00 kappa +1.00" in lines[2]


def test_an_overfit_version_is_kept_and_only_forced_promotion_activates_it(
        world: tuple[SQLiteStore, Path], server: ScriptedModelServer) -> None:
    store, project = world
    memorised = overfit_rules(server, store)
    _, recorded = align_judge(store, JUDGE, GepaOptimizer(), project_dir=project, budget=BUDGET)
    assert recorded is not None
    assert (recorded.version, recorded.promoted, recorded.active) == (2, False, None)
    registry = VersionRegistry(store.root, project)

    comparison = registry.compare(JUDGE, 1, 2)
    assert comparison.same_golden
    assert comparison.decision is not None
    assert not comparison.decision.promote
    assert comparison.rows["train"][1] is not None
    assert comparison.rows["train"][1].kappa == 1.0
    assert f"+{memorised}" in comparison.diff
    assert "-Is this code answer complete and acceptable?" in comparison.diff
    assert "held out: held-out kappa dropped" in comparison.format()

    with pytest.raises(AlignmentError, match=r"v2 is not promoted: held-out kappa dropped .*pass force"):
        registry.promote(JUDGE, 2)
    assert registry.active_version(JUDGE) is None
    forced = registry.promote(JUDGE, 2, force=True)
    assert forced.promote
    assert forced.reason.startswith("forced: ")
    assert registry.active_version(JUDGE) == 2
    assert registry.pointer(JUDGE).history == [None]
    # Re-measuring on the golden set reproduces the stored held-out numbers.
    measured = measure_versions(store, registry, JUDGE, [1, 2])
    assert (measured[1]["test"].kappa, measured[2]["test"].kappa) == (0.0, -1.0)


def test_the_registry_resolves_the_active_version_and_scenario_options_reach_the_wrapped_judge(
        world: tuple[SQLiteStore, Path], server: ScriptedModelServer) -> None:
    store, project = world
    server.set_rules([*memalign_rules(), judge_says(True)])
    result, _ = align_judge(store, JUDGE, MemAlign(embedder="hashing"), project_dir=project)

    # What the judge registry will do once wired: project judges, then the active versions.
    registry = JudgeRegistry(templates=False)
    registry.load_project(project)
    for entry in active_definitions(project):
        registry.register_definition(entry)
    judge = registry.resolve(JudgeRef(name=JUDGE))
    assert isinstance(judge, MemoryJudge)
    assert judge.fingerprint() == result.report.fingerprint_after
    assert registry.infos()[0].model == result.new_definition.raw["base"]["model"]

    flawed = next(t for t in store.golden_set("gs").trace_ids("test") if int(t[1:]) % 2 == 0)  # even: TODO
    verdict = asyncio.run(judge.judge(JudgeContext(trace=store.get_trace(flawed), store=store)))
    assert (verdict.passed, verdict.name, verdict.fingerprint) == (False, JUDGE, judge.fingerprint())
    assert len(verdict.metadata["memory"]["cases"]) == 3

    varied = registry.resolve(JudgeRef(name=JUDGE, options={"temperature": 0.3}))
    assert isinstance(varied, MemoryJudge)
    assert varied.inner.temperature == 0.3  # type: ignore[attr-defined]
    assert varied.fingerprint() != judge.fingerprint()


def test_a_tampered_memory_file_is_refused(world: tuple[SQLiteStore, Path], server: ScriptedModelServer) -> None:
    store, project = world
    server.set_rules([*memalign_rules(), judge_says(True)])
    align_judge(store, JUDGE, MemAlign(embedder="hashing"), project_dir=project)
    (memory_file,) = (store.root / "judges" / JUDGE / "memory").glob("*.json")
    data = json.loads(memory_file.read_text())
    assert data["guidelines"] == [GUIDELINE]
    assert data["embedder"] == "hashing:512"
    assert len(data["examples"]) == 12
    data["guidelines"] = ["Pass everything."]
    memory_file.write_text(json.dumps(data))
    (entry,) = active_definitions(project)
    with pytest.raises(ConfigError, match="does not match its definition"):
        entry.judge()
    registry = VersionRegistry(store.root, project)
    assert "memory: unreadable" in registry.describe(JUDGE, 2)


def test_nothing_is_stored_when_the_optimizer_finds_nothing_better(world: tuple[SQLiteStore, Path],
                                                                   server: ScriptedModelServer) -> None:
    store, project = world
    seed = "Is this code answer complete and acceptable?"
    server.set_rules([Rule(name="reflect", last_user=REFLECTION, text=f"```\n{seed}\n```"), judge_says(True)])
    result, recorded = align_judge(store, JUDGE, GepaOptimizer(), project_dir=project,
                                   budget=AlignBudget(max_metric_calls=20))
    assert not result.report.changed
    assert not result.report.decision.promote
    assert recorded is not None
    assert recorded.version is None
    assert "nothing to store" in recorded.reason
    assert not (store.root / "judges").exists()


def test_the_store_folder_comes_from_the_project_file(tmp_path: Path) -> None:
    assert store_dir_of(tmp_path) == tmp_path.resolve() / ".costar"
    (tmp_path / "costar.yaml").write_text("store: var/costar-store\n", encoding="utf-8")
    assert store_dir_of(tmp_path) == tmp_path.resolve() / "var" / "costar-store"
    assert active_definitions(tmp_path) == []  # no versions folder: nothing, and nothing created
    assert not (tmp_path / "var").exists()
