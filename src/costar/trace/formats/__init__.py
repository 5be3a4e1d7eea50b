"""Trace import/export formats. ``import_file`` recognises a file by its content, not its name.

Recognised: coSTAR JSONL (``jsonl``), OTLP JSON including the collector's one-request-per-line
files (``otlp-json``), tau-bench results (``tau-bench``), SWE-agent trajectories (``swe-agent``),
OpenInference / OTel GenAI span attribute dicts (``openinference``) and OpenAI-style message
lists (``transcript``). Every importer leaves ``run_id`` as None: the caller assigns the run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from costar.errors import ConfigError
from costar.trace.formats.jsonl import read_jsonl, write_jsonl
from costar.trace.formats.openinference import looks_like_attributes, openinference_from_data
from costar.trace.formats.sweagent import sweagent_from_data
from costar.trace.formats.taubench import taubench_from_data
from costar.trace.formats.transcript import transcripts_from_data
from costar.trace.model import Trace
from costar.trace.otlp import OtlpDecodeError, otlp_json_to_traces
from costar.verdict import Verdict

FORMATS = ("jsonl", "otlp-json", "tau-bench", "swe-agent", "openinference", "transcript")

_UNRECOGNISED = ("not a recognised trace file (expected OTLP JSON, coSTAR JSONL, tau-bench, SWE-agent "
                 ".traj, OpenInference span attributes or an OpenAI message list)")


@dataclass
class ImportResult:
    traces: list[Trace]
    verdicts: list[Verdict] = field(default_factory=list)
    blobs: dict[str, bytes] = field(default_factory=dict)
    format: str = ""


def _first_line(p: Path) -> str:
    with p.open(encoding="utf-8", errors="replace") as f:
        return next((line for line in f if line.strip()), "")


def _is_trace_line(line: str) -> bool:
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return False
    return isinstance(obj, dict) and (("trace_id" in obj and "spans" in obj) or isinstance(obj.get("trace"), dict))


def _load_document(p: Path) -> Any:
    """The file as one JSON document, or as a list of per-line documents (JSON lines)."""
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: {_UNRECOGNISED}; it is not UTF-8 text") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg != "Extra data":
            raise ConfigError(f"{p}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                              "fix or re-export the file") from None
    except RecursionError:
        raise ConfigError(f"{p}: JSON nested too deeply to read") from None
    try:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except (ValueError, RecursionError):
        raise ConfigError(f"{p}: {_UNRECOGNISED}; it holds several JSON values that are not one per line") from None


def _is_otlp(value: Any) -> bool:
    return isinstance(value, dict) and ("resourceSpans" in value or "resource_spans" in value)


def _is_transcript(value: Any) -> bool:
    if isinstance(value, dict):
        value = value.get("messages")
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) and "role" in m for m in value)


def classify(data: Any) -> str | None:
    """The format of an already-parsed JSON document, or None."""
    if _is_otlp(data) or (isinstance(data, list) and data and all(_is_otlp(d) for d in data)):
        return "otlp-json"
    if isinstance(data, list) and data and isinstance(data[0], dict) and "traj" in data[0] and "task_id" in data[0]:
        return "tau-bench"
    if isinstance(data, dict) and (isinstance(data.get("trajectory"), list) or isinstance(data.get("history"), list)):
        return "swe-agent"
    if looks_like_attributes(data) or (isinstance(data, list) and data and all(map(looks_like_attributes, data))):
        return "openinference"
    if _is_transcript(data):
        return "transcript"
    return None


def _sniff(p: Path) -> tuple[str, Any]:
    if not p.is_file():
        raise ConfigError(f"{p}: no such file; check the path")
    if _is_trace_line(_first_line(p)):
        return "jsonl", None
    data = _load_document(p)
    fmt = classify(data)
    if fmt is None:
        raise ConfigError(f"{p}: {_UNRECOGNISED}")
    return fmt, data


def detect_format(path: str | Path) -> str:
    """One of ``FORMATS``; raises ConfigError naming the file when it is none of them."""
    return _sniff(Path(path))[0]


def _import(fmt: str, data: Any, p: Path) -> ImportResult:
    source = str(p)
    if fmt == "jsonl":
        pairs = read_jsonl(p)
        return ImportResult([t for t, _ in pairs], blobs={k: v for _, b in pairs for k, v in b.items()})
    if fmt == "otlp-json":
        return ImportResult([t for doc in (data if isinstance(data, list) else [data])
                             for t in otlp_json_to_traces(doc)])
    if fmt == "tau-bench":
        traces, verdicts = taubench_from_data(data, source=source)
        return ImportResult(traces, verdicts)
    if fmt == "swe-agent":
        return ImportResult([sweagent_from_data(data, source=source)])
    if fmt == "openinference":
        return ImportResult(openinference_from_data(data, source=source))
    return ImportResult(transcripts_from_data(data, source))


def import_file(path: str | Path) -> ImportResult:
    """Read any recognised trace file. Errors are ConfigError with a one-line message naming the file."""
    p = Path(path)
    fmt, data = _sniff(p)
    try:
        result = _import(fmt, data, p)
    except OtlpDecodeError as exc:
        raise ConfigError(f"{p}: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise ConfigError(f"{p}: malformed {fmt} file ({type(exc).__name__}: "
                          f"{' '.join(str(exc).split())[:200]}); fix or re-export it") from None
    result.format = fmt
    return result


__all__ = ["FORMATS", "ImportResult", "classify", "detect_format", "import_file", "read_jsonl", "write_jsonl"]
