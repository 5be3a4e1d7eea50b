"""Secret values never leak through artifacts or scenario copies: not in the store, the HTML report or
either export format. Binary files holding a secret are flagged, or dropped when configured."""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from costar.store.sqlite import SQLiteStore
from tests.support.cli import child_env, costar_cmd

SECRET = "hunter2-very-secret-value-42"

AGENT = """
import os, sys
secret = os.environ["MY_SERVICE_TOKEN"]
open(secret + ".txt", "w").write("named after the secret")
open("notes.txt", "w").write("the token is " + secret + "\\nkeep it safe\\n")
open("blob.bin", "wb").write(b"\\x00\\xff\\xfe" + secret.encode() + b"\\x00\\x81")
open("clean.bin", "wb").write(b"\\x00\\xff\\xfe nothing here \\x81")
print("done " + sys.stdin.read())
"""


def costar(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*costar_cmd(), *args], cwd=cwd, capture_output=True, text=True, timeout=180,
                          env=child_env(MY_SERVICE_TOKEN=SECRET, **env))


def leaks_in(root: Path, *, allowed: set[Path] = frozenset()) -> list[Path]:
    """Files under ``root`` whose bytes hold the secret in plain text."""
    return [p for p in root.rglob("*") if p.is_file() and p not in allowed and SECRET.encode() in p.read_bytes()]


def exported_blobs(path: Path) -> dict[str, bytes]:
    """The artifact bytes an export carries (base64 in both formats)."""
    if path.suffix == ".jsonl":
        lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return {sha: base64.b64decode(b) for line in lines for sha, b in line.get("blobs", {}).items()}
    doc = json.loads(path.read_text(encoding="utf-8"))
    return {item["key"]: base64.b64decode(item["value"]["bytesValue"])
            for rs in doc["resourceSpans"] for kv in rs["resource"]["attributes"] if kv["key"] == "costar.artifact_blobs"
            for item in kv["value"]["kvlistValue"]["values"]}


def make_project(root: Path, extra: str = "") -> Path:
    (root / "s.yaml").write_text(textwrap.dedent(f"""
        id: secrets
        description: uses the token {SECRET}
        prompt: "Call the service with token {SECRET} and report"
        expectations:
          checks: [{{output_contains: done}}]
          criteria: ["Never prints {SECRET}"]
        """), encoding="utf-8")
    (root / "agent.py").write_text(textwrap.dedent(AGENT), encoding="utf-8")
    (root / "costar.yaml").write_text(
        f"suite: s.yaml\nagent:\n  type: command\n  command: [{json.dumps(sys.executable)}, agent.py]\n{extra}",
        encoding="utf-8")
    res = costar("run", "--no-progress", "--html", "report.html", cwd=root)
    assert res.returncode == 0, res.stdout + res.stderr
    return root


def test_secrets_in_file_names_text_files_and_scenarios_are_redacted_everywhere(tmp_path: Path) -> None:
    proj = make_project(tmp_path)
    st = SQLiteStore(proj / ".costar")
    run_id = st.resolve_run_id("latest")
    (trace,) = st.iter_traces(run_id)
    arts = {a.path: a for a in trace.artifacts}
    assert set(arts) == {"[REDACTED].txt", "notes.txt", "blob.bin", "clean.bin"}
    assert arts["notes.txt"].redacted
    assert not arts["notes.txt"].holds_secret
    assert st.get_blob(arts["notes.txt"].sha256) == b"the token is [REDACTED]\nkeep it safe\n"
    assert arts["blob.bin"].holds_secret
    assert not arts["clean.bin"].holds_secret
    (snapshot,) = st.load_scenarios(run_id)
    assert snapshot.prompt == "Call the service with token [REDACTED] and report"
    assert snapshot.description == "uses the token [REDACTED]"
    assert (snapshot.expectations.criteria == [
        "Never prints [REDACTED]"])

    for fmt, name in (("jsonl", "out.jsonl"), ("otlp-json", "out.json")):
        res = costar("traces", "export", "latest", "--format", fmt, "--output", name, cwd=proj)
        assert res.returncode == 0, res.stderr
    blob_file = st.blob_path(arts["blob.bin"].sha256)
    # The only copy is the flagged binary blob: not the database, not the HTML report, not another blob,
    # not the exports (whose embedded blobs hold it only as that flagged file's bytes).
    assert leaks_in(proj, allowed={proj / "s.yaml", proj / "agent.py"}) == [blob_file]
    for export in (proj / "out.jsonl", proj / "out.json"):
        holding = {sha for sha, data in exported_blobs(export).items() if SECRET.encode() in data}
        assert holding == {arts["blob.bin"].sha256}, export
    html = (proj / "report.html").read_text(encoding="utf-8")
    assert "[REDACTED].txt" in html
    assert "holds a secret" in html
    assert "secrets redacted" in html

    # Resuming reads the redacted copy back: the file still says the same, so its version is used.
    again = costar("run", "--no-progress", "--resume", "latest", cwd=proj)
    assert again.returncode == 0, again.stderr
    (proj / "s.yaml").write_text((proj / "s.yaml").read_text().replace("and report", "and report twice"))
    changed = costar("run", "--no-progress", "--resume", "latest", cwd=proj)
    assert changed.returncode == 2, changed.stderr
    assert "its stored copy had secret values redacted" in changed.stderr, changed.stderr


def test_binary_files_holding_a_secret_are_dropped_when_configured(tmp_path: Path) -> None:
    proj = make_project(tmp_path, "secrets:\n  drop_binary_artifacts: true\n")
    st = SQLiteStore(proj / ".costar")
    (trace,) = st.iter_traces(st.resolve_run_id("latest"))
    assert {a.path for a in trace.artifacts} == {"[REDACTED].txt", "notes.txt", "clean.bin"}
    assert any("blob.bin: a binary file holding a secret value; not stored" in n
               for n in trace.metadata["artifact_notes"])
    for fmt, name in (("jsonl", "out.jsonl"), ("otlp-json", "out.json")):
        assert costar("traces", "export", "latest", "--format", fmt, "--output", name, cwd=proj).returncode == 0
    assert leaks_in(proj, allowed={proj / "s.yaml", proj / "agent.py"}) == []
    for export in (proj / "out.jsonl", proj / "out.json"):
        assert not any(SECRET.encode() in data for data in exported_blobs(export).values())


@pytest.mark.parametrize("size", [100, 70 * 1024 * 1024])
def test_large_and_small_files_are_both_covered(tmp_path: Path, size: int) -> None:
    from costar.run.workspace import ArtifactLimits, SecretPolicy, Workspace, collect_artifacts
    from costar.trace.sanitize import Sanitizer

    ws = tmp_path / "ws"
    ws.mkdir()
    body = b"a" * size
    (ws / "big.log").write_bytes(body[: size // 2] + SECRET.encode() + body[size // 2:])
    st = SQLiteStore(tmp_path / ".costar")
    arts, notes = collect_artifacts(Workspace(ws), st, ArtifactLimits(),
                                    SecretPolicy(Sanitizer(secrets=[SECRET]), drop_binaries=True))
    if size < 1024:  # held in memory: redacted
        assert arts[0].redacted
        assert SECRET.encode() not in st.get_blob(arts[0].sha256)
    else:  # too large to redact in memory: scanned, and dropped as configured
        assert arts == []
        assert "big.log: a binary file holding a secret value" in notes[0]


def test_secrets_never_reach_verdicts_reports_or_stored_specs(tmp_path: Path) -> None:
    secret = "sk-abcdefghijklmnopqrstuvwxyz123456"
    (tmp_path / "agent.py").write_text("import os, sys\nsys.stdin.read()\nprint('key: ' + os.environ['OPENAI_API_KEY'])\n")
    (tmp_path / "suite.yaml").write_text(textwrap.dedent("""
        id: leak
        prompt: x
        setup:
          env: {SERVICE_TOKEN: tok-0123456789abcdef}
        expectations:
          checks: [{output_contains: never-there}, {output_equals: nope}]
        """))
    (tmp_path / "costar.yaml").write_text(
        f"suite: suite.yaml\nagent:\n  type: command\n  command: [{json.dumps(sys.executable)}, agent.py]\n"
        "  env: {MY_API_KEY: plain-secret-value-42}\n")
    res = costar("run", "--html", "r.html", "--junit", "r.xml", cwd=tmp_path, OPENAI_API_KEY=secret)
    assert res.returncode == 1, res.stdout + res.stderr
    dump = "\n".join(sqlite3.connect(tmp_path / ".costar" / "costar.db").iterdump())
    for text in (dump, res.stdout, (tmp_path / "r.html").read_text(), (tmp_path / "r.xml").read_text()):
        assert secret[:20] not in text
        assert "plain-secret-value-42" not in text
        assert "tok-0123456789abcdef" not in text
    assert "[REDACTED]" in dump
    # resuming takes the redacted values back from the environment, or says what to export
    resumed = costar("run", "--resume", "latest", cwd=tmp_path, OPENAI_API_KEY=secret)
    assert resumed.returncode == 2, resumed.stderr
    assert "MY_API_KEY" in resumed.stderr, resumed.stderr
    resumed = costar("run", "--resume", "latest", cwd=tmp_path, OPENAI_API_KEY=secret, MY_API_KEY="x" * 20)
    assert resumed.returncode == 1, resumed.stderr
    assert "resuming: 1 trial(s) already finished" in resumed.stdout, resumed.stderr
