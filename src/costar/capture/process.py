"""Capture inside a command agent started by the harness (loaded by our ``sitecustomize``).

The process records from start to exit: SDK calls anywhere in it become LLM spans, and at exit
they are sent to the harness's OTLP receiver. Nothing is sent when nothing was captured.
"""

from __future__ import annotations

import atexit
import os
import sys

from costar.capture.sdk import instrument
from costar.trace.model import SpanKind
from costar.trace.recorder import Recording

_recording: Recording | None = None


def start_process_capture() -> None:
    global _recording
    endpoint = os.environ.get("COSTAR_OTLP_ENDPOINT")
    if not endpoint or _recording is not None:
        return
    instrument()
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    _recording = Recording(f"process {name}", kind=SpanKind.CHAIN, attributes={"process.pid": os.getpid()})
    # A fallback only: code already recording (e.g. inside harness_recording) keeps its own spans.
    _recording.activate()
    atexit.register(_flush, endpoint)


def _flush(endpoint: str) -> None:
    rec = _recording
    if rec is None:
        return
    rec.deactivate()
    rec.root.end()
    spans = rec.spans()
    if len(spans) <= 1:  # only the process span itself: nothing worth sending
        return
    from costar.trace.export import post_spans

    try:
        post_spans(spans, endpoint)
    except Exception as exc:  # never turn a finished agent into a failed one
        print(f"costar: could not send captured spans to the harness: {exc}", file=sys.stderr)
