"""Trace content never drives the terminal: every command that prints it goes through one function.

The agent under test prints ``ESC]0;title BEL ESC[2J`` (set the window title, clear the screen) and
a bidi override; each command that shows its trace (run, report, traces show, label, judges …)
must print those as visible escapes, never as the raw characters.
Rich markup in trace text (``[/evil]``, ``[bold]``) is shown literally too, never interpreted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from costar.trace.model import AgentInfo, Span, SpanKind, Trace
from tests.support.cli import child_env, costar_cmd

HOSTILE = "\x1b]0;pwned\x07\x1b[2J"
BIDI = "\u202e"
RAW = ("\x1b", "\x07", "\u202e", "\x9b")



def costar(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*costar_cmd(), *args], cwd=cwd, capture_output=True, text=True, timeout=180,
                          env=child_env(), input=stdin)


def assert_clean(res: subprocess.CompletedProcess[str]) -> str:
    out = res.stdout + res.stderr
    for ch in RAW:
        assert ch not in out, (ch, out)
    assert "Traceback" not in out
    return out


@pytest.fixture(scope="module")
def hostile_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile-terminal")
    # The agent prints the escapes as its answer and into stderr, then fails: its output, its
    # error message and the verdict rationales all carry them.
    (root / "agent.py").write_text(textwrap.dedent(f"""
        import sys
        text = "answer " + {HOSTILE!r} + " " + {BIDI!r} + "gnp.exe"
        print(text)
        print("boom " + {HOSTILE!r}, file=sys.stderr)
        sys.exit(1)
    """), encoding="utf-8")
    (root / "scenarios").mkdir()
    (root / "scenarios" / "s.yaml").write_text(textwrap.dedent("""
        id: hostile
        prompt: say it
        expectations:
          checks:
            - output_contains: "never printed"
    """), encoding="utf-8")
    (root / "costar.yaml").write_text(textwrap.dedent(f"""
        suite: scenarios
        agent:
          type: command
          command: [{json.dumps(sys.executable)}, agent.py]
    """), encoding="utf-8")
    res = costar("run", "--no-progress", cwd=root)
    assert res.returncode == 1, res.stderr
    (root / "run.out").write_text(res.stdout + res.stderr, encoding="utf-8", errors="surrogateescape")
    return root


def test_the_shared_function_shows_controls_instead_of_sending_them() -> None:
    from costar.safe_text import for_terminal

    shown = for_terminal(f"a{HOSTILE}b{BIDI}c\x9b31m\rd\ud800", 200)
    assert shown == "a\\x1b]0;pwned\\x07\\x1b[2Jb\\u202ec\\x9b31m\\x0dd\\ud800"
    assert for_terminal("x" * 50, 10) == "x" * 10 + "…[40 more characters]"
    assert for_terminal("a\n\tb  c", 20, one_line=True) == "a b c"
    assert for_terminal({"k": [1]}, 20) == '{"k": [1]}'


def test_run_prints_no_raw_escapes(hostile_project: Path) -> None:
    out = (hostile_project / "run.out").read_text(encoding="utf-8")
    for ch in RAW:
        assert ch not in out, ch
    assert "\\x1b]0;pwned\\x07" in out  # shown, visibly


def test_report_prints_no_raw_escapes(hostile_project: Path) -> None:
    out = assert_clean(costar("report", "latest", cwd=hostile_project))
    assert "boom \\x1b]0;pwned\\x07\\x1b[2J" in out


def test_traces_show_prints_no_raw_escapes(hostile_project: Path) -> None:
    listing = assert_clean(costar("traces", "list", cwd=hostile_project))
    trace_id = next(w for line in listing.splitlines() for w in line.split() if len(w) == 32)
    out = assert_clean(costar("traces", "show", trace_id, cwd=hostile_project))
    assert "output: answer \\x1b]0;pwned\\x07\\x1b[2J \\u202egnp.exe" in out


def test_label_prints_no_raw_escapes(hostile_project: Path) -> None:
    res = costar("label", "agent_completed", "--labeler", "ana", "--relabel", cwd=hostile_project, stdin="q\n")
    out = assert_clean(res)
    assert res.returncode == 0, out
    assert "\\x1b]0;pwned\\x07" in out


def test_judges_commands_print_no_raw_escapes(tmp_path: Path) -> None:
    # An imported trace can carry any id; the judges commands list ids and label values.
    evil_id = f"t-{HOSTILE}-{BIDI}"
    traces = [{"trace_id": tid, "scenario_id": "s", "output": f"out {HOSTILE}", "spans": []}
              for tid in (evil_id, "t-plain")]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(t) + "\n" for t in traces), encoding="utf-8")
    assert_clean(costar("traces", "import", "t.jsonl", cwd=tmp_path))
    labeled = costar("label", "quality", "--labeler", "ana", cwd=tmp_path, stdin="p\nlooks fine\nf\n\n")
    assert "2 labels saved" in assert_clean(labeled), labeled.stdout
    (tmp_path / "queue.txt").write_text("t-plain\n", encoding="utf-8")
    labeled = costar("label", "quality", "--labeler", "bob", "--queue", "queue.txt", cwd=tmp_path, stdin="f\n\n")
    assert "1 label saved" in assert_clean(labeled), labeled.stdout
    res = costar("judges", "agreement", "quality", "--labelers", "ana,bob", cwd=tmp_path)
    out = assert_clean(res)
    assert "t-\\x1b]0;pwned\\x07" in out, out
    out = assert_clean(costar("traces", "list", cwd=tmp_path))
    assert "t-\\x1b]0;pwned" in out


# --------------------------------------------------------------------------- markup

EVIL = "[/evil]"
BOLD = "[bold]"


def test_scenario_tags_with_markup_are_shown_literally(tmp_path: Path) -> None:
    (tmp_path / "suite.yaml").write_text('id: hello\nprompt: hi\ntags: ["[/b]", "[bold]"]\n')
    (tmp_path / "costar.yaml").write_text(f"suite: suite.yaml\nagent:\n  type: command\n"
                                          f"  command: [{json.dumps(sys.executable)}, agent.py]\n")
    res = costar("scenarios", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "[/b]" in res.stdout
    assert "[bold]" in res.stdout


def test_trace_text_with_markup_is_shown_literally(tmp_path: Path) -> None:
    trace_id = "a" * 32
    trace = Trace(trace_id=trace_id, scenario_id=f"{BOLD}sc{EVIL}", agent=AgentInfo(name=f"{EVIL} {BOLD}agent"),
                  output=f"out {EVIL}",
                  spans=[Span(trace_id=trace_id, span_id="b" * 16, name=f"step {EVIL}{BOLD}", kind=SpanKind.TOOL,
                              start_ns=1, end_ns=2)])
    (tmp_path / "t.jsonl").write_text(trace.model_dump_json() + "\n")
    imp = costar("traces", "import", "t.jsonl", "--run-id", f"run{EVIL}", cwd=tmp_path)
    assert imp.returncode == 0, imp.stderr
    assert f"run{EVIL}" in imp.stdout
    runs = costar("runs", cwd=tmp_path)
    assert runs.returncode == 0, runs.stderr
    assert EVIL in runs.stdout
    assert BOLD in runs.stdout
    listing = costar("traces", "list", "latest", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert f"{BOLD}sc{EVIL}" in listing.stdout
    show = costar("traces", "show", trace.trace_id, cwd=tmp_path)
    assert show.returncode == 0, show.stderr
    assert f"{BOLD}sc{EVIL}" in show.stdout
    assert f"step {EVIL}{BOLD}" in show.stdout
    assert f"out {EVIL}" in show.stdout
