"""LLM judges: instructions with template variables, a typed value, structured output, self-consistency.

    judge = LlmJudge("polite", "Is this reply polite?\\n{{outputs}}", model="openai:/gpt-4.1-mini")

The model answers ``{rationale, value}`` through JSON-schema output. A reply that does not parse, or
whose value is outside what the judge allows, is retried; when every attempt fails the verdict is an
error, never a pass. With ``samples: k`` the judge asks k times and reports the majority (or median)
with the agreement fraction as its confidence.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import statistics
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from costar.errors import ConfigError
from costar.judges.base import Judge, JudgeContext
from costar.judges.trace_tools import TraceView, clip, to_text, trace_summary
from costar.models.errors import ModelError, ModelOutputError
from costar.models.uri import parse_model_uri
from costar.verdict import Verdict, VerdictCost, VerdictSource

if TYPE_CHECKING:
    from costar.models.client import ModelClient
    from costar.models.types import ChatResult
    from costar.pricing import PriceTable

DEFAULT_MODEL = "local:/smollm2"
RATIONALE_MAX = 1000  # characters; every string in an output schema is bounded for small local models


# --------------------------------------------------------------------------- values


class ValueSpec(BaseModel):
    """What a judge answers: ``bool``; a ``number`` (passes at >= ``threshold``); or one of ``labels``
    (passes when in ``pass_labels``). Without a threshold or pass labels the verdict is a metric."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["bool", "number", "label"] = "bool"
    threshold: float | None = None
    min: float | None = None
    max: float | None = None
    labels: list[str] = Field(default_factory=list)
    pass_labels: list[str] = Field(default_factory=list)
    # Numbers: samples within this distance of the median count as agreeing (default: 10% of the range).
    tolerance: float | None = Field(default=None, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        return {"type": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _consistent(self) -> ValueSpec:
        numeric = (self.threshold, self.min, self.max, self.tolerance)
        if self.type != "number" and any(x is not None for x in numeric):
            raise ValueError(f"threshold/min/max/tolerance apply to number values, not {self.type}")
        if self.type != "label" and (self.labels or self.pass_labels):
            raise ValueError(f"labels/pass_labels apply to label values, not {self.type}")
        if self.type == "label":
            if not self.labels:
                raise ValueError("a label value needs 'labels' (the allowed answers)")
            if len(set(self.labels)) != len(self.labels):
                raise ValueError("'labels' has duplicates")
            unknown = [x for x in self.pass_labels if x not in self.labels]
            if unknown:
                raise ValueError(f"pass_labels {unknown} are not among labels {self.labels}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is greater than max {self.max:g}")
        if self.threshold is not None and not self._in_range(self.threshold):
            raise ValueError(f"threshold {self.threshold:g} is outside [min, max]")
        return self

    def _in_range(self, x: float) -> bool:
        return (self.min is None or x >= self.min) and (self.max is None or x <= self.max)

    def json_schema(self) -> dict[str, Any]:
        if self.type == "bool":
            return {"type": "boolean"}
        if self.type == "label":
            return {"type": "string", "enum": list(self.labels), "maxLength": max(len(x) for x in self.labels)}
        out: dict[str, Any] = {"type": "number"}
        if self.min is not None:
            out["minimum"] = self.min
        if self.max is not None:
            out["maximum"] = self.max
        return out

    def describe(self) -> str:
        """The value as a prompt states it."""
        if self.type == "bool":
            return "true or false (true means the trace passes)"
        if self.type == "label":
            passing = f"; passing labels: {', '.join(self.pass_labels)}" if self.pass_labels else ""
            return f"exactly one of: {', '.join(self.labels)}{passing}"
        lo = "-∞" if self.min is None else f"{self.min:g}"
        hi = "∞" if self.max is None else f"{self.max:g}"
        passing = f"; {self.threshold:g} or more passes" if self.threshold is not None else ""
        return f"a number from {lo} to {hi}{passing}"

    def coerce(self, raw: Any) -> bool | float | int | str:
        """The value if allowed; ValueError (a parse failure, retried) otherwise."""
        if self.type == "bool":
            if isinstance(raw, bool):
                return raw
            raise ValueError(f"value must be true or false, got {raw!r}")
        if self.type == "label":
            if isinstance(raw, str) and raw in self.labels:
                return raw
            raise ValueError(f"value must be one of {self.labels}, got {raw!r}")
        if isinstance(raw, bool) or not isinstance(raw, int | float) or raw != raw:
            raise ValueError(f"value must be a number, got {raw!r}")
        if not self._in_range(raw):
            raise ValueError(f"value {raw:g} is outside [{self.min}, {self.max}]")
        return raw

    def passed(self, value: Any) -> bool | None:
        if self.type == "bool":
            return bool(value)
        if self.type == "label":
            return value in self.pass_labels if self.pass_labels else None
        return value >= self.threshold if self.threshold is not None else None

    def agreement_tolerance(self, center: float) -> float:
        if self.tolerance is not None:
            return self.tolerance
        if self.min is not None and self.max is not None:
            return 0.1 * (self.max - self.min)
        return 0.1 * abs(center)


# --------------------------------------------------------------------------- templates

TEMPLATE_VARIABLES: dict[str, str] = {
    "inputs": "the trace's input (the prompt the agent got)",
    "outputs": "the agent's final output",
    "expectations": "the scenario's deterministic checks, one per line",
    "criteria": "the scenario's natural-language criteria",
    "trace_summary": "a bounded summary: span counts, tool-call timeline, errors, totals",
    "scenario": "the scenario id and description",
    "metadata": "the scenario's metadata as JSON",
    "target_skills": "the skills the scenario targets (metadata.target_skills or skill_invoked checks)",
    "artifacts": "the files in the agent's workspace (paths and sizes)",
    "docs": "the reference documents configured on the judge (bounded)",
}
# The variables that put the trace itself in front of the model; instructions without any get a default.
TRACE_VARIABLES = frozenset({"inputs", "outputs", "trace_summary"})
_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def template_variables(text: str) -> list[str]:
    return list(dict.fromkeys(_VARIABLE.findall(text)))


def check_template(text: str, judge: str) -> list[str]:
    """The variables used in ``text``; an unknown one is a config error that names it."""
    used = template_variables(text)
    for name in used:
        if name not in TEMPLATE_VARIABLES:
            raise ConfigError(f"judge {judge!r}: unknown template variable {{{{{name}}}}} in its instructions "
                              f"(known: {', '.join(TEMPLATE_VARIABLES)})")
    return used


def render(text: str, values: Mapping[str, str]) -> str:
    # One pass: a value that itself contains "{{...}}" (an agent's output can) is never expanded.
    return _VARIABLE.sub(lambda m: values[m.group(1)], text)


def default_context(used: Sequence[str]) -> str:
    """Appended when instructions place none of the trace itself: a judge always sees what it judges."""
    if TRACE_VARIABLES & set(used):
        return ""
    return "\n\n## The agent's input\n{{inputs}}\n\n## The agent's final output\n{{outputs}}"


def target_skills(ctx: JudgeContext) -> list[str]:
    sc = ctx.scenario
    if sc is None:
        return []
    raw = sc.metadata.get("target_skills") or sc.metadata.get("skills")
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw:
        return [str(x) for x in raw]
    out = []
    for spec in sc.expectations.checks:
        name = getattr(spec.options, "name", None) if spec.kind == "skill_invoked" and not spec.negate else None
        if isinstance(name, str):
            out.append(name)
    return out


def format_docs(docs: Mapping[str, str], budget: int) -> str:
    if not docs:
        return "(no documentation configured)"
    each = max(200, budget // len(docs))
    return "\n\n".join(f"### {name} ({len(text)} characters)\n"
                       + clip(text, each, hint=f"read_doc(name={name!r}, offset={each}) for the rest")
                       for name, text in docs.items())


def context_values(ctx: JudgeContext, used: Sequence[str], *, max_chars: int,
                   docs: Mapping[str, str] | None = None) -> dict[str, str]:
    """Only the variables a template uses are computed (the summary costs store queries)."""
    t, sc = ctx.trace, ctx.scenario
    out: dict[str, str] = {}
    for name in used:
        if name == "inputs":
            out[name] = "(none)" if t.input is None else clip(to_text(t.input), max_chars, keep_tail=True)
        elif name == "outputs":
            out[name] = "(no output)" if not t.output else clip(t.output, max_chars, keep_tail=True)
        elif name == "expectations":
            checks = sc.expectations.checks if sc is not None else []
            lines = [f"- {clip(json.dumps(c.written(), ensure_ascii=False, default=str), 300)}" for c in checks]
            out[name] = clip("\n".join(lines), max_chars) if lines else "(no deterministic checks)"
        elif name == "criteria":
            crit = sc.expectations.criteria if sc is not None else []
            out[name] = clip("\n".join(f"- {c}" for c in crit), max_chars) if crit else "(no criteria given)"
        elif name == "trace_summary":
            out[name] = trace_summary(TraceView.of(ctx), max_chars=max_chars)
        elif name == "scenario":
            out[name] = "(unknown scenario)" if sc is None else clip(f"{sc.id}: {sc.description}".strip(), max_chars)
        elif name == "metadata":
            out[name] = clip(to_text(sc.metadata if sc is not None else {}), max_chars)
        elif name == "target_skills":
            skills = target_skills(ctx)
            out[name] = ", ".join(skills) if skills else "(none named: infer them from the criteria)"
        elif name == "artifacts":
            arts = [f"- {a.path} ({a.size} bytes, {a.origin})" for a in t.artifacts[:50]]
            more = [f"- … {len(t.artifacts) - 50} more"] if len(t.artifacts) > 50 else []
            out[name] = "\n".join(arts + more) if arts else "(no files)"
        elif name == "docs":
            out[name] = format_docs(docs or {}, max_chars)
    return out


# --------------------------------------------------------------------------- spending and samples


@dataclass
class Spend:
    """Tokens, money and calls, summed over every model call a verdict took."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    cost_known: bool = True
    calls: int = 0

    def add(self, r: ChatResult) -> None:
        self.input_tokens += r.usage.input_tokens
        self.output_tokens += r.usage.output_tokens
        self.cost_usd += r.cost_usd
        self.cost_known = self.cost_known and r.cost_known
        self.calls += 1

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass
class Sample:
    """One independent answer (one chat for an LLM judge, one exploration for an agentic judge)."""

    value: Any = None
    rationale: str = ""
    error: str | None = None
    evidence: list[str] = field(default_factory=list)
    attempts: int = 0
    notes: dict[str, Any] = field(default_factory=dict)  # facts for the verdict's metadata


def aggregate(spec: ValueSpec, samples: Sequence[Sample]) -> tuple[Any, Sample, int]:
    """(value, the sample that speaks for it, how many samples agree with it) over successful samples.

    Ties between values go to the one that does not pass: a split vote must not become a pass."""
    ok = [s for s in samples if s.error is None]
    if spec.type == "number":
        center = statistics.median(s.value for s in ok)
        tol = spec.agreement_tolerance(center)
        agree = sum(abs(s.value - center) <= tol for s in ok)
        speaker = min(ok, key=lambda s: abs(s.value - center))
        return center, speaker, agree
    counts = Counter(s.value for s in ok)
    best = max(counts.values())
    tied = [v for v in counts if counts[v] == best]
    if len(tied) > 1:
        failing = [v for v in tied if spec.passed(v) is False]
        tied = failing or tied
        if spec.type == "label":
            tied.sort(key=spec.labels.index)
    value = tied[0]
    speaker = next(s for s in ok if s.value == value)
    return value, speaker, best


def build_verdict(name: str, spec: ValueSpec, samples: Sequence[Sample], spend: Spend, started: float, *,
                  source: VerdictSource, model: str, metadata: Mapping[str, Any] | None = None) -> Verdict:
    cost = VerdictCost(input_tokens=spend.input_tokens, output_tokens=spend.output_tokens,
                       cost_usd=spend.cost_usd, seconds=time.perf_counter() - started)
    meta: dict[str, Any] = {"model": model, "calls": spend.calls, **(metadata or {})}
    if not spend.cost_known:
        meta["cost_unknown"] = True  # the model's price is not in the table: cost_usd undercounts
    errors = [s.error for s in samples if s.error is not None]
    if len(samples) > 1:
        meta["samples"] = [s.value if s.error is None else None for s in samples]
        meta["sample_errors"] = len(errors)
    if len(errors) == len(samples):
        first = errors[0] or "no answer"
        more = f" (all {len(samples)} samples failed)" if len(samples) > 1 else ""
        return Verdict.failure(name, first + more, source=source, cost=cost, metadata=meta)
    value, speaker, agree = aggregate(spec, samples)
    integral = all(isinstance(s.value, int) for s in samples if s.error is None)
    if spec.type == "number" and isinstance(value, float) and value.is_integer() and integral:
        value = int(value)  # the median of integer answers stays an integer when it is one
    # Agreement over every sample asked: a sample that failed does not vouch for the answer.
    confidence = agree / len(samples) if len(samples) > 1 else None
    meta.update(speaker.notes)
    rationale = speaker.rationale
    if len(samples) > 1:
        rationale = f"{rationale} [{agree}/{len(samples)} samples agree]"
    evidence: list[str] = []
    for s in samples:
        if s.error is None and (s.value == value or spec.type == "number"):
            evidence.extend(e for e in s.evidence if e not in evidence)
    return Verdict(name=name, value=value, passed=spec.passed(value), rationale=rationale, confidence=confidence,
                   source=source, cost=cost, evidence=evidence, metadata=meta)


def sampling(samples: int, temperature: float | None, seed: int | None) -> tuple[float, list[int | None]]:
    """Effective temperature and per-sample seeds: several samples need diversity (temperature > 0 and
    distinct seeds); a single one is asked deterministically unless configured otherwise."""
    if temperature is None:
        temperature = 0.7 if samples > 1 else 0.0
    if samples == 1:
        return temperature, [seed]
    base = 0 if seed is None else seed
    return temperature, [base + i for i in range(samples)]


# --------------------------------------------------------------------------- clients


class ClientHolder:
    """Creates the ModelClient on first use: listing or fingerprinting a judge must not need an API key.

    The URI is parsed at once so a typo in the provider fails when the judge is defined."""

    def __init__(self, model: str | ModelClient, *, output_retries: int, max_concurrency: int | None) -> None:
        from costar.models.client import ModelClient

        self._lock = threading.Lock()
        if isinstance(model, ModelClient):
            self.client: ModelClient | None = model
            self.uri = model.spec.uri
        else:
            self.client = None
            self.uri = parse_model_uri(model).uri
        self._model = model
        self._output_retries = output_retries
        self._max_concurrency = max_concurrency
        self._given = isinstance(model, ModelClient)
        # The prices of the client made here (None: the built-in table); a client handed in keeps its own.
        self._prices: PriceTable | None = model.prices if isinstance(model, ModelClient) else None

    def use_prices(self, prices: PriceTable) -> None:
        """Price the calls of the client this holder makes with ``prices`` (a project's table); a
        ModelClient handed to the judge keeps the prices it was made with."""
        with self._lock:
            if self._given:
                return
            self._prices = prices
            if self.client is not None:
                self.client.prices = prices

    def __getstate__(self) -> dict[str, Any]:
        # A judge travelling to another process (a Ray worker) makes its client there, on first use,
        # with that process's limits (the cluster's limiter) and credentials, and these prices.
        state = dict(self.__dict__)
        state.pop("_lock", None)
        state["client"] = None
        state["_model"] = self.uri if not isinstance(self._model, str) else self._model
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def get(self) -> ModelClient:
        from costar.models.client import ModelClient

        with self._lock:
            if self.client is None:
                self.client = ModelClient(str(self._model), output_retries=self._output_retries,
                                          max_concurrency=self._max_concurrency, prices=self._prices)
            return self.client


def docs_digest(docs: Mapping[str, str]) -> dict[str, str]:
    return {name: hashlib.sha256(text.encode()).hexdigest()[:16] for name, text in docs.items()}


# --------------------------------------------------------------------------- the judge

SYSTEM_PROMPT = """You are a careful judge of an AI agent's work. You are shown what the agent was asked, \
what it did and what it produced, and a question about it. Judge only from the evidence shown; when the \
evidence is missing, say so and judge against the agent. Reply with a JSON object: "rationale" (a few \
sentences, at most {rationale_max} characters, citing what you saw) and then "value": {value}."""

RETRY_NOTE = ("Your previous reply could not be used ({problem}). Reply with only a JSON object with the "
              "keys \"rationale\" and \"value\"; value must be {value}.")


class LlmJudge(Judge):
    """A judge that asks a model one question about a trace and reads a typed answer.

    ``instructions`` may use the TEMPLATE_VARIABLES; ``system`` replaces the default system prompt
    (which states the expected value), ``docs`` are reference texts for ``{{docs}}``."""

    source = VerdictSource.LLM
    # Reads spans through TraceView, which pages the store when the trace was loaded without them.
    needs_spans = False

    def __init__(self, name: str, instructions: str, *, model: str | ModelClient = DEFAULT_MODEL,
                 value: ValueSpec | str | Mapping[str, Any] = "bool", samples: int = 1,
                 temperature: float | None = None, seed: int | None = None, retries: int = 2,
                 max_output_tokens: int = 512, max_chars: int = 6000, system: str | None = None,
                 docs: Mapping[str, str] | None = None, gate: bool = True, description: str = "",
                 version: str = "1", max_concurrency: int | None = None) -> None:
        if samples < 1:
            raise ConfigError(f"judge {name!r}: samples must be at least 1")
        self.name = name
        self.instructions = instructions
        self.value = value if isinstance(value, ValueSpec) else ValueSpec.model_validate(value)
        self.samples = samples
        self.temperature, self._seeds = sampling(samples, temperature, seed)
        self.seed = seed
        self.retries = max(0, retries)
        self.max_output_tokens = max_output_tokens
        self.max_chars = max_chars
        self.system = system
        self.docs = dict(docs or {})
        self.gating = gate
        self.description = description
        self.version = str(version)
        self._used = check_template(instructions, name)
        self._prompt = instructions + default_context(self._used)
        self._prompt_vars = template_variables(self._prompt)
        # The judge retries malformed answers itself (with a note saying what was wrong), so the
        # client's own output retries are off: one attempt is one request.
        self._clients = ClientHolder(model, output_retries=0, max_concurrency=max_concurrency)

    def use_prices(self, prices: PriceTable) -> None:
        self._clients.use_prices(prices)

    @property
    def model(self) -> str:
        return self._clients.uri

    @property
    def uses_criteria(self) -> bool:
        return "criteria" in self._prompt_vars

    def config(self) -> dict[str, Any]:
        return {"type": "llm", "instructions": self.instructions, "system": self.system, "model": self.model,
                "value": self.value.model_dump(exclude_defaults=True), "samples": self.samples,
                "temperature": self.temperature, "seed": self.seed, "retries": self.retries,
                "max_output_tokens": self.max_output_tokens, "max_chars": self.max_chars,
                "docs": docs_digest(self.docs)}

    def output_schema(self) -> dict[str, Any]:
        return {"type": "object", "additionalProperties": False, "required": ["rationale", "value"],
                "properties": {"rationale": {"type": "string", "maxLength": RATIONALE_MAX},
                               "value": self.value.json_schema()}}

    def messages(self, ctx: JudgeContext) -> list[dict[str, Any]]:
        values = context_values(ctx, self._prompt_vars, max_chars=self.max_chars, docs=self.docs)
        system = self.system or SYSTEM_PROMPT.format(rationale_max=RATIONALE_MAX, value=self.value.describe())
        return [{"role": "system", "content": system}, {"role": "user", "content": render(self._prompt, values)}]

    async def aevaluate(self, ctx: JudgeContext) -> Verdict:
        started = time.perf_counter()
        needs_store = "trace_summary" in self._prompt_vars and not ctx.trace.spans
        messages = await asyncio.to_thread(self.messages, ctx) if needs_store else self.messages(ctx)
        spend = Spend()
        samples = await asyncio.gather(*(self._ask(messages, seed, spend) for seed in self._seeds))
        return build_verdict(self.name, self.value, samples, spend, started, source=self.source, model=self.model,
                             metadata={"attempts": sum(s.attempts for s in samples)})

    async def _ask(self, messages: list[dict[str, Any]], seed: int | None, spend: Spend) -> Sample:
        client = self._clients.get()
        schema = self.output_schema()
        problem: str | None = None
        for attempt in range(self.retries + 1):
            convo = messages
            if problem is not None:
                convo = [*messages, {"role": "user", "content": RETRY_NOTE.format(
                    problem=clip(problem, 300), value=self.value.describe())}]
            # A retry must not be answered from a cache or by the same sampled path.
            attempt_seed = None if seed is None and attempt == 0 else (seed or 0) + 1000 * attempt
            try:
                result = await client.achat(convo, json_schema=schema, temperature=self.temperature,
                                            seed=attempt_seed, max_tokens=self.max_output_tokens)
            except ModelOutputError as exc:
                problem = str(exc)
                continue
            except ModelError as exc:  # transport, auth, config: the client has already retried what it can
                return Sample(error=f"model call failed: {exc}", attempts=attempt + 1)
            spend.add(result)
            parsed = result.parsed if isinstance(result.parsed, dict) else {}
            try:
                value = self.value.coerce(parsed.get("value"))
            except ValueError as exc:
                problem = str(exc)
                continue
            rationale = clip(str(parsed.get("rationale") or ""), RATIONALE_MAX)
            return Sample(value=value, rationale=rationale, attempts=attempt + 1)
        return Sample(error=f"no usable answer after {self.retries + 1} attempt(s): {problem}",
                      attempts=self.retries + 1)
