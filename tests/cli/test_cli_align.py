"""costar judges align/versions/rollback through the CLI, and the aligned version in `costar assess`."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from costar.align.versions import VersionRegistry
from costar.store.base import Run
from costar.store.sqlite import SQLiteStore
from costar.testing import Rule
from tests.align.test_align_optimizers import GUIDELINE, JUDGE, OUTPUT_HAS_TODO, both, build_world, judge_says
from tests.support.cli import costar as run_costar


def costar(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_costar(*args, cwd=cwd, timeout=300)


def aligned_world(tmp_path: Path, scripted_model_server: Any) -> SQLiteStore:
    """The optimizers' world with its judge aligned by MemAlign through the CLI (and promoted)."""
    server = scripted_model_server([Rule(name="distil", system="distil the judgment", json={"guidelines": [GUIDELINE]}),
                                    judge_says(False, when=both(GUIDELINE, OUTPUT_HAS_TODO)), judge_says(True)])
    store = SQLiteStore(tmp_path / ".costar")
    build_world(store, tmp_path, server.model_uri())
    res = costar("judges", "align", JUDGE, "--optimizer", "memalign", "--embedder", "hashing", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "promoted: it is now the active version" in res.stdout, res.stdout + res.stderr
    return store


def test_align_promote_rollback_and_assess_with_the_active_version(tmp_path: Path, scripted_model_server: Any) -> None:
    store = aligned_world(tmp_path, scripted_model_server)
    versions = costar("judges", "versions", JUDGE, cwd=tmp_path)
    assert versions.returncode == 0, versions.stdout
    assert "*" in versions.stdout, versions.stdout
    assert "v2" in versions.stdout.replace(" ", ""), versions.stdout
    diff = costar("judges", "diff", JUDGE, "1", "2", cwd=tmp_path)
    assert diff.returncode == 0, diff.stderr
    assert diff.stdout.count("--- v1") == 1, diff.stdout
    assert diff.stdout.count("+++ v2") == 1, diff.stdout  # printed once

    # The registry now resolves the judge to the aligned version: it judges stored traces correctly.
    run = Run(run_id="20990101-000000-aaaaaa")
    store.create_run(run)
    todo = store.get_trace("t00")
    store.write_trace(todo.model_copy(update={"trace_id": "z" * 32, "run_id": run.run_id, "scenario_id": "s"}))
    (tmp_path / "suite.yaml").write_text(f"id: s\nprompt: x\njudges: [{JUDGE}]\nexpectations: {{require_completion: false}}\n")
    scored = costar("assess", run.run_id, "--suite", "suite.yaml", cwd=tmp_path)
    assert scored.returncode == 1, scored.stdout + scored.stderr  # the aligned judge fails the TODO answer
    [verdict] = [v for v in store.verdicts(run_id=run.run_id) if v.name == JUDGE]
    assert verdict.passed is False
    assert verdict.fingerprint == VersionRegistry(store.root, tmp_path).active(JUDGE).fingerprint

    back = costar("judges", "rollback", JUDGE, cwd=tmp_path)
    assert back.returncode == 0, back.stdout + back.stderr
    assert "project definition" in back.stdout, back.stdout + back.stderr
    rescored = costar("assess", run.run_id, cwd=tmp_path)
    assert rescored.returncode == 0, rescored.stdout  # the unaligned judge passes everything again


def test_a_promoted_version_keeps_the_files_floor_and_says_which_version_is_active(
        tmp_path: Path, scripted_model_server: Any) -> None:
    """Issue 9, item 5: the version owns its instructions (and memory); the floor, added to the file
    after the promotion, still gates, and an edit of what the version owns is reported, not lost."""
    import json

    aligned_world(tmp_path, scripted_model_server)

    yaml_file = tmp_path / "judges" / f"{JUDGE}.yaml"
    yaml_file.write_text(yaml_file.read_text() + "agreement_floor: {metric: kappa, min: 0.9, golden: gs}\n")
    check = costar("judges", "check", "--json", cwd=tmp_path)
    assert "nothing to check" not in check.stdout, check.stdout
    [result] = json.loads(check.stdout)["results"]
    assert (result["floor"]["name"], result["floor"]["min"], result["floor"]["golden"]) == (JUDGE, 0.9, "gs")
    assert "uses aligned version v2 (memalign" in check.stderr, check.stderr
    assert "agreement_floor from the file applies" in check.stderr, check.stderr
    listed = costar("judges", "list", "--json", cwd=tmp_path)
    [info] = [i for i in json.loads(listed.stdout)["judges"] if i["name"] == JUDGE]
    assert info["type"] == "memalign"
    assert info["agreement_floor"]["min"] == 0.9
    assert info["notes"]
    assert "v2" in info["notes"][0]
    assert f"note: {info['notes'][0]}" in listed.stderr, listed.stderr  # said on stderr too, as judges check does

    # Instructions edited after the promotion: the version keeps its own, and says so.
    yaml_file.write_text(yaml_file.read_text().replace("complete and acceptable", "acceptable"))
    edited = costar("judges", "check", "--json", cwd=tmp_path)
    assert "its instructions stay v2's, not the file's" in edited.stderr, edited.stderr
    assert f"costar judges deactivate {JUDGE}" in edited.stderr
    # Back to the file: no version, no note, the file's floor.
    assert costar("judges", "deactivate", JUDGE, cwd=tmp_path).returncode == 0
    plain = costar("judges", "check", "--json", cwd=tmp_path)
    assert "note:" not in plain.stderr
    assert json.loads(plain.stdout)["results"][0]["floor"]["min"] == 0.9
