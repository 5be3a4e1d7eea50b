"""Consistent sampling by trace id.

A trace is in a sample of rate ``r`` when ``h(trace_id) < r``, where ``h`` maps the id to [0, 1):
the first 8 bytes of the SHA-256 of the id's UTF-8 text, read as a big-endian unsigned integer and
divided by 2^64. So:

* the same trace is in or out the same way for every monitor with the same rate, in every process
  and on every machine, whenever it is asked (a backfill picks the traces live scoring picked);
* samples nest: a trace in at 10% is in at 50% (one threshold, one draw per trace), so a monitor
  with a higher rate sees a superset of one with a lower rate, and their verdicts are shared;
* the draw does not depend on how the id was made: an agent that already samples its traces with
  OpenTelemetry's ``TraceIdRatioBased`` sampler (a comparison on the id's low bits) does not skew it,
  because the hash mixes every bit.

``r = 0`` takes nothing, ``r = 1`` everything.
"""

from __future__ import annotations

import hashlib

_SCALE = float(2**64)


def sample_point(trace_id: str) -> float:
    """Where the trace falls in [0, 1)."""
    digest = hashlib.sha256(trace_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def sampled(trace_id: str, rate: float) -> bool:
    """Whether the trace is in a sample of ``rate`` (0..1)."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    return sample_point(trace_id) < rate
