"""Review fixes at the edges: crafted artifact hashes, output paths, untrusted text printed by
the CLI, server sockets, non-UTF-8 label files, and read-only commands that must not create a store."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from costar._util.server import BackgroundServer
from costar.errors import ConfigError, StoreError
from costar.store.sqlite import SQLiteStore
from costar.trace.model import AgentInfo, Artifact, Span, SpanKind, Trace
from costar.trace.otlp import traces_to_otlp_json
from costar.transfer import BLOBS_KEY
from tests.support.cli import child_env, costar_cmd

EVIL = "[/evil]"
BOLD = "[bold]"
GOOD_SHA = hashlib.sha256(b"hello").hexdigest()
TRAVERSAL = "xx/etc/shadow"


def costar(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*costar_cmd(), *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env=child_env())


def one_line_error(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    err = res.stderr.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, res.stderr
    assert "Traceback" not in res.stderr
    return err


def make_trace(*, agent: str = "agent", scenario: str = "sc", artifacts: list[Artifact] | None = None,
               trace_id: str = "a" * 32) -> Trace:
    return Trace(trace_id=trace_id, scenario_id=scenario, agent=AgentInfo(name=agent), output=f"out {EVIL}",
                 artifacts=artifacts or [],
                 spans=[Span(trace_id=trace_id, span_id="b" * 16, name=f"step {EVIL}{BOLD}", kind=SpanKind.TOOL,
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


# --------------------------------------------------------------------------- A: artifact hashes


@pytest.mark.parametrize("bad", [TRAVERSAL, "../" + "a" * 61, "A" * 64, "a" * 63, "a" * 64 + "\n", ""])
def test_artifact_sha256_must_be_a_hex_digest(bad: str) -> None:
    with pytest.raises(ValidationError):
        Artifact(path="x", sha256=bad, size=1)
    assert Artifact(path="x", sha256=GOOD_SHA, size=1).sha256 == GOOD_SHA


def test_blob_path_refuses_keys_that_are_not_hex(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    with SQLiteStore(tmp_path / "store") as st:
        sha = st.put_blob(b"hello")
        assert sha == GOOD_SHA and st.get_blob(sha) == b"hello"
        assert st.blob_path(sha).is_relative_to(st.blob_dir)
        relative = os.path.relpath(secret, st.blob_dir / "xx")
        for bad in (TRAVERSAL, "xx" + relative, "../" + "a" * 61, "A" * 64, "a" * 64 + "\n", ""):
            with pytest.raises(StoreError, match="not a blob key"):
                st.blob_path(bad)
            assert st.get_blob(bad) is None


def test_jsonl_with_a_traversal_sha256_is_rejected_and_nothing_written(tmp_path: Path) -> None:
    line = json.loads(make_trace(artifacts=[Artifact(path="o.txt", sha256=GOOD_SHA, size=5)]).model_dump_json())
    line["artifacts"][0]["sha256"] = TRAVERSAL
    (tmp_path / "evil.jsonl").write_text(json.dumps(line) + "\n")
    # the same, wrapped with blobs as 'costar traces export' writes them
    wrapped = {"trace": line, "blobs": {TRAVERSAL: base64.b64encode(b"hello").decode()}}
    (tmp_path / "evil2.jsonl").write_text(json.dumps(wrapped) + "\n")
    for name in ("evil.jsonl", "evil2.jsonl"):
        err = one_line_error(costar("traces", "import", name, cwd=tmp_path))
        assert name in err and "sha256" in err, err
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
    text = _otlp_text(make_trace(artifacts=[Artifact(path="o.txt", sha256=GOOD_SHA, size=5)]),
                      b"hello" if with_blobs else None)
    assert text.count(GOOD_SHA) == (2 if with_blobs else 1)
    (tmp_path / "evil.json").write_text(text.replace(GOOD_SHA, TRAVERSAL))
    err = one_line_error(costar("traces", "import", "evil.json", cwd=tmp_path))
    assert "evil.json" in err and "sha256" in err, err
    assert nothing_stored(tmp_path)


def _blob_doc(values: object) -> dict[str, object]:
    doc = json.loads(_otlp_text(make_trace(artifacts=[Artifact(path="o.txt", sha256=GOOD_SHA, size=5)]), None))
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
    (tmp_path / "good.json").write_text(_otlp_text(make_trace(artifacts=[Artifact(path="o.txt", sha256=GOOD_SHA,
                                                                                  size=5)])))
    res = costar("traces", "import", "good.json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    with SQLiteStore(tmp_path / ".costar") as st:
        assert st.get_blob(GOOD_SHA) == b"hello"


# --------------------------------------------------------------------------- B1: output paths


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    proj = tmp_path_factory.mktemp("proj")
    (proj / "agent.py").write_text("import sys\nprint('answer: ' + sys.stdin.read())\n")
    (proj / "suite.yaml").write_text(textwrap.dedent("""
        id: hello
        prompt: hi
        tags: ["[/b]", "[bold]"]
        expectations:
          checks: [{output_contains: "answer"}]
        """))
    (proj / "costar.yaml").write_text(f"suite: suite.yaml\nagent:\n  type: command\n"
                                      f"  command: [{json.dumps(sys.executable)}, agent.py]\n")
    res = costar("run", cwd=proj)
    assert res.returncode == 0, res.stdout + res.stderr
    (proj / "somedir").mkdir()
    return proj


@pytest.mark.parametrize("args", [
    ("report", "latest", "--junit", "somedir"),
    ("report", "latest", "--html", "somedir"),
    ("traces", "export", "latest", "-o", "somedir"),
    ("traces", "export", "latest", "--format", "otlp-json", "-o", "somedir"),
    ("schema", "-o", "somedir"),
    ("labels", "export", "somedir"),
    ("assess", "latest", "--junit", "somedir"),
    ("report", "latest", "--html", "suite.yaml/report.html"),
])
def test_output_paths_that_cannot_be_files_give_one_line_errors(project: Path, args: tuple[str, ...]) -> None:
    err = one_line_error(costar(*args, cwd=project))
    assert "somedir" in err or "suite.yaml" in err, err
    assert (project / "somedir").is_dir() and not any((project / "somedir").iterdir())


def test_run_checks_its_report_paths_before_running(project: Path) -> None:
    with SQLiteStore(project / ".costar") as st:
        before = len(st.list_runs())
    err = one_line_error(costar("run", "--html", "somedir", cwd=project))
    assert "somedir" in err and "folder" in err, err
    with SQLiteStore(project / ".costar") as st:
        assert len(st.list_runs()) == before  # the suite never ran


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs POSIX permissions (not root)")
def test_unwritable_output_folder_gives_one_line_error(project: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        err = one_line_error(costar("report", "latest", "--junit", str(locked / "out.xml"), cwd=project))
        assert str(locked) in err and "not writable" in err, err
    finally:
        locked.chmod(0o700)


def test_output_into_missing_folders_still_works(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "new" / "deeper" / "export.json"
    res = costar("traces", "export", "latest", "--format", "otlp-json", "-o", str(out), cwd=project)
    assert res.returncode == 0 and json.loads(out.read_text())["resourceSpans"], res.stderr
    schema = tmp_path / "s" / "schema.json"
    res = costar("schema", "-o", str(schema), cwd=project)
    assert res.returncode == 0 and json.loads(schema.read_text()), res.stderr


# --------------------------------------------------------------------------- B2: untrusted text is not markup


def test_scenario_tags_with_markup_are_shown_literally(project: Path) -> None:
    res = costar("scenarios", cwd=project)
    assert res.returncode == 0, res.stderr
    assert "[/b]" in res.stdout and "[bold]" in res.stdout


def test_trace_text_with_markup_is_shown_literally(tmp_path: Path) -> None:
    trace = make_trace(agent=f"{EVIL} {BOLD}agent", scenario=f"{BOLD}sc{EVIL}")
    (tmp_path / "t.jsonl").write_text(trace.model_dump_json() + "\n")
    imp = costar("traces", "import", "t.jsonl", "--run-id", f"run{EVIL}", cwd=tmp_path)
    assert imp.returncode == 0, imp.stderr
    assert f"run{EVIL}" in imp.stdout
    runs = costar("runs", cwd=tmp_path)
    assert runs.returncode == 0, runs.stderr
    assert EVIL in runs.stdout and BOLD in runs.stdout
    listing = costar("traces", "list", "latest", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert f"{BOLD}sc{EVIL}" in listing.stdout
    show = costar("traces", "show", trace.trace_id, cwd=tmp_path)
    assert show.returncode == 0, show.stderr
    assert f"{BOLD}sc{EVIL}" in show.stdout and f"step {EVIL}{BOLD}" in show.stdout and f"out {EVIL}" in show.stdout


# --------------------------------------------------------------------------- B3: server sockets


def _ok_app() -> object:
    async def app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]
    return app


def test_port_in_use_is_a_config_error_naming_it() -> None:
    with BackgroundServer(_ok_app()) as first:
        second = BackgroundServer(_ok_app(), port=first.port)
        with pytest.raises(ConfigError) as info:
            second.start()
        msg = str(info.value)
        assert f"127.0.0.1:{first.port}" in msg and "--port" in msg and "\n" not in msg
        assert httpx.get(first.url).text == "ok"  # the first server is unharmed


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_ipv6_host_is_served() -> None:
    with BackgroundServer(_ok_app(), host="::1") as srv:
        assert srv.url == f"http://[::1]:{srv.port}"
        assert httpx.get(srv.url).text == "ok"
        with pytest.raises(ConfigError, match=rf"\[::1\]:{srv.port}.*--port"):
            BackgroundServer(_ok_app(), host="::1", port=srv.port).start()


# --------------------------------------------------------------------------- B4: non-UTF-8 label files


def test_non_utf8_label_files_give_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_bytes("id,label\n1,café\n".encode("latin-1"))
    (tmp_path / "b.csv").write_text("id,label\n1,cafe\n", encoding="utf-8")
    err = one_line_error(costar("agreement", "a.csv", "b.csv", "--key", "id", "--a-field", "label",
                                "--b-field", "label", cwd=tmp_path))
    assert "a.csv" in err and "save it as UTF-8" in err, err
    err = one_line_error(costar("labels", "import", "a.csv", "--name", "j", "--labeler", "me", cwd=tmp_path))
    assert "a.csv" in err and "save it as UTF-8" in err, err


# --------------------------------------------------------------------------- B5: read-only commands


@pytest.mark.parametrize("args", [
    ("runs",), ("report",), ("traces", "list"), ("traces", "show", "abc"), ("traces", "export", "latest"),
    ("compare", "a", "b"), ("metrics",), ("judges", "agreement", "j"), ("judges", "check", "--floor", "j:kappa>=0.5"),
    ("labels", "export", "out.csv"), ("golden", "list"),
])
def test_read_only_commands_do_not_create_a_store(tmp_path: Path, args: tuple[str, ...]) -> None:
    err = one_line_error(costar(*args, cwd=tmp_path))
    assert "no coSTAR store at" in err and "run 'costar run' first or pass --store" in err, err
    assert list(tmp_path.iterdir()) == []


def test_store_create_false(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no coSTAR store at"):
        SQLiteStore(tmp_path / "nope", create=False)
    assert not (tmp_path / "nope").exists()
    with SQLiteStore(tmp_path / "yes") as st:
        st.migrate()  # a store is created by its first write
    with SQLiteStore(tmp_path / "yes", create=False) as st:
        assert st.list_runs() == []
