"""Moving traces in and out of a store: ``costar traces export`` and ``costar traces import``.

Both formats carry artifact bytes, so an export imported into another store is the same run:
JSONL embeds them per line; OTLP JSON carries them as a ``costar.artifact_blobs`` resource
attribute (a kvlist of sha256 → bytes) that other OTLP consumers simply ignore.
"""

from __future__ import annotations

import base64
import json
import shutil
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from costar.errors import ConfigError
from costar.store.base import Run, Store
from costar.trace.formats import ImportResult, import_file
from costar.trace.formats.jsonl import write_jsonl
from costar.trace.model import Trace
from costar.trace.otlp import otlp_json_to_traces, traces_to_otlp_json

EXPORT_FORMATS = ("jsonl", "otlp-json")
BLOBS_KEY = "costar.artifact_blobs"


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
    else:
        with output.open("w", encoding="utf-8") as f:
            _write_otlp_json(traces, store, f)
    return len(traces)


def _read_otlp_with_blobs(path: Path) -> ImportResult | None:
    """OTLP JSON written by ``export_run``: strip our blob attribute before the generic mapping."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or "resourceSpans" not in doc:
        return None
    blobs: dict[str, bytes] = {}
    found = False
    for rs in doc["resourceSpans"]:
        attrs = (rs.get("resource") or {}).get("attributes") or []
        keep = []
        for kv in attrs:
            if kv.get("key") == BLOBS_KEY:
                found = True
                for item in kv.get("value", {}).get("kvlistValue", {}).get("values", []):
                    blobs[item["key"]] = base64.b64decode(item["value"].get("bytesValue", ""))
            else:
                keep.append(kv)
        if attrs:
            rs["resource"]["attributes"] = keep
    if not found:
        return None
    return ImportResult(traces=otlp_json_to_traces(doc), blobs=blobs, format="otlp-json")


@dataclass
class ImportOutcome:
    run_ids: list[str]
    traces: int
    verdicts: int
    skipped: int
    format: str


def import_into_store(store: Store, path: Path, *, run_id: str | None = None) -> ImportOutcome:
    """Import a trace file. Traces keep the run they were exported from (recreated here when
    absent); traces that came with no run (tau-bench, SWE-agent, ...) go to a new run."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    res = _read_otlp_with_blobs(path) or import_file(path)
    if not res.traces:
        raise ConfigError(f"{path}: holds no traces")
    existing = set(store.trace_ids())
    fresh = [t for t in res.traces if t.trace_id not in existing]
    skipped = len(res.traces) - len(fresh)
    new_run = run_id or Run().run_id
    groups: dict[str, list[Trace]] = defaultdict(list)
    for t in fresh:
        rid = run_id or t.run_id or new_run
        groups[rid].append(t.model_copy(update={"run_id": rid}))
    for data in res.blobs.values():
        store.put_blob(data)
    known_runs = {r.run_id for r in store.list_runs(limit=1_000_000)}
    for rid, traces in groups.items():
        if rid not in known_runs:
            store.create_run(Run(run_id=rid, status="imported", agent=traces[0].agent,
                                 description=f"imported from {path.name} ({res.format})"))
        for i in range(0, len(traces), 200):
            store.write_traces(traces[i:i + 200])
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
                         format=res.format)
