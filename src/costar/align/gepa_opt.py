"""GEPA: evolve a judge's instructions by reflecting on where it disagrees with the experts.

Through the ``gepa`` package (a dependency we call): the candidate is ``{"instructions": text}``;
evaluating it builds the judge with those instructions and runs it on golden **train** examples,
scoring 1 where its decision matches the reference label and 0 otherwise (judge errors score 0).
The reflective dataset shows the reflection model each example's input and output, the judge's
verdict and rationale, and the experts' label and rationale — never the trace id, so a
reflection model is not handed the means to memorise examples.

GEPA keeps a pool of candidates that beat their parent on a train minibatch and scores each on
the **validation** split; the candidate with the best validation agreement (kappa, then
accuracy; ties go to the earlier candidate, so the current instructions win a tie) becomes the
new definition. The **test** split stays untouched until the report measures it.

Deterministic given the same judge answers and reflection replies: GEPA's sampling is seeded
with ``budget.seed``, and the reflection model is asked at temperature 0 with per-call seeds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from costar.align.optimize import (
    AgreementMeter,
    AlignBudget,
    AlignmentError,
    BaseOptimizer,
    JudgeSpec,
    Proposal,
    SplitAgreement,
    SplitNeeds,
    label_rationales,
    trace_text,
)
from costar.errors import ConfigError
from costar.judges.trace_tools import clip
from costar.labels import GoldenExample, GoldenSet, LabelValue
from costar.models.errors import ModelError
from costar.verdict import Verdict

if TYPE_CHECKING:
    from gepa.core.adapter import EvaluationBatch, ProposalFn
    from gepa.core.result import GEPAResult

    from costar.models.client import ModelClient

__all__ = ["COMPONENT", "GepaOptimizer", "JudgeInstructionsAdapter", "ReflectionModel"]

COMPONENT = "instructions"
CandidateSelection = Literal["pareto", "current_best", "epsilon_greedy", "top_k_pareto"]
"""How GEPA picks the candidate to mutate next (its ``candidate_selection_strategy``)."""
_LOG_LINES = 200


def _show(value: LabelValue | None) -> str:
    if value is None:
        return "(no verdict)"
    return ("pass" if value else "fail") if isinstance(value, bool) else str(value)


class _Log:
    """GEPA's logger: keeps the last lines for the report instead of printing them."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(str(message))
        del self.lines[:-_LOG_LINES]


class ReflectionModel:
    """GEPA's reflection LM (``prompt -> text``) on a coSTAR ModelClient.

    Failures are counted and re-raised: GEPA isolates a failed reflection to its iteration, and
    the count lets the report say why nothing was proposed."""

    def __init__(self, model: str | ModelClient, *, seed: int = 0, max_tokens: int = 2000) -> None:
        from costar.models.client import ModelClient

        self._own = isinstance(model, str)
        self.client = ModelClient(model) if isinstance(model, str) else model
        self.seed = seed
        self.max_tokens = max_tokens
        self.calls = 0
        self.errors: list[str] = []

    def __call__(self, prompt: str | list[dict[str, Any]]) -> str:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        seed = self.seed + self.calls
        self.calls += 1
        try:
            result = self.client.chat(messages, temperature=0.0, seed=seed, max_tokens=self.max_tokens)
        except ModelError as exc:
            self.errors.append(str(exc).splitlines()[0][:200])
            raise
        return result.text

    def close(self) -> None:
        if self._own:
            self.client.close()


@dataclass
class _Trajectory:
    example: GoldenExample
    verdict: Verdict | None
    decision: LabelValue | None
    error: str | None = None


@dataclass
class JudgeInstructionsAdapter:
    """The GEPA adapter: candidate instructions -> judge -> agreement per golden example."""

    base: JudgeSpec
    meter: AgreementMeter
    rationales: Mapping[str, list[str]]
    invalid: list[str] = field(default_factory=list)
    # GEPA asks the adapter for its own proposer first; None selects GEPA's reflective proposer.
    propose_new_texts: ProposalFn | None = field(default=None, init=False)

    def _spec(self, candidate: Mapping[str, str]) -> JudgeSpec:
        return self.base.with_instructions(candidate[COMPONENT])

    def evaluate(self, batch: list[GoldenExample], candidate: dict[str, str],
                 capture_traces: bool = False) -> EvaluationBatch[_Trajectory, dict[str, Any]]:
        from gepa.core.adapter import EvaluationBatch

        ids = [e.trace_id for e in batch]
        try:
            judge = self.meter.judge(self._spec(candidate))
        except ConfigError as exc:
            # Instructions that do not build (an unknown {{variable}}) are a failed candidate,
            # not a failed optimization: score them 0 and say why in the feedback.
            message = str(exc)
            self.invalid.append(message)
            failed = [_Trajectory(e, None, None, message) for e in batch]
            return EvaluationBatch(outputs=[{"error": message}] * len(batch), scores=[0.0] * len(batch),
                                   trajectories=failed if capture_traces else None)
        verdicts = self.meter.verdicts(judge, ids)
        outputs: list[dict[str, Any]] = []
        scores: list[float] = []
        trajectories: list[_Trajectory] = []
        for e in batch:
            verdict = verdicts.get(e.trace_id)
            decision = self.meter.decision(verdict)
            scores.append(1.0 if self.meter.agrees(verdict, e.label) else 0.0)
            outputs.append({"value": decision, "rationale": verdict.rationale if verdict else ""})
            trajectories.append(_Trajectory(e, verdict, decision, verdict.error if verdict else "no verdict"))
        return EvaluationBatch(outputs=outputs, scores=scores, trajectories=trajectories if capture_traces else None)

    def make_reflective_dataset(self, candidate: dict[str, str],
                                eval_batch: EvaluationBatch[_Trajectory, dict[str, Any]],
                                components_to_update: list[str]) -> dict[str, list[dict[str, Any]]]:
        records = []
        for traj in eval_batch.trajectories or []:
            inp, out = trace_text(self.meter.trace(traj.example.trace_id), input_chars=500, output_chars=1000)
            why = " / ".join(self.rationales.get(traj.example.trace_id, [])) or "(the experts gave no rationale)"
            expert = _show(traj.example.label)
            if traj.verdict is None or traj.decision is None:
                said = f"(the judge failed: {traj.error})"
                feedback = f"The judge gave no usable verdict. The human experts said {expert}: {why}"
            else:
                said = f"{_show(traj.decision)} — {clip(traj.verdict.rationale, 500)}"
                if self.meter.agrees(traj.verdict, traj.example.label):
                    feedback = f"Correct: the human experts also said {expert} ({why})."
                else:
                    feedback = f"Wrong: the human experts said {expert}. Their rationale: {why}"
            records.append({"Inputs": {"agent input": inp, "agent output": out},
                            "Generated Outputs": f"verdict: {said}", "Feedback": feedback})
        return {name: records for name in components_to_update}


def _rank_key(index: int, agreement: SplitAgreement) -> tuple[float, float, int]:
    if not agreement.compared:
        return (-math.inf, -math.inf, -index)
    primary = agreement.kappa if agreement.kappa is not None else agreement.accuracy
    return (primary if primary is not None else -math.inf, agreement.accuracy or 0.0, -index)


class GepaOptimizer(BaseOptimizer):
    """Reflective evolution of the judge's instructions with ``gepa.optimize``.

    ``reflection_model`` proposes new instructions (default: the judge's own model);
    ``budget.max_metric_calls`` is GEPA's budget of judge runs; ``budget.max_seconds`` stops it
    early. Needs train examples to reflect on and validation examples to select with."""

    name = "gepa"

    def __init__(self, *, reflection_model: str | ModelClient | None = None, minibatch_size: int = 3,
                 candidate_selection: CandidateSelection = "pareto", use_merge: bool = False,
                 needs: SplitNeeds | None = None) -> None:
        if minibatch_size < 1:
            raise ConfigError(f"gepa minibatch_size is {minibatch_size}; give 1 or more")
        if candidate_selection not in get_args(CandidateSelection):  # options come from files: check them here
            raise ConfigError(f"gepa candidate_selection is {candidate_selection!r}; give one of "
                              f"{', '.join(get_args(CandidateSelection))}")
        self.reflection_model = reflection_model
        self.minibatch_size = minibatch_size
        self.candidate_selection = candidate_selection
        self.use_merge = use_merge
        self.needs = needs or SplitNeeds(train=2, validation=2, test=2)

    def propose(self, spec: JudgeSpec, golden: GoldenSet, meter: AgreementMeter, budget: AlignBudget) -> Proposal:
        from gepa.api import optimize
        from gepa.utils import TimeoutStopCondition

        train, val = golden.split("train"), golden.split("validation")
        seed_text = spec.instructions
        if not seed_text.strip():
            raise AlignmentError(f"judge {spec.name!r} has empty instructions; GEPA evolves instructions, "
                                 "so give it a first version to start from")
        adapter = JudgeInstructionsAdapter(spec, meter, label_rationales(meter.store, golden,
                                                                             [e.trace_id for e in train]))
        reflection = ReflectionModel(self.reflection_model or str(spec.raw.get("model")), seed=budget.seed)
        log = _Log()
        stoppers = [TimeoutStopCondition(budget.max_seconds)] if budget.max_seconds else None
        result: GEPAResult[dict[str, Any], int]  # a list as the data set: examples are keyed by position
        try:
            result = optimize(
                seed_candidate={COMPONENT: seed_text}, trainset=list(train), valset=list(val), adapter=adapter,
                reflection_lm=reflection, candidate_selection_strategy=self.candidate_selection,
                reflection_minibatch_size=min(self.minibatch_size, len(train)), use_merge=self.use_merge,
                max_metric_calls=budget.max_metric_calls, stop_callbacks=stoppers, logger=log, seed=budget.seed,
                display_progress_bar=False, track_best_outputs=False, raise_on_exception=True)
        finally:
            reflection.close()
        ranked = []
        for index, candidate in enumerate(result.candidates):
            text = candidate[COMPONENT]
            try:
                cand_spec = spec.with_instructions(text)
            except ConfigError:
                continue
            ranked.append((index, cand_spec, meter.measure(cand_spec, "validation")))
        best_index, best_spec, _ = max(ranked, key=lambda r: _rank_key(r[0], r[2]))
        notes = []
        if reflection.errors:
            notes.append(f"{len(reflection.errors)} of {reflection.calls} reflection calls failed "
                         f"(first: {reflection.errors[0]})")
        if adapter.invalid:
            notes.append(f"{len(adapter.invalid)} proposed instructions did not build (first: {adapter.invalid[0]})")
        details = {
            "candidates": [{"index": i, "parents": list(result.parents[i]) if i < len(result.parents) else [],
                            "validation_kappa": a.kappa, "validation_accuracy": a.accuracy,
                            "instructions_chars": len(s.instructions)} for i, s, a in ranked],
            "best": best_index, "metric_calls": result.total_metric_calls, "reflection_calls": reflection.calls,
            "seed": budget.seed, "instructions": best_spec.instructions,
        }
        return Proposal(best_spec, details, notes)
