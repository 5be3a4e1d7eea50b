"""The agent loop: run the suite, brief an assistant on the failures, let it patch the agent in
its own worktree, re-run, and keep the attempt only if the statistics say it helped and hurt
nothing (train and held-out). The user's working tree is never touched; nothing is merged.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field

from costar._util.aio import run_sync
from costar._util.units import format_usd
from costar.align.versions import project_judges
from costar.config import ProjectConfig, load_config
from costar.errors import ConfigError
from costar.refine import git
from costar.refine.acceptance import Decision, ScenarioScores, decide, detectability_warning, scores_of
from costar.refine.assistants import AssistantOutcome, AssistantTask, CodingAssistant
from costar.refine.brief import build_brief
from costar.run.harness import HarnessOptions
from costar.scenario import Scenario, load_suite
from costar.stats import Comparison
from costar.store.location import open_store
from costar.suites import Selection, arun_suite
from costar.summary import RunSummary


@dataclass
class RefineOptions:
    iterations: int = 3
    trials: int | None = None
    budget_usd: float | None = None
    budget_seconds: float | None = None
    concurrency: int | None = None
    alpha: float | None = None  # None: refine.alpha in costar.yaml (default 0.05)
    guard_alpha: float = 0.2
    seed: int = 0
    exclude_tags: tuple[str, ...] = ()


class Attempt(BaseModel):
    index: int
    parent: str  # "baseline" or "attempt-N"
    branch: str
    worktree: str
    commit: str | None = None
    status: str = "rejected"  # accepted | rejected
    reason: str = ""
    assistant_message: str = ""
    feedback: str = ""  # what the next brief tells the assistant (held-out names withheld)
    changed_files: list[str] = Field(default_factory=list)
    diff_stat: str = ""
    diff: str = ""
    """The attempt's patch (``git diff`` against its parent), bounded by ``MAX_DIFF_CHARS``."""
    run_ids: list[str] = Field(default_factory=list)
    before: dict[str, tuple[int, int]] = Field(default_factory=dict)  # scenario -> (passed, decided)
    after: dict[str, tuple[int, int]] = Field(default_factory=dict)
    decisions: dict[str, Comparison] = Field(default_factory=dict)  # scenario -> improved/regressed/...
    cost_usd: float = 0.0
    seconds: float = 0.0


class RefineReport(BaseModel):
    session: str
    project_dir: str
    base_commit: str
    baseline_run_id: str
    splits: dict[str, str] = Field(default_factory=dict)  # scenario -> train | holdout
    baseline: dict[str, tuple[int, int]] = Field(default_factory=dict)
    attempts: list[Attempt] = Field(default_factory=list)
    best: str | None = None  # branch of the best accepted attempt
    stopped_because: str = ""
    alpha: float = 0.05
    warnings: list[str] = Field(default_factory=list)  # said before the baseline ran, and kept here
    cost_usd: float = 0.0
    seconds: float = 0.0
    session_dir: str = ""

    @property
    def accepted(self) -> list[Attempt]:
        return [a for a in self.attempts if a.status == "accepted"]


@dataclass
class _Candidate:
    name: str
    commit: str
    worktree: Path
    scores: ScenarioScores
    failing_train: list[str]
    summary: RunSummary | None


Say = Callable[[str], None]
# How a reason starts when the time budget stopped something that was running.
_CUT = "stopped when the time budget ran out"


def _pareto_parent(candidates: list[_Candidate], train: list[str], rng: random.Random) -> _Candidate:
    """GEPA-style: candidates best on at least one train scenario form the front; pick one with
    probability proportional to how many scenarios it leads on (ties favour the newest)."""
    wins: dict[int, int] = {}
    for sc in train:
        rates = [(c.scores[sc][0] / c.scores[sc][1]) if sc in c.scores and c.scores[sc][1] else 0.0
                 for c in candidates]
        best = max(rates, default=0.0)
        leaders = [i for i, r in enumerate(rates) if r == best]
        wins[leaders[-1]] = wins.get(leaders[-1], 0) + 1
    if not wins:
        return candidates[-1]
    indices = sorted(wins)
    return candidates[rng.choices(indices, weights=[wins[i] for i in indices])[0]]


class Refiner:
    def __init__(self, config_path: str | Path | None, assistant: CodingAssistant,
                 options: RefineOptions | None = None, *, say: Say | None = None) -> None:
        self.cfg = load_config(config_path)
        self.options = options or RefineOptions()
        self.assistant = assistant
        self.say = say or (lambda _msg: None)
        self.project_dir = self.cfg.root.resolve()
        self.root = git.repo_root(self.project_dir)
        self.rel_project = self.project_dir.relative_to(self.root)
        self.config_name = Path(config_path).name if config_path else "costar.yaml"
        self.agent_dir = (self.project_dir / self.cfg.refine.agent_dir).resolve()
        if not self.agent_dir.is_relative_to(self.root):
            raise ConfigError(f"refine.agent_dir {self.cfg.refine.agent_dir!r} is outside the git repository")
        self.store = open_store(self.cfg.store_location(), local_dir=self.cfg.store_path)
        self.session = time.strftime("%Y%m%d-%H%M%S") + "-" + os.urandom(2).hex()
        self.session_dir = self.cfg.store_path / "refine" / self.session
        self.alpha = self.options.alpha if self.options.alpha is not None else self.cfg.refine.alpha
        if not 0 < self.alpha < 1:
            raise ConfigError(f"alpha must be between 0 and 1, got {self.alpha:g}")
        # Tree id -> (attempt name, what its evaluation said): the same code is never run twice.
        self._evaluated: dict[str, tuple[str, str]] = {}
        self.budget_seconds = self.options.budget_seconds or self.cfg.refine.budget_seconds
        """The time budget of the session (None: no limit)."""
        self._deadline_at: float | None = None  # when it runs out, on the event loop's clock

    # ------------------------------------------------------------------ guards

    def _protected(self) -> list[Path]:
        """Files the assistant must not touch: the tests (scenarios, judges) and the project file."""
        paths = [self.project_dir / s for s in self.cfg.suite] + [self.project_dir / self.cfg.judges_dir,
                                                                 self.project_dir / self.config_name]
        return [p.resolve() for p in paths]

    def preflight(self) -> None:
        if not self.cfg.suite:
            raise ConfigError("refine needs a suite: set 'suite' in costar.yaml")
        if self.cfg.agent is None:
            raise ConfigError("refine needs the agent: set 'agent' in costar.yaml")
        from costar.run.agents import parse_agent_shorthand

        spec = self.cfg.agent if isinstance(self.cfg.agent, dict) else parse_agent_shorthand(self.cfg.agent)
        if spec.get("type") == "python":
            raise ConfigError("refine needs a command agent: each attempt's code lives in its own worktree, and an "
                              "in-process agent keeps the code it imported first; set agent.type: command "
                              "(e.g. command: [python, -m, my_agent])")
        dirty = git.dirty_paths(self.root, [self.project_dir])
        dirty = [d for d in dirty if not (self.root / d).resolve().is_relative_to(self.cfg.store_path.resolve())]
        if dirty:
            raise ConfigError(f"the working tree has uncommitted changes ({', '.join(dirty[:3])}"
                              f"{'…' if len(dirty) > 3 else ''}); commit or stash them first: refinement "
                              "branches from your last commit and never touches your working tree")

    def _outside_agent(self, worktree: Path, files: list[str]) -> list[str]:
        agent_rel = self.agent_dir.relative_to(self.root)
        protected = [p.relative_to(self.root) for p in self._protected() if p.is_relative_to(self.root)]
        bad = []
        for f in files:
            rel = Path(f)
            inside = rel == agent_rel or agent_rel in rel.parents or str(agent_rel) == "."
            if not inside or any(rel == p or p in rel.parents for p in protected):
                bad.append(f)
        return bad

    def _editable(self) -> str:
        """Which files an attempt may edit, in words a reviewer and the assistant can act on."""
        agent_rel = self.agent_dir.relative_to(self.root).as_posix()
        where = "any file in the repository" if agent_rel == "." else f"files under {agent_rel}/"
        judges = (self.project_dir / self.cfg.judges_dir).resolve()
        protected = sorted({(p.relative_to(self.root).as_posix() + ("/" if p.is_dir() or p == judges else ""))
                            for p in self._protected() if p.is_relative_to(self.root)})
        return f"only {where} may change (refine.agent_dir), never {', '.join(protected)}"

    # ------------------------------------------------------------------ running

    def _worktree_config(self, worktree: Path) -> ProjectConfig:
        cfg = load_config(worktree / self.rel_project / self.config_name)
        return cfg

    def _trials_override(self, cfg: ProjectConfig) -> int | None:
        return self.options.trials or self.cfg.refine.trials or cfg.trials

    async def _run(self, worktree: Path, ids: list[str], label: str) -> RunSummary:
        cfg = self._worktree_config(worktree)
        scenarios = load_suite([cfg.path(s) for s in cfg.suite])
        options = HarnessOptions(concurrency=self.options.concurrency or cfg.concurrency,
                                 trials=self._trials_override(cfg), timeout=cfg.timeout,
                                 drop_secret_binaries=cfg.secrets.drop_binary_artifacts, prices=cfg.price_table())
        outcome = await arun_suite(scenarios, cfg.agent_spec(), store=self.store, selection=Selection(ids=ids),
                                   options=options, description=f"refine {self.session} {label}",
                                   registry=project_judges(cfg), origin="refine")
        return outcome.summary

    async def _run_in_budget(self, worktree: Path, ids: list[str], label: str) -> RunSummary | None:
        """:meth:`_run`, stopped when the time budget runs out (then None; the run is marked interrupted)."""
        try:
            async with asyncio.timeout_at(self._deadline_at):
                return await self._run(worktree, ids, label)
        except TimeoutError:
            return None

    def _scenarios(self) -> dict[str, Scenario]:
        excluded = set(self.options.exclude_tags or self.cfg.refine.exclude_tags)
        return {sc.id: sc for sc in load_suite([self.cfg.path(s) for s in self.cfg.suite])
                if not excluded & set(sc.tags)}

    # ------------------------------------------------------------------ the loop

    async def arun(self) -> RefineReport:
        self.preflight()
        # Before the baseline run, which may take long: a missing command or a silent model now.
        await self.assistant.check()
        started = time.monotonic()
        # The time budget is a hard stop: an assistant or a run still going when it runs out is
        # stopped (its process groups killed), not waited for.
        if self.budget_seconds is not None:
            self._deadline_at = asyncio.get_running_loop().time() + self.budget_seconds
        scenarios = self._scenarios()
        train = [s for s, sc in scenarios.items() if sc.split == "train"]
        holdout = [s for s, sc in scenarios.items() if sc.split == "holdout"]
        base_commit = git.head_sha(self.root)
        # Before any trial runs: a trial count at which no single fix could ever be accepted.
        warnings = []
        fewest = min((self._trials_override(self.cfg) or sc.trials for s, sc in scenarios.items() if s in train),
                     default=None)
        warning = detectability_warning(fewest, self.alpha) if fewest is not None else None
        if warning is not None:
            warnings.append(warning)
            self.say(f"warning: {warning}")
        base_wt = self.session_dir / "baseline"
        git.git(["worktree", "add", "-q", "--detach", str(base_wt), base_commit], self.root)
        self.say(f"baseline: running {len(scenarios)} scenarios at {base_commit[:10]}")
        base_summary = await self._run_in_budget(base_wt, list(scenarios), "baseline")
        if base_summary is None:
            report = RefineReport(session=self.session, project_dir=str(self.project_dir), base_commit=base_commit,
                                  baseline_run_id="", splits={s: sc.split for s, sc in scenarios.items()},
                                  session_dir=str(self.session_dir), alpha=self.alpha, warnings=warnings)
            report.stopped_because = (f"{self._time_spent(started)} during the baseline run, which was stopped; "
                                      "no attempt was made")
            self.say(f"stopped: {report.stopped_because}")
            return self._finish(report, started, 0.0)
        base_scores = scores_of(base_summary)
        failing = [s for s in train if base_scores.get(s, (0, 0))[0] < base_scores.get(s, (0, 1))[1]]
        report = RefineReport(session=self.session, project_dir=str(self.project_dir), base_commit=base_commit,
                              baseline_run_id=base_summary.run_id or "", baseline=base_scores,
                              splits={s: sc.split for s, sc in scenarios.items()},
                              session_dir=str(self.session_dir), alpha=self.alpha, warnings=warnings)
        cost = base_summary.totals.usage.cost_usd
        if not failing:
            report.stopped_because = "nothing to refine: every train scenario passes at the baseline"
            return self._finish(report, started, cost)
        candidates = [_Candidate("baseline", base_commit, base_wt, base_scores, failing, base_summary)]
        self._evaluated[git.tree_sha(self.root, base_commit)] = ("the baseline", "the code refinement started from")
        rng = random.Random(self.options.seed)
        feedback: list[str] = []
        iterations = self.options.iterations or self.cfg.refine.iterations
        for index in range(1, iterations + 1):
            budget = self._over_budget(started, cost)
            if budget:
                report.stopped_because = budget
                break
            parent = _pareto_parent(candidates, train, rng)
            if not parent.failing_train:
                report.stopped_because = "every train scenario passes"
                break
            attempt, candidate, spent = await self._attempt(index, parent, scenarios, train, holdout, feedback)
            cost += spent
            report.attempts.append(attempt)
            if candidate is not None:
                candidates.append(candidate)
            else:
                feedback.append(f"attempt {index}: {attempt.feedback}")
            if attempt.reason.startswith(_CUT):
                report.stopped_because = f"{self._time_spent(started)}; attempt {index} {attempt.reason}"
                break
        else:
            report.stopped_because = f"ran {iterations} iteration(s)"
        if not report.stopped_because:
            report.stopped_because = f"ran {len(report.attempts)} iteration(s)"
        return self._finish(report, started, cost)

    def _over_budget(self, started: float, cost: float) -> str | None:
        usd = self.options.budget_usd or self.cfg.refine.budget_usd
        if usd is not None and cost >= usd:
            return f"money budget spent ({format_usd(cost)} of {format_usd(usd)})"
        if self.budget_seconds is not None and time.monotonic() - started >= self.budget_seconds:
            return self._time_spent(started)
        return None

    def _time_spent(self, started: float) -> str:
        return f"time budget spent ({time.monotonic() - started:.0f} s of {self.budget_seconds or 0.0:.0f} s)"

    async def _attempt(self, index: int, parent: _Candidate, scenarios: dict[str, Scenario], train: list[str],
                       holdout: list[str], feedback: list[str]) -> tuple[Attempt, _Candidate | None, float]:
        t0 = time.monotonic()
        name = f"attempt-{index}"
        branch = f"costar/refine/{self.session}/{name}"
        wt = self.session_dir / name
        git.add_worktree(self.root, wt, branch, parent.commit)
        attempt = Attempt(index=index, parent=parent.name, branch=branch, worktree=str(wt), before=parent.scores)
        agent_dir = wt / self.agent_dir.relative_to(self.root)
        assert parent.summary is not None
        brief = build_brief(self.store, _only(parent.summary, parent.failing_train), scenarios,
                            agent_dir=str(agent_dir.relative_to(wt)), editable=self.cfg.refine.components,
                            feedback=feedback)
        brief_md, brief_json = self.session_dir / f"{name}.brief.md", self.session_dir / f"{name}.brief.json"
        brief_md.write_text(brief.to_markdown(), encoding="utf-8")
        brief_json.write_text(brief.to_json(), encoding="utf-8")
        self.say(f"{name}: briefing {self.assistant.name} on {len(brief.failures)} failing scenario(s) "
                 f"(from {parent.name})")
        assistant_started = time.monotonic()
        try:
            async with asyncio.timeout_at(self._deadline_at):
                outcome = await self.assistant.propose(AssistantTask(brief, wt, agent_dir, brief_md, brief_json))
        except TimeoutError:
            ran = time.monotonic() - assistant_started
            outcome = AssistantOutcome(False, f"{_CUT}: the assistant had run for {ran:.0f} s; its processes were "
                                              "killed", seconds=ran)
        attempt.assistant_message = outcome.message
        spent = outcome.cost_usd
        changed = git.changed_files(wt)
        attempt.changed_files = changed
        attempt.commit = git.commit_all(wt, f"coSTAR refine {self.session} {name}: {outcome.message[:200]}")
        if attempt.commit:
            attempt.diff_stat = git.diff(self.root, parent.commit, attempt.commit, stat=True)
            attempt.diff = bounded_diff(git.diff(self.root, parent.commit, attempt.commit))

        def reject(reason: str, feedback: str | None = None) -> tuple[Attempt, None, float]:
            attempt.status, attempt.reason = "rejected", reason
            attempt.feedback = feedback or reason
            attempt.seconds = time.monotonic() - t0
            attempt.cost_usd = spent
            self.say(f"{name}: rejected — {reason}")
            return attempt, None, spent

        if not outcome.ok:
            if "command not found" in outcome.message:
                raise ConfigError(outcome.message)
            return reject(outcome.message)
        if not changed:
            return reject("the assistant changed nothing")
        outside = self._outside_agent(wt, changed)
        if outside:
            return reject(f"edited files outside the agent: {', '.join(outside)}; {self._editable()}")
        tree = git.tree_sha(self.root, attempt.commit or parent.commit)
        seen = self._evaluated.get(tree)
        if seen is not None:
            # Running the same code again could only re-roll its luck: the statistics already spoke.
            return reject(f"the same code as {seen[0]}, already evaluated ({seen[1]}); not run again",
                          f"this change leaves the agent exactly as {seen[0]} ({seen[1]}); try something different")
        out_of_time = f"{_CUT} while the attempt was evaluated; its run was marked interrupted"
        # The failing scenarios first: no improvement there means no need to run the rest.
        targets = list(parent.failing_train)
        first = await self._run_in_budget(wt, targets, f"{name} failing")
        if first is None:
            return reject(out_of_time)
        spent += first.totals.usage.cost_usd
        attempt.run_ids.append(first.run_id or "")
        after = scores_of(first)
        decision = decide(parent.scores, after, targets=targets, train_rest=[], holdout=[],
                          alpha=self.alpha, guard_alpha=self.options.guard_alpha)
        if not decision.accepted:
            attempt.after, attempt.decisions = after, decision.per_scenario
            self._evaluated[tree] = (name, f"rejected: {decision.feedback}")
            return reject(decision.reason, decision.feedback)
        rest = [s for s in scenarios if s not in targets]
        if rest:
            second = await self._run_in_budget(wt, rest, f"{name} rest")
            if second is None:
                return reject(out_of_time)
            spent += second.totals.usage.cost_usd
            attempt.run_ids.append(second.run_id or "")
            after.update(scores_of(second))
        rest_train = [s for s in train if s not in targets]
        decision = decide(parent.scores, after, targets=targets, train_rest=rest_train, holdout=holdout,
                          alpha=self.alpha, guard_alpha=self.options.guard_alpha)
        attempt.after, attempt.decisions = after, decision.per_scenario
        if not decision.accepted:
            self._evaluated[tree] = (name, f"rejected: {decision.feedback}")
            return reject(decision.reason, decision.feedback)
        self._evaluated[tree] = (name, "accepted")
        attempt.status, attempt.reason = "accepted", decision.reason
        attempt.seconds, attempt.cost_usd = time.monotonic() - t0, spent
        self.say(f"{name}: accepted — {decision.reason}")
        failing = [s for s in train if after.get(s, (0, 0))[0] < after.get(s, (0, 1))[1]]
        return attempt, _Candidate(name, attempt.commit or parent.commit, wt, after, failing,
                                   _merge(first, second if rest else None)), spent

    def _finish(self, report: RefineReport, started: float, cost: float) -> RefineReport:
        # The baseline checkout served its runs; attempt worktrees stay for the reviewer.
        git.remove_worktree(self.root, self.session_dir / "baseline")
        report.seconds = time.monotonic() - started
        report.cost_usd = cost
        if report.accepted:
            best = max(report.accepted, key=lambda a: (sum(c for c, _ in a.after.values()), a.index))
            report.best = best.branch
        from costar.refine.report import render_markdown

        self.session_dir.mkdir(parents=True, exist_ok=True)
        (self.session_dir / "report.json").write_text(report.model_dump_json(indent=2), encoding="utf-8")
        (self.session_dir / "report.md").write_text(render_markdown(report), encoding="utf-8")
        return report

    def run(self) -> RefineReport:
        return run_sync(self.arun)


MAX_DIFF_CHARS = 20_000
"""How much of an attempt's patch the report keeps (the branch has all of it)."""


def bounded_diff(patch: str, limit: int = MAX_DIFF_CHARS) -> str:
    """``patch`` whole when it fits, else its start cut at a line with a note of what was left out."""
    if len(patch) <= limit:
        return patch
    cut = patch.rfind("\n", 0, limit) + 1 or limit
    rest = patch[cut:]
    return (patch[:cut] + f"… {rest.count(chr(10)):,} more lines ({len(rest):,} characters) not shown; "
            "'git diff' on the branch shows them\n")


def _only(summary: RunSummary, ids: list[str]) -> RunSummary:
    return summary.model_copy(update={"scenarios": [s for s in summary.scenarios if s.scenario_id in ids]})


def _merge(a: RunSummary, b: RunSummary | None) -> RunSummary:
    if b is None:
        return a
    return a.model_copy(update={"scenarios": a.scenarios + b.scenarios})


def refine(config_path: str | Path | None, assistant: CodingAssistant, options: RefineOptions | None = None,
           *, say: Say | None = None) -> RefineReport:
    return Refiner(config_path, assistant, options, say=say).run()


__all__ = ["Attempt", "Decision", "RefineOptions", "RefineReport", "Refiner", "refine"]
