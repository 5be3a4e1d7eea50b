"""The verdict contract: one judge's assessment of one trace."""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class VerdictSource(StrEnum):
    CODE = "code"
    LLM = "llm"
    AGENT = "agent"
    HUMAN = "human"


class VerdictCost(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0


Outcome = Literal["pass", "fail", "error", "metric"]


class Verdict(BaseModel):
    """``passed`` is None for a metric (it informs, it does not gate) and for an error.

    A judge that could not reach a decision sets ``error``; an error is never a pass.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    value: bool | int | float | str | None = None
    passed: bool | None = None
    rationale: str = ""
    confidence: float | None = None
    source: VerdictSource = VerdictSource.CODE
    source_id: str | None = None
    fingerprint: str | None = None
    gating: bool = True
    cost: VerdictCost = Field(default_factory=VerdictCost)
    error: str | None = None
    trace_id: str | None = None
    # Span ids the judge's evidence points at, earliest cause first when the judge knows it.
    evidence: list[str] = Field(default_factory=list)
    created_at: float = Field(default_factory=time.time)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def outcome(self) -> Outcome:
        if self.error is not None:
            return "error"
        if self.passed is None:
            return "metric"
        return "pass" if self.passed else "fail"

    @classmethod
    def failure(cls, name: str, error: str, **kw: Any) -> Verdict:
        return cls(name=name, passed=None, error=error, rationale=f"judge error: {error}", **kw)
