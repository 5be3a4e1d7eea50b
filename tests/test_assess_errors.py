"""Judge errors are retried by the next ``costar assess``, and its summary line agrees with the table
(issue 9, item 3): a judge whose model was not answering is not stuck with its error verdicts."""

from __future__ import annotations

import textwrap
from pathlib import Path

from costar.testing import Rule, ScriptedModelServer
from tests.cli.test_cli import costar, make_project

ANSWER = Rule(name="judge", system="careful judge", json={"rationale": "it greets", "value": True})


def _judge_errors_in_table(stdout: str) -> int:
    """The 'err' column of the judge table, for the LLM judge's row (cells are separated by spaces)."""
    rows = [line.split() for line in stdout.splitlines()]
    header = next(r for r in rows if r[:2] == ["judge", "role"])
    row = next(r for r in rows if r and r[0] == "polite")
    return int(row[header.index("err")])


def test_errored_verdicts_are_retried_and_the_summary_line_matches_the_table(tmp_path: Path) -> None:
    # The model is down (every request refused) during the run and the first re-score.
    with ScriptedModelServer([Rule(name="down", status=401, error_message="invalid API key")]) as srv:
        proj = make_project(tmp_path / "p", "import sys\nprint('hello ' + sys.stdin.read())\n", """
            id: greet
            prompt: world
            trials: 3
            judges: [polite]
            """)
        (proj / "judges").mkdir()
        (proj / "judges" / "polite.yaml").write_text(textwrap.dedent(f"""
            name: polite
            type: llm
            model: {srv.model_uri("gpt-4o-mini")}
            instructions: "Is this answer polite? {{{{outputs}}}}"
            """))
        first = costar("run", cwd=proj)
        assert first.returncode == 1, first.stdout + first.stderr
        assert _judge_errors_in_table(first.stdout) == 3, first.stdout

        still_down = costar("assess", "latest", cwd=proj)
        assert "3 verdicts computed, 3 cached, 0 restored, 3 judge errors" in still_down.stdout, still_down.stdout
        assert _judge_errors_in_table(still_down.stdout) == 3, still_down.stdout

        # The model is fixed: the next assess asks the judge again, without --force.
        srv.set_rules([ANSWER])
        fixed = costar("assess", "latest", cwd=proj)
        assert "3 verdicts computed, 3 cached, 0 restored, 0 judge errors" in fixed.stdout, fixed.stdout
        assert _judge_errors_in_table(fixed.stdout) == 0, fixed.stdout
        assert fixed.returncode == 0, fixed.stdout
        judge_requests = sum(r.rule == "judge" for r in srv.requests)
        assert judge_requests == 3

        # Nothing left to retry: the verdicts that now pass are cached.
        again = costar("assess", "latest", cwd=proj)
        assert "0 verdicts computed, 6 cached, 0 restored, 0 judge errors" in again.stdout, again.stdout
        assert sum(r.rule == "judge" for r in srv.requests) == judge_requests
