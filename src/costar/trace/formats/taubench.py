"""tau-bench historical trajectories -> one Trace per run, plus the benchmark's reward as a Verdict.

A results file is a list of runs ``{task_id, trial, reward, info, traj}`` where ``traj`` is the
OpenAI-style conversation and ``info.reward_info`` says why the reward is what it is. Files are
named ``{model}-{env}.json`` (e.g. ``gpt-4o-airline.json``); the environment names the scenarios.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from costar.errors import ConfigError
from costar.trace.formats._common import load_json, stable_id
from costar.trace.formats.transcript import transcript_to_trace
from costar.trace.genai import as_dict
from costar.trace.model import Trace
from costar.verdict import Verdict, VerdictSource

VERDICT_NAME = "tau-bench.reward"
KNOWN_ENVS = ("airline", "retail")


def _env_and_model(path_stem: str, runs: list[Any]) -> tuple[str, str | None]:
    model, _, env = path_stem.rpartition("-")
    if env in KNOWN_ENVS and model:
        return env, model
    # Renamed file: the policy heading of the system prompt still names the domain.
    first = runs[0].get("traj", [{}])[0] if runs and isinstance(runs[0], dict) else {}
    text = str(first.get("content") or "").lower() if isinstance(first, dict) else ""
    return next((e for e in KNOWN_ENVS if f"{e} agent policy" in text), "unknown"), None


def _num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, int | float) else str(v)


def _rationale(reward: float, info: Any) -> str:
    if not isinstance(info, dict) or not info:
        return f"reward {reward:g}; the run recorded no reward_info (it ended before grading)"
    details = as_dict(info.get("info"))
    notes = []
    if "r_actions" in details:
        same = "matches" if details["r_actions"] == 1 else "does not match"
        notes.append(f"r_actions={_num(details['r_actions'])}: the final database {same} the expected one")
    if "r_outputs" in details:
        outputs = as_dict(details.get("outputs"))
        missing = [k for k, ok in outputs.items() if not ok]
        said = "all required outputs were given" if not missing else f"missing outputs: {', '.join(missing)}"
        notes.append(f"r_outputs={_num(details['r_outputs'])}: {said}")
    return f"reward {reward:g}" + (f" ({'; '.join(notes)})" if notes else "")


def _run_trace(run: dict[str, Any], i: int, env: str, model: str | None, source: str) -> Trace:
    traj = run.get("traj")
    if not isinstance(traj, list) or "task_id" not in run:
        raise ConfigError(f"{source}: run {i} has no 'task_id' or 'traj' list; is this a tau-bench results file?")
    info = as_dict(run.get("info"))
    task = as_dict(info.get("task"))
    reward = float(run.get("reward") or 0.0)
    metadata = {
        "source": "tau-bench", "env": env, "task_id": run["task_id"], "reward": reward,
        "instruction": task.get("instruction"), "user_id": task.get("user_id"),
        "expected_actions": task.get("actions"), "reward_info": info.get("reward_info"),
        "user_cost": info.get("user_cost"),
    }
    trial = int(run.get("trial") or 0)
    trace_id = stable_id("tau-bench", env, run["task_id"], trial, traj)
    return transcript_to_trace(traj, trace_id=trace_id, agent=f"tau-bench-{env}", model=model,
                               scenario_id=f"tau-bench/{env}/task-{run['task_id']}", trial=trial,
                               metadata=metadata)


def _verdict(trace: Trace) -> Verdict:
    reward = float(trace.metadata["reward"])
    return Verdict(name=VERDICT_NAME, value=reward, passed=reward == 1.0, source=VerdictSource.CODE,
                   source_id="tau-bench", trace_id=trace.trace_id,
                   rationale=_rationale(reward, trace.metadata.get("reward_info")))


def taubench_from_data(runs: Any, *, source: str = "<data>", env: str | None = None,
                       model: str | None = None) -> tuple[list[Trace], list[Verdict]]:
    if not isinstance(runs, list):
        raise ConfigError(f"{source}: a tau-bench results file is a JSON list of runs")
    guessed_env, guessed_model = _env_and_model(Path(source).stem, runs)
    env, model = env or guessed_env, model or guessed_model
    traces = []
    for i, run in enumerate(runs):
        if not isinstance(run, dict):
            raise ConfigError(f"{source}: run {i} is not an object; is this a tau-bench results file?")
        traces.append(_run_trace(run, i, env, model, source))
    return traces, [_verdict(t) for t in traces]


def import_taubench(path: str | Path) -> tuple[list[Trace], list[Verdict]]:
    """A tau-bench results file -> (traces, reward verdicts), one of each per run."""
    return taubench_from_data(load_json(path), source=str(path))
