"""Webhook deliveries that cannot be sent, and failed deliveries tried again by later evaluations:
real HTTP to a receiver on 127.0.0.1, a real SQLite store."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from costar.judges.registry import JudgeRegistry
from costar.monitor.files import Monitor
from costar.monitor.model import MonitorDefinition, Webhook
from costar.monitor.service import REDELIVER_MAX_RETRIES, MonitorService, ServiceOptions
from costar.monitor.webhooks import deliver
from tests.support.monitor import NOW, Clock, WebhookReceiver, make_trace


def service(store: Any, definition: dict[str, Any], clock: Clock | None = None, **options: Any) -> MonitorService:
    return MonitorService(store, [Monitor(MonitorDefinition.model_validate(definition), "test")], JudgeRegistry(),
                          options=ServiceOptions(**options), clock=clock or Clock())


def rate_monitor(hooks: dict[str, Any], name: str = "m") -> dict[str, Any]:
    return {"name": name, "checks": [{"output_contains": "good", "name": "good"}], "windows": ["1h"],
            "alerts": [{"name": "low", "below": 0.8, "min_samples": 5}], "webhooks": hooks}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def bad_traces(store: Any, prefix: str = "b", at: float = NOW) -> None:
    store.write_traces([make_trace(f"{prefix}{i}", at=at - 50 + i, output="bad") for i in range(10)])


# ----------------------------------------------------------------------------- a bad webhook


def test_a_webhook_that_cannot_be_sent_fails_alone_and_alerting_goes_on(
        sqlite_store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with WebhookReceiver() as receiver:
        # What an env file often holds: a trailing newline, a non-ASCII character in a token.
        monkeypatch.setenv("COSTAR_TEST_HOOK_URL", receiver.url + "\n")
        monkeypatch.setenv("COSTAR_TEST_TOKEN", "t\u00f6ken")
        hooks = {"url_var": {"url": "${COSTAR_TEST_HOOK_URL}"},
                 "token": {"url": receiver.url, "headers": {"Authorization": "Bearer ${COSTAR_TEST_TOKEN}"}},
                 "good": {"url": receiver.url}}
        svc = service(sqlite_store, rate_monitor(hooks))
        bad_traces(sqlite_store)
        [event] = run(svc.run_once()).evaluation.events  # raised httpx.InvalidURL before the fix
        assert event.delivered == {"url_var": False, "token": False, "good": True}
        receiver.wait_for(lambda r: len(r) == 1)
        [record] = svc.tables.alerts(monitor="m")
        by_target = {d.target: d for d in record.deliveries}
        assert by_target["good"].status == "delivered"
        for target, what in (("url_var", "control character"), ("token", "non-ASCII")):
            d = by_target[target]
            assert (d.status, d.attempts) == ("failed", 0)
            assert d.last_error is not None
            assert what in d.last_error
            assert "\n" not in d.last_error
            assert "${COSTAR_TEST_" in d.last_error  # names the variable to fix
            assert "127.0.0.1" not in d.last_error  # never quotes a variable's value (a secret)
            assert "ken" not in d.last_error
        # Later evaluations still store points and change alerts (they stopped at the pending delivery).
        svc.clock.t += 301  # type: ignore[attr-defined]  # past the 1h window's point spacing
        sqlite_store.write_traces([make_trace(f"g{i}", at=NOW + 200 + i * 0.5, output="good") for i in range(80)])
        again = run(svc.run_once())
        assert again.evaluation.stored > 0
        assert [e.status for e in again.evaluation.events] == ["resolved"]


def test_a_pending_delivery_that_cannot_be_sent_does_not_stop_later_evaluations(sqlite_store: Any) -> None:
    # A hook that slipped past validation (a definition stored before the URL check existed).
    svc = service(sqlite_store, rate_monitor({"old": {"url": "http://example.invalid/x"}}))
    svc.active["m"].definition.webhooks["old"] = Webhook.model_construct(
        url="http://[::1/x", format="json", headers={}, timeout=2.0, attempts=1)
    assert svc.tables.record_alert("m", "low", "good@1h", "firing", NOW, "fell", {"rule": "low"}, ["old"])
    bad_traces(sqlite_store)
    ev = run(svc.run_once())
    assert ev.evaluation.stored > 0
    alerts = svc.tables.alerts(monitor="m")
    old = next(a for a in alerts if a.message == "fell")
    assert old.deliveries[0].status == "failed"
    assert "brackets" in (old.deliveries[0].last_error or "")


def test_deliver_never_raises_for_a_request_that_cannot_be_built() -> None:
    async def go(hook: Webhook) -> tuple[bool, int, str | None]:
        async with httpx.AsyncClient() as client:
            return await deliver(client, hook, {"x": 1})

    for url in ("http://[::1/x", "http://127.0.0.1:9/a\n"):
        ok, attempts, error = run(go(Webhook.model_construct(url=url, format="json", headers={}, timeout=2.0,
                                                             attempts=3)))
        assert (ok, attempts) == (False, 0)
        assert error
        assert "\n" not in error


@pytest.mark.parametrize(("hook", "message"), [
    ({"url": "http://[::1/x"}, "unbalanced brackets"),
    ({"url": "https://hooks.example.com/services/T1\n"}, "control character"),
    ({"url": "https://hooks.example.com/a b"}, "a space"),
    ({"url": "ftp://example.com/x"}, "not an http(s) URL"),
    ({"url": "https://example.com/x", "headers": {"Authorization": "Bearer t\u00f6ken"}}, "non-ASCII"),
    ({"url": "https://example.com/x", "headers": {"X-Token": "a\r\nInjected: 1"}}, "control character"),
    ({"url": "https://example.com/x", "headers": {"Bad Name": "v"}}, "not a valid HTTP header name"),
])
def test_webhooks_that_cannot_be_sent_are_refused_when_loaded(hook: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        Webhook.model_validate(hook)


def test_valid_webhooks_still_load() -> None:
    for url in ("https://hooks.slack.com/services/T/B/X", "http://[::1]:8080/hook", "${SLACK_URL}",
                "${BASE}/hook", "http://${HOST}:8080/x?a=${Q}"):
        assert Webhook.model_validate({"url": url, "headers": {"Authorization": "Bearer ${TOKEN}"}}).url == url


# ----------------------------------------------------------------------------- failed deliveries, later


def _delivery(svc: MonitorService, target: str = "hook") -> Any:
    [record] = svc.tables.alerts(monitor="m")
    return next(d for d in record.deliveries if d.target == target)


def test_a_failed_delivery_is_retried_with_backoff_until_it_is_delivered_and_then_never_again(
        sqlite_store: Any) -> None:
    with WebhookReceiver() as receiver:
        receiver.statuses = [503, 503]  # the receiver is down for the first try and the first retry
        svc = service(sqlite_store, rate_monitor({"hook": {"url": receiver.url, "attempts": 1}}),
                      redeliver_after=2.0, redeliver_max_wait=20.0)  # waits of seconds: margins for a slow machine
        bad_traces(sqlite_store)
        [event] = run(svc.run_once()).evaluation.events
        assert event.delivered == {"hook": False}
        assert (_delivery(svc).status, receiver.attempts) == ("failed", 1)
        run(svc.evaluate())  # too soon: the wait is not over
        assert receiver.attempts == 1
        time.sleep(2.2)
        run(svc.evaluate())  # retried (never, before the fix), still down
        assert receiver.attempts == 2
        assert (_delivery(svc).status, _delivery(svc).attempts) == ("failed", 2)
        time.sleep(2.2)
        run(svc.evaluate())  # the wait doubled to 4 s
        assert receiver.attempts == 2
        time.sleep(2.2)
        run(svc.evaluate())
        assert receiver.attempts == 3
        got = receiver.wait_for(lambda r: len(r) == 1)
        assert (got[0]["status"], got[0]["rule"]) == ("firing", "low")
        assert (_delivery(svc).status, _delivery(svc).attempts, _delivery(svc).last_error) == ("delivered", 3, None)
        time.sleep(0.6)
        run(svc.evaluate())  # delivered: never sent again, and no new alert
        assert receiver.attempts == 3
        assert len(svc.tables.alerts(monitor="m")) == 1


def test_failed_deliveries_are_not_retried_past_their_bounds(sqlite_store: Any) -> None:
    with WebhookReceiver() as receiver:
        receiver.statuses = [503]
        clock = Clock()
        svc = service(sqlite_store, rate_monitor({"hook": {"url": receiver.url, "attempts": 1}}), clock=clock,
                      redeliver_after=0.0, redeliver_for=3600.0)
        bad_traces(sqlite_store)
        run(svc.run_once())
        assert _delivery(svc).status == "failed"
        # Tried as often as allowed: no more.
        svc.tables.update_delivery(_delivery(svc).id, "failed", 1 + REDELIVER_MAX_RETRIES, "HTTP 503: down")
        run(svc.evaluate())
        assert receiver.attempts == 1
        # Tries left, but the alert is older than redeliver_for.
        svc.tables.update_delivery(_delivery(svc).id, "failed", 1, "HTTP 503: down")
        clock.t += 3601
        run(svc.evaluate())
        assert receiver.attempts == 1
        clock.t -= 3601
        run(svc.evaluate())  # within both bounds: retried
        assert receiver.attempts == 2
        assert _delivery(svc).status == "delivered"


def test_a_final_answer_or_a_superseded_alert_is_not_retried(sqlite_store: Any) -> None:
    with WebhookReceiver() as receiver:
        receiver.statuses = [404]
        clock = Clock()
        svc = service(sqlite_store, rate_monitor({"hook": {"url": receiver.url, "attempts": 1}}), clock=clock,
                      redeliver_after=0.0, min_step=1)
        bad_traces(sqlite_store)
        run(svc.run_once())
        assert _delivery(svc).last_error.startswith("HTTP 404")
        run(svc.evaluate())  # a 4xx says the request is wrong: final
        assert receiver.attempts == 1
        clock.t += 60
        sqlite_store.write_traces([make_trace(f"g{i}", at=clock.t - 40 + i * 0.5, output="good") for i in range(80)])
        [event] = run(svc.run_once()).evaluation.events
        assert (event.status, event.delivered) == ("resolved", {"hook": True})
        # Had the "firing" failed for a reason worth retrying, it is stale now that its rule resolved:
        # sending it would leave the receiver showing an alert that is over.
        firing = next(a for a in svc.tables.alerts(monitor="m") if a.status == "firing")
        svc.tables.update_delivery(firing.deliveries[0].id, "failed", 1, "HTTP 503: down")
        run(svc.evaluate())
        assert receiver.attempts == 2
        assert [b["status"] for b in receiver.wait_for(lambda r: len(r) == 1)] == ["resolved"]
