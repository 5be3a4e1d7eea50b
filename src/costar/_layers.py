"""The layers of coSTAR: which package may import which. One table, used in two places:
``tests/project/test_architecture.py`` fails on an import that goes up it (or on a cycle), and
``docs/ARCHITECTURE.md`` shows it (``python -m costar._layers`` prints that section).

A package may import only from layers below its own. An import inside one layer is allowed only
where :data:`SAME_LAYER` lists it, with the reason; the test also fails on an entry no import needs
any more. Every import counts: at module level, inside functions, and under ``TYPE_CHECKING``.
A package is a subpackage or top-level module of ``costar`` (``costar.judges``, ``costar.stats``).
"""

from __future__ import annotations

LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "_version"),
    ("_util", "stats", "verdict", "safe_text", "sandbox"),
    ("labels", "pricing", "config", "plugins", "_layers"),
    ("trace",),
    ("scenario", "store"),
    ("models", "capture", "testing", "transfer", "mcp"),
    ("judges", "run"),
    ("summary", "attribution"),
    ("assess", "metrics", "compare", "suites", "rejudge", "affected"),
    ("align", "refine", "monitor", "report", "ci", "views"),
    ("server", "ui"),
    ("api",),
    ("cli", "pytest_plugin"),
)
"""Packages by layer, lowest first."""

SAME_LAYER: dict[tuple[str, str], str] = {
    ("store", "scenario"): "the store keeps the scenario definitions of each run, to resume and re-score it",
    ("config", "pricing"): "costar.yaml's prices: are parsed at load, by the price table's rules",
    ("testing", "models"): "the pytest fixtures replay model calls from the models' cassettes",
    ("judges", "run"): "the agentic judges' sandbox writes a trace's files out with run.workspace",
    ("suites", "assess"): "running a suite scores each trace as soon as it is stored",
    ("rejudge", "assess"): "re-judging asks each scenario the judges the assessor gives it",
    ("compare", "rejudge"): "a comparison can re-judge its regressed scenarios (flaky judge or flaky agent?)",
    ("align", "report"): "the labeling page shows a trace with the HTML report's escaping builder",
    ("report", "views"): "the terminal shows the views --json prints, so the two never disagree",
    ("refine", "align"): "refinement runs the suite with the project's judges, promoted aligned versions included",
    ("monitor", "align"): "a monitored judge's pass rate is corrected with its golden set (Rogan–Gladen, PPI)",
    ("ui", "server"): "the web app is served beside the server's /api/v1 (its trace-tree paging) with its token auth",
}
"""Imports allowed inside one layer: (importer, imported) -> why."""

PURPOSE: dict[str, str] = {
    "errors": "CostarError and its kinds: one-line messages that say what is wrong and how to fix it",
    "_version": "coSTAR's version, written once (pyproject.toml reads it)",
    "_util": ("private helpers: process groups, importing by name, lazy package exports, YAML with lines, "
              "run_sync, loopback servers"),
    "stats": "intervals, exact tests, pass@k and pass^k",
    "verdict": "the Verdict: what a judge (or a human) said about one trace",
    "safe_text": "untrusted text made safe to print on a terminal (escapes shown, never sent; bounded)",
    "sandbox": "OS-level isolation (bubblewrap) for code written from untrusted input: no network, one writable folder",
    "pricing": "model prices (the built-in table, price files, costar.yaml's prices:) and the cost of a call",
    "labels": "human labels and golden sets: value types, label normalisation, the golden-set models",
    "config": "the project file (costar.yaml) and where the store is (a folder or a URL)",
    "plugins": "every plugin group, loaded one way (entry points, precedence, errors)",
    "_layers": "this table of layers, checked by tests/project/test_architecture.py",
    "trace": "the trace model, recorder, OTLP receiver and mapping, import/export formats",
    "scenario": "scenario models, check entries parsed at load, YAML files and suites",
    "store": "the store protocol; SQLite (embedded) and PostgreSQL (shared) backends, migrations, copies",
    "models": "the model client (any model URI) and its providers",
    "capture": "zero-code capture of openai/anthropic SDK calls and MCP tool use",
    "testing": "the scripted model server and the pytest fixtures",
    "transfer": "runs in and out of a store: export and import files",
    "mcp": "MCP servers: snapshots of their tools, prompts and resources; diffs classified breaking or not",
    "judges": "checks, LLM and agentic judges, trace tools, judge definitions and the judge registry",
    "run": "the harness, workspaces and agent adapters",
    "summary": "a run's verdicts folded into rates: per trial, scenario, judge and run",
    "attribution": "why a scenario changed between two runs: the tools it used changed, the agent, both or neither",
    "assess": "scoring stored traces, with verdicts cached by (trace, judge fingerprint)",
    "metrics": "operational metrics of runs and anomaly alerts over their history",
    "compare": "two runs side by side: improved, regressed, unchanged or inconclusive",
    "suites": "running a suite end to end (harness, judges, summary) and re-scoring a stored run",
    "rejudge": "flaky agent or flaky judge: stored traces judged again, a change split into the two",
    "affected": "the scenarios a change since a run can have affected (costar run --affected-by)",
    "align": "the judge loop: labeling, golden sets, agreement, gates, alignment optimizers, judge versions",
    "refine": "the agent loop: a coding assistant patches the agent until the judges pass",
    "monitor": "the same judges on sampled production traces: metric series, alerts, scenarios from traces",
    "report": "terminal, HTML, JUnit and Markdown reports",
    "ci": "the CI workflows costar ci init writes (GitHub Actions, GitLab CI)",
    "views": "the versioned JSON shapes of runs, traces, reports, judges, metrics, comparisons (--json)",
    "server": "one process for a team: OTLP ingest, trace assembly, tokens, redaction, retention, the JSON API",
    "ui": "the web app: runs, run, trace, compare, judges, labels and scenarios pages over the store",
    "api": "the library API, the front door the CLI and the pytest plugin use",
    "cli": "the costar command: parses, calls the api, prints",
    "pytest_plugin": "pytest --costar: scenarios as pytest test items, over the api",
}
"""What each package is for, in one line."""


def layer_of(package: str) -> int | None:
    """The index of the package's layer (0 is the lowest), or None when the table lacks it."""
    for i, layer in enumerate(LAYERS):
        if package in layer:
            return i
    return None


def allowed(importer: str, imported: str) -> bool:
    """Whether ``importer`` may import ``imported`` (both in the table)."""
    a, b = layer_of(importer), layer_of(imported)
    if a is None or b is None:
        return False
    return b < a or (a == b and (importer, imported) in SAME_LAYER)


def render() -> str:
    """The layers as a markdown section for docs/ARCHITECTURE.md (highest layer first)."""
    lines = ["| layer | package | what it is for |", "|---|---|---|"]
    for i in reversed(range(len(LAYERS))):
        for j, package in enumerate(LAYERS[i]):
            lines.append(f"| {i if j == 0 else ''} | `{package}` | {PURPOSE[package]} |")
    lines += ["", "Imports inside one layer, each allowed for a reason:", ""]
    lines += [f"* `{a}` → `{b}`: {why}" for (a, b), why in SAME_LAYER.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
