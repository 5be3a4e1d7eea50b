"""Alignment optimizers: a judge definition plus a golden set in, a new judge definition out.

The split is DSPy's: the *program* is the judge (built from its definition, used through the
same Judge protocol as every judge), the *metric* is agreement with the golden set's reference
labels, and the *optimizer* is interchangeable (``memalign``, ``gepa``, or a plugin that
implements :class:`AlignmentOptimizer`).

Every optimizer is held to the same protocol:

* it may look at the **train** split (and GEPA selects on **validation**); the **test** split is
  held out and only measured, before and after, in the report;
* the result is a new *definition* (a mapping the judge types build), never a patched judge
  object, so it can be stored as a version, diffed, promoted and rolled back;
* :func:`decide_promotion` promotes only when held-out agreement does not drop and something improved.

Promotion rule: on the test split, compare Cohen's kappa of the new definition with the old;
when either kappa is undefined (a single class on both sides), compare accuracy. The new version
is promoted when it is better there, or tied there and better on another split (with small test
splits ties are common: refusing them would block every improvement the test split is too small
to show, but a tie is not a drop only when something else rose). A version that improved nothing
is not promoted ("no change, not promoted"). It is never promoted when it makes more judge errors
on the test split than the old one, since errors are left out of agreement and could flatter it.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from costar._util.aio import run_sync
from costar.align.agreement_results import BinaryAgreement, CategoricalAgreement
from costar.align.agreement_stats import DEFAULT_RESAMPLES, MIN_KAPPA_ITEMS, binary_agreement, categorical_agreement
from costar.align.agreement_store import judge_decision
from costar.errors import ConfigError, CostarError
from costar.judges.base import Judge, JudgeContext
from costar.judges.llm import check_template
from costar.judges.trace_tools import clip, to_text
from costar.labels import SPLITS, GoldenSet, LabelValue, Split, same_value
from costar.store.base import Store
from costar.verdict import Verdict

if TYPE_CHECKING:
    from costar.judges.definitions import DefinitionEntry
    from costar.scenario import Scenario
    from costar.trace.model import Trace

__all__ = [
    "ALIGNABLE_TYPES",
    "AgreementMeter",
    "AlignBudget",
    "AlignmentError",
    "AlignmentOptimizer",
    "AlignmentReport",
    "AlignmentResult",
    "BaseOptimizer",
    "JudgeSpec",
    "PromotionDecision",
    "Proposal",
    "SplitAgreement",
    "SplitNeeds",
    "check_golden",
    "decide_promotion",
    "find_golden_set",
    "label_rationales",
]

# Types whose definitions carry instructions an optimizer can change. A memalign definition is
# realigned from the llm/agentic definition it wraps.
ALIGNABLE_TYPES = ("llm", "agentic", "memalign")
INSTRUCTION_TYPES = ("llm", "agentic")
_TIE = 1e-9  # agreement statistics closer than this are equal (float noise, not a drop)
_SHOWN = 5


class AlignmentError(CostarError, ValueError):
    """Alignment cannot run as asked; the one-line message says what to do instead."""


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class SplitNeeds:
    """The least number of golden examples an optimizer needs in each split."""

    train: int = 2
    validation: int = 0
    test: int = 2

    def of(self, split: Split) -> int:
        return {"train": self.train, "validation": self.validation, "test": self.test}[split]

    def describe(self) -> str:
        return ", ".join(f"{s} {self.of(s)}" for s in SPLITS if self.of(s))


@dataclass(frozen=True)
class AlignBudget:
    """What an optimizer may spend searching. ``max_metric_calls`` counts judge runs on golden
    examples (GEPA's own unit; MemAlign runs the current judge on at most that many train
    examples); ``max_seconds`` stops GEPA's search. Measuring before and after on every split
    costs at most two runs per example on top, whatever the budget. ``seed`` fixes GEPA's sampling."""

    max_metric_calls: int = 200
    max_seconds: float | None = None
    concurrency: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_metric_calls < 1:
            raise AlignmentError(f"budget max_metric_calls is {self.max_metric_calls}; give 1 or more")
        if self.concurrency < 1:
            raise AlignmentError(f"budget concurrency is {self.concurrency}; give 1 or more")


# --------------------------------------------------------------------------- definitions


def _canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


@dataclass
class JudgeSpec:
    """A self-contained judge definition: the mapping a judge type validates and builds, with
    instructions inline and file paths relative to the project folder (or absolute), so it can be
    stored as a version and built again anywhere in the project.

    ``attachments`` hold objects a definition refers to by digest but that are not written yet
    (a MemAlign memory while it is being evaluated); storing the version writes them."""

    name: str
    raw: dict[str, Any]
    project_dir: Path
    default_model: str | None = None
    source: str = "<definition>"
    attachments: dict[str, Any] = field(default_factory=dict)

    @property
    def type(self) -> str:
        return str(self.raw.get("type", "llm"))

    def digest(self) -> str:
        """Identity of the definition (not of attachments, which the mapping names by hash)."""
        return hashlib.sha256(_canonical(self.raw).encode()).hexdigest()

    @property
    def instruction_raw(self) -> dict[str, Any]:
        """The llm/agentic mapping whose instructions an optimizer edits."""
        return self.raw["base"] if self.type == "memalign" else self.raw

    @property
    def instructions(self) -> str:
        return str(self.instruction_raw.get("instructions") or "")

    def base(self) -> JudgeSpec:
        """The instruction-carrying definition: itself, or what a memalign definition wraps."""
        if self.type != "memalign":
            return self
        return JudgeSpec(self.name, copy.deepcopy(self.raw["base"]), self.project_dir, self.default_model,
                         self.source)

    def with_instructions(self, text: str) -> JudgeSpec:
        """The same definition with other instructions; unknown template variables are a ConfigError."""
        check_template(text, self.name)
        raw = copy.deepcopy(self.raw)
        (raw["base"] if self.type == "memalign" else raw)["instructions"] = text
        return JudgeSpec(self.name, raw, self.project_dir, self.default_model, self.source, dict(self.attachments))

    def with_raw(self, raw: dict[str, Any], attachments: Mapping[str, Any] | None = None) -> JudgeSpec:
        return JudgeSpec(self.name, raw, self.project_dir, self.default_model, self.source,
                         dict(attachments or {}))

    def build(self) -> Judge:
        """The judge this definition describes (a new object; callers cache it)."""
        from costar.judges.definitions import BuildContext, default_judge_types

        ctx = BuildContext(base_dir=self.project_dir, project_dir=self.project_dir,
                           default_model=self.default_model, source=self.source)
        types = default_judge_types()
        try:
            definition = types.get(self.type).definition.model_validate(self.raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "definition"
            raise ConfigError(f"judge {self.name!r} ({self.source}): {where}: {err['msg']}") from None
        if self.type == "memalign":
            from costar.align.memalign import MemAlignJudgeDefinition, build_memory_judge

            # A plugin may replace the memalign type; then its own builder below applies.
            if isinstance(definition, MemAlignJudgeDefinition):
                return build_memory_judge(definition, ctx, memories=self.attachments)
        judge = types.get(self.type).build(definition, ctx)
        if judge.name != self.name:
            judge.name = self.name
            judge.__dict__.pop("_fingerprint", None)
        return judge

    # -- constructors ------------------------------------------------------------------------------

    @classmethod
    def from_entry(cls, entry: DefinitionEntry) -> JudgeSpec:
        """Normalise a discovered definition (a YAML judge, a template, a stored version)."""
        if entry.raw is None or entry.build_ctx is None:
            raise AlignmentError(f"judge {entry.name!r} is a Python object ({entry.source}); alignment edits "
                                 "definitions: define it in YAML (type llm or agentic) to align it")
        ctx = entry.build_ctx
        project = Path(ctx.project_dir or ctx.base_dir).resolve()
        return cls._normalised(entry.name, dict(entry.raw), ctx, project, entry.source)

    @classmethod
    def _normalised(cls, name: str, raw: dict[str, Any], ctx: Any, project: Path, source: str) -> JudgeSpec:
        kind = str(raw.get("type", "llm"))
        if kind not in ALIGNABLE_TYPES:
            raise AlignmentError(f"judge {name!r} is a {kind!r} judge ({source}); only llm and agentic judges "
                                 "have instructions to align")
        raw = copy.deepcopy(raw)
        if kind == "memalign":
            # Stored versions are normalised when they are made: their paths are project-relative.
            return cls(name, raw, project, ctx.default_model, source)
        raw.pop("template", None)  # already merged into the mapping; merging again would undo edits
        if raw.get("instructions_file") is not None:
            raw["instructions"] = ctx.path(str(raw.pop("instructions_file"))).read_text(encoding="utf-8")
        raw.pop("instructions_file", None)
        if raw.get("docs"):
            raw["docs"] = [_relative(ctx.path(str(d)).resolve(), project) for d in raw["docs"]]
        # Alignment is specific to the model it ran against: pin it, so a later change of the
        # project's default judge model cannot silently move an aligned judge to another model.
        raw["model"] = ctx.model(raw.get("model"))
        raw.setdefault("type", kind)
        return cls(name, raw, project, ctx.default_model, source)


def _relative(path: Path, project: Path) -> str:
    try:
        return str(path.relative_to(project))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- results


class SplitAgreement(BaseModel):
    """One definition's agreement with the reference labels on one split of the golden set."""

    model_config = ConfigDict(extra="forbid")

    split: Split
    examples: int
    compared: int = 0
    errors: int = Field(0, description="examples where the judge failed (excluded from agreement)")
    no_value: int = Field(0, description="examples whose verdict carries nothing comparable")
    accuracy: float | None = None
    accuracy_ci: tuple[float, float] | None = None
    kappa: float | None = None
    kappa_ci: tuple[float, float] | None = None
    disagreements: list[str] = Field(default_factory=list)
    result: Annotated[BinaryAgreement | CategoricalAgreement, Field(discriminator="kind")] | None = None

    def metric(self) -> tuple[Literal["kappa", "accuracy"], float | None]:
        return ("kappa", self.kappa) if self.kappa is not None else ("accuracy", self.accuracy)

    def short(self) -> str:
        if not self.examples:
            return "(empty)"
        if not self.compared:
            return f"n={self.examples} no usable verdicts"
        acc = "-" if self.accuracy is None else f"{self.accuracy:.2f}"
        kap = "-" if self.kappa is None else f"{self.kappa:+.2f}"
        ci = f" [{self.kappa_ci[0]:+.2f}, {self.kappa_ci[1]:+.2f}]" if self.kappa_ci else ""
        if self.kappa is not None and not self.kappa_ci and self.compared < MIN_KAPPA_ITEMS:
            ci = " (no interval: too few)"
        err = f", {self.errors} errors" if self.errors else ""
        return f"n={self.compared} acc {acc} kappa {kap}{ci}{err}"


class PromotionDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    promote: bool
    metric: Literal["kappa", "accuracy"] | None = None
    old: float | None = None
    new: float | None = None
    reason: str
    warnings: list[str] = Field(default_factory=list)
    """Why the decision is weaker than it looks (a held-out split too small for its statistic)."""


class AlignmentReport(BaseModel):
    """Agreement before and after, per split, and whether the held-out test split allows promotion."""

    model_config = ConfigDict(extra="forbid")

    judge: str
    optimizer: str
    golden: str
    golden_version: int
    fingerprint_before: str
    fingerprint_after: str
    changed: bool
    before: dict[Split, SplitAgreement]
    after: dict[Split, SplitAgreement]
    decision: PromotionDecision
    judge_runs: int = Field(0, description="judge runs on golden examples, searching and measuring")
    seconds: float = 0.0
    details: dict[str, Any] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)

    def format(self) -> str:
        lines = [f"judge {self.judge!r} aligned by {self.optimizer} on golden set {self.golden} "
                 f"v{self.golden_version}: fingerprint {self.fingerprint_before[:8]} -> {self.fingerprint_after[:8]}"
                 + ("" if self.changed else " (unchanged)")]
        for split in SPLITS:
            held = "  (held out)" if split == "test" else ""
            lines.append(f"  {split:<10} before {self.before[split].short():<44} after "
                         f"{self.after[split].short()}{held}")
        verb = "promote" if self.decision.promote else "do not promote"
        lines.append(f"  decision: {verb}: {self.decision.reason}")
        lines.extend(f"  warning: {w}" for w in self.decision.warnings)
        lines.append(f"  cost: {self.judge_runs} judge runs, {self.seconds:.1f} s")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


@dataclass
class Proposal:
    """What an optimizer's search produced: the new definition and facts for the report."""

    spec: JudgeSpec
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class AlignmentResult:
    """The new definition (not stored yet), the definition it was aligned from, and the report."""

    new_definition: JudgeSpec
    base_definition: JudgeSpec
    report: AlignmentReport

    @property
    def promote(self) -> bool:
        return self.report.decision.promote


def _compared_metric(old: SplitAgreement,
                     new: SplitAgreement) -> tuple[Literal["kappa", "accuracy"], float, float] | None:
    """The statistic two agreements are compared on (kappa when both have one, else accuracy)."""
    if not old.compared or not new.compared:
        return None
    metric: Literal["kappa", "accuracy"] = "kappa" if old.kappa is not None and new.kappa is not None else "accuracy"
    a = old.kappa if metric == "kappa" else old.accuracy
    b = new.kappa if metric == "kappa" else new.accuracy
    if a is None or b is None:
        return None
    return metric, a, b


def decide_promotion(old: SplitAgreement, new: SplitAgreement, *,
                     before: Mapping[Split, SplitAgreement] | None = None,
                     after: Mapping[Split, SplitAgreement] | None = None) -> PromotionDecision:
    """The promotion rule on the held-out split ``old`` → ``new`` (see the module docstring);
    ``before`` / ``after`` are every split, to tell a tie that improved elsewhere from no change.
    A held-out split too small for its statistic adds a warning to the decision."""
    decision = _decide_promotion(old, new, before, after)
    n = min(old.compared, new.compared) if old.compared else new.compared
    if new.examples and n < MIN_KAPPA_ITEMS:
        decision.warnings.append(
            f"the held-out split has {n} compared example(s): too few for kappa or accuracy to tell two versions "
            f"apart (kappa has no interval below {MIN_KAPPA_ITEMS}); the decision rests on point estimates: label "
            "more traces and extend the golden set")
    return decision


def _decide_promotion(old: SplitAgreement, new: SplitAgreement, before: Mapping[Split, SplitAgreement] | None,
                      after: Mapping[Split, SplitAgreement] | None) -> PromotionDecision:
    if not new.examples:
        return PromotionDecision(promote=False, reason="the golden set has no test split to check the new version on")
    if not new.compared:
        return PromotionDecision(promote=False, reason=f"the new version gave no usable verdict on the "
                                                       f"{new.examples} test examples ({new.errors} errors)")
    if new.errors > old.errors:
        return PromotionDecision(promote=False, reason=f"the new version fails to judge {new.errors} test examples "
                                                       f"(the old one {old.errors}); errors would flatter agreement")
    if not old.compared:
        return PromotionDecision(promote=True, metric=new.metric()[0], new=new.metric()[1],
                                 reason="the old version gave no usable verdict on the test split")
    compared = _compared_metric(old, new)
    assert compared is not None  # accuracy is defined whenever something was compared
    metric, a, b = compared
    delta = b - a
    if delta < -_TIE:
        return PromotionDecision(promote=False, metric=metric, old=a, new=b,
                                 reason=f"held-out {metric} dropped {a:.3f} -> {b:.3f} ({delta:+.3f}); "
                                        "the version is stored but not active")
    if delta > _TIE:
        return PromotionDecision(promote=True, metric=metric, old=a, new=b,
                                 reason=f"held-out {metric} rose {a:.3f} -> {b:.3f} ({delta:+.3f})")
    rose: list[str] = []
    flat: list[str] = []
    splits: tuple[Split, ...] = ("train", "validation")
    for split in splits:
        was, now = (before or {}).get(split), (after or {}).get(split)
        other = _compared_metric(was, now) if was is not None and now is not None else None
        if other is None:
            continue
        name, x, y = other
        (rose if y - x > _TIE else flat).append(f"{split} {name} {x:.3f} -> {y:.3f}")
    if rose:
        return PromotionDecision(promote=True, metric=metric, old=a, new=b,
                                 reason=f"held-out {metric} unchanged at {b:.3f} (a tie is not a drop) and "
                                        f"{', '.join(rose)}")
    elsewhere = f"; {', '.join(flat)}" if flat else ""
    return PromotionDecision(promote=False, metric=metric, old=a, new=b,
                             reason=f"no change, not promoted: held-out {metric} unchanged at {b:.3f}{elsewhere}")


# --------------------------------------------------------------------------- running judges


def trace_text(trace: Trace, *, input_chars: int = 600, output_chars: int = 1200) -> tuple[str, str]:
    """The trace's input and final output as short texts (for memory, feedback and retrieval)."""
    inp = "(none)" if trace.input is None else clip(to_text(trace.input), input_chars, keep_tail=True)
    out = "(no output)" if not trace.output else clip(trace.output, output_chars, keep_tail=True)
    return inp, out


class AgreementMeter:
    """Measures candidate judges against a golden set: runs each on the set's traces (it is not a judge
    itself) and computes its agreement with the reference labels, split by split.

    Verdicts are cached by (judge fingerprint, trace), so a definition measured twice — GEPA
    re-scoring its seed, the report re-measuring a train split the optimizer already ran — costs
    nothing the second time. Nothing is written to the store: candidate verdicts must not become
    the judge's current verdicts."""

    def __init__(self, store: Store, golden: GoldenSet, *, concurrency: int = 4,
                 resamples: int = DEFAULT_RESAMPLES) -> None:
        self.store = store
        self.golden = golden
        self.concurrency = max(1, concurrency)
        self.resamples = resamples
        self.runs = 0
        self._traces: dict[str, Trace] = {}
        self._scenarios: dict[str, dict[str, Scenario]] = {}
        self._verdicts: dict[tuple[str, str], Verdict] = {}
        self._judges: dict[str, Judge] = {}
        self._lock = threading.Lock()
        self.on: Literal["passed", "value"] = "passed" if golden.value_type.kind == "bool" or all(
            isinstance(e.label, bool) for e in golden.examples) else "value"

    # -- traces ------------------------------------------------------------------------------------

    def load(self, trace_ids: Sequence[str]) -> list[Trace]:
        missing = [t for t in trace_ids if t not in self._traces]
        if missing:
            # Alignable judges page spans from the store when they need them (TraceView), so only
            # the trace heads are loaded here.
            for trace in self.store.get_traces(missing, spans=False):
                self._traces[trace.trace_id] = trace
        absent = [t for t in trace_ids if t not in self._traces]
        if absent:
            shown = ", ".join(repr(t) for t in absent[:_SHOWN]) + (", …" if len(absent) > _SHOWN else "")
            raise AlignmentError(f"{len(absent)} traces of golden set {self.golden.name!r} are not in "
                                 f"{self.store.root} ({shown}); import them or remove them from the set")
        return [self._traces[t] for t in trace_ids]

    def trace(self, trace_id: str) -> Trace:
        return self.load([trace_id])[0]

    def _scenario(self, trace: Trace) -> Scenario | None:
        if trace.run_id is None or trace.scenario_id is None:
            return None
        found = self._scenarios.get(trace.run_id)
        if found is None:
            from costar.assess import current_scenarios

            try:
                found = current_scenarios(self.store, trace.run_id)
            except CostarError:  # an imported trace's run may carry no scenarios: judge without one
                found = {}
            self._scenarios[trace.run_id] = found
        return found.get(trace.scenario_id)

    def context(self, trace_id: str) -> JudgeContext:
        trace = self.trace(trace_id)
        return JudgeContext(trace=trace, scenario=self._scenario(trace), store=self.store)

    # -- judging -----------------------------------------------------------------------------------

    def judge(self, spec: JudgeSpec) -> Judge:
        key = spec.digest()
        with self._lock:
            hit = self._judges.get(key)
        if hit is None:
            hit = spec.build()
            with self._lock:
                hit = self._judges.setdefault(key, hit)
        return hit

    def verdicts(self, spec: JudgeSpec | Judge, trace_ids: Sequence[str]) -> dict[str, Verdict]:
        judge = spec if isinstance(spec, Judge) else self.judge(spec)
        return run_sync(lambda: self.averdicts(judge, trace_ids))

    async def averdicts(self, judge: Judge, trace_ids: Sequence[str]) -> dict[str, Verdict]:
        fp = judge.fingerprint()
        self.load(list(trace_ids))
        todo = [t for t in dict.fromkeys(trace_ids) if (fp, t) not in self._verdicts]
        sem = asyncio.Semaphore(self.concurrency)

        async def one(trace_id: str) -> None:
            async with sem:
                verdict = await judge.judge(self.context(trace_id))
            self._verdicts[(fp, trace_id)] = verdict

        await asyncio.gather(*(one(t) for t in todo))
        self.runs += len(todo)
        return {t: self._verdicts[(fp, t)] for t in trace_ids}

    def decision(self, verdict: Verdict | None) -> LabelValue | None:
        """What a verdict says in the label's terms (None: an error or nothing comparable)."""
        if verdict is None:
            return None
        value = judge_decision(verdict, self.on)
        return value if isinstance(value, bool | int | float | str) else None

    def agrees(self, verdict: Verdict | None, label: LabelValue) -> bool:
        value = self.decision(verdict)
        return value is not None and same_value(value, label)

    # -- measuring ---------------------------------------------------------------------------------

    def measure(self, spec: JudgeSpec | Judge, split: Split) -> SplitAgreement:
        labels = self.golden.labels(split)
        if not labels:
            return SplitAgreement(split=split, examples=0)
        verdicts = self.verdicts(spec, list(labels))
        return self.agreement(split, labels, verdicts)

    def measure_all(self, spec: JudgeSpec | Judge) -> dict[Split, SplitAgreement]:
        judge = spec if isinstance(spec, Judge) else self.judge(spec)
        # One batch over every split keeps the judge's concurrency busy across split boundaries.
        self.verdicts(judge, self.golden.trace_ids())
        return {split: self.measure(judge, split) for split in SPLITS}

    def agreement(self, split: Split, labels: Mapping[str, LabelValue],
                  verdicts: Mapping[str, Verdict]) -> SplitAgreement:
        ref: dict[str, LabelValue] = {}
        got: dict[str, LabelValue] = {}
        errors = no_value = 0
        for tid, label in labels.items():
            verdict = verdicts.get(tid)
            if verdict is None or verdict.error is not None:
                errors += 1
                continue
            value = self.decision(verdict)
            if value is None:
                no_value += 1
                continue
            ref[tid], got[tid] = label, value
        out = SplitAgreement(split=split, examples=len(labels), errors=errors, no_value=no_value)
        if not ref:
            return out
        if all(isinstance(v, bool) for v in (*ref.values(), *got.values())):
            result: BinaryAgreement | CategoricalAgreement = binary_agreement(
                ref, got, True, resamples=self.resamples, seed=0)
        else:
            order = list(self.golden.value_type.labels) or None
            if order is not None and not set(got.values()) <= set(order):
                order = None  # the judge answered outside the label set; let the statistic list what it saw
            result = categorical_agreement(ref, got, labels=order, resamples=self.resamples, seed=0)
        ci = result.kappa.ci_bootstrap or result.kappa.ci
        acc_ci = result.accuracy.ci
        out.compared = len(ref)
        out.accuracy = result.accuracy.value
        out.accuracy_ci = (acc_ci.low, acc_ci.high) if acc_ci is not None else None
        out.kappa = result.kappa.value
        out.kappa_ci = (ci.low, ci.high) if ci is not None else None
        out.disagreements = sorted(t for t in ref if not same_value(ref[t], got[t]))
        out.result = result
        return out


# --------------------------------------------------------------------------- checks


def check_golden(spec: JudgeSpec, golden: GoldenSet, optimizer: str, needs: SplitNeeds) -> list[str]:
    """Raise when the golden set cannot support the optimizer; return notes worth reporting."""
    if not golden.examples:
        raise AlignmentError(f"golden set {golden.name!r} v{golden.version} is empty; add labeled traces "
                             f"(costar golden add {golden.name})")
    counts = {s: len(golden.split(s)) for s in SPLITS}
    short = [s for s in SPLITS if counts[s] < needs.of(s)]
    if short:
        have = ", ".join(f"{s} {counts[s]}" for s in SPLITS)
        raise AlignmentError(
            f"golden set {golden.name!r} v{golden.version} is too small for {optimizer}: it has {have}, and "
            f"{optimizer} needs at least {needs.describe()} examples per split; label more traces and add them "
            f"(costar golden add {golden.name})")
    notes = []
    if golden.judge_name != spec.name:
        notes.append(f"golden set {golden.name!r} was made for judge {golden.judge_name!r}; its labels are used "
                     f"for {spec.name!r}")
    return notes


def find_golden_set(store: Store, judge: str, golden: str | GoldenSet | None = None,
                    version: int | None = None) -> GoldenSet:
    """The golden set to align ``judge`` on: the one named, or the newest made for the judge."""
    if isinstance(golden, GoldenSet):
        return golden
    if golden is not None:
        return store.golden_set(golden, version)
    infos = [i for i in store.golden_sets() if i.judge_name == judge]
    if not infos:
        if not store.labels(name=judge):
            raise AlignmentError(f"judge {judge!r} has no human labels in {store.root}; label traces first "
                                 f"(costar label {judge}), then build a golden set (costar golden create NAME {judge})")
        raise AlignmentError(f"judge {judge!r} has human labels but no golden set in {store.root}; create one: "
                             f"costar golden create NAME {judge}")
    newest = max(infos, key=lambda i: (i.created_at, i.version))
    return store.golden_set(newest.name, version)


def label_rationales(store: Store, golden: GoldenSet, trace_ids: Sequence[str]) -> dict[str, list[str]]:
    """trace id -> the rationales of labelers whose label is the reference label (deduplicated):
    the words of the experts the reference label speaks for."""
    refs = {e.trace_id: e.label for e in golden.examples}
    out: dict[str, list[str]] = {t: [] for t in trace_ids}
    if not trace_ids:
        return out
    for lab in store.labels(name=golden.judge_name, trace_ids=list(trace_ids)):
        tid = str(lab.trace_id)
        if golden.labeler is not None and lab.source_id != golden.labeler:
            continue
        text = " ".join(lab.rationale.split())
        if tid in out and text and same_value(lab.value, refs.get(tid)) and text not in out[tid]:
            out[tid].append(text)
    return out


# --------------------------------------------------------------------------- the optimizer protocol


@runtime_checkable
class AlignmentOptimizer(Protocol):
    """Turns a judge definition and a golden set into a new definition with a before/after report."""

    name: str
    needs: SplitNeeds

    def align(self, definition: JudgeSpec | DefinitionEntry, golden: GoldenSet, store: Store, *,
              budget: AlignBudget | None = None) -> AlignmentResult: ...


class BaseOptimizer:
    """The shared frame: check the inputs, let the subclass search (``propose``), measure before
    and after on every split, decide promotion. Subclasses only implement ``propose``."""

    name = "optimizer"
    needs = SplitNeeds()

    def propose(self, spec: JudgeSpec, golden: GoldenSet, meter: AgreementMeter, budget: AlignBudget) -> Proposal:
        raise NotImplementedError

    def align(self, definition: JudgeSpec | DefinitionEntry, golden: GoldenSet, store: Store, *,
              budget: AlignBudget | None = None) -> AlignmentResult:
        started = time.perf_counter()
        spec = definition if isinstance(definition, JudgeSpec) else JudgeSpec.from_entry(definition)
        if spec.type not in ALIGNABLE_TYPES:
            raise AlignmentError(f"judge {spec.name!r} is a {spec.type!r} judge; only llm and agentic judges "
                                 "have instructions to align")
        notes = check_golden(spec, golden, self.name, self.needs)
        budget = budget or AlignBudget()
        meter = AgreementMeter(store, golden, concurrency=budget.concurrency)
        meter.load(golden.trace_ids())  # every missing trace is reported now, not mid-search
        before_judge = meter.judge(spec)
        proposal = self.propose(spec.base(), golden, meter, budget)
        after_judge = meter.judge(proposal.spec)
        changed = after_judge.fingerprint() != before_judge.fingerprint()
        before = meter.measure_all(before_judge)
        after = meter.measure_all(after_judge) if changed else before
        if changed:
            decision = decide_promotion(before["test"], after["test"], before=before, after=after)
        else:
            decision = PromotionDecision(promote=False, reason=f"{self.name} found nothing better than the "
                                                               "current definition; nothing to store")
        report = AlignmentReport(
            judge=spec.name, optimizer=self.name, golden=golden.name, golden_version=golden.version,
            fingerprint_before=before_judge.fingerprint(), fingerprint_after=after_judge.fingerprint(),
            changed=changed, before=before, after=after, decision=decision, judge_runs=meter.runs,
            seconds=time.perf_counter() - started, details=proposal.details, notes=notes + proposal.notes)
        return AlignmentResult(new_definition=proposal.spec, base_definition=spec, report=report)
