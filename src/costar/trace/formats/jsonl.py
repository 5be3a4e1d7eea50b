"""coSTAR's own lossless exchange format: one trace per line.

A line is either ``Trace.model_dump_json()`` or, when artifact bytes travel along,
``{"trace": {...}, "blobs": {sha256: base64}}``. Writing streams (traces may come from a
generator such as ``store.iter_traces``) and goes through a temporary file, so a crash never
leaves a half-written export under the final name.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from pydantic import ValidationError

from costar.errors import ConfigError
from costar.trace.model import Trace

BlobReader = Callable[[str], bytes | None]


def _blobs_for(trace: Trace, blob_reader: BlobReader) -> dict[str, str]:
    blobs: dict[str, str] = {}
    for a in trace.artifacts:
        if a.sha256 in blobs:
            continue
        data = blob_reader(a.sha256)
        if data is not None:  # a missing blob is left out; the artifact record still says it existed
            blobs[a.sha256] = base64.b64encode(data).decode("ascii")
    return blobs


def _line(trace: Trace, blob_reader: BlobReader | None) -> str:
    body = trace.model_dump_json()
    if blob_reader is None:
        return body
    return f'{{"trace":{body},"blobs":{json.dumps(_blobs_for(trace, blob_reader), separators=(",", ":"))}}}'


def write_jsonl(traces: Iterable[Trace], path: str | Path, blob_reader: BlobReader | None = None) -> int:
    """Write traces one per line; with ``blob_reader`` (e.g. ``store.get_blob``) artifacts embed too.

    Returns the number of traces written.
    """
    dest = Path(path)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            for trace in traces:
                f.write(_line(trace, blob_reader))
                f.write("\n")
                count += 1
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return count


def _decode_blobs(raw: object, where: str) -> dict[str, bytes]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: 'blobs' must map sha256 to base64 bytes")
    blobs = {}
    for sha, text in raw.items():
        try:
            data = base64.b64decode(str(text), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{where}: blob {sha} is not valid base64; re-export the file") from None
        if hashlib.sha256(data).hexdigest() != sha:
            raise ConfigError(f"{where}: blob {sha} does not match its sha256 (damaged file); re-export it")
        blobs[sha] = data
    return blobs


def _validation_summary(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "trace"
    return f"{loc}: {err['msg']}"


def _parse_line(line: str, where: str) -> tuple[Trace, dict[str, bytes]]:
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"{where}: not valid JSON ({' '.join(str(exc).split())[:120]}); "
                          "each line must be one coSTAR trace") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: each line must be a JSON object holding one coSTAR trace")
    wrapped = isinstance(obj.get("trace"), dict) and "trace_id" not in obj
    try:
        trace = Trace.model_validate(obj["trace"] if wrapped else obj)
    except ValidationError as exc:
        raise ConfigError(f"{where}: not a coSTAR trace ({_validation_summary(exc)})") from None
    return trace, _decode_blobs(obj.get("blobs", {}), where) if wrapped else {}


def iter_jsonl(path: str | Path) -> Iterator[tuple[Trace, dict[str, bytes]]]:
    """Stream (trace, blobs) pairs; blank lines are skipped, blob hashes are verified."""
    p = Path(path)
    try:
        f = p.open(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file; check the path") from None
    with f:
        try:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    yield _parse_line(line, f"{p}:{lineno}")
        except UnicodeDecodeError:
            raise ConfigError(f"{p}: not UTF-8 text; a coSTAR JSONL file holds one JSON trace per line") from None


def read_jsonl(path: str | Path) -> list[tuple[Trace, dict[str, bytes]]]:
    return list(iter_jsonl(path))
