"""Export and import through the CLI: lossless round trips, real public data, bad files."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from costar.store.sqlite import SQLiteStore
from tests.support.cli import child_env, costar_cmd
from tests.support.paths import EXTERNAL


def costar(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*costar_cmd(), *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env=child_env())


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    proj = tmp_path_factory.mktemp("proj")
    (proj / "agent.py").write_text(textwrap.dedent("""
        import sys
        from costar.trace import SpanKind, span
        from costar.trace.export import harness_recording
        prompt = sys.stdin.read()
        with harness_recording("echo") as rec:
            with span("execute_tool write", SpanKind.TOOL, {"gen_ai.tool.name": "write",
                                                            "gen_ai.tool.call.arguments": {"path": "out.bin"}}):
                open("out.bin", "wb").write(bytes(range(256)) * 4)
        print("wrote out.bin for " + prompt)
        """))
    (proj / "suite.yaml").write_text(textwrap.dedent("""
        id: export-me
        prompt: "ünïcode prompt"
        trials: 2
        expectations:
          checks: [{file_exists: out.bin}, {tool_called: write}]
        """))
    (proj / "costar.yaml").write_text(f"suite: suite.yaml\nagent:\n  type: command\n  command: [{json.dumps(sys.executable)}, agent.py]\n")
    res = costar("run", cwd=proj)
    assert res.returncode == 0, res.stdout + res.stderr
    return proj


@pytest.mark.parametrize("fmt", ["jsonl", "otlp-json"])
def test_export_import_round_trip_is_lossless(recorded: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"export.{fmt}"
    res = costar("traces", "export", "latest", "--format", fmt, "-o", str(out), cwd=recorded)
    assert res.returncode == 0, res.stderr
    other = tmp_path / "other"
    other.mkdir()
    imp = costar("traces", "import", str(out), cwd=other)
    assert imp.returncode == 0, imp.stderr
    src, dst = SQLiteStore(recorded / ".costar"), SQLiteStore(other / ".costar")
    run_id = src.resolve_run_id("latest")
    originals = list(src.iter_traces(run_id))
    copies = {t.trace_id: t for t in dst.iter_traces(run_id)}
    assert len(originals) == 2
    assert set(copies) == {t.trace_id for t in originals}
    for t in originals:
        assert copies[t.trace_id] == t
        art = t.artifact("out.bin")
        assert dst.get_blob(art.sha256) == bytes(range(256)) * 4
    # the imported run re-scores like the original
    bare = costar("assess", run_id, "--store", str(other / ".costar"), cwd=recorded)
    assert bare.returncode == 1
    assert "no definition for scenarios ['export-me']" in bare.stderr
    again = costar("assess", run_id, "--store", str(other / ".costar"), "--suite", "suite.yaml", cwd=recorded)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "6 verdicts computed" in again.stdout, again.stdout + again.stderr
    dup = costar("traces", "import", str(out), cwd=other)
    assert dup.returncode == 2
    assert "already in the store" in dup.stderr


def test_export_to_stdout(recorded: Path) -> None:
    res = costar("traces", "export", "latest", "--format", "jsonl", cwd=recorded)
    lines = [json.loads(x) for x in res.stdout.splitlines() if x.strip()]
    assert res.returncode == 0
    assert len(lines) == 2


def test_import_tau_bench_and_report_pass_hat_k(tmp_path: Path) -> None:
    res = costar("traces", "import", str(EXTERNAL / "tau-bench" / "gpt-4o-airline.json"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "imported 200 traces (tau-bench)" in res.stdout
    assert "200 verdicts" in res.stdout
    rep = costar("report", "latest", "--junit", "tau.xml", cwd=tmp_path)
    assert rep.returncode == 1  # many tau-bench runs failed
    raw = json.loads((EXTERNAL / "tau-bench" / "gpt-4o-airline.json").read_text())
    passes = sum(1 for r in raw if r["reward"] == 1.0)
    assert f"{passes}/200 trials passed" in rep.stdout.replace("\n", " "), rep.stdout
    assert re.search(r"pass\^k\s+k=1 .*k=4 ", rep.stdout.replace("\n", " ")), rep.stdout  # the whole curve


@pytest.mark.parametrize("name", ["swe-agent/pydicom__pydicom-1458.traj", "swe-agent/function_calling_simple.traj",
                                  "openinference/openinference_client_span_tool_calls.json"])
def test_import_public_formats(tmp_path: Path, name: str) -> None:
    src = tmp_path / Path(name).name
    shutil.copy(EXTERNAL / name, src)
    res = costar("traces", "import", str(src), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    listing = costar("traces", "list", "latest", cwd=tmp_path)
    assert listing.returncode == 0
    assert "ok" in listing.stdout


def test_bad_import_files_give_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "garbage.json").write_text('{"hello": "world"}')
    (tmp_path / "broken.json").write_text('{"resourceSpans": [')
    for f in ("garbage.json", "broken.json", "missing.json"):
        res = costar("traces", "import", f, cwd=tmp_path)
        assert res.returncode == 2, res.stdout
        assert res.stderr.startswith("error: "), res.stderr
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / ".costar").exists() or SQLiteStore(tmp_path / ".costar").list_runs() == []
