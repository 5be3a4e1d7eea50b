"""Capture inside a command agent started by the harness (loaded by our ``sitecustomize``).

The process records from start to exit: SDK calls anywhere in it become LLM spans, and at exit
they are sent to the harness's OTLP receiver. Nothing is sent when nothing was captured. A process
the harness stops at its timeout (SIGTERM to its group) sends them too before it ends: a runaway
loop, the costliest trial, must not look free.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
from types import FrameType

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
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:  # the agent's own handler is left alone

        def on_term(signum: int, frame: FrameType | None) -> None:
            _flush(endpoint)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)  # ends as a SIGTERM would have, without atexit

        try:
            signal.signal(signal.SIGTERM, on_term)
        except ValueError:  # not the main thread (an embedding application): exit still sends them
            pass


def _flush(endpoint: str) -> None:
    global _recording
    rec = _recording
    if rec is None:
        return
    _recording = None  # once: at SIGTERM, or at exit
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
