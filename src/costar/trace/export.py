"""Send spans recorded in a command agent back to the harness that started it.

The harness sets ``COSTAR_OTLP_ENDPOINT`` for the child; ``harness_recording`` records the
agent with coSTAR's recorder and posts the spans there (OTLP/protobuf) when the block ends.
Outside a harness it still records (so the same code runs standalone) and sends nothing.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

import httpx

from costar.trace.model import Span, SpanKind
from costar.trace.otlp import spans_to_export_request
from costar.trace.recorder import Recording


def post_spans(spans: list[Span], endpoint: str, *, resource: dict[str, Any] | None = None,
               timeout: float = 10.0) -> None:
    request = spans_to_export_request(spans, resource or {"service.name": "costar-agent"})
    httpx.post(endpoint.rstrip("/") + "/v1/traces", content=request.SerializeToString(),
               headers={"Content-Type": "application/x-protobuf"}, timeout=timeout).raise_for_status()


@contextlib.contextmanager
def harness_recording(name: str = "agent", kind: SpanKind = SpanKind.CHAIN,
                      attributes: dict[str, Any] | None = None) -> Iterator[Recording]:
    rec = Recording(name, kind=kind, attributes=attributes)
    try:
        with rec:
            yield rec
    finally:
        endpoint = os.environ.get("COSTAR_OTLP_ENDPOINT")
        if endpoint:
            try:
                post_spans(rec.spans(), endpoint)
            except httpx.HTTPError as exc:  # losing spans must not turn a finished run into a crash
                print(f"costar: could not send spans to the harness: {exc}", file=sys.stderr)
