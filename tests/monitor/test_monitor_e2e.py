"""Monitors end to end, on both stores: a project's monitor (a check and an LLM judge on the scripted
model server) scores stored traces; when the pass rate drops an alert reaches a real webhook receiver
on loopback (coSTAR's JSON and the Slack-compatible payload), and a recovery follows. First through the
library (``costar monitor run``'s api), then through ``costar server`` with an agent instrumented with
the OpenTelemetry SDK (its own exporter, unmodified), then back to development with
``costar scenarios from-trace``."""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from costar import api
from costar.testing import Rule, ScriptedModelServer
from tests.support.cli import child_env, costar_cmd
from tests.support.monitor import WebhookReceiver, make_trace
from tests.support.server import run_otel_agent, server_process, wait_for

GOOD = "It is rainy in Paris."
BAD = "Sorry, I could not get the weather."

# Four good answers, then sixteen bad ones: 4/20 passes, whose 95% Wilson interval is [0.08, 0.42],
# entirely below 0.5 (with six good ones, 6/20 reaches 0.52 and nothing fires). Then thirty-six good
# ones: 40/56 passes, [0.58, 0.81], and the alert recovers. Adding a failure only ever lowers the
# upper bound and adding a pass only raises it, so however the scoring interleaves with the
# evaluations, each series fires once and recovers once.
PHASES = (4, 16, 36)


def _project(root: Path, model_uri: str, hook_url: str, *, project_filter: str = "shop") -> Path:
    (root / "judges").mkdir(parents=True, exist_ok=True)
    (root / "monitors").mkdir(exist_ok=True)
    (root / "costar.yaml").write_text("store: .costar\n")
    (root / "judges" / "helpful.yaml").write_text(textwrap.dedent(f"""\
        name: helpful
        model: {model_uri}
        instructions: "Does the answer tell the user the weather they asked for? {{{{outputs}}}}"
        """))
    (root / "monitors" / "weather.yaml").write_text(textwrap.dedent(f"""\
        name: weather
        description: Weather answers in production
        filter:
          project: {project_filter}
          service: weather-*
        sample: 1.0
        checks:
          - name: answers
            output_contains: "It is"
        judges: [helpful]
        windows: [1h]
        alerts:
          - name: quality-drop
            below: 0.5
            min_samples: 5
        webhooks:
          team: {{url: "{hook_url}"}}
          chat: {{url: "{hook_url}", format: slack}}
        """))
    return root / "costar.yaml"


def _judge_rules() -> list[Rule]:
    return [Rule(any_message="Sorry", json={"rationale": "No weather in the answer.", "value": False}),
            Rule(json={"rationale": "It gives the weather.", "value": True})]


def _statuses(received: list[dict[str, Any]]) -> dict[tuple[str, str], list[str]]:
    """(series, payload format) -> statuses received, in order."""
    out: dict[tuple[str, str], list[str]] = {}
    for body in received:
        if body.get("type") == "costar.alert":
            out.setdefault((body["series"], "json"), []).append(body["status"])
        else:
            text = body["text"]
            series = "answers@1h" if "answers@1h" in text else "helpful@1h" if "helpful@1h" in text else text
            out.setdefault((series, "slack"), []).append("firing" if "*ALERT*" in text else
                                                         "resolved" if "*RESOLVED*" in text else text)
    return out


def _every(received: list[dict[str, Any]], statuses: list[str]) -> bool:
    got = _statuses(received)
    keys = [(s, f) for s in ("answers@1h", "helpful@1h") for f in ("json", "slack")]
    return all(got.get(k) == statuses for k in keys)


def test_a_drop_alerts_a_webhook_and_a_recovery_follows(store: Any, tmp_path: Path, scripted_model_server: Any) -> None:
    model: ScriptedModelServer = scripted_model_server(_judge_rules())
    with WebhookReceiver() as hook:
        project = _project(tmp_path / "project", model.model_uri(), hook.url)
        n = 0

        def phase(count: int, output: str) -> Any:
            nonlocal n
            now = time.time()
            store.write_traces([make_trace(f"{n + i:032x}", at=now - 1, output=output, service="weather-agent")
                                for i in range(count)])
            n += count
            return api.run_monitors(project=project, store=store)

        first = phase(PHASES[0], GOOD)
        assert first.considered == PHASES[0]
        assert first.score.judged == 2 * PHASES[0]
        assert [c.state for c in first.evaluation.checks] == ["insufficient", "insufficient"]
        assert len(model.requests) == PHASES[0]  # the LLM judge once per trace; the check needs no model

        dropped = phase(PHASES[1], BAD)
        assert {e.check.series: e.status for e in dropped.evaluation.events} == {"answers@1h": "firing",
                                                                                 "helpful@1h": "firing"}
        assert all(e.delivered == {"team": True, "chat": True} for e in dropped.evaluation.events)
        got = hook.wait_for(lambda r: _every(r, ["firing"]))
        firing = next(b for b in got if b.get("type") == "costar.alert" and b["series"] == "helpful@1h")
        assert (firing["monitor"], firing["rule"], firing["judge"], firing["n"]) == ("weather", "quality-drop",
                                                                                    "helpful", 20)
        assert firing["value"] == pytest.approx(0.2)
        assert firing["compared"] == "upper"
        assert firing["compared_value"] < 0.5

        again = api.run_monitors(project=project, store=store)  # nothing new: still firing, nothing sent
        assert again.evaluation.events == []
        assert again.score.traces == 0
        assert len(model.requests) == PHASES[0] + PHASES[1]

        recovered = phase(PHASES[2], GOOD)
        assert sorted(e.status for e in recovered.evaluation.events) == ["resolved", "resolved"]
        hook.wait_for(lambda r: _every(r, ["firing", "resolved"]))

    history = api.monitor_alerts("weather", project=project, store=store)
    assert sorted((a.series, a.status) for a in history) == [
        ("answers@1h", "firing"), ("answers@1h", "resolved"), ("helpful@1h", "firing"), ("helpful@1h", "resolved")]
    assert all(d.status == "delivered" for a in history for d in a.deliveries)
    assert all(d.attempts == 1 for a in history for d in a.deliveries)
    verdicts = store.verdicts(trace_ids=[f"{i:032x}" for i in range(sum(PHASES))], latest=True)
    assert len(verdicts) == 2 * sum(PHASES)
    assert {v.metadata.get("monitor") for v in verdicts} == {"weather"}
    assert sum(v.passed is True for v in verdicts if v.name == "helpful") == PHASES[0] + PHASES[2]
    series = api.monitor_series("weather", judge="helpful", metric="pass_rate", project=project, store=store)
    # A 1h window stores a point at most every 5 minutes (window / 12): the first run's, here.
    assert [(p.n, p.value) for p in series] == [(PHASES[0], 1.0)]


# --------------------------------------------------------------------------- through costar server

def _cities(count: int) -> list[str]:
    return [f"City{i}" for i in range(count)]


def _cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*costar_cmd(), *args], cwd=folder, capture_output=True, text=True, timeout=120,
                          env=child_env())


@pytest.mark.slow
def test_costar_server_scores_an_otel_agent_and_alerts_on_a_drop(store: Any, tmp_path: Path,
                                                                 scripted_model_server: Any) -> None:
    location = str(store.root) if store.backend == "sqlite" else store.url
    model: ScriptedModelServer = scripted_model_server(_judge_rules())
    root = tmp_path / "project"
    with WebhookReceiver() as hook:
        _project(root, model.model_uri(), hook.url, project_filter="weather")
        (root / "server.yaml").write_text("idle: 0.5s\nservices:\n  weather-*: weather\n"
                                          "monitors:\n  evaluate_every: 0.3s\n")
        with server_process(location, root) as srv:
            def scored() -> int:
                [view] = srv.get("/api/v1/monitors").json()
                return int(view["counts"]["scored"])

            run_otel_agent(root, srv.url, _cities(PHASES[0]))
            wait_for(lambda: scored() == PHASES[0], timeout=60, what="the first traces scored")
            run_otel_agent(root, srv.url, _cities(PHASES[1]), broken=True)
            got = hook.wait_for(lambda r: _every(r, ["firing"]), timeout=60)
            firing = next(b for b in got if b.get("type") == "costar.alert" and b["series"] == "helpful@1h")
            assert firing["monitor"] == "weather"
            assert firing["compared_value"] < 0.5
            run_otel_agent(root, srv.url, _cities(PHASES[2]))
            hook.wait_for(lambda r: _every(r, ["firing", "resolved"]), timeout=60)
            assert scored() == sum(PHASES)

            [view] = srv.get("/api/v1/monitors").json()
            assert view["name"] == "weather"
            assert view["firing"] == []
            assert view["counts"]["considered"] == view["counts"]["sampled"] == sum(PHASES)
            alerts = srv.get("/api/v1/alerts", params={"monitor": "weather"}).json()
            assert sorted((a["series"], a["status"]) for a in alerts) == [
                ("answers@1h", "firing"), ("answers@1h", "resolved"), ("helpful@1h", "firing"),
                ("helpful@1h", "resolved")]
            points = srv.get("/api/v1/monitors/weather/series", params={"judge": "helpful", "metric": "pass_rate"})
            assert points.status_code == 200
            assert points.json()
            metrics = srv.get("/metrics").text
            assert f"costar_monitor_traces_scored_total {sum(PHASES)}" in metrics
            assert 'costar_monitor_alerts_total{status="firing"} 2' in metrics
            assert 'costar_monitor_alerts_total{status="resolved"} 2' in metrics
            assert len(model.requests) == sum(PHASES)  # one LLM judge call per trace, none repeated
            failing = next(a for a in alerts if a["status"] == "firing")
            assert failing["deliveries"]
            assert all(d["status"] == "delivered" for d in failing["deliveries"])

        # The CLI reads the same history from the store; a failing production trace becomes a scenario draft.
        listed = _cli(root, "monitor", "alerts", "weather", "--json", "--store", location)
        assert listed.returncode == 0, listed.stderr
        assert len(json.loads(listed.stdout)) == 4
        # A new handle: the fixture's SQLite store was never written by this process, so it still reads
        # as the empty store it was when opened, not the database the server created since.
        reader = api.open_store(location, create=False)
        try:
            ids = [t.trace_id for t in api.server_traces(project="weather", limit=100, store=reader)]
            assert len(ids) == sum(PHASES)
            bad = next(v.trace_id for v in reader.verdicts(trace_ids=ids) if v.name == "helpful" and v.passed is False)
        finally:
            reader.close()
        drafted = _cli(root, "scenarios", "from-trace", bad, "-o", "scenarios/from-prod.yaml", "--store", location)
        assert drafted.returncode == 0, drafted.stderr
        text = (root / "scenarios" / "from-prod.yaml").read_text()
        assert bad in text  # the header says where it came from
        assert "Weather in City" in text  # the user's message is the prompt
        assert "output_contains" in text  # the failed check carried over
        checked = _cli(root, "scenarios", "scenarios/from-prod.yaml")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "1 scenario(s) valid" in checked.stdout


def test_monitor_cli_errors_are_one_line(tmp_path: Path) -> None:
    _project(tmp_path, "openai-compatible:/judge?base_url=http://127.0.0.1:9/v1", "http://127.0.0.1:9/hook")
    res = _cli(tmp_path, "monitor", "backfill", "nosuch", "--since", "7d")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "error: no monitor 'nosuch' (monitors: weather); define it in monitors/ or create it through the API"]
    (tmp_path / "monitors" / "broken.yaml").write_text("name: broken\nchecks: []\nwindows: [1h]\nsample: 2\n")
    res = _cli(tmp_path, "monitor", "list")
    assert res.returncode == 2
    [line] = res.stderr.strip().splitlines()
    assert line.startswith("error: ")
    assert "broken.yaml:4" in line
    assert "sample" in line


def test_server_monitor_settings_and_unbuildable_monitors_are_one_line_errors(tmp_path: Path) -> None:
    from costar.errors import ConfigError
    from costar.server.config import load_server_config

    (tmp_path / "server.yaml").write_text("idle: 1s\nmonitors:\n  evaluate_every: 0s\n")
    with pytest.raises(ConfigError) as bad:
        load_server_config(tmp_path / "server.yaml")
    assert "server.yaml:3" in str(bad.value)
    assert "evaluate_every" in str(bad.value)
    assert load_server_config(None).monitors.enabled is True

    # A monitor whose judge does not exist stops costar server before it listens, naming the file and line.
    _project(tmp_path, "openai-compatible:/judge?base_url=http://127.0.0.1:9/v1", "http://127.0.0.1:9/hook")
    (tmp_path / "server.yaml").write_text("idle: 1s\n")
    text = (tmp_path / "monitors" / "weather.yaml").read_text().replace("judges: [helpful]", "judges: [nosuch]")
    (tmp_path / "monitors" / "weather.yaml").write_text(text)
    res = _cli(tmp_path, "server", "--port", "0")
    assert res.returncode == 2
    [line] = res.stderr.strip().splitlines()
    assert line.startswith("error: ")
    assert "weather.yaml:10" in line
    assert "nosuch" in line
    # --no-monitors serves anyway (ingest only): checked by its announcement line.
    with server_process(str(tmp_path / ".costar"), tmp_path, args=["--no-monitors"]) as srv:
        assert srv.get("/api/v1/monitors").json() == []
