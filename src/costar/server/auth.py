"""Access tokens: ingest tokens (each sends spans to one project) and API tokens (read the JSON API),
stored as SHA-256 digests in the store (``server_tokens``), created and revoked with
``costar server token create|list|revoke``.

A token is 256 random bits, so a plain SHA-256 is enough to store it (a password hash would only
slow each request down; nothing can be guessed). Requests carry it as ``Authorization: Bearer
TOKEN``, which the OpenTelemetry exporters send with ``OTEL_EXPORTER_OTLP_HEADERS``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

from costar.errors import ConfigError, CostarError
from costar.server.config import check_project_name
from costar.store.server_tables import ServerTables, TokenRecord

TokenKind = Literal["ingest", "api"]
_PREFIX = {"ingest": "cst_ingest_", "api": "cst_api_"}


class TokenError(CostarError):
    """A token operation cannot be done (unknown token, bad project)."""


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class NewToken:
    """A token just created: the only time its secret is known."""

    record: TokenRecord
    token: str


def create_token(tables: ServerTables, kind: TokenKind, *, project: str | None = None, name: str = "") -> NewToken:
    """A new token. Ingest tokens need the project they send to; API tokens take none."""
    if kind not in _PREFIX:
        raise TokenError(f"unknown token kind {kind!r}; use 'ingest' or 'api'")
    if kind == "ingest":
        if not project:
            raise TokenError("an ingest token sends spans to one project; give it with --project NAME")
        try:
            check_project_name(project)
        except ValueError as exc:
            raise TokenError(str(exc)) from None
    elif project:
        raise TokenError("API tokens read every project; drop --project (only ingest tokens have one)")
    token_id = secrets.token_hex(6)
    token = f"{_PREFIX[kind]}{token_id}_{secrets.token_urlsafe(32)}"
    record = TokenRecord(token_id=token_id, kind=kind, project=project if kind == "ingest" else None,
                         name=name or kind, digest=digest(token), created_at=time.time())
    tables.add_token(record)
    return NewToken(record=record, token=token)


def revoke_token(tables: ServerTables, token_id: str) -> TokenRecord:
    """Revoke a token by its id (or the whole token); returns its record."""
    wanted = token_id.strip()
    for kind_prefix in _PREFIX.values():  # the whole token pasted: its id is the part after the prefix
        if wanted.startswith(kind_prefix):
            wanted = wanted[len(kind_prefix):].split("_", 1)[0]
    records = {t.token_id: t for t in tables.tokens()}
    record = records.get(wanted)
    if record is None:
        raise TokenError(f"no token {token_id!r}; 'costar server token list' shows the ids")
    if record.revoked_at is not None:
        raise TokenError(f"token {wanted} is already revoked")
    tables.revoke_token(wanted)
    return tables.token_by_digest(record.digest) or record


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def tokens_required(host: str, setting: bool | None) -> bool:
    """Tokens are required beyond loopback, always; on loopback only when the configuration says so."""
    if not is_loopback(host):
        if setting is False:
            raise ConfigError(f"listening on {host} (beyond this machine) requires tokens; remove "
                              "'require_tokens: false' or listen on 127.0.0.1")
        return True
    return bool(setting)


@dataclass
class Caller:
    """Who sent a request, once its token (if any) is verified."""

    kind: TokenKind | None
    """The token's kind; None when the request carried no token (allowed only on loopback)."""
    project: str | None = None
    """The ingest token's project."""
    token_id: str | None = None
    session: Session | None = None
    """The browser session the request came with (the web app's pages), if any."""


SESSION_COOKIE = "costar_session"
"""The cookie that carries a browser's session id (HttpOnly, SameSite=Strict)."""


@dataclass
class Session:
    """A browser's login: an API token exchanged for a random id, so the token itself never sits in
    the browser (neither in a cookie nor in script-readable storage)."""

    session_id: str
    token_digest: str
    """The SHA-256 of the API token it was opened with: each request checks that token again, so
    revoking the token ends the session from the next request on."""
    token_id: str
    name: str
    """The token's name: who is logged in (the web app labels as them)."""
    csrf: str
    """The token every form of this session carries (the web app checks it on each POST)."""
    created_at: float
    expires_at: float


class Sessions:
    """Browser sessions, in memory: a restart asks browsers to log in again. Bounded (the oldest
    are dropped beyond ``max_sessions``) and expiring (``ttl`` seconds after login)."""

    def __init__(self, *, ttl: float = 12 * 3600, max_sessions: int = 10_000) -> None:
        self.ttl = ttl
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def open(self, record: TokenRecord) -> Session:
        now = time.time()
        session = Session(session_id=secrets.token_urlsafe(32), token_digest=record.digest, token_id=record.token_id,
                          name=record.name or record.token_id, csrf=secrets.token_urlsafe(32), created_at=now,
                          expires_at=now + self.ttl)
        with self._lock:
            self._sessions[session.session_id] = session
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None and session.expires_at <= time.time():
                del self._sessions[session_id]
                return None
        return session

    def close(self, session_id: str | None) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)


class AuthFailure(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthFailure(401, "the Authorization header must be 'Bearer TOKEN'")
    return value.strip()


class Authenticator:
    """Checks a request's token against the store on every request, so a revocation takes effect at
    once; records when each token was last used (at most once a minute)."""

    def __init__(self, tables: ServerTables, *, required: bool, sessions: Sessions | None = None) -> None:
        self.tables = tables
        self.required = required
        self.sessions = sessions or Sessions()
        self._touched: dict[str, float] = {}

    def login(self, token: str) -> Session:
        """A browser session for an API token (the web app's login form); AuthFailure when the token
        is not a valid API token."""
        caller = self.check(f"Bearer {token.strip()}", "api")
        record = self.tables.token_by_digest(digest(token.strip()))
        assert record is not None
        assert caller.token_id == record.token_id
        return self.sessions.open(record)

    def check_request(self, authorization: str | None, session_id: str | None) -> Caller:
        """A reader of the API or the pages: by its Authorization header when it sends one, else by
        its session cookie, else as nobody (allowed only where tokens are not required)."""
        if authorization:
            return self.check(authorization, "api")
        session = self.sessions.get(session_id)
        if session is None:
            if self.required:
                raise AuthFailure(401, "log in with an API token (costar server token create --kind api), or send "
                                       "'Authorization: Bearer TOKEN'")
            return Caller(kind=None)
        record = self.tables.token_by_digest(session.token_digest)
        if record is None or record.revoked_at is not None:
            self.sessions.close(session.session_id)
            raise AuthFailure(401, "the token this session was opened with was revoked; log in again")
        return Caller(kind="api", token_id=record.token_id, session=session)

    def check(self, authorization: str | None, need: TokenKind) -> Caller:
        token = bearer(authorization)
        if token is None:
            if self.required:
                raise AuthFailure(401, f"this server requires an {need} token: send 'Authorization: Bearer TOKEN' "
                                       f"(costar server token create --kind {need})")
            return Caller(kind=None)
        record = self.tables.token_by_digest(digest(token))
        if record is None or not hmac.compare_digest(record.digest, digest(token)):
            raise AuthFailure(401, "unknown token; check it, or create one with 'costar server token create'")
        if record.revoked_at is not None:
            raise AuthFailure(401, f"token {record.token_id} was revoked; create a new one")
        if record.kind != need:
            raise AuthFailure(403, f"token {record.token_id} is an {record.kind} token; this endpoint needs an "
                                   f"{need} token")
        now = time.time()
        if now - self._touched.get(record.token_id, 0.0) > 60:
            self._touched[record.token_id] = now
            self.tables.touch_token(record.token_id, now)
        return Caller(kind=record.kind, project=record.project, token_id=record.token_id)
