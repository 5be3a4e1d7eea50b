"""What a monitor is: which traces it watches (a filter and a sample rate), which judges score them,
over which windows its metrics are computed, and which alert rules watch those metrics.

A monitor is written in YAML (``monitors/*.yaml`` in the project) or created through the API (then
it is kept in the store); both are the same :class:`MonitorDefinition`. docs/MONITORING.md has the
format with an example of every field.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

import httpx
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, field_validator, model_validator

from costar._util import units
from costar.errors import ConfigError
from costar.scenario import JudgeRef
from costar.scenario.checks import CheckSpec

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"



class MonitorError(ConfigError):
    """A monitor definition is invalid; the message names the file, the line and the field."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        self.file = file
        self.line = line
        self.field = field
        where = file or "<monitor>"
        if line is not None:
            where = f"{where}:{line}"
        prefix = f"{where}: " + (f"field '{field}': " if field else "")
        super().__init__(prefix + message)


def parse_duration(value: Any) -> float:
    """``90s`` / ``15m`` / ``1h`` / ``7d`` / ``2w`` or a number of seconds -> seconds (positive)."""
    return units.parse_duration(value, positive=True)


def format_duration(seconds: float) -> str:
    """The shortest exact spelling: 3600 -> ``1h``, 5400 -> ``90m``, 86400 -> ``1d``."""
    for unit, size in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[float, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)]


def _as_list(v: Any) -> Any:
    return [v] if isinstance(v, str) else v


Globs = Annotated[list[str], BeforeValidator(_as_list)]


class MonitorFilter(BaseModel):
    """Which stored traces a monitor watches. Every field given must match (an empty field matches
    everything); a list matches when any of its shell globs does (``*``, ``?``, ``[...]``)."""

    model_config = ConfigDict(extra="forbid")

    project: Globs = Field(default_factory=list)
    """The project ``costar server`` routed the trace to (its ``costar.project``); traces of runs have none."""
    service: Globs = Field(default_factory=list)
    """The OpenTelemetry resource's ``service.name``."""
    agent: Globs = Field(default_factory=list)
    """The agent's name (``gen_ai.agent.name`` of the root span, else ``service.name``; a run's agent)."""
    agent_version: Globs = Field(default_factory=list)
    """The agent's version (``service.version``; a run's agent version)."""
    scenario: Globs = Field(default_factory=list)
    """Scenario ids (traces recorded by runs); production traces have none."""
    attributes: dict[str, Any] = Field(default_factory=dict)
    """Attribute -> value, each found on the resource or on any span; a text value is a glob, other
    values compare equal, a list is any of its values."""
    span_names: Globs = Field(default_factory=list)
    """Span names (globs): each must match at least one span of the trace."""

    @property
    def needs_spans(self) -> bool:
        """True when matching reads the spans, not only the trace's head."""
        return bool(self.span_names or self.attributes)


class Webhook(BaseModel):
    """Where alerts are posted. ``${VAR}`` in the URL or a header reads the environment, so secrets
    (a Slack webhook URL, a bearer token) stay out of the file."""

    model_config = ConfigDict(extra="forbid")

    url: str
    """An ``http://`` or ``https://`` URL."""
    format: Literal["json", "slack"] = "json"
    """``json``: coSTAR's alert document; ``slack``: a Slack-compatible message (``text`` and ``blocks``)."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Extra request headers (``${VAR}`` reads the environment), e.g. an ``Authorization`` header."""
    timeout: float = Field(10.0, gt=0, le=300)
    """Seconds for one attempt."""
    attempts: int = Field(4, ge=1, le=20)
    """Tries before the delivery is recorded as failed; waits double between them (0.5 s, 1 s, 2 s, …)."""

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        # Checked here as far as the file allows (a ${VAR} is checked once expanded, at delivery): a URL
        # that httpx refuses would otherwise only show up as a failed delivery when an alert fires.
        problem = url_problem(v)
        if problem is not None:
            raise ValueError(problem)
        return v

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            if not _TOKEN.match(name):
                raise ValueError(f"header name {name!r} is not a valid HTTP header name (letters, digits and "
                                 "!#$%&'*+-.^_`|~ only)")
            problem = header_problem(value)
            if problem is not None:
                raise ValueError(f"header {name}: {problem}")
        return v


_VAR = re.compile(r"\$\{[^}]*\}")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_BAD_CHAR = re.compile(r"[\x00-\x20\x7f]")


def url_problem(url: str, shown: str | None = None) -> str | None:
    """Why ``url`` cannot be a webhook's URL (one line saying how to fix it), or None. ``${VAR}``
    references are left unchecked (their values are checked once expanded); the text around them is.
    ``shown`` names the URL in the message (default: the URL itself; an expanded URL may hold a secret)."""
    name = repr(url) if shown is None else shown
    literal = _VAR.sub("x", url)  # stands for a variable's value, so the rest parses as written
    bad = _BAD_CHAR.search(literal)
    if bad is not None:
        return (f"{name} contains {'a space' if bad.group() == ' ' else 'a control character'} "
                f"({bad.group()!r}); remove it")
    if url.startswith("${"):
        return None  # the scheme and host come from the variable: checked once expanded
    if not re.match(r"^https?://", literal, re.IGNORECASE):
        return f"{name} is not an http(s) URL; write it as http://host/path or https://host/path"
    authority = re.split(r"[/?#]", literal.split("://", 1)[1], maxsplit=1)[0]
    host = authority.rsplit("@", 1)[-1]
    if not host:
        return f"{name} has no host; write it as http://host/path or https://host/path"
    if host.count("[") != host.count("]") or ("[" in host and not re.match(r"^\[[^\[\]]+\](:\d*)?$", host)):
        return f"{name} has unbalanced brackets in its host; an IPv6 host is written http://[::1]:8080/path"
    try:
        httpx.URL(literal)
    except httpx.InvalidURL as exc:
        return f"{name} is not a valid URL ({exc})"
    return None


def header_problem(value: str) -> str | None:
    """Why ``value`` cannot be an HTTP header's value, or None. ``${VAR}`` references are checked once
    expanded. Header values are ASCII without control characters: httpx refuses others, and a newline
    would split the request. The message never quotes the value's text (it may be a token)."""
    literal = _VAR.sub("x", value)
    for i, ch in enumerate(literal):
        if ch == "\t":
            continue
        if ord(ch) < 32 or ord(ch) == 127:
            return f"the value has a control character ({ch!r} at position {i}); remove it"
        if ord(ch) > 126:
            return f"the value has a non-ASCII character at position {i}; HTTP header values are ASCII"
    return None


def variables(text: str) -> list[str]:
    """The ``${VAR}`` references in ``text``, as written."""
    return _VAR.findall(text)


class Anomaly(BaseModel):
    """A robust anomaly against the recent past, as ``costar metrics`` judges runs: the window's value
    against the same metric in the ``history`` windows before it (one stored point per window)."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(3.5, gt=0)
    """How far, in robust z-scores (0.6745 · (x − median) / MAD), the value must be from the history."""
    min_change: float = Field(0.25, ge=0)
    """And the relative change it must at least make (0.25: 25%)."""
    history: int = Field(12, ge=1, le=1000)
    """How many earlier windows make the recent past."""
    min_history: int = Field(3, ge=1)
    """Fewer earlier points than this give no alert."""
    direction: Literal["up", "down", "both"] = "both"
    """Which moves alert: ``down`` for a pass rate that falls, ``up`` for a cost that rises."""


RATE_METRICS = ("pass_rate", "rogan_gladen", "ppi", "judge_error_rate")
"""Per judge: the pass rate (Wilson interval), the rates corrected with the judge's golden set, and
the share of judge errors."""
OPERATIONAL_METRICS = ("traces", "sampled", "error_rate", "total_tokens", "cost_usd", "latency_s", "latency_p90",
                       "judge_cost_usd")
"""Per monitor: matching traces, sampled traces, the share of traces that ended in error (Wilson
interval), the median tokens, cost and latency of a trace, the 90th percentile of latency, and what
the judges cost."""
INTERVAL_METRICS = frozenset({"pass_rate", "rogan_gladen", "ppi", "judge_error_rate", "error_rate"})
MetricName = Literal["pass_rate", "rogan_gladen", "ppi", "judge_error_rate", "traces", "sampled", "error_rate",
                     "total_tokens", "cost_usd", "latency_s", "latency_p90", "judge_cost_usd"]


class AlertRule(BaseModel):
    """A rule over one metric series: a threshold on the value or one bound of its interval
    (``below``/``above``), or an anomaly against the recent past. It fires once, then stays quiet
    until the condition clears (a recovery message), then may fire again."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    """Unique within the monitor; names the rule in alerts and in the history."""
    metric: MetricName = "pass_rate"
    """The series the rule watches: a per-judge rate or an operational metric."""
    judge: str = "*"
    """For the per-judge metrics: the judge's verdict name, or ``*`` for each of the monitor's judges."""
    window: Duration | None = None
    """One of the monitor's windows (default: its first)."""
    bound: Literal["value", "lower", "upper"] | None = None
    """Which number ``below``/``above`` compares: the value or a bound of its 95% interval. Default:
    ``upper`` with ``below`` and ``lower`` with ``above`` for metrics with an interval (alert only when
    the whole interval is past the threshold), else ``value``."""
    below: float | None = None
    """Fire when the compared number is below this."""
    above: float | None = None
    """Fire when the compared number is above this."""
    anomaly: Anomaly | None = None
    """Fire on a robust anomaly against the recent past instead of a threshold."""
    min_samples: int = Field(10, ge=1)
    """Fewer observations in the window (decided verdicts, or traces) leave the rule as it is. Not
    applied to the count metrics ``traces`` and ``sampled``: a count is exact at any number of traces,
    so ``traces below 1`` fires when traffic stops."""
    notify: list[str] | None = None
    """Webhook names of the monitor (default: all of them). Every alert is also logged."""

    @model_validator(mode="after")
    def _one_condition(self) -> AlertRule:
        given = [k for k in ("below", "above", "anomaly") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("an alert rule needs exactly one of 'below', 'above' (a threshold) or 'anomaly'"
                             + (f"; it has {' and '.join(given)}" if given else ""))
        if self.bound in ("lower", "upper") and self.metric not in INTERVAL_METRICS:
            raise ValueError(f"metric {self.metric} has no interval; use bound: value")
        if self.anomaly is not None and self.bound not in (None, "value"):
            raise ValueError("an anomaly rule compares values; remove 'bound'")
        for k in ("below", "above"):
            v = getattr(self, k)
            if v is not None and not math.isfinite(v):
                raise ValueError(f"'{k}' must be a finite number")
        return self

    @property
    def per_judge(self) -> bool:
        """True for the per-judge metrics (each judge is a series of its own)."""
        return self.metric in RATE_METRICS

    @property
    def compared(self) -> Literal["value", "lower", "upper"]:
        """The number a threshold compares."""
        if self.bound is not None:
            return self.bound
        if self.metric not in INTERVAL_METRICS or self.anomaly is not None:
            return "value"
        return "upper" if self.below is not None else "lower"


class Budget(BaseModel):
    """A cap on what the monitor's judges may spend: once ``usd`` has been spent in the last ``per``,
    judges that call models are skipped (recorded as skipped) until older spending leaves the period.
    Checks, which cost nothing, keep running."""

    model_config = ConfigDict(extra="forbid")

    usd: float = Field(gt=0)
    """US dollars the monitor's judges may spend per period."""
    per: Duration = 86400.0
    """The rolling period (``1d``, ``7d``)."""


class MonitorDefinition(BaseModel):
    """One monitor, as its file (or the API) gives it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    """Unique among the project's monitors; tags its verdicts, series and alerts."""
    description: str = ""
    """What the monitor watches, for people."""
    enabled: bool = True
    """A disabled monitor is listed but scores nothing and raises no alert."""
    filter: MonitorFilter = Field(default_factory=MonitorFilter)
    """Which stored traces the monitor considers."""
    sample: float = Field(1.0, ge=0.0, le=1.0)
    """The share of matching traces scored, chosen by trace id (docs/MONITORING.md, "Sampling"):
    the same trace is in or out for every monitor with the same rate."""
    checks: list[CheckSpec] = Field(default_factory=list)
    """Deterministic checks, written as in a scenario's ``expectations.checks``."""
    criteria: list[str] = Field(default_factory=list)
    """Natural-language criteria, which model judges read as ``{{criteria}}``."""
    judges: list[JudgeRef] = Field(default_factory=list)
    """Named judges (the project's ``judges/`` folder with promoted aligned versions, plugins, templates,
    ``module:attr``), by name or as ``{name, options, gate}``, resolved as ``costar assess`` does."""
    windows: list[Duration] = Field(default_factory=lambda: [3600.0, 86400.0])
    """The windows metrics are computed over (each ending now)."""
    alerts: list[AlertRule] = Field(default_factory=list)
    """The alert rules over the monitor's series."""
    webhooks: dict[str, Webhook] = Field(default_factory=dict)
    """Where alerts are posted, by name (rules' ``notify`` names them)."""
    budget: Budget | None = None
    """A cap on what its model judges spend (none by default)."""
    requests_per_minute: float | None = Field(None, gt=0)
    """A request rate for the models its judges call (applied to each model endpoint, process-wide)."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Free-form data kept with the monitor (owner, runbook URL, …)."""

    @field_validator("judges", mode="before")
    @classmethod
    def _judge_shorthand(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"name": j} if isinstance(j, str) else j for j in v]
        return v

    @field_validator("criteria", mode="before")
    @classmethod
    def _criteria_list(cls, v: Any) -> Any:
        return _as_list(v)

    @field_validator("windows", mode="before")
    @classmethod
    def _windows_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str | int | float) else v

    @model_validator(mode="after")
    def _consistent(self) -> MonitorDefinition:
        if not self.checks and not self.judges:
            raise ValueError("a monitor needs at least one check or judge to score traces with")
        if not self.windows:
            raise ValueError("a monitor needs at least one window, e.g. windows: [1h, 1d]")
        if len(set(self.windows)) != len(self.windows):
            raise ValueError("'windows' has duplicates")
        names = [r.name for r in self.alerts]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise ValueError(f"two alert rules are named {dup!r}; give each its own name")
        for i, rule in enumerate(self.alerts):
            if rule.window is not None and rule.window not in self.windows:
                raise ValueError(f"alerts[{i}] ({rule.name}): window {format_duration(rule.window)} is not one of the "
                                 f"monitor's windows ({', '.join(format_duration(w) for w in self.windows)})")
            unknown = [n for n in rule.notify or [] if n not in self.webhooks]
            if unknown:
                raise ValueError(f"alerts[{i}] ({rule.name}): notify names {unknown[0]!r}, which is not under "
                                 f"webhooks: ({', '.join(self.webhooks) or 'none defined'})")
        return self

    def rule_window(self, rule: AlertRule) -> float:
        """The window ``rule`` watches (its own, else the monitor's first)."""
        return rule.window if rule.window is not None else self.windows[0]


def check_name(name: str) -> str:
    """``name`` when it is a valid monitor name, else a ConfigError saying what one is."""
    if not re.match(NAME_PATTERN, name):
        raise ConfigError(f"{name!r} is not a monitor name: use letters, digits, '_', '.' or '-' (at most 100, "
                          "starting with a letter or digit)")
    return name
