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
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from costar.config import expand_vars
from costar.errors import ConfigError
from costar.monitor.model import Webhook

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


async def deliver(client: httpx.AsyncClient, hook: Webhook, payload: dict[str, Any], *,
                  sleep: Sleep = asyncio.sleep) -> tuple[bool, int, str | None]:
    """Post ``payload`` to the webhook; returns (delivered, attempts, last error)."""
    try:
        url = expand_vars(hook.url, "webhook url")
        headers = {k: expand_vars(v, f"webhook header {k}") for k, v in hook.headers.items()}
    except ConfigError as exc:
        return False, 0, str(exc)
    error: str | None = None
    wait = BACKOFF_START
    for attempt in range(1, hook.attempts + 1):
        retry_after = None
        try:
            response = await client.post(url, json=payload, headers=headers, timeout=hook.timeout)
            if response.status_code < 300:
                return True, attempt, None
            error = f"HTTP {response.status_code}: {response.text[:200]}"
            if response.status_code != 429 and response.status_code < 500:
                return False, attempt, error[:ERROR_MAX]
            retry_after = _retry_after(response)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if attempt < hook.attempts:
            await sleep(retry_after if retry_after is not None else wait)
            wait = min(BACKOFF_MAX, wait * 2)
    return False, hook.attempts, (error or "failed")[:ERROR_MAX]


def log_alert(status: str, message: str) -> None:
    if status == "firing":
        log.warning("ALERT %s", message)
    else:
        log.info("RESOLVED %s", message)
