"""CLI faces of the model layer, the scripted server and the agreement statistics."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import httpx

from tests.support.cli import child_env, costar_cmd
from tests.support.paths import EXTERNAL
from tests.support.waiting import wait_for

PANDALM = EXTERNAL / "pandalm"


def costar(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*costar_cmd(), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=child_env())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_agreement_on_pandalm_annotators(tmp_path: Path) -> None:
    res = costar("agreement", str(PANDALM / "testset-v1.json"), str(PANDALM / "testset-v1.json"), "--key", "idx",
                 "--a-field", "annotator1", "--b-field", "annotator2", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["n"] == 999
    assert out["kind"] == "categorical"
    assert abs(out["kappa"]["value"] - 0.8520) < 1e-3
    assert out["kappa"]["ci"]["low"] < out["kappa"]["value"] < out["kappa"]["ci"]["high"]


def test_agreement_judge_vs_human_with_recoding(tmp_path: Path) -> None:
    res = costar("agreement", str(PANDALM / "testset-v1.json"), str(PANDALM / "gpt-3.5-turbo-testset-v1.json"),
                 "--key", "idx", "--a-field", "annotator1", "--b-field", "gpt_result",
                 "--recode-b", "Tie=0", "--recode-b", "garbage=", "--labels", "1,0,2", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "974 items" in res.stdout
    assert "0.709" in res.stdout


def test_agreement_bad_input_is_one_line(tmp_path: Path) -> None:
    res = costar("agreement", str(PANDALM / "testset-v1.json"), str(PANDALM / "testset-v1.json"), "--key", "nope",
                 "--a-field", "annotator1", "--b-field", "annotator2", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.startswith("error: ")
    assert len(res.stderr.strip().splitlines()) == 1
    bad = costar("agreement", "a.csv", "b.csv", "--key", "id", "--a-field", "x", "--b-field", "y", "--recode-a",
                 "noequals", cwd=tmp_path)
    assert bad.returncode == 2


def test_scripted_server_and_model_chat_from_the_cli(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - last_user: ping\n    text: pong\n    input_tokens: 3\n    output_tokens: 1\n")
    port = free_port()
    server = subprocess.Popen([*costar_cmd(), "testing", "serve", str(rules), "--port", str(port)],
                              env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}/v1"

        def listening() -> bool:
            try:
                return httpx.get(f"{base}/models", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(listening, timeout=30, what="`costar testing serve` to answer")
        res = costar("model", "chat", f"openai-compatible:/m?base_url={base}", "ping", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert res.stdout.splitlines()[0] == "pong"
        assert "3 in / 1 out tokens" in res.stdout
        down = costar("model", "chat", "openai-compatible:/m?base_url=http://127.0.0.1:9/v1", "ping", cwd=tmp_path)
        assert down.returncode == 2
        assert "127.0.0.1:9" in down.stderr
        unknown = costar("model", "chat", "nosuch:/m", "ping", cwd=tmp_path)
        assert unknown.returncode == 2
        assert "nosuch" in unknown.stderr
    finally:
        server.terminate()
        server.wait(10)


def test_compare_and_metrics_commands_gate_on_regressions(tmp_path: Path) -> None:
    import sys
    import textwrap

    (tmp_path / "agent.py").write_text(textwrap.dedent("""
        import pathlib, sys
        sys.stdin.read()
        mode = pathlib.Path(__file__).with_name("mode.txt").read_text().strip()
        print("answer 42" if mode == "good" else "no idea")
        """))
    (tmp_path / "suite.yaml").write_text("id: q\nprompt: what?\ntrials: 8\nexpectations:\n  checks: [{output_contains: '42'}]\n")
    (tmp_path / "costar.yaml").write_text(
        f"suite: suite.yaml\nconcurrency: 4\nagent:\n  type: command\n  command: [{json.dumps(sys.executable)}, agent.py]\n")
    (tmp_path / "mode.txt").write_text("good")
    assert costar("run", cwd=tmp_path).returncode == 0
    (tmp_path / "mode.txt").write_text("bad")
    assert costar("run", cwd=tmp_path).returncode == 1
    runs = [r["run_id"] for r in json.loads(costar("runs", "--json", cwd=tmp_path).stdout)["runs"]]
    head, base = runs[0], runs[1]
    res = costar("compare", base, head, "--json", cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    comparison = json.loads(res.stdout)
    assert comparison["has_significant_regression"] is True
    same = costar("compare", base, base, cwd=tmp_path)
    assert same.returncode == 0
    assert "unchanged" in same.stdout
    m = costar("metrics", head, "--max", "latency_s=0.000001", cwd=tmp_path)
    assert m.returncode == 1, m.stdout + m.stderr
    bad = costar("metrics", head, "--max", "tokens", cwd=tmp_path)
    assert bad.returncode == 2
    assert "METRIC=LIMIT" in bad.stderr


def test_run_prints_metric_alerts_against_history(tmp_path: Path) -> None:
    import sys
    import textwrap

    (tmp_path / "agent.py").write_text(textwrap.dedent("""
        import pathlib, sys
        sys.stdin.read()
        n = int(pathlib.Path(__file__).with_name("calls.txt").read_text())
        from costar.trace.export import harness_recording
        from costar.trace import SpanKind, span
        with harness_recording("a"):
            for _ in range(n):
                with span("execute_tool t", SpanKind.TOOL, {"gen_ai.tool.name": "t"}):
                    pass
        print("ok")
        """))
    (tmp_path / "suite.yaml").write_text("id: q\nprompt: go\n")
    (tmp_path / "costar.yaml").write_text(
        f"suite: suite.yaml\nagent:\n  type: command\n  command: [{json.dumps(sys.executable)}, agent.py]\n")
    for calls in ("3", "3", "3", "3", "12"):
        (tmp_path / "calls.txt").write_text(calls)
        res = costar("run", cwd=tmp_path)
        assert res.returncode == 0, res.stdout + res.stderr
    assert "metric alert" in res.stdout, res.stdout
    assert "tool calls" in res.stdout, res.stdout
