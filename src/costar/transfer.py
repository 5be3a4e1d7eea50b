"""Moving traces in and out of a store: ``costar traces export`` and ``costar traces import``.

Both formats carry artifact bytes, so an export imported into another store is the same run:
JSONL embeds them per line; OTLP JSON carries them as a ``costar.artifact_blobs`` resource
attribute (a kvlist of sha256 → bytes) that other OTLP consumers simply ignore.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import shutil
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from costar.errors import ConfigError
from costar.store.base import Run, Store
from costar.trace.finalize import finalize_spans
from costar.trace.formats import ImportResult, import_file
from costar.trace.formats.jsonl import write_jsonl
from costar.trace.model import Trace, compute_totals
from costar.trace.otlp import OtlpDecodeError, otlp_json_to_traces, traces_to_otlp_json
from costar.trace.tools import tool_definitions

EXPORT_FORMATS = ("jsonl", "otlp-json")
BLOBS_KEY = "costar.artifact_blobs"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _blobs_attribute(trace: Trace, store: Store) -> dict[str, Any] | None:
    values = []
    for a in trace.artifacts:
        data = store.get_blob(a.sha256)
        if data is not None:
            values.append({"key": a.sha256, "value": {"bytesValue": base64.b64encode(data).decode()}})
    if not values:
        return None
    return {"key": BLOBS_KEY, "value": {"kvlistValue": {"values": values}}}


def _write_otlp_json(traces: list[Trace], store: Store, out: Any) -> None:
    doc = traces_to_otlp_json(traces)
    by_id = {t.trace_id: t for t in traces}
    for rs in doc.get("resourceSpans", []):
        tid = next((s.get("traceId") for ss in rs.get("scopeSpans", []) for s in ss.get("spans", [])), None)
        trace = by_id.get(tid or "")
        attr = _blobs_attribute(trace, store) if trace is not None else None
        if attr is not None:
            rs.setdefault("resource", {}).setdefault("attributes", []).append(attr)
    json.dump(doc, out)
    out.write("\n")


def export_run(store: Store, run_ref: str, fmt: str, output: Path | None) -> int:
    """Write a run's traces (with their artifacts) to ``output`` or stdout; returns the count."""
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")
    run_id = store.resolve_run_id(run_ref)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        if output is not None:
            return write_jsonl(store.iter_traces(run_id), output, blob_reader=store.get_blob)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "export.jsonl"
            n = write_jsonl(store.iter_traces(run_id), path, blob_reader=store.get_blob)
            with path.open(encoding="utf-8") as f:
                shutil.copyfileobj(f, sys.stdout)
            return n
    traces = list(store.iter_traces(run_id))
    if output is None:
        _write_otlp_json(traces, store, sys.stdout)
        return len(traces)
    # Like the JSONL writer: through a temporary file, so a failure never leaves half an export.
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp")
    try:
        with open(fd, "w", encoding="utf-8") as f:
            _write_otlp_json(traces, store, f)
        Path(tmp).replace(output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(traces)


def _blob_shape_error(path: Path, what: str) -> ConfigError:
    return ConfigError(f"{path}: the {BLOBS_KEY} attribute is malformed ({what}); re-export the file "
                       "with 'costar traces export'")


def _decode_blob(item: Any, path: Path) -> tuple[str, bytes]:
    """One ``{"key": sha256, "value": {"bytesValue": base64}}`` entry, its hash verified."""
    if not isinstance(item, dict) or not isinstance(item.get("key"), str):
        raise _blob_shape_error(path, "an entry has no string 'key'")
    sha = item["key"]
    if not _SHA256.fullmatch(sha):
        raise ConfigError(f"{path}: blob key {sha[:80]!r} is not a sha256 (64 lowercase hex digits); "
                          "the file is damaged or crafted, so nothing was imported")
    value = item.get("value")
    text = value.get("bytesValue") if isinstance(value, dict) else None
    if not isinstance(text, str):
        raise _blob_shape_error(path, f"blob {sha} has no 'bytesValue' string")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{path}: blob {sha} is not valid base64; re-export the file") from None
    if hashlib.sha256(data).hexdigest() != sha:
        raise ConfigError(f"{path}: blob {sha} does not match its sha256 (damaged file); re-export it")
    return sha, data


def _blob_items(kv: dict[str, Any], path: Path) -> list[Any]:
    value = kv.get("value")
    kvlist = value.get("kvlistValue") if isinstance(value, dict) else None
    values = kvlist.get("values", []) if isinstance(kvlist, dict) else None
    if not isinstance(values, list):
        raise _blob_shape_error(path, "expected {'value': {'kvlistValue': {'values': [...]}}}")
    return values


def _read_otlp_with_blobs(path: Path) -> ImportResult | None:
    """OTLP JSON written by ``export_run``: strip our blob attribute before the generic mapping.

    None when the file is not OTLP JSON carrying that attribute (the generic importers take it).
    The file is untrusted: every shape is checked and every blob's bytes must hash to its key,
    with a one-line ConfigError naming the file otherwise."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the file ({exc.strerror or exc}); check the path") from None
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(doc, dict) or "resourceSpans" not in doc:
        return None
    resource_spans = doc["resourceSpans"]
    if not isinstance(resource_spans, list):
        raise ConfigError(f"{path}: OTLP JSON 'resourceSpans' must be an array, got "
                          f"{type(resource_spans).__name__}; fix or re-export the file")
    blobs: dict[str, bytes] = {}
    found = False
    for rs in resource_spans:
        if not isinstance(rs, dict):
            raise ConfigError(f"{path}: each OTLP JSON 'resourceSpans' entry must be an object, got "
                              f"{type(rs).__name__}; fix or re-export the file")
        resource = rs.get("resource")
        if not isinstance(resource, dict) or not isinstance(resource.get("attributes"), list):
            continue  # no attributes of ours here; the OTLP mapping judges the rest of the shape
        attrs = resource["attributes"]
        keep = []
        for kv in attrs:
            if isinstance(kv, dict) and kv.get("key") == BLOBS_KEY:
                found = True
                for item in _blob_items(kv, path):
                    sha, data = _decode_blob(item, path)
                    blobs[sha] = data
            else:
                keep.append(kv)
        resource["attributes"] = keep
    if not found:
        return None
    try:
        traces = otlp_json_to_traces(doc)
    except OtlpDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    spans = sum(len(t.spans) for t in traces)
    return ImportResult(traces=traces, blobs=blobs, format="otlp-json", read=spans, stored=spans, unit="spans")


def _verify_blobs(path: Path, blobs: dict[str, bytes]) -> None:
    """Every blob must be stored under the hash of its bytes: the key names a file in the store."""
    for sha, data in blobs.items():
        if not _SHA256.fullmatch(sha):  # JSON object keys are always strings
            raise ConfigError(f"{path}: blob key {sha[:80]!r} is not a sha256 (64 lowercase hex digits); "
                              "the file is damaged or crafted, so nothing was imported")
        if hashlib.sha256(data).hexdigest() != sha:
            raise ConfigError(f"{path}: blob {sha} does not match its sha256 (damaged file); re-export it")


def _create_missing_runs(store: Store, trace_ids: list[str], known_runs: set[str], description: str) -> None:
    """Stored traces whose run is missing (an earlier import stopped between the two): create it."""
    for i in range(0, len(trace_ids), 500):
        for t in store.get_traces(trace_ids[i:i + 500], spans=False):
            if t.run_id and t.run_id not in known_runs:
                store.create_run(Run(run_id=t.run_id, status="imported", agent=t.agent, description=description,
                                     metadata={"origin": "import"}))
                known_runs.add(t.run_id)


@dataclass
class ImportOutcome:
    run_ids: list[str]
    traces: int
    verdicts: int
    skipped: int  # traces already in the store
    format: str
    read: str = ""  # what the importer read, kept and skipped (ImportResult.describe)
    renumbered: int = 0  # traces given the next free trial number: their (scenario, trial) was taken


def _finalized(trace: Trace) -> Trace:
    """An imported trace gets what a recorded one gets: duplicate model-call spans merged and the
    tool runs its LLM spans prove recorded as inferred TOOL spans, and the tool definitions its spans
    show (a no-op on coSTAR's own exports)."""
    spans = finalize_spans(list(trace.spans))
    tools = trace.tools or tool_definitions(spans)
    if [s.span_id for s in spans] == [s.span_id for s in trace.spans] and tools == trace.tools:
        return trace
    return trace.model_copy(update={"spans": spans, "totals": compute_totals(spans, trace.totals.latency_s),
                                    "tools": tools})


def import_into_store(store: Store, path: Path, *, run_id: str | None = None, fmt: str | None = None) -> ImportOutcome:
    """Import a trace file (of format ``fmt``, else the one its content fits). Traces keep the run
    they were exported from (recreated here when absent); traces that came with no run (tau-bench,
    SWE-agent, ...) go to a new run."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    res = (_read_otlp_with_blobs(path) if fmt in (None, "otlp-json") else None) or import_file(path, fmt)
    if not res.traces:
        raise ConfigError(f"{path}: holds no traces")
    _verify_blobs(path, res.blobs)
    existing = set(store.trace_ids())
    fresh = [_finalized(t) for t in res.traces if t.trace_id not in existing]
    skipped = len(res.traces) - len(fresh)
    new_run = run_id or Run().run_id
    groups: dict[str, list[Trace]] = defaultdict(list)
    for t in fresh:
        rid = run_id or t.run_id or new_run
        groups[rid].append(t.model_copy(update={"run_id": rid}))
    for sha, data in res.blobs.items():
        if store.put_blob(data) != sha:  # cannot happen after _verify_blobs; never store under a foreign key
            raise ConfigError(f"{path}: blob {sha} does not match its sha256 (damaged file); re-export it")
    known_runs = {r.run_id for r in store.list_runs(limit=1_000_000)}
    # Traces first, their run after: an import that fails half-way leaves no empty run behind, and
    # re-importing the file skips what was stored and creates the runs it still lacks.
    renumbered = 0
    for rid, traces in groups.items():
        taken = {(sc, trial) for _, sc, trial in store.trace_keys(rid)}
        traces[:], moved = _distinct_trials(traces, taken)
        renumbered += moved
        for i in range(0, len(traces), 200):
            store.write_traces(traces[i:i + 200])
        if rid not in known_runs:
            store.create_run(Run(run_id=rid, status="imported", agent=traces[0].agent,
                                 description=f"imported from {path.name} ({res.format})",
                                 metadata={"origin": "import"}))
            known_runs.add(rid)
    if skipped:
        _create_missing_runs(store, [t.trace_id for t in res.traces if t.trace_id in existing], known_runs,
                             f"imported from {path.name} ({res.format})")
    fresh_ids = {t.trace_id for t in fresh}
    verdicts = [v for v in res.verdicts if v.trace_id in fresh_ids]
    run_of = {t.trace_id: rid for rid, ts in groups.items() for t in ts}
    by_run: dict[str, list[Any]] = defaultdict(list)
    for v in verdicts:
        by_run[run_of[v.trace_id or ""]].append(v)
    for rid, vs in by_run.items():
        store.write_verdicts(vs, rid)
    if not fresh:
        raise ConfigError(f"{path}: all {skipped} traces are already in the store; nothing imported")
    return ImportOutcome(run_ids=sorted(groups), traces=len(fresh), verdicts=len(verdicts), skipped=skipped,
                         format=res.format, read=res.describe(), renumbered=renumbered)


def _distinct_trials(traces: list[Trace], taken: set[tuple[str | None, int]]) -> tuple[list[Trace], int]:
    """A run stores one trace per (scenario, trial). Imported traces of a (scenario, trial) already
    taken (several trajectories of one task in a file, a second file into the same run) are further
    trials of that scenario: each gets the next free trial number. Returns them and how many moved."""
    out: list[Trace] = []
    moved = 0
    next_free: dict[str, int] = {}
    for t in traces:
        scenario = t.scenario_id
        if scenario is not None and (scenario, t.trial) in taken:
            n = next_free.get(scenario)
            if n is None:
                n = max(trial for sc, trial in taken if sc == scenario) + 1
            while (scenario, n) in taken:
                n += 1
            t = t.model_copy(update={"trial": n})
            next_free[scenario] = n + 1
            moved += 1
        taken.add((t.scenario_id, t.trial))
        out.append(t)
    return out, moved
