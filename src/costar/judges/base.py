"""The judge protocol: anything that turns a stored trace into a Verdict."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from costar.models.telemetry import UsageMeter, metered
from costar.trace.recorder import unrecorded
from costar.verdict import Verdict, VerdictCost, VerdictSource

if TYPE_CHECKING:
    from costar.pricing import PriceTable
    from costar.scenario import Scenario
    from costar.store.base import Store
    from costar.trace.model import Trace


@dataclass
class JudgeContext:
    """What a judge sees: the trace, the scenario it came from, and read access to artifacts."""

    trace: Trace
    scenario: Scenario | None = None
    store: Store | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def read_artifact(self, path: str) -> bytes | None:
        art = self.trace.artifact(path)
        if art is None or self.store is None:
            return None
        return self.store.get_blob(art.sha256)

    def artifact_text(self, path: str) -> str | None:
        data = self.read_artifact(path)
        return None if data is None else data.decode("utf-8", errors="replace")


def fingerprint_of(config: dict[str, Any]) -> str:
    blob = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Judge(ABC):
    """Subclasses implement ``evaluate`` (sync) or override ``aevaluate`` (async).

    ``config()`` must include everything that changes a verdict (instructions, model,
    thresholds, version): its hash is the fingerprint verdicts are cached under.
    """

    name: str
    gating: bool = True
    source: VerdictSource = VerdictSource.CODE
    version: str = "1"
    # False when the judge reads only the trace's head (output, totals, artifacts) or pages spans
    # from the store itself: re-scoring then never loads whole span lists.
    needs_spans: bool = True

    @property
    def uses_criteria(self) -> bool:
        """Whether the judge reads a scenario's natural-language criteria (a model judge whose
        instructions use ``{{criteria}}``): a scenario with criteria and no such judge gets a warning."""
        return False

    @abstractmethod
    def config(self) -> dict[str, Any]: ...

    def use_prices(self, prices: PriceTable) -> None:
        """Price the model calls this judge makes with ``prices`` (a project's table, set by the judge
        registry). Prices change what a verdict costs, never the verdict, so not the fingerprint.
        Judges that call no model ignore it."""
        return None  # a judge without model calls has nothing to price

    def fingerprint(self) -> str:
        # Judges are configured once and then applied to many traces: hash once.
        cached = self.__dict__.get("_fingerprint")
        if cached is None:
            cached = fingerprint_of({"judge": type(self).__qualname__, "version": self.version,
                                     "name": self.name, "gating": self.gating, **self.config()})
            self.__dict__["_fingerprint"] = cached
        return cached

    def with_gating(self, gate: bool) -> Judge:
        """A copy that gates (or is a diagnostic) as a scenario asks, leaving this judge unchanged."""
        if gate == self.gating:
            return self
        clone = copy.copy(self)
        clone.__dict__.pop("_fingerprint", None)
        clone.gating = gate
        return clone

    def evaluate(self, ctx: JudgeContext) -> Verdict:
        raise NotImplementedError(f"{type(self).__name__} implements neither evaluate nor aevaluate")

    async def aevaluate(self, ctx: JudgeContext) -> Verdict:
        # A synchronous judge (user code, files to parse) must not stall the event loop that is
        # running other trials and judges: it runs in a worker thread.
        return await asyncio.to_thread(self.evaluate, ctx)

    async def judge(self, ctx: JudgeContext) -> Verdict:
        """Run the judge; any exception becomes an error verdict, never a pass.

        The judge runs unrecorded: its model calls are not the agent's, so they never join a trace
        (not even while trials of the same run are still recording), and they are metered instead,
        so the verdict carries the judge's tokens and money."""
        started = time.perf_counter()
        with unrecorded(), metered() as meter:
            try:
                verdict = await self.aevaluate(ctx)
            except Exception as exc:  # a broken judge must not stop the run
                verdict = Verdict.failure(self.name, f"{type(exc).__name__}: {exc}", source=self.source)
        elapsed = time.perf_counter() - started
        updates: dict[str, Any] = {
            "trace_id": ctx.trace.trace_id,
            "fingerprint": self.fingerprint(),
            "gating": self.gating,
            "source_id": verdict.source_id or self.name,
            "cost": _cost(verdict.cost, meter, elapsed),
        }
        return verdict.model_copy(update=updates)


def _cost(reported: VerdictCost, meter: UsageMeter, elapsed: float) -> VerdictCost:
    """The verdict's cost: what the judge reported, or what its model calls were metered at when it
    reported none (a python judge calling a model, a judge that raised after spending)."""
    seconds = reported.seconds or elapsed
    if reported.input_tokens or reported.output_tokens or reported.cost_usd or not meter.calls:
        return reported.model_copy(update={"seconds": seconds})
    return VerdictCost(input_tokens=meter.input_tokens, output_tokens=meter.output_tokens,
                       cost_usd=meter.cost_usd, seconds=seconds)
