"""coSTAR JSONL: a lossless round trip of traces and their artifact bytes."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from costar.errors import ConfigError
from costar.trace.formats.jsonl import iter_jsonl, read_jsonl, write_jsonl
from costar.trace.formats.sweagent import import_sweagent
from costar.trace.formats.transcript import transcript_to_trace
from costar.trace.model import Artifact, Trace
from tests.support.paths import EXTERNAL

BLOBS = {b"print('hi')\n": "src/app.py", b"\x00\xffbinary\n": "data.bin"}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _traces() -> list[Trace]:
    chat = transcript_to_trace([{"role": "user", "content": "héllo ☃"}, {"role": "assistant", "content": "hi"}])
    chat.artifacts = [Artifact(path=p, sha256=_sha(b), size=len(b)) for b, p in BLOBS.items()]
    chat.artifacts.append(Artifact(path="gone.txt", sha256="0" * 64, size=1))  # bytes no longer available
    chat.input = {"nested": [1, 2.0, None, {"ok": True}]}
    (swe,) = import_sweagent(EXTERNAL / "swe-agent" / "pydicom__pydicom-1458.traj")
    return [chat, swe]


def _dumped(traces: list[Trace]) -> list[str]:
    return [json.dumps(t.model_dump(mode="json"), sort_keys=True) for t in traces]


def test_round_trip_with_blobs(tmp_path: Path) -> None:
    traces = _traces()
    store = {_sha(b): b for b in BLOBS}

    def generate() -> Iterator[Trace]:  # a generator, as store.iter_traces would hand over
        yield from traces

    path = tmp_path / "export.jsonl"
    assert write_jsonl(generate(), path, blob_reader=store.get) == 2
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    assert set(json.loads(lines[0])) == {"trace", "blobs"}
    pairs = read_jsonl(path)
    assert [t for t, _ in pairs] == traces
    assert _dumped([t for t, _ in pairs]) == _dumped(traces)
    assert pairs[0][1] == store
    assert pairs[1][1] == {}
    assert [p.name for p in tmp_path.iterdir()] == ["export.jsonl"]


def test_plain_lines_without_blobs(tmp_path: Path) -> None:
    traces = _traces()
    path = tmp_path / "plain.jsonl"
    write_jsonl(traces, path)
    assert json.loads(path.read_text(encoding="utf-8").splitlines()[0])["trace_id"] == traces[0].trace_id
    assert list(iter_jsonl(path)) == [(t, {}) for t in traces]


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    def broken() -> Iterator[Trace]:
        yield _traces()[0]
        raise RuntimeError("store went away")

    with pytest.raises(RuntimeError):
        write_jsonl(broken(), tmp_path / "out.jsonl")
    assert list(tmp_path.iterdir()) == []


def test_damage_is_reported_with_file_and_line(tmp_path: Path) -> None:
    trace = _traces()[0]
    good = trace.model_dump_json()
    path = tmp_path / "bad.jsonl"
    path.write_text(good + "\n\n" + '{"trace_id": 5}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.jsonl:3: not a coSTAR trace \(trace_id: "):
        read_jsonl(path)
    path.write_text("{not json\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.jsonl:1: not valid JSON"):
        read_jsonl(path)
    tampered = base64.b64encode(b"other bytes").decode()
    path.write_text(json.dumps({"trace": json.loads(good), "blobs": {"ab" * 32: tampered}}) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="does not match its sha256"):
        read_jsonl(path)
    with pytest.raises(ConfigError, match="no such file"):
        read_jsonl(tmp_path / "missing.jsonl")
