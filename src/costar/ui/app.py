"""The web app: its pages, their assets, login, and how it is served.

Two ways to serve it, one app:

* ``costar ui`` (:func:`create_ui_app`, :func:`serve_ui`): the pages and the JSON API over a local
  store, on 127.0.0.1, no login (the Host header must be a loopback name, against DNS rebinding).
* ``costar server`` (:func:`mount_webapp`): the pages beside the server's ``/api/v1``. Where the
  server requires tokens, a browser logs in once with an API token and gets a session cookie
  (HttpOnly, SameSite=Strict); the token never sits in the browser.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import webbrowser
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from costar._util.web import HostGuard, loopback_names, same_origin
from costar.errors import CostarError
from costar.server.api import ApiHost, StoreHost, build_router, request_caller
from costar.server.auth import SESSION_COOKIE, AuthFailure, Caller
from costar.store.base import Store
from costar.ui.security import HEADERS, local_path, read_form, token_matches
from costar.ui.templating import build_environment

if TYPE_CHECKING:
    from costar.align.labeling import TraceFacts

NAV = (("runs", "/runs", "Runs"), ("scenarios", "/scenarios", "Scenarios"), ("compare", "/compare", "Compare"),
       ("judges", "/judges", "Judges"), ("monitors", "/monitors", "Monitors"))
"""The navigation bar: (section, path, label)."""


class LoginRequired(Exception):
    """Raised by a page handler when the reader must log in first."""


LABEL_FACTS_KEPT = 200_000


class WebApp:
    """The pages over an :class:`~costar.server.api.ApiHost` (a running server or a local store)."""

    def __init__(self, host: ApiHost, *, project_dir: str | None = None, title: str = "coSTAR") -> None:
        self.host = host
        self.project_dir = project_dir
        self.title = title
        # The form token where nobody logs in (costar ui, loopback): one per process.
        self.app_csrf = secrets.token_urlsafe(32)
        self.label_facts: dict[str, TraceFacts] = {}
        """Scenario, trial and status of traces a labeling queue listed: reading them again is most of a
        queue's cost (each trace head carries the agent's whole input and output)."""
        self.env = build_environment()
        self.app = FastAPI(title="coSTAR web app", docs_url=None, redoc_url=None, openapi_url=None)
        self._install()

    def facts_cache(self) -> dict[str, TraceFacts]:
        """:attr:`label_facts`, emptied once it holds more than ``LABEL_FACTS_KEPT`` traces."""
        if len(self.label_facts) > LABEL_FACTS_KEPT:
            self.label_facts.clear()
        return self.label_facts

    @property
    def store(self) -> Store:
        return self.host.store

    # ------------------------------------------------------------------ plumbing

    async def caller(self, request: Request) -> Caller:
        """The reader of a page; :class:`LoginRequired` when the app requires a login they lack."""
        try:
            return await request_caller(self.host, request)
        except HTTPException as exc:
            if exc.status_code == 401:
                raise LoginRequired() from None
            raise

    def csrf_for(self, caller: Caller) -> str:
        return caller.session.csrf if caller.session is not None else self.app_csrf

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    def render(self, request: Request, template: str, caller: Caller | None, *, section: str = "",
               status: int = 200, **context: Any) -> HTMLResponse:
        page = self.env.get_template(template).render(
            nav=NAV, section=section, title=self.title, request_path=request.url.path,
            login_required=self.host.auth.required, logged_in=caller is not None and caller.session is not None,
            csrf=self.csrf_for(caller) if caller is not None else "", **context)
        return HTMLResponse(page, status_code=status, headers={"Cache-Control": "no-store"})

    async def check_post(self, request: Request) -> tuple[Caller, dict[str, str]]:
        """A same-origin form post with the reader's form token: its caller and fields (HTTP 403/413/415
        otherwise)."""
        if not same_origin(request):
            raise HTTPException(403, "cross-site request refused")
        caller = await self.caller(request)
        fields = await read_form(request)
        if fields is None:
            raise HTTPException(415, "send the form as application/x-www-form-urlencoded (at most 256 KiB)")
        if not token_matches(fields.get("csrf"), self.csrf_for(caller)):
            raise HTTPException(403, "stale or foreign form: reload the page and submit again")
        return caller, fields

    def page(self, path: str, **route: Any) -> Callable[[Callable[..., Awaitable[Response]]], Any]:
        """Register a GET page; the handler gets the request and its caller."""

        def register(handler: Callable[..., Awaitable[Response]]) -> Any:
            async def endpoint(request: Request) -> Response:
                caller = await self.caller(request)
                return await handler(request, caller, **request.path_params)

            self.app.add_api_route(path, endpoint, methods=["GET"], response_class=HTMLResponse,
                                   include_in_schema=False, **route)
            return handler

        return register

    # ------------------------------------------------------------------ routes

    def _install(self) -> None:
        app = self.app

        @app.middleware("http")
        async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            response: Response = await call_next(request)
            for key, value in HEADERS.items():
                response.headers.setdefault(key, value)
            return response

        @app.exception_handler(LoginRequired)
        async def login_required(request: Request, exc: LoginRequired) -> Response:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            from costar.ui.templating import query

            return RedirectResponse("/login" + query(next=target), status_code=303)

        @app.exception_handler(CostarError)
        async def costar_error(request: Request, exc: CostarError) -> Response:
            return self.render(request, "error.html", None, status=exc.http_status, message=str(exc))

        @app.exception_handler(HTTPException)
        async def http_error(request: Request, exc: HTTPException) -> Response:
            if request.url.path.startswith("/api/"):
                from fastapi.responses import JSONResponse

                return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
            return self.render(request, "error.html", None, status=exc.status_code, message=str(exc.detail))

        app.mount("/static", StaticFiles(packages=[("costar.ui", "static")]), name="static")

        @app.get("/", include_in_schema=False)
        async def home() -> Response:
            return RedirectResponse("/runs", status_code=303)

        @app.get("/favicon.ico", include_in_schema=False)
        async def favicon() -> Response:
            return Response(status_code=204)

        @app.get("/login", include_in_schema=False)
        async def login_page(request: Request, next: str = "/runs") -> Response:
            return self.render(request, "login.html", None, next=local_path(next, "/runs"), error=None)

        @app.post("/login", include_in_schema=False)
        async def login(request: Request) -> Response:
            if not same_origin(request):
                raise HTTPException(403, "cross-site request refused")
            fields = await read_form(request)
            if fields is None:
                raise HTTPException(415, "send the form as application/x-www-form-urlencoded")
            target = local_path(fields.get("next"), "/runs")
            try:
                session = await self.run(self.host.auth.login, fields.get("token", ""))
            except AuthFailure as exc:
                return self.render(request, "login.html", None, status=exc.status, next=target, error=exc.message)
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(SESSION_COOKIE, session.session_id, httponly=True, samesite="strict",
                                secure=request.url.scheme == "https", path="/",
                                max_age=int(session.expires_at - time.time()))
            return response

        @app.post("/logout", include_in_schema=False)
        async def logout(request: Request) -> Response:
            caller, _ = await self.check_post(request)
            if caller.session is not None:
                self.host.auth.sessions.close(caller.session.session_id)
            response = RedirectResponse("/login", status_code=303)
            response.delete_cookie(SESSION_COOKIE, path="/")
            return response

        from costar.ui.pages import register_pages

        register_pages(self)


def mount_webapp(server: Any, *, project_dir: str | None = None) -> WebApp:
    """The pages on a :class:`~costar.server.app.CostarServer`'s app, beside its API. Where the
    server needs no tokens (loopback), its Host guard covers the pages too."""
    web = WebApp(server, project_dir=project_dir)
    server.app.mount("/", web.app)
    return web


def create_ui_app(store: Store, *, project_dir: str | None = None, bound_host: str = "127.0.0.1") -> FastAPI:
    """``costar ui``'s app over a store: the pages at ``/`` and the JSON API at ``/api/v1``, no
    login, so served on loopback only: it answers only the loopback Host names and ``bound_host``."""
    from costar._version import __version__

    host = StoreHost(store, version=__version__)
    web = WebApp(host, project_dir=project_dir)
    app = FastAPI(title="coSTAR", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(build_router(host))

    @app.middleware("http")
    async def nosniff(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    app.add_middleware(HostGuard, names=loopback_names(bound_host))  # the outermost: before any route
    app.mount("/", web.app)
    return app


def serve_ui(store: Store, *, host: str = "127.0.0.1", port: int = 8766, open_browser: bool = True,
             project_dir: str | None = None, announce: Callable[[str], None] | None = None,
             stop: Any = None) -> None:
    """Serve the app over ``store`` on loopback until Ctrl-C (or until ``stop``, an Event, is set)."""
    from costar._util.server import BackgroundServer
    from costar.errors import ConfigError
    from costar.server.auth import is_loopback

    if not is_loopback(host):
        raise ConfigError(f"costar ui has no login, so it serves only on loopback (not {host!r}); for a team, "
                          "run 'costar server' (it requires tokens beyond this machine)")
    app = create_ui_app(store, project_dir=project_dir, bound_host=host)
    server = BackgroundServer(app, host, port).start()
    url = server.base_url + "/"
    try:
        (announce or (lambda line: print(line, flush=True)))(f"coSTAR web app on {url} (store {store.location}); "
                                                              "Ctrl-C stops it")
        if open_browser:
            webbrowser.open(url)
        while not (stop is not None and stop.is_set()):
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
