"""JUnit XML: parses, counts match the summary, and model output cannot make the XML invalid."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from costar.report.junit import junit_xml, write_junit
from costar.scenario import Scenario
from costar.summary import summarize
from costar.trace.model import TraceStatus
from tests.support.report import make_run, make_trace, sample_run, verdict


def _cases(root: ET.Element) -> dict[str, ET.Element]:
    return {c.attrib["name"]: c for c in root.iter("testcase")}


def test_sample_run_structure_and_counts(tmp_path: Path) -> None:
    run, traces, verdicts = sample_run()
    summary = summarize(run, traces, verdicts)
    path = write_junit(tmp_path / "reports" / "junit.xml", summary)
    root = ET.parse(path).getroot()
    suites = root.findall("testsuite")
    assert root.tag == "testsuites"
    assert len(suites) == 1
    suite = suites[0]
    assert suite.attrib["name"] == "run-1"
    assert {k: suite.attrib[k] for k in ("tests", "failures", "errors", "skipped")} == {
        "tests": "7", "failures": "1", "errors": "2", "skipped": "0"}
    assert root.attrib["tests"] == "7"

    cases = _cases(root)
    assert sorted(cases) == ["booking[0]", "booking[1]", "booking[2]", "slow[0]",
                             "weather[0]", "weather[1]", "weather[2]"]
    assert cases["booking[1]"].attrib["classname"] == "booking"
    assert cases["booking[1]"].attrib["time"] == "1.500"

    failure = cases["booking[1]"].find("failure")
    assert failure is not None
    assert failure.attrib["message"] == "failed: booked"
    assert failure.text == "booked: no reservation was created"

    judge_error = cases["booking[2]"].find("error")
    assert judge_error is not None
    assert judge_error.attrib["type"] == "judge_error"
    assert "judge model returned 503" in (judge_error.text or "")

    timeout = cases["slow[0]"].find("error")
    assert timeout is not None
    assert timeout.attrib["type"] == "agent_timeout"
    assert "timed out after 30s" in timeout.attrib["message"]
    assert "agent_completed: the agent did not finish" in (timeout.text or "")

    passing = cases["weather[1]"]
    assert passing.find("failure") is None
    assert passing.find("error") is None
    assert "diagnostic failed: polite: the answer was curt" in (passing.findtext("system-out") or "")

    props = {p.attrib["name"]: p.attrib["value"] for p in suite.iter("property")}
    assert props["agent"] == "weather-bot"
    assert props["agent.git_sha"] == "0123456789abcdef"


def test_unscored_and_missing_trials_are_skipped() -> None:
    scenarios = [Scenario(id="a", prompt="p", trials=3)]
    traces = [make_trace("a", 0), make_trace("a", 1)]
    summary = summarize(make_run(), traces, [verdict(traces[0], "ok", True)], scenarios)
    root = ET.fromstring(junit_xml(summary))
    cases = _cases(root)
    assert sorted(cases) == ["a[0]", "a[1]", "a[2]"]
    assert cases["a[0]"].find("skipped") is None
    assert cases["a[1]"].find("skipped") is not None
    assert cases["a[2]"].find("skipped") is not None
    suite = root.find("testsuite")
    assert suite is not None
    assert suite.attrib["skipped"] == "2"


def test_agent_crash_that_the_scenario_expects_is_a_pass() -> None:
    # require_completion: false -> no agent_completed gate; the crash is what the scenario tests.
    trace = make_trace("crash", 0, status=TraceStatus.ERROR, error="exit code 1")
    root = ET.fromstring(junit_xml(summarize(make_run(), [trace], [verdict(trace, "error_reported", True)])))
    case = _cases(root)["crash[0]"]
    assert case.find("error") is None
    assert case.find("failure") is None
    assert "agent error" in (case.findtext("system-out") or "")


def test_control_characters_in_model_output_are_stripped() -> None:
    dirty = "bad\x00byte \x1b[31mred\x1b[0m \x07bell \x0b\x0c \ud800 <tag> & \"quote\" ]]> ok"
    trace = make_trace("dirty", 0, status=TraceStatus.ERROR, error=dirty)
    verdicts = [verdict(trace, "agent_completed", False, rationale=dirty),
                verdict(trace, "style", False, gating=False, rationale=dirty)]
    run = make_run()
    run.description = dirty
    text = junit_xml(summarize(run, [trace], verdicts), name=dirty)
    root = ET.fromstring(text)  # expat rejects any character XML 1.0 does not allow
    error = _cases(root)["dirty[0]"].find("error")
    assert error is not None
    assert "bad" + "byte [31mred[0m bell" in (error.text or "")
    assert "<tag> & \"quote\" ]]> ok" in (error.text or "")
    assert "<tag>" in (_cases(root)["dirty[0]"].findtext("system-out") or "")


def test_empty_run_is_valid_xml() -> None:
    suite = ET.fromstring(junit_xml(summarize(None, [], []))).find("testsuite")
    assert suite is not None
    assert suite.attrib["tests"] == "0"
