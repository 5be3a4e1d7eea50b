"""Format detection needs every key a format needs; unknown or ambiguous files are refused with the
formats and --format; importers count what they read and kept and say what they skipped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from costar.errors import ConfigError
from costar.store.sqlite import SQLiteStore
from costar.trace.formats import FORMATS, import_file
from costar.trace.model import SpanKind
from tests.support.cli import costar, one_line_error
from tests.support.paths import EXTERNAL

WHOWHEN = EXTERNAL / "whowhen"


@pytest.mark.parametrize("name", ["10.json", "11.json"])
def test_a_multi_agent_log_keeps_every_turn(tmp_path: Path, name: str) -> None:
    shutil.copy(WHOWHEN / name, tmp_path / name)
    history = json.loads((tmp_path / name).read_text(encoding="utf-8"))["history"]
    res = costar("traces", "import", name, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "(group-chat)" in res.stdout
    assert f"read {len(history)} messages, kept {len(history)}" in res.stdout
    assert "skipped" not in res.stdout, res.stdout
    st = SQLiteStore(tmp_path / ".costar")
    (trace,) = st.iter_traces(st.resolve_run_id("latest"))
    turns = [s for s in trace.spans if s.attributes.get("costar.step") is not None]
    assert [s.attributes["gen_ai.agent.name"] for s in turns] == [m["name"] for m in history]
    assert [s.attributes["output.value"] for s in turns] == [m["content"] for m in history]
    assert all(s.kind == SpanKind.AGENT for s in turns)
    # Who&When's labels travel with the trace: the step index is the span's costar.step.
    step = int(trace.metadata["mistake_step"])
    assert turns[step].attributes["gen_ai.agent.name"] == trace.metadata["mistake_agent"]


def test_a_log_that_fits_no_format_is_refused_with_the_formats_and_how_to_force(tmp_path: Path) -> None:
    data = json.loads((WHOWHEN / "10.json").read_text(encoding="utf-8"))
    for m in data["history"]:
        m.pop("name")  # now no format has every key it needs
    (tmp_path / "log.json").write_text(json.dumps(data), encoding="utf-8")
    err = one_line_error(costar("traces", "import", "log.json", cwd=tmp_path))
    assert "not a recognised trace file (it is an object with keys" in err
    assert "history" in err
    assert "known formats: " + ", ".join(FORMATS) in err
    assert "--format" in err
    assert not (tmp_path / ".costar").exists() or SQLiteStore(tmp_path / ".costar").list_runs() == []


def test_an_ambiguous_file_is_refused(tmp_path: Path) -> None:
    # A history whose messages carry both SWE-agent's fields and a group chat's speaker names.
    data = {"history": [{"role": "assistant", "name": "coder", "content": "ls", "agent": "main"},
                        {"role": "user", "name": "terminal", "content": "a.py", "agent": "main"}]}
    (tmp_path / "both.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"ambiguous: it has every key that swe-agent and group-chat need; "
                                          r"choose one with --format swe-agent"):
        import_file(tmp_path / "both.json")
    assert import_file(tmp_path / "both.json", "group-chat").read == 2
    res = costar("traces", "import", "both.json", "--format", "swe-agent", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "(swe-agent)" in res.stdout, res.stderr


def test_forcing_another_format_never_drops_silently(tmp_path: Path) -> None:
    shutil.copy(WHOWHEN / "11.json", tmp_path / "11.json")
    # As a SWE-agent history: one assistant step; the nine turns after it are kept, not dropped.
    forced = import_file(tmp_path / "11.json", "swe-agent")
    assert (forced.read, forced.stored, forced.skipped, forced.unit) == (10, 10, 0, "messages")
    root = forced.traces[0].spans[0]
    assert len(root.attributes["costar.messages.trailing"]) == 9
    err = one_line_error(costar("traces", "import", "11.json", "--format", "transcript", cwd=tmp_path))
    assert "not a transcript" in err
    err = one_line_error(costar("traces", "import", "11.json", "--format", "nope", cwd=tmp_path))
    assert "unknown format 'nope'; use one of jsonl, otlp-json" in err


def test_what_an_importer_skips_is_counted_and_said(tmp_path: Path) -> None:
    chat = [{"role": "user", "content": "hi"}, "not a message", 7,
            {"role": "assistant", "content": "hello"},
            {"role": "tool", "tool_call_id": "nobody-asked", "content": "orphan"}]
    (tmp_path / "chat.json").write_text(json.dumps({"messages": chat}), encoding="utf-8")
    res = import_file(tmp_path / "chat.json", "transcript")
    assert (res.read, res.stored, res.skipped) == (5, 3, 2), res.notes
    assert res.notes == ["1 item is not a message (no object with a 'role')",
                         "1 tool result after the last assistant turn answers no tool call"]
    assert res.traces[0].metadata["costar.import"]["skipped"] == 2  # the trace records it too
    out = costar("traces", "import", "chat.json", "--format", "transcript", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "read 5 messages, kept 3, skipped 2" in out.stdout, out.stdout + out.stderr


def test_real_files_report_what_they_read() -> None:
    tau = import_file(EXTERNAL / "tau-bench" / "gpt-4o-airline.json")
    assert tau.unit == "messages"
    assert tau.read == tau.stored > 200 * 4
    assert tau.skipped == 0
    swe = import_file(EXTERNAL / "swe-agent" / "pydicom__pydicom-1458.traj")
    assert swe.unit == "steps"
    assert swe.read == swe.stored == swe.traces[0].metadata["steps"]
    fc = import_file(EXTERNAL / "swe-agent" / "function_calling_simple.traj")
    assert fc.unit == "messages"
    assert fc.read == fc.stored
    oi = import_file(EXTERNAL / "openinference" / "otel_genai_tool_execution_span.json")
    assert (oi.format, oi.read, oi.stored) == ("openinference", 1, 1)
