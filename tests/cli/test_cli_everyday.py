"""Everyday use of the CLI as a user pipes it (as CI does): 80 columns, whole ids that paste back,
one progress line per finished scenario, and JSON that parses with whole ids.

Behaviour, not layout: nothing here pins where a column sits.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from costar.views import VIEWS, ComparisonView, JudgeList, MetricsView, RunList, RunReport, TraceDetail, TraceList
from tests.support.cli import child_env, costar_cmd

LONG_ID = "impute-missing-values-in-the-quarterly-revenue-table"

AGENT = """
    import pathlib, sys
    prompt = sys.stdin.read()
    pathlib.Path("notes.txt").write_text("line one\\n\\x1b[2Jline two\\n" + "x" * 50 + "\\n")
    if "crash" in prompt:
        sys.stderr.write("Error: Cannot find module 'left-pad'\\n" + "    at frame\\n" * 40 + "Node.js v20.20.2\\n")
        sys.exit(1)
    print("total: 42 USD" if "total" in prompt else "done")
"""

SUITE = f"""
scenarios:
  - id: {LONG_ID}
    prompt: total please
    trials: 3
    expectations:
      checks:
        - output_contains: "total: 42"
        - csv: {{file: revenue_quarterly_clean.csv, columns: [quarter, revenue, region, currency], min_rows: 4}}
          gate: false
        - file_contains: {{file: notes.txt, value: "line one"}}
  - id: crashes
    prompt: crash now
    trials: 2
    expectations:
      checks:
        - output_contains: never
"""


def costar(*args: str, cwd: Path, columns: int = 80, ci: str = "") -> subprocess.CompletedProcess[str]:
    # CI is set explicitly: a run's origin is 'ci' inside a CI job, 'cli' otherwise.
    return subprocess.run([*costar_cmd(), *args], cwd=cwd, capture_output=True, text=True, timeout=180,
                          env=child_env(COLUMNS=str(columns), CI=ci))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("everyday")
    (root / "agent.py").write_text(textwrap.dedent(AGENT))
    (root / "suite.yaml").write_text(SUITE)
    (root / "costar.yaml").write_text(
        f"suite: suite.yaml\nconcurrency: 2\nagent:\n  type: command\n  command: [{json.dumps(sys.executable)}, agent.py]\n")
    for _ in range(2):
        res = costar("run", cwd=root)
        assert res.returncode == 1, res.stdout + res.stderr
    return root


def _runs(project: Path) -> list[str]:
    listing = RunList.model_validate_json(costar("runs", "--json", cwd=project).stdout)
    return [r.run_id for r in listing.runs]


def test_progress_when_piped_is_one_line_per_finished_scenario(tmp_path: Path) -> None:
    (tmp_path / "agent.py").write_text(textwrap.dedent(AGENT))
    (tmp_path / "suite.yaml").write_text(SUITE)
    (tmp_path / "costar.yaml").write_text(
        f"suite: suite.yaml\nagent:\n  type: command\n  command: [{json.dumps(sys.executable)}, agent.py]\n")
    res = costar("run", cwd=tmp_path)
    lines = [line for line in res.stderr.splitlines() if "trials passed" in line]
    assert len(lines) == 2, res.stderr
    assert any(LONG_ID in line and "3/3 trials passed" in line for line in lines)
    assert any("crashes" in line and "0/2 trials passed" in line for line in lines)
    assert "\x1b[" not in res.stderr + res.stdout
    quiet = costar("run", "--no-progress", cwd=tmp_path, ci="true")
    assert "trials passed" not in quiet.stderr
    # A run inside a CI job says so.
    assert [r.origin for r in RunList.model_validate_json(costar("runs", "--json", cwd=tmp_path).stdout).runs] == \
        ["ci", "cli"]


def test_report_reads_at_80_columns(project: Path) -> None:
    res = costar("report", cwd=project)
    assert res.returncode == 1
    lines = res.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, "\n".join(line for line in lines if len(line) > 80)
    # The scenario id is whole, on one line; the long check is shortened in the judge table.
    assert any(LONG_ID in line for line in lines)
    judge_rows = [line for line in lines if line.startswith("csv(")]
    assert judge_rows
    assert all(len(line) <= 80 for line in judge_rows)
    assert 'csv(file="revenue_quarterly_clean.csv", …)' in res.stdout
    # The full text is one flag away.
    full = costar("report", "--full", cwd=project, columns=200)
    assert 'csv(file="revenue_quarterly_clean.csv", columns=["quarter", "revenue", "region", "curre…, min_rows=4)' \
        in full.stdout
    # The whole pass^k and pass@k curves, k = 1..3.
    assert re.search(r"pass\^k\s+k=1 \S+ · k=2 \S+ · k=3 ", res.stdout), res.stdout
    assert re.search(r"pass@k\s+k=1 \S+ · k=2 \S+ · k=3 ", res.stdout), res.stdout


def test_compare_and_metrics_read_at_80_columns(project: Path) -> None:
    base, head = _runs(project)[1], _runs(project)[0]
    for args in (("compare", base, head), ("metrics", head)):
        res = costar(*args, cwd=project)
        lines = res.stdout.splitlines()
        assert res.returncode in (0, 1), res.stderr
        assert lines, res.stderr
        assert max(len(line) for line in lines) <= 80, "\n".join(line for line in lines if len(line) > 80)
        assert any(LONG_ID in line for line in lines), res.stdout  # the id whole, on one line
        assert "…" not in "".join(line for line in lines if LONG_ID in line)


def test_a_crashed_agent_keeps_the_cause_and_the_end_of_its_stderr(project: Path) -> None:
    res = costar("report", cwd=project)
    text = " ".join(res.stdout.split())
    assert "Cannot find module 'left-pad'" in text, res.stdout
    assert "Node.js v20.20.2" in text


def test_runs_show_whole_ids_that_paste_back(project: Path) -> None:
    res = costar("runs", cwd=project)
    assert res.returncode == 0, res.stderr
    ids = re.findall(r"\b\d{8}-\d{6}-[0-9a-f]{6}\b", res.stdout)
    assert len(ids) == 2
    assert "…" not in res.stdout
    assert max(len(line) for line in res.stdout.splitlines()) <= 80
    for run_id in ids:
        pasted = costar("report", run_id, cwd=project)
        assert pasted.returncode == 1, pasted.stderr
        assert run_id in pasted.stdout, pasted.stderr
    wide = costar("runs", cwd=project, columns=160)
    assert "cli" in wide.stdout
    assert "3/5" in wide.stdout  # origin and trials


def test_trace_ids_are_whole_and_any_unique_prefix_works(project: Path) -> None:
    res = costar("traces", "list", cwd=project)
    ids = re.findall(r"\b[0-9a-f]{32}\b", res.stdout)
    assert len(ids) == 5, res.stdout
    assert "…" not in res.stdout, res.stdout
    shown = costar("traces", "show", ids[0], cwd=project)
    assert shown.returncode == 0
    assert ids[0] in shown.stdout
    prefix = costar("traces", "show", ids[0][:10], cwd=project)
    assert prefix.returncode == 0
    assert ids[0] in prefix.stdout
    unknown = costar("traces", "show", "ffffffffff0", cwd=project)
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("error: no trace 'ffffffffff0'")
    assert "traces list" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1


def test_traces_show_prints_span_facts_and_text_artifacts_escaped(project: Path) -> None:
    listing = TraceList.model_validate_json(costar("traces", "list", "--json", cwd=project).stdout)
    trace = next(t for t in listing.traces if t.scenario_id == LONG_ID)
    res = costar("traces", "show", trace.trace_id, "--attributes", cwd=project, columns=200)
    assert res.returncode == 0, res.stderr
    assert "notes.txt" in res.stdout
    assert "line one" in res.stdout
    assert "\\x1b[2Jline two" in res.stdout  # the escape shown, not sent to the terminal
    assert "\x1b" not in res.stdout
    assert "process.exit_code = 0" in res.stdout  # an attribute of the command span
    bounded = costar("traces", "show", trace.trace_id, "--artifact-chars", "12", cwd=project)
    assert "line two" not in bounded.stdout
    assert "line one" in bounded.stdout


def test_every_json_view_parses_and_holds_whole_ids(project: Path) -> None:
    base, head = _runs(project)[1], _runs(project)[0]
    traces = TraceList.model_validate_json(costar("traces", "list", head, "--json", cwd=project).stdout)
    assert traces.schema_version == 1
    assert traces.kind == "traces"
    assert traces.run_id == head
    assert all(re.fullmatch(r"[0-9a-f]{32}", t.trace_id) for t in traces.traces)
    detail = TraceDetail.model_validate_json(
        costar("traces", "show", traces.traces[0].trace_id[:8], "--json", cwd=project).stdout)
    assert detail.trace_id == traces.traces[0].trace_id
    assert detail.spans
    assert detail.spans[0].attributes is not None
    assert {a.path for a in detail.artifacts} >= {"notes.txt"}
    report = RunReport.model_validate_json(costar("report", head, "--json", cwd=project).stdout)
    assert report.kind == "report"
    assert report.run_id == head
    assert report.origin == "cli"
    assert {t.trace_id for t in report.trials()} == {t.trace_id for t in traces.traces}
    judges = JudgeList.model_validate_json(costar("judges", "list", "--json", cwd=project).stdout)
    assert "outcome" in {j.name for j in judges.judges}
    metrics = MetricsView.model_validate_json(costar("metrics", head, "--json", cwd=project).stdout)
    assert metrics.run_id == head
    compared = costar("compare", base, head, "--json", cwd=project)
    comparison = ComparisonView.model_validate_json(compared.stdout)
    assert (comparison.base_run_id, comparison.head_run_id) == (base, head)
    runs = RunList.model_validate_json(costar("runs", "--json", cwd=project).stdout)
    assert [r.run_id for r in runs.runs] == [head, base]
    row = runs.runs[0]
    assert (row.origin, row.trials, row.passed, row.failed) == ("cli", 5, 3, 2)
    # Every view starts with its schema version and kind, and every kind is distinct.
    for text in (compared.stdout, costar("runs", "--json", cwd=project).stdout):
        assert list(json.loads(text))[:2] == ["schema_version", "kind"]
    assert len({v.kind_name for v in VIEWS}) == len(VIEWS)
