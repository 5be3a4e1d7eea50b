"""Export and import through the CLI: lossless round trips, real public data, bad files."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from costar.store.sqlite import SQLiteStore
from costar.trace.model import AgentInfo, Artifact, Span, SpanKind, Trace
from costar.trace.otlp import traces_to_otlp_json
from costar.transfer import BLOBS_KEY
from tests.support.cli import costar, one_line_error
from tests.support.paths import EXTERNAL


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


# --------------------------------------------------------------------------- crafted artifact hashes

GOOD_SHA = hashlib.sha256(b"hello").hexdigest()
TRAVERSAL = "xx/etc/shadow"


def artifact_trace(artifacts: list[Artifact]) -> Trace:
    trace_id = "a" * 32
    return Trace(trace_id=trace_id, scenario_id="sc", agent=AgentInfo(name="agent"), output="out",
                 artifacts=artifacts,
                 spans=[Span(trace_id=trace_id, span_id="b" * 16, name="step", kind=SpanKind.TOOL,
                             start_ns=1, end_ns=2)])


def nothing_stored(root: Path) -> bool:
    store_dir = root / ".costar"
    if not store_dir.exists():
        return True
    st = SQLiteStore(store_dir)
    try:
        return st.list_runs() == [] and st.trace_ids() == [] and not any(
            p.is_file() for p in (store_dir / "blobs").rglob("*"))
    finally:
        st.close()


@pytest.mark.parametrize("bad", [TRAVERSAL, "../" + "a" * 61, "A" * 64, "a" * 63, "a" * 64 + "\n", ""])
def test_artifact_sha256_must_be_a_hex_digest(bad: str) -> None:
    with pytest.raises(ValidationError):
        Artifact(path="x", sha256=bad, size=1)
    assert Artifact(path="x", sha256=GOOD_SHA, size=1).sha256 == GOOD_SHA


def test_jsonl_with_a_traversal_sha256_is_rejected_and_nothing_written(tmp_path: Path) -> None:
    line = json.loads(artifact_trace([Artifact(path="o.txt", sha256=GOOD_SHA, size=5)]).model_dump_json())
    line["artifacts"][0]["sha256"] = TRAVERSAL
    (tmp_path / "evil.jsonl").write_text(json.dumps(line) + "\n")
    # the same, wrapped with blobs as 'costar traces export' writes them
    wrapped = {"trace": line, "blobs": {TRAVERSAL: base64.b64encode(b"hello").decode()}}
    (tmp_path / "evil2.jsonl").write_text(json.dumps(wrapped) + "\n")
    for name in ("evil.jsonl", "evil2.jsonl"):
        err = one_line_error(costar("traces", "import", name, cwd=tmp_path))
        assert name in err, err
        assert "sha256" in err, err
    assert nothing_stored(tmp_path)


def _otlp_text(trace: Trace, blob: bytes | None = b"hello") -> str:
    doc = traces_to_otlp_json([trace])
    if blob is not None:
        values = [{"key": hashlib.sha256(blob).hexdigest(), "value": {"bytesValue": base64.b64encode(blob).decode()}}]
        doc["resourceSpans"][0]["resource"]["attributes"].append(
            {"key": BLOBS_KEY, "value": {"kvlistValue": {"values": values}}})
    return json.dumps(doc)


@pytest.mark.parametrize("with_blobs", [True, False])
def test_otlp_json_with_a_traversal_sha256_is_rejected_and_nothing_written(tmp_path: Path, with_blobs: bool) -> None:
    text = _otlp_text(artifact_trace([Artifact(path="o.txt", sha256=GOOD_SHA, size=5)]),
                      b"hello" if with_blobs else None)
    assert text.count(GOOD_SHA) == (2 if with_blobs else 1)
    (tmp_path / "evil.json").write_text(text.replace(GOOD_SHA, TRAVERSAL))
    err = one_line_error(costar("traces", "import", "evil.json", cwd=tmp_path))
    assert "evil.json" in err, err
    assert "sha256" in err, err
    assert nothing_stored(tmp_path)


def _blob_doc(values: object) -> dict[str, object]:
    doc = json.loads(_otlp_text(artifact_trace([Artifact(path="o.txt", sha256=GOOD_SHA, size=5)]), None))
    doc["resourceSpans"][0]["resource"]["attributes"].append({"key": BLOBS_KEY, "value": values})
    return doc


MALFORMED = {
    "bad-base64": _blob_doc({"kvlistValue": {"values": [{"key": GOOD_SHA, "value": {"bytesValue": "%%%not base64"}}]}}),
    "missing-key": _blob_doc({"kvlistValue": {"values": [{"value": {"bytesValue": "aGVsbG8="}}]}}),
    "missing-bytes": _blob_doc({"kvlistValue": {"values": [{"key": GOOD_SHA, "value": {}}]}}),
    "entry-not-object": _blob_doc({"kvlistValue": {"values": [5]}}),
    "values-not-list": _blob_doc({"kvlistValue": {"values": "nope"}}),
    "value-not-object": _blob_doc("nope"),
    "hash-mismatch": _blob_doc({"kvlistValue": {"values": [{"key": GOOD_SHA,
                                                            "value": {"bytesValue": "d29ybGQ="}}]}}),
    "resource-spans-int": {"resourceSpans": 5},
    "resource-span-not-object": {"resourceSpans": [5]},
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_otlp_blob_attributes_give_one_line_errors(tmp_path: Path, case: str) -> None:
    (tmp_path / f"{case}.json").write_text(json.dumps(MALFORMED[case]))
    err = one_line_error(costar("traces", "import", f"{case}.json", cwd=tmp_path))
    assert f"{case}.json" in err, err
    assert nothing_stored(tmp_path)


def test_good_otlp_blobs_still_import(tmp_path: Path) -> None:
    (tmp_path / "good.json").write_text(_otlp_text(artifact_trace([Artifact(path="o.txt", sha256=GOOD_SHA,
                                                                            size=5)])))
    res = costar("traces", "import", "good.json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    with SQLiteStore(tmp_path / ".costar") as st:
        assert st.get_blob(GOOD_SHA) == b"hello"
