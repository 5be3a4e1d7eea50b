"""Setup files come from the project folder (the one holding costar.yaml) unless a scenario opts out;
symlinks never lead out of it; only what the agent produced or changed is stored."""

from __future__ import annotations

import asyncio
import os
import textwrap
from pathlib import Path

import pytest

from costar.errors import ScenarioError
from costar.run.agents import make_agent
from costar.run.harness import Harness, HarnessOptions
from costar.scenario import load_scenario_file
from costar.store.base import Run
from costar.store.sqlite import SQLiteStore
from costar.trace.model import Trace
from tests.support.cli import costar


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "scenarios").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "data" / "in.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    (root / "costar.yaml").write_text("suite: scenarios\n", encoding="utf-8")
    (tmp_path / "outside.txt").write_text("not yours", encoding="utf-8")
    return root


def scenario_file(proj: Path, setup: str) -> Path:
    path = proj / "scenarios" / "s.yaml"
    path.write_text("id: s\nprompt: go\nsetup:\n" + textwrap.indent(textwrap.dedent(setup), "  "), encoding="utf-8")
    return path


@pytest.mark.parametrize("src", ["../../outside.txt", "/etc/hostname", "../etc-link", "../outside-link.txt"])
def test_setup_paths_outside_the_project_are_refused(proj: Path, src: str) -> None:
    os.symlink("/etc", proj / "etc-link")
    os.symlink(proj.parent / "outside.txt", proj / "outside-link.txt")
    if src == "/etc/hostname" and not Path(src).exists():
        pytest.skip("no /etc/hostname here")
    path = scenario_file(proj, f"files: [{src}]\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario_file(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}:4: field 'setup.files[0]': setup file {src!r} is ")
    assert f"outside the project folder {proj.resolve()}" in msg
    assert "allow_outside_project: true" in msg
    res = costar("scenarios", cwd=proj)
    assert res.returncode == 2
    assert "outside the project folder" in res.stderr
    assert "Traceback" not in res.stderr


def run_trial(proj: Path, path: Path, code: str = "") -> Trace:
    (proj / "agent_mod.py").write_text(textwrap.dedent(f"""
        def run(task):
            {code or "pass"}
            return "ok"
        """), encoding="utf-8")
    import sys

    sys.path.insert(0, str(proj))
    try:
        agent = make_agent({"type": "python", "target": "agent_mod:run"})
        store = SQLiteStore(proj / ".costar")
        run = Run(agent=agent.info)
        store.create_run(run)
        res = asyncio.run(Harness(agent, store, HarnessOptions()).run(load_scenario_file(path), run))
        return store.get_trace(res.trace_ids[0])
    finally:
        sys.path.remove(str(proj))
        sys.modules.pop("agent_mod", None)


def test_symlinks_inside_a_copied_folder_never_lead_out(proj: Path) -> None:
    os.symlink(proj.parent / "outside.txt", proj / "data" / "leak.txt")
    os.symlink("/etc", proj / "data" / "etc")
    os.symlink(proj / "data" / "in.csv", proj / "data" / "alias.csv")  # inside: its content is copied
    os.symlink(proj / "data", proj / "data" / "loop")
    path = scenario_file(proj, "files: [{src: ../data, dest: d}]\n")
    t = run_trial(proj, path, "import os; seen = sorted(os.listdir(task.workspace / 'd')); "
                              "(task.workspace / 'listing.txt').write_text(' '.join(seen))")
    arts = {a.path: a for a in t.artifacts}
    store = SQLiteStore(proj / ".costar")
    assert store.get_blob(arts["listing.txt"].sha256).decode().split() == ["alias.csv", "in.csv"]
    notes = " ".join(t.metadata["artifact_notes"])
    assert "leak.txt" in notes
    assert "etc" in notes
    assert "points outside the project folder" in notes
    assert "links back to a folder" in notes


def test_only_what_the_agent_produced_or_changed_is_stored(proj: Path) -> None:
    path = scenario_file(proj, "files: [../data/in.csv, {dest: notes.md, content: inline}]\n")
    t = run_trial(proj, path, "(task.workspace / 'out.txt').write_text('made'); "
                              "(task.workspace / 'notes.md').write_text('edited')")
    arts = {a.path: a.origin for a in t.artifacts}
    assert arts == {"out.txt": "agent", "notes.md": "agent"}  # in.csv was left as it was
    assert any("1 setup file left unchanged by the agent was not stored" in n for n in t.metadata["artifact_notes"])
    kept = scenario_file(proj, "files: [../data/in.csv]\nstore_inputs: true\n")
    t = run_trial(proj, kept)
    assert {a.path: a.origin for a in t.artifacts} == {"in.csv": "setup"}


def test_a_scenario_may_opt_out_explicitly(proj: Path) -> None:
    path = scenario_file(proj, "files: [../../outside.txt]\nallow_outside_project: true\nstore_inputs: true\n")
    t = run_trial(proj, path)
    art = t.artifact("outside.txt")
    assert art is not None
    assert SQLiteStore(proj / ".costar").get_blob(art.sha256) == b"not yours"
