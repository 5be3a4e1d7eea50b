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
import time
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

    def __init__(self, tables: ServerTables, *, required: bool) -> None:
        self.tables = tables
        self.required = required
        self._touched: dict[str, float] = {}

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
