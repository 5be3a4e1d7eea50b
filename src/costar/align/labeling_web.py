"""The labeling web page: a queue of traces, one page per trace, a form that saves a human label.

Trace content is model output and therefore hostile until proven otherwise:

* Pages are built with the report's escaping builder (:func:`costar.report.html.el`) and its
  trace renderer (:func:`costar.report.html.trace_details`), so the span tree, messages, tool calls
  and verdicts look the same as in the HTML report and are escaped the same way.
* The page runs no script at all. The Content-Security-Policy allows only this app's stylesheet
  and same-origin form posts, so even an escaping mistake could neither run code nor load anything.
* State changes are POSTs that must be same-origin: a per-app token in every form, the Origin and
  Sec-Fetch-Site headers checked when a browser sends them, form posts only as
  ``application/x-www-form-urlencoded`` and the JSON API only as ``application/json`` (which a
  cross-site page cannot send without a CORS preflight this app never answers). The Host header
  must be a loopback name, which defeats DNS rebinding.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from costar._util.server import BackgroundServer
from costar._util.web import FORM_TYPE, LOOPBACK_HOSTS, SAFE_HEADERS, HostGuard, media_type, read_body, same_origin
from costar.align.labeling import QueueItem, TraceFacts, format_value, label_queue, new_label
from costar.errors import ConfigError, CostarError, NotInStoreError, StoreError
from costar.labels import LabelConflictError, LabelError, UnknownTraceError, ValueType, ValueTypeLike
from costar.report.html import CharBudget, HtmlLimits, Safe, el, esc, join, trace_details, value_block
from costar.store.base import Store
from costar.trace.model import Trace
from costar.verdict import Verdict

__all__ = ["LABELER_COOKIE", "create_label_app", "run_label_server", "start_label_server"]

LABELER_COOKIE = "costar_labeler"
_JSON_TYPE = "application/json"
_MAX_BODY = 256 * 1024
_PAGE_ROWS = 200
_MAX_PREVIEWS = 20
_PREVIEW_BYTES = 4096
_CSP = ("default-src 'none'; style-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
_HEADERS = {"Content-Security-Policy": _CSP, **SAFE_HEADERS, "Cache-Control": "no-store"}

# Only what the report stylesheet lacks: the labeling form, the queue table and the navigation.
_EXTRA_CSS = """
nav.top { display: flex; gap: 1rem; align-items: baseline; flex-wrap: wrap; margin: .4rem 0; }
section.label-panel { border: 2px solid var(--info); border-radius: 8px; padding: .6rem .9rem; margin: .8rem 0 1.2rem;
  background: var(--panel); }
section.label-panel h2 { border: 0; margin: 0 0 .4rem; }
.label-panel label { display: block; margin: .35rem 0; font-weight: 600; }
.label-panel textarea, .label-panel input[type=text], .label-panel input[type=number] { display: block; width: 100%;
  font: inherit; padding: .3rem .4rem; margin-top: .15rem; border: 1px solid var(--border); border-radius: 6px;
  background: var(--bg); color: var(--fg); font-weight: normal; }
.label-panel textarea { min-height: 4.5rem; }
.label-panel input[type=number] { max-width: 12rem; }
.choices { display: flex; gap: .6rem; flex-wrap: wrap; margin-top: .6rem; }
button.choice { font-weight: 700; padding: .35rem 1.4rem; }
button.choice-pass { color: var(--pass); border-color: var(--pass); }
button.choice-fail { color: var(--fail); border-color: var(--fail); }
p.error { color: var(--fail); font-weight: 600; }
p.saved { color: var(--pass); }
tr.done td { color: var(--muted); }
a.button { display: inline-block; padding: .3rem 1rem; border: 1px solid var(--info); border-radius: 6px;
  text-decoration: none; font-weight: 600; }
"""


@dataclass
class _App:
    store: Store
    name: str
    run_id: str | None
    queue: Sequence[str] | None
    labeler: str | None  # fixed by whoever started the app; otherwise asked for in the form
    value_type: ValueType
    limits: HtmlLimits
    csrf: str
    allowed_hosts: tuple[str, ...] | None
    facts: dict[str, TraceFacts] = field(default_factory=dict)

    def items(self, labeler: str | None) -> list[QueueItem]:
        return label_queue(self.store, self.name, run_id=self.run_id, queue=self.queue, labeler=labeler,
                           facts_cache=self.facts)


def _trace_url(trace_id: str) -> str:
    return "/traces/" + quote(trace_id, safe="")


# ----------------------------------------------------------------------------- pages


def _document(title: str, *body: object) -> HTMLResponse:
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><link rel=\"stylesheet\" href=\"/assets/label.css\"></head>\n"
            f"<body>{join(body)}</body></html>\n")
    return HTMLResponse(page)


def _who(app: _App, request: Request) -> str | None:
    if app.labeler:
        return app.labeler
    cookie = unquote(request.cookies.get(LABELER_COOKIE) or "").strip()
    return cookie[:200] or None


def _verdict_cell(item: QueueItem) -> Safe:
    if item.verdict is None:
        return el("span", "—", class_="muted")
    outcome = item.verdict.outcome
    return el("span", outcome, class_=f"badge st-{outcome}")


def _queue_page(app: _App, who: str | None, offset: int, done_flag: bool) -> HTMLResponse:
    items = app.items(who)
    todo = [i for i in items if not i.done]
    whose = "by you" if who else "by anyone"
    head = [el("h1", "Label traces for judge ", el("code", app.name)),
            el("p", f"value: {app.value_type.describe()} · "
                    + (f"labeling as {who}" if who else "labeler: not set yet (the first trace page asks)"),
               class_="meta"),
            el("p", f"{len(items) - len(todo)} of {len(items)} traces labeled {whose} · {len(todo)} to go",
               class_="headline")]
    if done_flag and not todo:
        head.append(el("p", "Every trace in the queue is labeled. Thank you!", class_="saved"))
    if todo:
        head.append(el("p", el("a", "Label the next trace →", href=_trace_url(todo[0].trace_id), class_="button")))
    rows = []
    for n, item in enumerate(items[offset:offset + _PAGE_ROWS], offset + 1):
        mine = "—" if item.mine is None else format_value(item.mine.value)
        rows.append(el("tr", el("td", n, class_="num"),
                       el("td", el("a", item.trace_id[:24], href=_trace_url(item.trace_id)), class_="mono"),
                       el("td", item.scenario_id or "—"), el("td", item.trial, class_="num"),
                       el("td", item.status), el("td", _verdict_cell(item)),
                       el("td", len(item.labels), class_="num"), el("td", mine),
                       class_="done" if item.done else None))
    header = el("tr", *[el("th", h) for h in ("#", "trace", "scenario", "trial", "agent", "judge", "labels",
                                             "yours")])
    pager = []
    if offset > 0:
        pager.append(el("a", "← previous", href=f"/?offset={max(0, offset - _PAGE_ROWS)}"))
    if offset + _PAGE_ROWS < len(items):
        pager.append(el("a", "next →", href=f"/?offset={offset + _PAGE_ROWS}"))
    return _document(f"label {app.name}", *head, el("table", header, *rows, class_="queue"),
                     el("nav", *pager, class_="top") if pager else None)


def _choices(vt: ValueType) -> Safe:
    if vt.kind == "bool":
        return el("div", el("button", "Pass", type="submit", name="value", value="pass", class_="choice choice-pass"),
                  el("button", "Fail", type="submit", name="value", value="fail", class_="choice choice-fail"),
                  class_="choices")
    if vt.kind == "label":
        return el("div", *[el("button", label, type="submit", name="value", value=label, class_="choice")
                           for label in vt.labels], class_="choices")
    if vt.kind == "number":
        control = el("input", type="number", name="value", step="any", required=True, id="value",
                     min=None if vt.minimum is None else f"{vt.minimum:g}",
                     max=None if vt.maximum is None else f"{vt.maximum:g}")
    else:
        control = el("input", type="text", name="value", required=True, maxlength="500", id="value")
    return join([el("label", f"value ({vt.describe()})", control, for_="value"),
                 el("div", el("button", "Save", type="submit", class_="choice"), class_="choices")])


def _form(app: _App, item: QueueItem | None, trace: Trace, who: str | None, error: str | None,
          rationale: str | None) -> Safe:
    mine = item.mine if item else None
    others = len([x for x in (item.labels if item else []) if x.source_id != who])
    notes: list[Safe | None] = [el("p", error, class_="error", role="alert") if error else None]
    if mine is not None:
        notes.append(el("p", f"Your label: {format_value(mine.value)}. Submitting again replaces it.", class_="saved"))
    if others:
        # Values stay hidden so that a second opinion is not anchored on the first.
        notes.append(el("p", f"{others} other labeler(s) labeled this trace.", class_="muted"))
    if app.labeler:
        who_field: Safe = el("p", "labeling as ", el("b", app.labeler), class_="meta")
    else:
        who_field = el("label", "labeler (your name or email)",
                       el("input", type="text", name="labeler", value=who or "", required=True, maxlength="200",
                          id="labeler", autocomplete="username"), for_="labeler")
    text = rationale if rationale is not None else (mine.rationale if mine else "")
    return el("section", el("h2", "Your label for ", el("code", app.name)), *notes,
              el("form", el("input", type="hidden", name="csrf", value=app.csrf),
                 el("input", type="hidden", name="trace_id", value=trace.trace_id), who_field,
                 el("label", "rationale (optional: why?)",
                    el("textarea", text, name="rationale", id="rationale", maxlength="20000"), for_="rationale"),
                 _choices(app.value_type), method="post", action="/label"),
              class_="label-panel", id="label")


def _previews(store: Store, trace: Trace, limits: HtmlLimits) -> Safe | None:
    """The first bytes of each text artifact, so a labeler can judge files without leaving the page."""
    if not trace.artifacts:
        return None
    blocks = []
    for art in trace.artifacts[:_MAX_PREVIEWS]:
        try:
            with store.blob_path(art.sha256).open("rb") as f:
                head = f.read(_PREVIEW_BYTES)
        except OSError:
            body: Safe = el("p", "the bytes of this file are not in the store", class_="note")
        else:
            if b"\x00" in head:
                body = el("p", "binary file: not previewed", class_="note")
            else:
                text = head.decode("utf-8", errors="replace")
                more = f"first {len(head):,} of {art.size:,} bytes" if art.size > len(head) else None
                body = join([value_block(text, limits.max_value_chars),
                             el("p", more, class_="note") if more else None])
        blocks.append(el("details", el("summary", el("span", art.path[:300], class_="mono"),
                                       f" · {art.size:,} B"), body, class_="span"))
    unpreviewed = len(trace.artifacts) - _MAX_PREVIEWS
    return join([el("h4", "artifact previews"), *blocks,
                 el("p", f"{unpreviewed} more artifacts not previewed", class_="note") if unpreviewed > 0 else None])


def _trace_page(app: _App, trace_id: str, who: str | None, *, error: str | None = None,
                rationale: str | None = None, status: int = 200) -> HTMLResponse:
    try:
        trace = app.store.get_trace(trace_id)
    except StoreError as exc:
        return _store_error(exc)
    items = app.items(who)
    by_order = sorted(items, key=lambda i: i.position)
    item = next((i for i in items if i.trace_id == trace.trace_id), None)
    nav: list[object] = [el("a", "← queue", href="/")]
    if item is not None:
        at = by_order.index(item)
        nav.append(el("span", f"{at + 1} of {len(by_order)}", class_="meta"))
        if at > 0:
            nav.append(el("a", "← previous", href=_trace_url(by_order[at - 1].trace_id)))
        if at + 1 < len(by_order):
            nav.append(el("a", "next →", href=_trace_url(by_order[at + 1].trace_id)))
    else:
        nav.append(el("span", "this trace is not in the queue", class_="meta"))
    verdicts = [item.verdict] if item is not None and item.verdict is not None else [
        v for v in app.store.verdicts(trace_ids=[trace.trace_id]) if v.name == app.name]
    meta = (f"scenario {trace.scenario_id or '—'} · trial {trace.trial} · agent {trace.status.value}"
            + (f" · run {trace.run_id}" if trace.run_id else ""))
    response = _document(
        f"label {app.name} · {trace.trace_id[:16]}",
        el("nav", *nav, class_="top"),
        el("h1", "trace ", el("code", trace.trace_id)), el("p", meta, class_="meta"),
        _form(app, item, trace, who, error, rationale),
        trace_details(trace, verdicts, "t", app.limits, CharBudget(app.limits.max_page_chars)),
        _previews(app.store, trace, app.limits),
        el("p", el("a", "↑ back to the label form", href="#label")))
    response.status_code = status
    return response


def _store_error(exc: StoreError) -> HTMLResponse:
    """A trace that could not be read: its error's own status (404 missing, 400 an ambiguous prefix,
    503 the store) and message."""
    response = _document("not found" if exc.http_status == 404 else "error",
                         el("nav", el("a", "← queue", href="/"), class_="top"), el("p", str(exc), class_="error"))
    response.status_code = exc.http_status
    return response


def _next_trace(app: _App, after: str, who: str) -> str | None:
    """The next trace ``who`` has not labeled, after ``after`` in queue order (wrapping round)."""
    items = sorted(app.items(who), key=lambda i: i.position)
    start = next((i.position for i in items if i.trace_id == after), -1)
    todo = [i for i in items if not i.done]
    later = [i for i in todo if i.position > start]
    pick = later or todo
    return pick[0].trace_id if pick else None


# ----------------------------------------------------------------------------- saving


def _save(app: _App, trace_id: str, raw_value: Any, labeler: str | None, rationale: str, replace: bool) -> Verdict:
    if not labeler:
        raise LabelError("give your labeler id (a name or email) in the labeler field")
    label = new_label(trace_id, app.name, raw_value, labeler=labeler, rationale=rationale, value_type=app.value_type)
    app.store.write_labels([label], replace=replace, value_type=app.value_type)
    return label


def _error_status(exc: CostarError) -> int:
    if isinstance(exc, UnknownTraceError):
        return 404
    if isinstance(exc, LabelConflictError):
        return 409
    return 400


def _item_json(item: QueueItem) -> dict[str, Any]:
    v = item.verdict
    return {"trace_id": item.trace_id, "position": item.position, "scenario_id": item.scenario_id,
            "trial": item.trial, "status": item.status, "done": item.done, "label_count": len(item.labels),
            "verdict": None if v is None else {"outcome": v.outcome, "value": v.value, "rationale": v.rationale},
            "mine": None if item.mine is None else {"value": item.mine.value, "rationale": item.mine.rationale}}


# ----------------------------------------------------------------------------- the app


def create_label_app(store: Store, name: str, *, run_id: str | None = None, queue: Sequence[str] | None = None,
                     labeler: str | None = None, value_type: ValueTypeLike = "bool", limits: HtmlLimits | None = None,
                     allowed_hosts: Sequence[str] | None = LOOPBACK_HOSTS) -> FastAPI:
    """The labeling app for judge ``name`` over the traces of ``queue``, else of run ``run_id``,
    else of the whole store (see :func:`costar.align.labeling.label_queue`).

    ``labeler`` fixes who labels; without it the page asks (and remembers the answer in a cookie).
    ``allowed_hosts`` are the Host header names accepted (None accepts any: only behind a trusted
    proxy). Routes: ``GET /`` queue, ``GET /traces/{id}`` trace page, ``POST /label`` (form),
    ``GET /api/queue``, ``GET /api/traces/{id}``, ``POST /api/labels`` (JSON).
    """
    if run_id is not None:
        run_id = store.resolve_run_id(run_id)
    state = _App(store=store, name=name, run_id=run_id, queue=None if queue is None else list(queue),
                 labeler=labeler.strip() if labeler and labeler.strip() else None, value_type=ValueType.of(value_type),
                 limits=limits or HtmlLimits(max_trace_chars=1_000_000, max_page_chars=2_000_000),
                 csrf=secrets.token_urlsafe(32), allowed_hosts=None if allowed_hosts is None else tuple(allowed_hosts))
    state.items(None)  # fail now, not on the first request, when the queue names unknown traces
    css = resources.files("costar.report").joinpath("report.css").read_text(encoding="utf-8") + _EXTRA_CSS
    api = FastAPI(title=f"coSTAR labeling: {name}", docs_url=None, redoc_url=None, openapi_url=None)

    @api.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Any]) -> Response:
        response: Response
        if request.method not in ("GET", "HEAD") and not same_origin(request):
            response = PlainTextResponse("cross-site request refused", status_code=403)
        else:
            response = await call_next(request)
        for key, value in _HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    if state.allowed_hosts is not None:
        api.add_middleware(HostGuard, names=state.allowed_hosts)  # the outermost: before any route

    @api.get("/assets/label.css")
    def stylesheet() -> Response:
        return Response(css, media_type="text/css; charset=utf-8")

    @api.get("/", response_class=HTMLResponse)
    def queue_page(request: Request, offset: int = 0, done: int = 0) -> HTMLResponse:
        return _queue_page(state, _who(state, request), max(0, offset), bool(done))

    @api.get("/traces/{trace_id:path}", response_class=HTMLResponse)
    def trace_page(request: Request, trace_id: str) -> HTMLResponse:
        return _trace_page(state, trace_id, _who(state, request))

    @api.post("/label")
    async def post_form(request: Request) -> Response:
        if media_type(request) != FORM_TYPE:
            return PlainTextResponse(f"send the label form as {FORM_TYPE}", status_code=415)
        body = await read_body(request, _MAX_BODY)
        if body is None:
            return PlainTextResponse("the form is too large", status_code=413)
        try:
            fields = {k: v[0] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True,
                                                    max_num_fields=20).items()}
        except (UnicodeDecodeError, ValueError):
            return PlainTextResponse("the form could not be read", status_code=400)
        if not hmac.compare_digest(fields.get("csrf", ""), state.csrf):
            return PlainTextResponse("stale or foreign form: reload the page and submit again", status_code=403)
        trace_id = fields.get("trace_id", "")
        who = state.labeler or fields.get("labeler", "").strip()[:200] or None
        rationale = fields.get("rationale", "")
        try:
            await run_in_threadpool(_save, state, trace_id, fields.get("value", ""), who, rationale, True)
        except CostarError as exc:
            if isinstance(exc, UnknownTraceError):
                return _store_error(NotInStoreError(f"no trace {trace_id!r} in the store"))
            return await run_in_threadpool(_trace_page, state, trace_id, who, error=str(exc), rationale=rationale,
                                           status=_error_status(exc))
        nxt = await run_in_threadpool(_next_trace, state, trace_id, str(who))
        response = RedirectResponse(_trace_url(nxt) if nxt else "/?done=1", status_code=303)
        if not state.labeler:
            response.set_cookie(LABELER_COOKIE, quote(str(who)), httponly=True, samesite="strict",
                                max_age=30 * 86400)
        return response

    @api.get("/api/queue")
    def api_queue(request: Request, labeler: str | None = None) -> JSONResponse:
        who = state.labeler or (labeler.strip() if labeler else None) or _who(state, request)
        items = state.items(who)
        return JSONResponse({"judge": name, "value_type": state.value_type.model_dump(mode="json"), "labeler": who,
                             "total": len(items), "to_label": sum(not i.done for i in items),
                             "items": [_item_json(i) for i in items]})

    @api.get("/api/traces/{trace_id:path}")
    def api_trace(trace_id: str) -> JSONResponse:
        try:
            trace = store.get_trace(trace_id, spans=False)
        except StoreError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.http_status)
        verdict = next((v for v in store.verdicts(trace_ids=[trace.trace_id]) if v.name == name), None)
        return JSONResponse({
            "trace": trace.model_dump(mode="json", exclude={"spans"}), "span_count": store.count_spans(trace.trace_id),
            "verdict": None if verdict is None else verdict.model_dump(mode="json"),
            "labels": [v.model_dump(mode="json") for v in store.labels(name=name, trace_ids=[trace.trace_id])]})

    @api.post("/api/labels")
    async def api_label(request: Request) -> JSONResponse:
        if media_type(request) != _JSON_TYPE:
            return JSONResponse({"error": f"send the label as {_JSON_TYPE}"}, status_code=415)
        body = await read_body(request, _MAX_BODY)
        if body is None:
            return JSONResponse({"error": "the request is too large"}, status_code=413)
        try:
            data = _json_object(body)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        who = state.labeler or str(data.get("labeler") or "").strip() or None
        try:
            label = await run_in_threadpool(_save, state, str(data.get("trace_id") or ""), data.get("value"), who,
                                            str(data.get("rationale") or ""), bool(data.get("replace", False)))
        except CostarError as exc:
            return JSONResponse({"error": str(exc)}, status_code=_error_status(exc))
        return JSONResponse(label.model_dump(mode="json"), status_code=201)

    return api


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"the body is not JSON ({exc}); send an object") from None
    if not isinstance(data, dict):
        raise ValueError("send a JSON object with trace_id, value and (optionally) rationale, labeler, replace")
    return data


# ----------------------------------------------------------------------------- serving


def _check_host(host: str, allow_remote: bool) -> tuple[str, ...] | None:
    if host in LOOPBACK_HOSTS:
        return LOOPBACK_HOSTS
    if not allow_remote:
        raise ConfigError(f"the labeling page has no login, so it serves only on loopback; use host 127.0.0.1 "
                          f"(not {host!r}), or allow_remote=True (--allow-remote) on a network you trust")
    return None if host in ("0.0.0.0", "::") else (*LOOPBACK_HOSTS, host)


def start_label_server(store: Store, name: str, *, host: str = "127.0.0.1", port: int = 0,
                       allow_remote: bool = False, **options: Any) -> BackgroundServer:
    """Serve the labeling app in a background thread; returns the started server (``.base_url``,
    ``.stop()``). ``options`` go to :func:`create_label_app`."""
    hosts = _check_host(host, allow_remote)
    app = create_label_app(store, name, allowed_hosts=hosts, **options)
    return BackgroundServer(app, host, port).start()


def run_label_server(store: Store, name: str, *, host: str = "127.0.0.1", port: int = 8765,
                     allow_remote: bool = False, on_ready: Callable[[str], None] | None = None,
                     stop: threading.Event | None = None, **options: Any) -> None:
    """Serve until Ctrl-C (or until ``stop`` is set); ``on_ready`` gets the page's URL."""
    server = start_label_server(store, name, host=host, port=port, allow_remote=allow_remote, **options)
    try:
        if on_ready is not None:
            on_ready(server.base_url + "/")
        while not (stop is not None and stop.is_set()):
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
