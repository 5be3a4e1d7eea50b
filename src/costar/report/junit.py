"""A run as JUnit XML, for CI systems: one testcase per scenario trial.

Mapping (one outcome element per testcase, as most CI parsers expect):

* a failed trial whose agent crashed or timed out -> ``<error type="agent_error|agent_timeout">``
  (the failing gating verdicts are listed in its text);
* any other failed trial -> ``<failure type="verdict">`` listing the failing gating verdicts;
* a trial decided by a judge error -> ``<error type="judge_error">``;
* an unscored trial -> ``<skipped>``; so is each trial that was meant to run but was not recorded;
* judge errors on diagnostics, and diagnostics that failed, go to ``<system-out>``.

Model output can contain characters XML 1.0 cannot carry at all (NUL, ESC, ...); they are removed
from every string before it reaches the tree, since ElementTree escapes markup but not those.
"""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from costar.summary import RunSummary, ScenarioSummary, TrialSummary, VerdictBrief, clip, fmt_curves, fmt_rate

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
MESSAGE_CHARS = 500


def xml_text(text: str) -> str:
    return _NOT_XML.sub("", text)


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, {k: xml_text(v) for k, v in attrs.items()})
    if text:
        el.text = xml_text(text)
    return el


def _verdict_lines(verdicts: list[VerdictBrief]) -> str:
    return "\n".join(f"{v.name}: {v.rationale or v.error or '(no rationale)'}" for v in verdicts)


def _names(verdicts: list[VerdictBrief]) -> str:
    return ", ".join(v.name for v in verdicts)


def _outcome(case: ET.Element, t: TrialSummary) -> str | None:
    """Add the outcome element; return which counter it belongs to (None for a pass)."""
    if t.status == "fail" and t.agent_status != "ok":
        detail = f"agent {t.agent_status}: {t.agent_error or '(no message)'}"
        if t.failures:
            detail += "\n" + _verdict_lines(t.failures)
        _sub(case, "error", detail, type=f"agent_{t.agent_status}",
             message=clip(f"agent {t.agent_status}: {t.agent_error or ''}".strip(), MESSAGE_CHARS))
        return "errors"
    if t.status == "fail":
        _sub(case, "failure", _verdict_lines(t.failures), type="verdict",
             message=clip(f"failed: {_names(t.failures)}", MESSAGE_CHARS))
        return "failures"
    if t.status == "error":
        gating = [v for v in t.judge_errors if v.gating]
        _sub(case, "error", "\n".join(f"{v.name}: {v.error}" for v in gating), type="judge_error",
             message=clip(f"judge error: {_names(gating)}", MESSAGE_CHARS))
        return "errors"
    if t.status == "unscored":
        _sub(case, "skipped", message="no gating verdict: the trace was not judged")
        return "skipped"
    return None


def _system_out(t: TrialSummary) -> str:
    lines = [f"trace {t.trace_id} · agent {t.agent_status}"]
    lines += [f"diagnostic failed: {v.name}: {v.rationale}" for v in t.diagnostics]
    lines += [f"diagnostic judge error: {v.name}: {v.error}" for v in t.judge_errors if not v.gating]
    return "\n".join(lines)


def _scenario_cases(suite: ET.Element, s: ScenarioSummary, counts: dict[str, int]) -> None:
    for t in s.trial_results:
        case = _sub(suite, "testcase", name=t.label, classname=s.scenario_id, time=f"{t.usage.latency_s:.3f}")
        bucket = _outcome(case, t)
        if bucket:
            counts[bucket] += 1
        _sub(case, "system-out", _system_out(t))
        counts["tests"] += 1
    for trial in s.missing_trials:
        case = _sub(suite, "testcase", name=f"{s.scenario_id}[{trial}]", classname=s.scenario_id, time="0")
        _sub(case, "skipped", message="trial was not run (interrupted or not resumed)")
        counts["skipped"] += 1
        counts["tests"] += 1


def junit_xml(summary: RunSummary, *, name: str = "costar") -> str:
    """The JUnit document as a string (UTF-8 XML with a declaration)."""
    root = ET.Element("testsuites", {"name": xml_text(name)})
    suite = _sub(root, "testsuite", name=summary.run_id or name)
    if summary.created_at is not None:
        suite.set("timestamp", time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(summary.created_at)))
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    props = _sub(suite, "properties")
    agent = summary.agent
    for key, value in (("agent", agent.name), ("agent.version", agent.version), ("agent.git_sha", agent.git_sha),
                       ("run_id", summary.run_id), ("description", summary.description)):
        if value:
            _sub(props, "property", name=key, value=value)
    for j in summary.judges:
        _sub(props, "property", name=f"judge.{j.name}.pass_rate", value=fmt_rate(j.rate))
        _sub(props, "property", name=f"judge.{j.name}.pass_at_k_pass_hat_k", value=fmt_curves(j))
    for s in summary.scenarios:
        _scenario_cases(suite, s, counts)
    elapsed = f"{summary.totals.usage.latency_s:.3f}"
    for el in (root, suite):
        el.set("time", elapsed)
        for key, count in counts.items():
            el.set(key, str(count))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def write_junit(path: str | Path, summary: RunSummary, *, name: str = "costar") -> Path:
    """Write the JUnit XML report to ``path`` (parent folders are created)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(junit_xml(summary, name=name), encoding="utf-8")
    return out
