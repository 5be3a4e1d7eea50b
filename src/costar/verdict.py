"""The verdict contract: one judge's assessment of one trace."""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class VerdictSource(StrEnum):
    """What kind of judge produced a verdict."""

    CODE = "code"
    """A deterministic check or Python judge."""
    LLM = "llm"
    """A model asked about the trace (an LLM judge)."""
    AGENT = "agent"
    """An agentic judge: a model that explored the trace and its files with tools."""
    HUMAN = "human"
    """A person: a label (see :mod:`costar.labels`)."""


class VerdictCost(BaseModel):
    """What producing one verdict cost (zero for checks)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    input_tokens: int = 0
    """Prompt tokens the judge's model calls used."""
    output_tokens: int = 0
    """Completion tokens the judge's model calls used."""
    cost_usd: float = 0.0
    """Their price in US dollars (0 when the model's price is unknown)."""
    seconds: float = 0.0
    """Wall time the judge took on this trace."""


Outcome = Literal["pass", "fail", "error", "metric"]
"""A verdict's outcome: ``pass``/``fail`` decide, ``error`` could not decide, ``metric`` informs only."""


class Verdict(BaseModel):
    """One judge's (or one human's) assessment of one trace.

    ``passed`` is None for a metric (it informs, it does not gate) and for an error. A judge that
    could not reach a decision sets ``error``; an error is never a pass. Only ``gating`` verdicts
    decide a trial (see :mod:`costar.summary`).
    """

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    name: str
    """The verdict's name: the judge's name, or the check's (``output_contains("total")``)."""
    value: bool | int | float | str | None = None
    """What the judge measured: a bool for pass/fail judges, a number or a label for the others."""
    passed: bool | None = None
    """True or False when the judge decided; None for a metric or an error."""
    rationale: str = ""
    """Why, in the judge's words (untrusted text: escape it before showing it)."""
    confidence: float | None = None
    """How sure the judge was, 0 to 1, when it says (e.g. the agreement of several samples)."""
    source: VerdictSource = VerdictSource.CODE
    """What kind of judge produced the verdict."""
    source_id: str | None = None
    """Who produced it: the judge's name, the importer (``tau-bench``) or, for a label, the labeler."""
    fingerprint: str | None = None
    """Hash of the judge's configuration: a stored verdict is reused only while the judge is unchanged."""
    gating: bool = True
    """Whether the verdict decides its trial; False for diagnostics, which are reported only."""
    cost: VerdictCost = Field(default_factory=VerdictCost)
    """What producing this verdict cost."""
    error: str | None = None
    """Why the judge could not decide (a model failure, a crash); None when it did."""
    trace_id: str | None = None
    """The trace judged."""
    evidence: list[str] = Field(default_factory=list)
    """Span ids the judge's evidence points at, earliest cause first when the judge knows it."""
    created_at: float = Field(default_factory=time.time)
    """When the verdict was made (Unix seconds)."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Anything else the judge reports (JSON values)."""

    @property
    def outcome(self) -> Outcome:
        """``error`` when the judge could not decide, ``metric`` when it does not gate by value,
        else ``pass`` or ``fail``."""
        if self.error is not None:
            return "error"
        if self.passed is None:
            return "metric"
        return "pass" if self.passed else "fail"

    @classmethod
    def failure(cls, name: str, error: str, **kw: Any) -> Verdict:
        """The verdict of a judge that could not decide: ``error`` set, never a pass."""
        return cls(name=name, passed=None, error=error, rationale=f"judge error: {error}", **kw)
