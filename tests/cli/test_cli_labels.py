"""Labels and golden sets from the command line, on the real tau-bench traces."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

from costar.store.sqlite import SQLiteStore
from tests.support.cli import child_env, costar_cmd, one_line_error
from tests.support.paths import EXTERNAL


def costar(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*costar_cmd(), *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env=child_env(), input=stdin)


def test_label_import_export_terminal_and_golden(tmp_path: Path) -> None:
    assert costar("traces", "import", str(EXTERNAL / "tau-bench" / "gpt-4o-airline.json"), cwd=tmp_path).returncode == 0
    st = SQLiteStore(tmp_path / ".costar")
    verdicts = st.verdicts(run_id=st.resolve_run_id("latest"))
    # a human labels every run like the benchmark's reward would, except three disagreements
    rows = [{"trace_id": v.trace_id, "name": "tau-bench.reward", "value": str(v.passed if i >= 3 else not v.passed).lower(),
             "labeler": "ann", "rationale": "checked the booking"} for i, v in enumerate(verdicts)]
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    res = costar("labels", "import", "labels.csv", "--type", "bool", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "200 labels written" in res.stdout, res.stdout + res.stderr
    again = costar("labels", "import", "labels.csv", "--type", "bool", cwd=tmp_path)
    assert "200 unchanged" in again.stdout
    conflict = tmp_path / "conflict.csv"
    conflict.write_text(f"trace_id,name,value,labeler\n{rows[5]['trace_id']},tau-bench.reward,"
                        f"{'false' if rows[5]['value'] == 'true' else 'true'},ann\n")
    bad = costar("labels", "import", str(conflict), "--type", "bool", cwd=tmp_path)
    assert bad.returncode == 2
    assert "conflict" in bad.stderr.lower()
    assert len(bad.stderr.strip().splitlines()) == 1
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("trace_id,name,value,labeler\nnope,tau-bench.reward,true,ann\n")
    assert costar("labels", "import", str(unknown), cwd=tmp_path).returncode == 2
    # a second labeler in the terminal: pass, fail, then quit
    term = costar("label", "tau-bench.reward", "--labeler", "bob", cwd=tmp_path, stdin="p\nlooks right\nf\n\nq\n")
    assert term.returncode == 0, term.stdout + term.stderr
    assert len(st.labels(name="tau-bench.reward", labeler="bob")) == 2
    assert costar("labels", "export", "out.jsonl", "--labeler", "bob", cwd=tmp_path).stdout.startswith("exported 2")
    gs = costar("golden", "create", "airline", "tau-bench.reward", "--labeler", "ann", "--seed", "7", cwd=tmp_path)
    assert gs.returncode == 0, gs.stdout + gs.stderr
    assert "train" in gs.stdout, gs.stdout + gs.stderr
    assert "test" in gs.stdout, gs.stdout + gs.stderr
    first = st.golden_set("airline")
    # The four trials of each tau-bench task stay in one split (issue 9, item 6), and --traces shows where.
    task_of = {t.trace_id: t.scenario_id for t in st.get_traces(first.trace_ids(), spans=False)}
    splits_of_task: dict[str, set[str]] = {}
    for e in first.examples:
        splits_of_task.setdefault(str(task_of[e.trace_id]), set()).add(e.split)
    assert len(splits_of_task) > 10
    assert all(len(s) == 1 for s in splits_of_task.values())
    shown = costar("golden", "show", "airline", "--traces", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert first.trace_ids("test")[0] in shown.stdout
    assert "warning" not in shown.stdout
    removed = first.trace_ids("test")[0]
    assert costar("golden", "remove", "airline", removed, cwd=tmp_path).returncode == 0
    diff = costar("golden", "diff", "airline", "1", cwd=tmp_path)
    assert "1 removed" in diff.stdout
    assert removed in diff.stdout
    assert st.golden_set("airline").version == 2
    assert st.golden_set("airline", 1).trace_ids() == first.trace_ids()
    listing = costar("golden", "list", "--all-versions", cwd=tmp_path)
    assert listing.stdout.count("airline") == 2


def test_non_utf8_label_files_give_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_bytes("id,label\n1,café\n".encode("latin-1"))
    (tmp_path / "b.csv").write_text("id,label\n1,cafe\n", encoding="utf-8")
    err = one_line_error(costar("agreement", "a.csv", "b.csv", "--key", "id", "--a-field", "label",
                                "--b-field", "label", cwd=tmp_path))
    assert "a.csv" in err, err
    assert "save it as UTF-8" in err, err
    err = one_line_error(costar("labels", "import", "a.csv", "--name", "j", "--labeler", "me", cwd=tmp_path))
    assert "a.csv" in err, err
    assert "save it as UTF-8" in err, err
