"""Alert delivery: the log, and webhooks in two payload formats, retried with backoff.

``json`` posts coSTAR's alert document::

    {"type": "costar.alert", "version": 1, "status": "firing", "alert_id": 12,
     "monitor": "support", "rule": "helpfulness-low", "series": "helpful@1h", "metric": "pass_rate",
     "judge": "helpful", "window": "1h", "value": 0.5, "compared": "upper", "compared_value": 0.7,
     "below": 0.8, "n": 20, "message": "…", "at": "2026-01-31T12:00:00Z", "at_unix": 1769860800.0}

``slack`` posts a Slack-compatible message (``text`` plus one ``section`` block), which Slack's
incoming webhooks and the many tools that accept their format (Mattermost, Rocket.Chat, Discord's
``/slack`` endpoint) display. Text from the store is escaped for Slack's markup (``&``, ``<``, ``>``).

A delivery is tried ``attempts`` times; between tries it waits 0.5 s, 1 s, 2 s, … (at most 30 s, or
the receiver's ``Retry-After`` when it sends one, up to 60 s). Connection errors, timeouts, 429 and
5xx answers are retried; any other 4xx is final (the request itself is wrong). Each delivery's
outcome, attempts and last error are recorded (``costar monitor alerts`` shows them).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from costar.config import expand_vars
from costar.errors import ConfigError
from costar.monitor.model import Webhook, header_problem, url_problem, variables

log = logging.getLogger("costar.monitor")

BACKOFF_START = 0.5
BACKOFF_MAX = 30.0
RETRY_AFTER_MAX = 60.0
ERROR_MAX = 500


def iso(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def json_payload(alert_id: int, status: str, at: float, message: str, data: dict[str, Any],
                 series: str) -> dict[str, Any]:
    return {"type": "costar.alert", "version": 1, "status": status, "alert_id": alert_id, "series": series,
            **data, "message": message, "at": iso(at), "at_unix": at}


def slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(alert_id: int, status: str, at: float, message: str, data: dict[str, Any],
                  series: str) -> dict[str, Any]:
    icon = ":rotating_light:" if status == "firing" else ":white_check_mark:"
    title = "ALERT" if status == "firing" else "RESOLVED"
    rule = slack_escape(f"{data.get('monitor', '')} / {data.get('rule', '')} ({series})")
    text = f"{icon} *{title}* {rule}\n{slack_escape(message)}"
    return {"text": text,
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}},
                       {"type": "context", "elements": [{"type": "mrkdwn",
                                                         "text": f"coSTAR alert #{alert_id} · {iso(at)}"}]}]}


def payload_for(hook: Webhook, alert_id: int, status: str, at: float, message: str, data: dict[str, Any],
                series: str) -> dict[str, Any]:
    build = slack_payload if hook.format == "slack" else json_payload
    return build(alert_id, status, at, message, data, series)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return min(RETRY_AFTER_MAX, max(0.0, float(value)))
    except ValueError:
        return None


Sleep = Callable[[float], Awaitable[None]]


def one_line(text: str, limit: int = ERROR_MAX) -> str:
    """``text`` on one line (runs of whitespace, newlines included, become one space), cut to ``limit``:
    a delivery's error is logged and shown in tables, where a multi-line receiver answer would break them."""
    return " ".join(text.split())[:limit]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _request(client: httpx.AsyncClient, hook: Webhook, payload: dict[str, Any]) -> httpx.Request:
    """The request to post, with ``${VAR}`` expanded and the result checked; a ConfigError names what is
    wrong and which variable to fix, without quoting its value (a Slack URL or a token is a secret).
    Built once, before any attempt: a bad URL or header is final, however often it is tried."""
    url = expand_vars(hook.url, "webhook url")
    refs = variables(hook.url)
    problem = url_problem(url, shown=f"the URL read from {', '.join(refs)}" if refs else None)
    if problem is not None:
        raise ConfigError(f"webhook url: {problem}" + (f" from the value of {', '.join(refs)}" if refs else ""))
    headers = {}
    for name, value in hook.headers.items():
        expanded = expand_vars(value, f"webhook header {name}")
        problem = header_problem(expanded)
        if problem is not None:
            refs = variables(value)
            raise ConfigError(f"webhook header {name}: {problem}"
                              + (f" (fix the value of {', '.join(refs)})" if refs else ""))
        headers[name] = expanded
    return client.build_request("POST", url, json=payload, headers=headers, timeout=hook.timeout)


async def deliver(client: httpx.AsyncClient, hook: Webhook, payload: dict[str, Any], *,
                  sleep: Sleep = asyncio.sleep, attempts: int | None = None) -> tuple[bool, int, str | None]:
    """Post ``payload`` to the webhook; returns (delivered, attempts, last error). ``attempts`` overrides
    the hook's (a later retry of a failed delivery makes one).

    Never raises (cancellation aside): the caller has already recorded the alert, and an exception here
    would stop the evaluation that follows every later one. A request that cannot be built (a URL or
    header that is invalid once ``${VAR}`` is expanded) fails at once with 0 attempts."""
    tries = hook.attempts if attempts is None else max(1, attempts)
    try:
        request = _request(client, hook, payload)
    except ConfigError as exc:
        return False, 0, one_line(str(exc))
    except Exception as exc:  # httpx.InvalidURL, UnicodeEncodeError, …: the same request would fail again
        return False, 0, one_line(f"invalid webhook request: {_describe(exc)}")
    error: str | None = None
    wait = BACKOFF_START
    for attempt in range(1, tries + 1):
        retry_after = None
        try:
            response = await client.send(request)
            if response.status_code < 300:
                return True, attempt, None
            error = f"HTTP {response.status_code}: {response.text[:200]}"
            if not retryable_status(response.status_code):
                return False, attempt, one_line(error)
            retry_after = _retry_after(response)
        except httpx.HTTPError as exc:
            error = _describe(exc)
        except Exception as exc:  # not a transport failure: trying again would not help
            return False, attempt, one_line(f"webhook request failed: {_describe(exc)}")
        if attempt < tries:
            await sleep(retry_after if retry_after is not None else wait)
            wait = min(BACKOFF_MAX, wait * 2)
    return False, tries, one_line(error or "failed")


def retryable_status(status: int) -> bool:
    """Whether an HTTP answer may succeed when tried again: 429 and 5xx; any other 4xx says the request
    itself is wrong."""
    return status == 429 or status >= 500


_FINAL_ERROR = re.compile(r"^HTTP (\d{3})\b")


def retryable_error(error: str | None) -> bool:
    """Whether a failed delivery, by its recorded error, is worth trying again later: everything but a
    final HTTP answer (a 4xx other than 429). Connection errors, timeouts and bad ``${VAR}`` values
    (fixed in the environment before a restart) may all clear."""
    m = _FINAL_ERROR.match(error or "")
    return m is None or retryable_status(int(m.group(1)))


def log_alert(status: str, message: str) -> None:
    if status == "firing":
        log.warning("ALERT %s", message)
    else:
        log.info("RESOLVED %s", message)
