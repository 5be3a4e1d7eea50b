"""Trace import/export formats. ``import_file`` recognises a file by its content, not its name.

Recognised: coSTAR JSONL (``jsonl``), OTLP JSON including the collector's one-request-per-line
files (``otlp-json``), tau-bench results (``tau-bench``), SWE-agent trajectories (``swe-agent``),
multi-agent group chats such as Who&When logs (``group-chat``), OpenInference / OTel GenAI span
attribute dicts (``openinference``) and OpenAI-style message lists (``transcript``).

A file is taken for a format only when it has every key that format needs (``FORMAT_HELP``); a
file that fits none, or more than one, is refused with the list of formats, and ``fmt=`` (the
CLI's ``--format``) forces one. Importers never drop input silently: each result says how many
records it read and kept, and why it skipped the rest. Every importer leaves ``run_id`` as None:
the caller assigns the run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from costar.errors import ConfigError
from costar.trace.formats._common import IMPORT_STATS
from costar.trace.formats.groupchat import group_chat_from_data, looks_like_group_chat
from costar.trace.formats.jsonl import read_jsonl, write_jsonl
from costar.trace.formats.openinference import looks_like_attributes, openinference_from_data
from costar.trace.formats.sweagent import looks_like_sweagent, sweagent_from_data
from costar.trace.formats.taubench import taubench_from_data
from costar.trace.formats.transcript import transcripts_from_data
from costar.trace.model import Trace
from costar.trace.otlp import OtlpDecodeError, otlp_json_to_traces
from costar.verdict import Verdict

FORMATS = ("jsonl", "otlp-json", "tau-bench", "swe-agent", "group-chat", "openinference", "transcript")

# What each format needs, in words: the refusal of an unknown file lists them.
FORMAT_HELP = {
    "jsonl": "coSTAR JSONL: one trace per line, each with 'trace_id' and 'spans' (costar traces export)",
    "otlp-json": "OTLP JSON: an object with a 'resourceSpans' list (or one such object per line)",
    "tau-bench": "tau-bench results: a list of runs, each with 'task_id', 'reward' and a 'traj' message list",
    "swe-agent": "SWE-agent .traj: a 'trajectory' of steps with 'action', or a SWE-agent 'history'",
    "group-chat": "a multi-agent log: an object whose 'history' messages all have 'role', 'name' and 'content' "
                  "(AutoGen, Who&When)",
    "openinference": "OpenInference / OTel GenAI span attributes: an object (or list) of dotted keys "
                     "such as 'llm.*', 'gen_ai.*', 'input.value'",
    "transcript": "an OpenAI message list (every item with 'role' and 'content' or 'tool_calls'), "
                  "or an object with a 'messages' list",
}


@dataclass
class ImportResult:
    traces: list[Trace]
    verdicts: list[Verdict] = field(default_factory=list)
    blobs: dict[str, bytes] = field(default_factory=dict)
    format: str = ""
    read: int = 0  # records the importer read (``unit``: messages, steps, spans, lines)
    stored: int = 0  # of those, how many the traces hold
    unit: str = "records"
    notes: list[str] = field(default_factory=list)  # what was skipped, and why

    @property
    def skipped(self) -> int:
        return self.read - self.stored

    def describe(self) -> str:
        """``read 10 messages, kept 10`` plus what was skipped, for the user."""
        text = f"read {self.read:,} {self.unit}, kept {self.stored:,}"
        if self.skipped:
            text += f", skipped {self.skipped:,}"
        if self.notes:
            more = f" (+{len(self.notes) - 3} more notes)" if len(self.notes) > 3 else ""
            text += " (" + "; ".join(self.notes[:3]) + more + ")"
        return text


def _first_line(p: Path) -> str:
    with p.open(encoding="utf-8", errors="replace") as f:
        return next((line for line in f if line.strip()), "")


def _is_trace_line(line: str) -> bool:
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return False
    if isinstance(obj, dict) and isinstance(obj.get("trace"), dict):
        obj = obj["trace"]
    return isinstance(obj, dict) and "trace_id" in obj and isinstance(obj.get("spans"), list)


def _unrecognised(p: Path, why: str) -> ConfigError:
    return ConfigError(f"{p}: {why}; known formats: {', '.join(FORMATS)} ('costar traces import --help' says what "
                       "each needs); force one with --format")


def _load_document(p: Path) -> Any:
    """The file as one JSON document, or as a list of per-line documents (JSON lines)."""
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise _unrecognised(p, "not a trace file: it is not UTF-8 text") from None
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
        raise _unrecognised(p, "not a trace file: it holds several JSON values that are not one per line") from None


def _is_otlp(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("resourceSpans", value.get("resource_spans")), list)


_ROLES = frozenset({"system", "user", "assistant", "tool", "function", "developer"})


def _is_message(m: Any) -> bool:
    return (isinstance(m, dict) and isinstance(m.get("role"), str) and m["role"] in _ROLES
            and ("content" in m or "tool_calls" in m or "function_call" in m))


def _is_transcript(value: Any) -> bool:
    if isinstance(value, dict):
        value = value.get("messages")
    return isinstance(value, list) and bool(value) and all(map(_is_message, value))


def _is_taubench(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(r, dict) and "task_id" in r and "reward" in r and isinstance(r.get("traj"), list) for r in value)


_ATTRIBUTE_MARKS = ("gen_ai.", "llm.", "openinference.")


def _is_attributes(value: Any) -> bool:
    # Span attributes are mostly dotted names, and name the GenAI or OpenInference conventions; a
    # document of plain keys that merely holds an ``input.value`` is something else.
    if not looks_like_attributes(value) or not value:
        return False
    keys = [k for k in value if isinstance(k, str)]
    dotted = sum("." in k for k in keys)
    marked = any(k.startswith(_ATTRIBUTE_MARKS) for k in keys) or {"input.value", "output.value"} <= set(keys)
    return marked and 2 * dotted >= len(value)


_DETECTORS: dict[str, Callable[[Any], bool]] = {
    "otlp-json": lambda d: _is_otlp(d) or (isinstance(d, list) and bool(d) and all(map(_is_otlp, d))),
    "tau-bench": _is_taubench,
    "swe-agent": looks_like_sweagent,
    "group-chat": looks_like_group_chat,
    "openinference": lambda d: _is_attributes(d) or (isinstance(d, list) and bool(d) and all(map(_is_attributes, d))),
    "transcript": lambda d: _is_transcript(d) or (isinstance(d, list) and bool(d) and all(map(_is_transcript, d))),
}


def candidates(data: Any) -> list[str]:
    """Every format whose required keys the parsed document has."""
    return [fmt for fmt, test in _DETECTORS.items() if test(data)]


def classify(data: Any) -> str | None:
    """The format of an already-parsed JSON document, or None when it is none or more than one."""
    found = candidates(data)
    return found[0] if len(found) == 1 else None


def _keys(obj: dict[Any, Any], n: int) -> str:
    # Keys come from the file: shown as short one-line literals.
    shown = [k if k.isprintable() and len(k) <= 40 else repr(k)[:40] for k in sorted(map(str, obj))[:n]]
    return ", ".join(shown) + (" …" if len(obj) > n else "")


def _shape(data: Any) -> str:
    if isinstance(data, dict):
        return f"an object with keys {_keys(data, 8)}"
    if isinstance(data, list):
        first = data[0] if data else None
        if isinstance(first, dict):
            return f"a list of {len(data)} objects, the first with keys {_keys(first, 6)}"
        return f"a list of {len(data)} values" if data else "an empty list"
    return f"a JSON {type(data).__name__}"


def _sniff(p: Path) -> tuple[str, Any]:
    if not p.is_file():
        raise ConfigError(f"{p}: no such file; check the path")
    if _is_trace_line(_first_line(p)):
        return "jsonl", None
    data = _load_document(p)
    found = candidates(data)
    if not found:
        raise _unrecognised(p, f"not a recognised trace file (it is {_shape(data)})")
    if len(found) > 1:
        raise ConfigError(f"{p}: ambiguous: it has every key that {' and '.join(found)} need; choose one with "
                          f"--format {found[0]} (or --format {found[1]})")
    return found[0], data


def detect_format(path: str | Path) -> str:
    """One of ``FORMATS``; raises ConfigError naming the file when it is none, or more than one, of them."""
    return _sniff(Path(path))[0]


def _from_traces(traces: list[Trace], unit: str, notes: list[str] | None = None) -> ImportResult:
    """Counts summed from each trace's ``costar.import`` entry (the importers that read messages)."""
    res = ImportResult(traces, unit=unit, notes=list(notes or []))
    for t in traces:
        stats = t.metadata.get(IMPORT_STATS) or {}
        res.read += int(stats.get("read", 0))
        res.stored += int(stats.get("stored", 0))
        res.notes += [f"{t.scenario_id or t.trace_id}: {n}" if len(traces) > 1 else n for n in stats.get("notes", [])]
    return res


def _import(fmt: str, data: Any, p: Path) -> ImportResult:
    source = str(p)
    if fmt == "jsonl":
        pairs = read_jsonl(p)
        traces = [t for t, _ in pairs]
        return ImportResult(traces, blobs={k: v for _, b in pairs for k, v in b.items()}, read=len(pairs),
                            stored=len(pairs), unit="traces")
    if data is None:  # forced with --format: parse the document now
        data = _load_document(p)
    if fmt == "otlp-json":
        docs = data if isinstance(data, list) else [data]
        spans = sum(len(ss.get("spans") or []) for d in docs if isinstance(d, dict)
                    for rs in (d.get("resourceSpans") or d.get("resource_spans") or []) if isinstance(rs, dict)
                    for ss in (rs.get("scopeSpans") or rs.get("scope_spans") or []) if isinstance(ss, dict))
        traces = [t for doc in docs for t in otlp_json_to_traces(doc)]
        return ImportResult(traces, read=spans, stored=sum(len(t.spans) for t in traces), unit="spans")
    if fmt == "tau-bench":
        traces, verdicts = taubench_from_data(data, source=source)
        res = _from_traces(traces, "messages")
        res.verdicts = verdicts
        return res
    if fmt == "swe-agent":
        return _from_traces([sweagent_from_data(data, source=source)], "")
    if fmt == "group-chat":
        return _from_traces([group_chat_from_data(data, source=source)], "messages")
    if fmt == "openinference":
        traces = openinference_from_data(data, source=source)
        n = sum(len(t.spans) for t in traces)
        return ImportResult(traces, read=n, stored=n, unit="spans")
    return _from_traces(transcripts_from_data(data, source), "messages")


def import_file(path: str | Path, fmt: str | None = None) -> ImportResult:
    """Read a trace file, of format ``fmt`` or of the one format its content fits. Errors are ConfigError
    with a one-line message naming the file; what was read, kept and skipped is in the result."""
    p = Path(path)
    if fmt is not None:
        if fmt not in FORMATS:
            raise ConfigError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        if not p.is_file():
            raise ConfigError(f"{p}: no such file; check the path")
        data = None
    else:
        fmt, data = _sniff(p)
    try:
        result = _import(fmt, data, p)
    except OtlpDecodeError as exc:
        raise ConfigError(f"{p}: {exc}") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "a value"
        got = " ".join(repr(err.get("input"))[:60].split())
        raise ConfigError(f"{p}: malformed {fmt} file: {where}: {err['msg']} (got {got}); "
                          "fix or re-export it") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise ConfigError(f"{p}: malformed {fmt} file ({type(exc).__name__}: "
                          f"{' '.join(str(exc).split())[:200]}); fix or re-export it") from None
    result.format = fmt
    if not result.unit:  # swe-agent: steps or messages, per file
        units = {str((t.metadata.get(IMPORT_STATS) or {}).get("unit", "records")) for t in result.traces}
        result.unit = units.pop() if len(units) == 1 else "records"
    return result


__all__ = ["FORMATS", "FORMAT_HELP", "ImportResult", "candidates", "classify", "detect_format", "import_file",
           "read_jsonl", "write_jsonl"]
