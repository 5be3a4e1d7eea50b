"""Back to development: a scenario draft from a stored trace (``costar scenarios from-trace``).

The draft is for a person to review, never run as is: it says where it came from in a comment header,
and holds what the trace shows of the task:

* the **prompt**: the user messages of the conversation (the model call whose input holds the most
  user turns; several turns become a list), else the trace's input;
* **input files** recovered from the trace: files kept with it (artifacts stored as setup inputs), the
  results of tools that read a file (``read_file(path)`` and the like), and file contents carried in
  tool arguments (a path beside a ``content``/``text``/``data`` argument, for tools that do not write);
  small text files are written inline, the others beside the draft (``<draft>_files/``);
* the **failing verdicts** as expectations: a check that failed is carried over as the same check (its
  definition is found in the monitor that asked for it, or in the scenario of the trace's run); a
  model judge that failed becomes a criterion, with the judge listed so it reads the criterion.

The draft is validated as a scenario before it is returned, so it loads with ``costar scenarios``.
"""

from __future__ import annotations

import datetime as dt
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from costar.errors import ConfigError
from costar.judges.checks import CheckJudge, scenario_checks
from costar.monitor.matching import trace_project, trace_resource
from costar.monitor.scoring import MONITOR_KEY, MonitorJudges
from costar.scenario import Scenario
from costar.store.base import Store
from costar.trace.genai import message_text
from costar.trace.model import SpanKind, Trace
from costar.verdict import Verdict, VerdictSource

INLINE_MAX = 64 * 1024
"""Text files up to this size are written inside the draft; larger ones beside it."""
FILES_MAX = 50
BYTES_MAX = 20 * 1024 * 1024
CRITERION_MAX = 600

_PATH_KEYS = ("path", "file_path", "filepath", "filename", "file_name", "file", "name")
_CONTENT_KEYS = ("content", "contents", "text", "data", "body")
_READS = re.compile(r"(?i)(^|[_.\-])(read|open|load|cat|view|get|fetch)([_.\-]?(file|document|doc|text))?($|[_.\-])")
_WRITES = re.compile(r"(?i)(write|save|create|put|upload|append|edit|update|delete|remove)")


@dataclass
class ScenarioDraft:
    """A scenario drafted from a trace: the scenario (validated), its header comment, and the files to
    write beside it (relative paths under the draft's folder -> bytes)."""

    trace_id: str
    """The trace it was drafted from."""
    scenario: dict[str, Any]
    """The scenario, as the YAML file holds it (validated)."""
    header: list[str]
    """The comment lines at the top."""
    files: dict[str, bytes] = field(default_factory=dict)
    """Files to write beside the draft: path relative to the draft's folder -> bytes."""
    notes: list[str] = field(default_factory=list)
    """What could not be recovered, and why."""

    def render(self) -> str:
        """The draft as YAML text, its header as comments."""
        head = "".join(f"# {line}\n" if line else "#\n" for line in self.header)
        body = yaml.safe_dump(self.scenario, sort_keys=False, allow_unicode=True, width=100)
        return head + body

    def write(self, path: Path) -> list[Path]:
        """Write the draft to ``path`` and its files beside it; returns every path written."""
        written = []
        for rel, data in self.files.items():
            target = path.parent / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            written.append(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.render(), encoding="utf-8")
        return [path, *written]


def _safe_rel(path: str) -> str | None:
    """A workspace-relative POSIX path from what a trace says (absolute paths lose their root; paths
    that climb out are refused)."""
    p = PurePosixPath(path.replace("\\", "/"))
    parts = [x for x in p.parts if x not in ("/", "", ".")]
    if not parts or any(x == ".." for x in parts) or ":" in parts[0]:
        return None
    return posixpath.join(*parts)


def _turns(trace: Trace) -> list[str]:
    best: list[str] = []
    for s in sorted(trace.spans, key=lambda s: s.start_ns):
        if s.kind != SpanKind.LLM:
            continue
        messages = s.attributes.get("gen_ai.input.messages")
        if not isinstance(messages, list):
            continue
        users = [message_text(m) for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        users = [u for u in users if u.strip()]
        if len(users) >= len(best) and users:
            best = users
    if best:
        return best
    value = trace.input
    if isinstance(value, str) and value.strip():
        return [value]
    if isinstance(value, list) and value and all(isinstance(x, str) for x in value):
        return list(value)
    if isinstance(value, dict):
        for key in ("prompt", "input", "question", "query", "message", "messages"):
            inner = value.get(key)
            if isinstance(inner, str) and inner.strip():
                return [inner]
    if value is not None:
        import json

        return [json.dumps(value, ensure_ascii=False, default=str)]
    return []


def _first_str(args: dict[str, Any], keys: Sequence[str]) -> tuple[str, str] | None:
    for k in keys:
        v = args.get(k)
        if isinstance(v, str) and v:
            return k, v
    return None


def _tool_files(trace: Trace) -> list[tuple[str, bytes, str]]:
    """(path, bytes, where it came from) from tool calls."""
    out = []
    for s in sorted(trace.spans, key=lambda s: s.start_ns):
        if s.kind != SpanKind.TOOL or s.is_error:
            continue
        tool = str(s.attributes.get("gen_ai.tool.name") or s.name.removeprefix("execute_tool "))
        args = s.attributes.get("gen_ai.tool.call.arguments")
        if not isinstance(args, dict):
            continue
        path = _first_str(args, _PATH_KEYS)
        if path is None:
            continue
        content = _first_str(args, [k for k in _CONTENT_KEYS if k != path[0]])
        if content is not None and not _WRITES.search(tool):
            out.append((path[1], content[1].encode("utf-8"), f"argument {content[0]!r} of tool {tool!r}"))
            continue
        result = s.attributes.get("gen_ai.tool.call.result")
        if _READS.search(tool) and not _WRITES.search(tool) and isinstance(result, str) and result:
            out.append((path[1], result.encode("utf-8"), f"result of tool {tool!r}"))
    return out


def _is_text(data: bytes) -> bool:
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _check_spec(verdict: Verdict, trace: Trace, store: Store, monitors: Sequence[MonitorJudges]) -> CheckJudge | None:
    """The check that gave this verdict: in the monitor that asked for it (or any monitor), else in the
    scenario of the trace's run."""
    named = verdict.metadata.get(MONITOR_KEY)
    ordered = sorted(monitors, key=lambda m: m.name != named)
    for mj in ordered:
        for j in mj.judges:
            if j.name == verdict.name and isinstance(j, CheckJudge):
                return j
    if trace.run_id and trace.scenario_id:
        try:
            scenarios = {sc.id: sc for sc in store.load_scenarios(trace.run_id)}
        except Exception:
            scenarios = {}
        sc = scenarios.get(trace.scenario_id)
        if isinstance(sc, Scenario):
            for j in scenario_checks(sc):
                if j.name == verdict.name:
                    return j
    return None


def _judge_description(name: str, monitors: Sequence[MonitorJudges]) -> str:
    for mj in monitors:
        for j in mj.judges:
            if j.name == name:
                return str(getattr(j, "description", "") or "")
    return ""


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _scenario_id(trace_id: str) -> str:
    core = re.sub(r"[^A-Za-z0-9_.-]", "-", trace_id)[:16].strip("-.") or "trace"
    return f"from-trace-{core}"


def scenario_draft(store: Store, trace_id: str, *, monitors: Sequence[MonitorJudges] = (),
                   files_dir: str | None = None, scenario_id: str | None = None) -> ScenarioDraft:
    """Draft a scenario from the stored trace ``trace_id`` (see the module docstring). ``files_dir``
    (relative to the draft's folder) is where files too large or binary to inline go; None keeps
    them out of the draft (a note says which)."""
    trace = store.get_trace(trace_id, spans=True)
    verdicts = [v for v in store.verdicts(trace_ids=[trace.trace_id], latest=True) if v.source != VerdictSource.HUMAN]
    notes: list[str] = []
    turns = _turns(trace)
    if not turns:
        notes.append("the trace records no input: write the prompt by hand")
        turns = ["TODO: the user's request (the trace recorded none)"]

    # Input files: kept with the trace, then recovered from tool calls (the first source of a path wins).
    found: dict[str, tuple[bytes, str]] = {}
    for art in trace.artifacts:
        if art.origin != "setup":
            continue
        rel = _safe_rel(art.path)
        data = store.get_blob(art.sha256) if rel else None
        if rel and data is not None and rel not in found:
            found[rel] = (data, "a file kept with the trace")
    for path, data, where in _tool_files(trace):
        rel = _safe_rel(path)
        if rel is None:
            notes.append(f"skipped a file at {path!r} ({where}): the path leaves the workspace")
        elif rel not in found:
            found[rel] = (data, where)
    setup_files: list[dict[str, Any]] = []
    out_files: dict[str, bytes] = {}
    total = 0
    for rel, (data, where) in found.items():
        if len(setup_files) >= FILES_MAX or total + len(data) > BYTES_MAX:
            notes.append(f"skipped {rel} ({where}): the draft holds at most {FILES_MAX} files, {BYTES_MAX} bytes")
            continue
        total += len(data)
        if _is_text(data) and len(data) <= INLINE_MAX:
            setup_files.append({"dest": rel, "content": data.decode("utf-8")})
        elif files_dir is not None:
            src = posixpath.join(files_dir, rel)
            out_files[src] = data
            setup_files.append({"src": src, "dest": rel})
        else:
            notes.append(f"left out {rel} ({len(data)} bytes, {where}): too large or binary to inline; "
                         "write the draft to a file (-o) to keep it beside the draft")

    checks: list[Any] = []
    criteria: list[str] = []
    judges: list[str] = []
    carried: list[str] = []
    for v in verdicts:
        if v.outcome != "fail":
            continue
        if v.source == VerdictSource.CODE:
            judge = _check_spec(v, trace, store, monitors)
            if judge is not None:
                spec = judge.to_spec()
                # The scenario must gate on what failed, whatever the source said about gating.
                checks.append(spec.model_copy(update={"gate": True}).written())
                carried.append(f"check {v.name}: {_clip(v.rationale, 160)}")
            else:
                notes.append(f"check {v.name!r} failed but its definition was not found; add it by hand "
                             f"({_clip(v.rationale, 160)})")
            continue
        description = _judge_description(v.name, monitors)
        what = description or f"the reply satisfies the {v.name!r} judge"
        criteria.append(_clip(f"{what} (in production it did not: {v.rationale})", CRITERION_MAX))
        if v.name not in judges:
            judges.append(v.name)
        carried.append(f"judge {v.name}: {_clip(v.rationale, 160)}")
    if not carried:
        notes.append("no failing verdict on this trace: add the expectations by hand")
    errors = [v.name for v in verdicts if v.outcome == "error"]
    if errors:
        notes.append(f"judge errors on the trace (not carried over): {', '.join(errors)}")

    sid = scenario_id or _scenario_id(trace.trace_id)
    resource = trace_resource(trace)
    scenario: dict[str, Any] = {
        "id": sid,
        "description": f"Drafted from trace {trace.trace_id}" + (f": {_clip(trace.error, 200)}" if trace.error else ""),
        "tags": ["from-trace"],
        "prompt": turns[0] if len(turns) == 1 else turns,
    }
    if setup_files:
        scenario["setup"] = {"files": setup_files}
    expectations: dict[str, Any] = {}
    if checks:
        expectations["checks"] = checks
    if criteria:
        expectations["criteria"] = criteria
    if expectations:
        scenario["expectations"] = expectations
    if judges:
        scenario["judges"] = judges
    origin = {"trace_id": trace.trace_id, "project": trace_project(trace),
              "service": resource.get("service.name"), "agent": trace.agent.name,
              "agent_version": trace.agent.version, "run_id": trace.run_id, "scenario_id": trace.scenario_id}
    scenario["metadata"] = {"from_trace": {k: v for k, v in origin.items() if v is not None}}
    try:
        Scenario.model_validate(scenario)
    except Exception as exc:  # a bug here must not write a draft that does not load
        raise ConfigError(f"the draft from trace {trace.trace_id} does not validate as a scenario: {exc}") from None

    ended = (trace.end_ns or trace.start_ns) / 1e9
    when = dt.datetime.fromtimestamp(ended, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ") if ended > 0 else "unknown time"
    where = ", ".join(f"{k} {v}" for k, v in (("project", trace_project(trace)),
                                              ("service", resource.get("service.name")),
                                              ("agent", trace.agent.name),
                                              ("version", trace.agent.version)) if v)
    header = [f"Scenario draft from trace {trace.trace_id} (costar scenarios from-trace).",
              f"Source: {where or 'unknown'}; ended {when}; status {trace.status.value}.",
              "REVIEW BEFORE USE: the prompt, the files and the expectations come from a real trace;",
              "nothing here has run. Remove what does not belong to the task, then run it.",
              ""]
    header += [f"Carried over: {c}" for c in carried] or ["Carried over: nothing (no failing verdict)."]
    header += [f"Note: {n}" for n in notes]
    header = [_clip(h, 300) if h else h for h in header]
    return ScenarioDraft(trace.trace_id, scenario, header, out_files, notes)
