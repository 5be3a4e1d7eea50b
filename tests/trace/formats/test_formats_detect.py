"""import_file recognises each format by content and refuses anything else with a one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from costar.errors import ConfigError
from costar.trace.formats import FORMATS, detect_format, import_file, write_jsonl
from costar.trace.formats.transcript import transcript_to_trace
from costar.trace.otlp import traces_to_otlp_json
from tests.support.paths import EXTERNAL

CHAT = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]


@pytest.mark.parametrize(("relative", "fmt"), [
    ("tau-bench/gpt-4o-airline.json", "tau-bench"),
    ("swe-agent/pydicom__pydicom-1458.traj", "swe-agent"),
    ("swe-agent/function_calling_simple.traj", "swe-agent"),
    ("openinference/openinference_client_span_tool_calls.json", "openinference"),
    ("openinference/otel_genai_tool_execution_span.json", "openinference"),
])
def test_real_files_are_recognised(relative: str, fmt: str) -> None:
    assert detect_format(EXTERNAL / relative) == fmt


def test_import_file_dispatches_and_returns_everything(tmp_path: Path) -> None:
    tau = import_file(EXTERNAL / "tau-bench" / "gpt-4o-airline.json")
    assert (tau.format, len(tau.traces), len(tau.verdicts)) == ("tau-bench", 200, 200)

    trace = transcript_to_trace(CHAT)
    jsonl = tmp_path / "traces.jsonl"
    write_jsonl([trace], jsonl, blob_reader=lambda sha: None)
    assert import_file(jsonl).traces == [trace]
    assert import_file(jsonl).format == "jsonl"

    otlp = tmp_path / "export.json"
    otlp.write_text(json.dumps(traces_to_otlp_json([trace])), encoding="utf-8")
    assert (import_file(otlp).format, import_file(otlp).traces) == ("otlp-json", [trace])

    # The collector's file exporter writes one export request per line.
    lines = tmp_path / "collector.jsonl"
    lines.write_text("\n".join(json.dumps(traces_to_otlp_json([t])) for t in [trace, trace]) + "\n",
                     encoding="utf-8")
    assert import_file(lines).traces == [trace, trace]

    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps(CHAT), encoding="utf-8")
    result = import_file(chat)
    assert (result.format, result.traces[0].output) == ("transcript", "hello")
    assert {r.format for r in (tau, result)} <= set(FORMATS)


@pytest.mark.parametrize(("content", "message"), [
    ('{"name": "not a trace"}', "not a recognised trace file (it is an object with keys name); known formats: "
                                "jsonl, otlp-json, tau-bench"),
    ("[1, 2, 3]", "not a recognised trace file"),
    ('{"a": 1,', "not valid JSON (line 1, column 9"),
    ("", "not valid JSON"),
    ('{"a": 1}\n{"b": 2}\n', "not a recognised trace file"),
    ('{"resourceSpans": [{"scopeSpans": "x"}]}', "must be an array"),
    ('[{"task_id": 1, "traj": "not a list"}]', "not a recognised trace file (it is a list of 1 objects, the first with keys"),
])
def test_unknown_or_malformed_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "x.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        import_file(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ")
    assert message in text
    assert "\n" not in text


def test_binary_and_missing_files(tmp_path: Path) -> None:
    binary = tmp_path / "x.bin"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not UTF-8"):
        detect_format(binary)
    with pytest.raises(ConfigError, match="no such file"):
        import_file(tmp_path / "nope.json")
