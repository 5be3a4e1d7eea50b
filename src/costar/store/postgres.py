"""The shared store: PostgreSQL (psycopg 3 with a connection pool) for records *and* artifact bytes.

Blobs live in the database (``blobs`` + ``blob_chunks``, 1 MiB chunks) rather than in a folder:
the database is the one thing every machine of a team, the server and every Ray worker can reach,
so a trace read anywhere has its workspace files too, and a backup of the database is a backup of
the store. Callers that need a file path (``blob_path``) get a verified copy in the local cache.

``root`` is this machine's local folder (default ``.costar``): workspaces, the blob cache, judge
versions and other state that belongs to one checkout, not to the team.

Text: PostgreSQL cannot hold the NUL character in text, and traces are untrusted. Every string
bound to a statement is escaped reversibly (U+FFFF is the escape character: NUL becomes
U+FFFF ``0``, U+FFFF itself is doubled) and every row read back is unescaped, so what is read is
exactly what was written, on both backends.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar

from costar.errors import StoreError
from costar.store.base import DuplicateTrialError
from costar.store.blobs import check_blob_key, valid_blob_key
from costar.store.migrations import Backend
from costar.store.sql import SQLStore
from costar.trace.sanitize import Sanitizer

if TYPE_CHECKING:
    import psycopg

URL_SCHEMES = ("postgresql://", "postgres://")
_CHUNK_BYTES = 1 << 20
_ESC = "\uffff"
_UNESCAPE = re.compile("\uffff(.)", re.S)
_MIGRATION_LOCK = 0x636F53544152  # "coSTAR": one migrator per database at a time
# Pools a forked child inherited from its parent: referenced forever so they are never closed
# (closing would end the parent's connections).
_INHERITED: list[Any] = []


def is_postgres_url(text: str | os.PathLike[str] | None) -> bool:
    return isinstance(text, str) and text.startswith(URL_SCHEMES)


def _escape(value: Any) -> Any:
    t = type(value)
    if t is str:
        if "\x00" in value or _ESC in value:
            return value.replace(_ESC, _ESC + _ESC).replace("\x00", _ESC + "0")
        return value
    if t is list or t is tuple:
        return [_escape(v) for v in value]
    return value


def _unescape_text(value: str) -> str:
    return _UNESCAPE.sub(lambda m: _ESC if m.group(1) == _ESC else "\x00", value)


def _escaped_args(args: Sequence[Any]) -> list[Any]:
    return [_escape(a) for a in args]


def _unescaping_rows(cursor: Any) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """psycopg row factory: rows as tuples, with escaped text restored."""

    def make_row(values: Sequence[Any]) -> tuple[Any, ...]:
        for v in values:
            if type(v) is str and _ESC in v:
                return tuple(_unescape_text(x) if type(x) is str and _ESC in x else x for x in values)
        return tuple(values)

    return make_row


_PLACEHOLDERS: dict[str, str] = {}


def _pg_sql(sql: str) -> str:
    """``?`` placeholders (the shared queries') as psycopg's ``%s``."""
    out = _PLACEHOLDERS.get(sql)
    if out is None:
        out = _PLACEHOLDERS[sql] = sql.replace("%", "%%").replace("?", "%s")
    return out


class _Conn:
    """A pooled connection as the shared queries use it: ``?`` placeholders, escaped text."""

    __slots__ = ("raw",)

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, args: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        if not args:  # without parameters psycopg sends the text as it is (no placeholders, no %% escapes)
            return self.raw.execute(sql)
        return self.raw.execute(_pg_sql(sql), _escaped_args(args))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self.raw.cursor() as cur:
            cur.executemany(_pg_sql(sql), [_escaped_args(r) for r in rows])

    def copy_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        with self.raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
            for r in rows:
                cp.write_row(_escaped_args(r))


def describe_url(url: str) -> str:
    """The URL as shown to people: scheme, user, host, port and database; never the password."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        info = conninfo_to_dict(url)
    except Exception:
        return "postgresql://…"
    user = f"{info['user']}@" if info.get("user") else ""
    host = str(info.get("host") or "localhost")
    port = f":{info['port']}" if info.get("port") else ""
    return f"postgresql://{user}{host}{port}/{info.get('dbname') or ''}"


def _psycopg() -> Any:
    try:
        import psycopg
        import psycopg_pool  # noqa: F401
    except ImportError:
        raise StoreError("a postgresql:// store needs the PostgreSQL driver; install it: "
                         "pip install 'costar[postgres]'") from None
    return psycopg


class PostgresStore(SQLStore):
    """A coSTAR store in a PostgreSQL database, safe for many processes and machines at once.

    Writes are transactions; rows have natural unique keys (trace id, run id, label key, golden
    set version, blob digest); check-then-write operations (labels, golden-set versions) take a
    transaction-scoped advisory lock on their key; trace rewrites lock the trace rows first.
    """

    backend: ClassVar[Backend] = "postgresql"
    _NOW: ClassVar[str] = "CAST(extract(epoch FROM clock_timestamp()) AS DOUBLE PRECISION)"
    _INSERT_ORDER: ClassVar[str] = "id"
    _CHUNK: ClassVar[int] = 1000  # ids per array parameter: bounds what one query brings back

    def __init__(self, url: str, *, local_dir: str | Path = ".costar", sanitizer: Sanitizer | None = None,
                 create: bool = True, migrate: bool = True, max_connections: int = 8,
                 connect_timeout_s: float = 10.0) -> None:
        """Connect to the database at ``url`` (``postgresql://user:password@host:port/dbname``;
        libpq's environment variables and ``~/.pgpass`` fill in what it omits). ``create=False``
        (read-only commands) neither creates the schema in an empty database nor upgrades an old one;
        ``migrate=False`` opens an old one as it is, for :meth:`migrate`."""
        psycopg = _psycopg()
        super().__init__(Path(local_dir), describe_url(url), sanitizer)
        self.url = url
        self._timeout = connect_timeout_s
        self._closed = False
        self._cache_lock = threading.Lock()
        try:
            port = str(psycopg.conninfo.conninfo_to_dict(url).get("port") or "")
            if port and not all(p.strip().isdigit() for p in port.split(",")):
                raise psycopg.ProgrammingError(f"the port {port!r} is not a number")
        except psycopg.ProgrammingError as exc:
            raise StoreError(f"{self.location} is not a valid PostgreSQL URL ({_first_line(exc)}); "
                             "use postgresql://user:password@host:port/dbname") from None
        # One direct connection first: a pool only reports "timed out" while it keeps retrying,
        # and the user needs to know why (unreachable, wrong password, no such database).
        try:
            probe = psycopg.connect(url, connect_timeout=max(1, int(connect_timeout_s)), autocommit=True)
        except psycopg.Error as exc:
            raise self._connect_error(exc) from None
        probe.close()
        self._max_connections = max(1, max_connections)
        self._pool = self._new_pool()
        try:
            self._open_schema(upgrade=create, migrate=migrate)
        except BaseException:
            self._pool.close()
            raise

    def _new_pool(self) -> Any:
        from psycopg_pool import ConnectionPool

        timeout = max(1, int(self._timeout))
        pool = ConnectionPool(self.url, min_size=1, max_size=self._max_connections, open=False,
                              kwargs={"autocommit": True, "connect_timeout": timeout},
                              configure=self._configure, check=ConnectionPool.check_connection,
                              timeout=max(self._timeout, 30.0), name=f"costar {self.location}")
        pool.open(wait=True, timeout=self._timeout)
        self._pid = os.getpid()
        return pool

    def _pool_of_this_process(self) -> Any:
        """The pool, or a new one in a process forked from the one that opened the store (a worker
        of multiprocessing or Ray): connections cannot be shared across a fork. The inherited pool
        is kept, never closed, so the parent's connections are left alone."""
        if self._pid != os.getpid():
            with self._cache_lock:
                if self._pid != os.getpid():
                    _INHERITED.append(self._pool)
                    self._pool = self._new_pool()
        return self._pool

    # ------------------------------------------------------------------ plumbing

    @staticmethod
    def _configure(conn: psycopg.Connection[Any]) -> None:
        from psycopg.types.string import TextLoader

        # json columns come back as the text that was stored (parsed by pydantic/orjson, not psycopg).
        conn.adapters.register_loader("json", TextLoader)
        conn.row_factory = _unescaping_rows

    def _connect_error(self, exc: Exception) -> StoreError:
        msg = _first_line(exc)
        low = msg.lower()
        where = self.location
        if "password authentication failed" in low or "no password supplied" in low:
            return StoreError(f"PostgreSQL refused the password for {where}; check the user and password in "
                              "the store URL (or PGPASSWORD / ~/.pgpass)")
        if "database" in low and "does not exist" in low:
            return StoreError(f"the database of {where} does not exist; create it (createdb NAME, or "
                              "CREATE DATABASE) or fix the database name in the store URL")
        if "role" in low and "does not exist" in low:
            return StoreError(f"the PostgreSQL user of {where} does not exist; create it or fix the user "
                              "in the store URL")
        if any(s in low for s in ("connection refused", "could not connect", "timeout", "timed out",
                                  "could not translate host name", "no route to host", "name or service",
                                  "failed to resolve host")):
            return StoreError(f"cannot reach the PostgreSQL server of {where} ({msg}); check the host and "
                              "port in the store URL and that the server is running")
        return StoreError(f"cannot connect to {where}: {msg}")

    def _translate(self, exc: Exception) -> StoreError:
        import psycopg
        from psycopg import errors as e
        from psycopg_pool import PoolClosed, PoolTimeout

        where = self.location
        if isinstance(exc, PoolClosed) or self._closed:
            return StoreError(f"the store {where} was closed; open it again")
        if isinstance(exc, PoolTimeout):
            return StoreError(f"no connection to {where} within {self._pool.timeout:g}s (the server is down, "
                              "unreachable or out of connections); check it and re-run")
        if isinstance(exc, e.DiskFull | e.OutOfMemory):
            return StoreError(f"the PostgreSQL server of {where} is out of disk or memory; free some, then "
                              "re-run with --resume to finish the run (nothing already stored is lost)")
        if isinstance(exc, e.InsufficientPrivilege | e.ReadOnlySqlTransaction):
            return StoreError(f"the PostgreSQL user of {where} may not write this database "
                              f"({_first_line(exc)}); grant it the rights or use another user")
        if isinstance(exc, e.UniqueViolation) and getattr(exc.diag, "constraint_name", None) == "traces_trial":
            return DuplicateTrialError()
        if isinstance(exc, e.UndefinedTable | e.UndefinedColumn):
            return StoreError(f"the database of {where} does not hold the tables coSTAR expects "
                              f"({_first_line(exc)}); run 'costar store migrate {where}'")
        if isinstance(exc, psycopg.OperationalError):
            return StoreError(f"lost the connection to {where} ({_first_line(exc)}); check the server and "
                              "re-run (with --resume to finish a run)")
        return StoreError(f"store error at {where}: {_first_line(exc)}")

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        import psycopg
        from psycopg_pool import PoolClosed, PoolTimeout

        try:
            yield
        except (psycopg.Error, PoolTimeout, PoolClosed) as exc:
            raise self._translate(exc) from None

    @contextlib.contextmanager
    def _connection(self) -> Iterator[_Conn]:
        with self._guard(), self._pool_of_this_process().connection() as raw:
            yield _Conn(raw)

    @contextlib.contextmanager
    def _read(self) -> Iterator[_Conn]:
        with self._connection() as c:
            yield c

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[_Conn]:
        with self._connection() as c, c.raw.transaction():
            c.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield c

    @contextlib.contextmanager
    def _write(self) -> Iterator[_Conn]:
        with self._connection() as c, c.raw.transaction():
            yield c

    @contextlib.contextmanager
    def _migrating(self) -> Iterator[_Conn]:
        with self._write() as c:
            c.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
            yield c

    def _schema_version(self, c: Any) -> int:
        if c.execute("SELECT to_regclass('meta')").fetchone()[0] is None:
            if c.execute("SELECT to_regclass('traces')").fetchone()[0] is not None:
                raise StoreError(f"the database of {self.location} holds tables of something other than coSTAR; "
                                 "give coSTAR a database of its own")
            return 0
        row = c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row[0]) if row else 0

    def _in(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column} = ANY(?)", [list(values)]

    def _glob(self, column: str, pattern: str) -> tuple[str, Any]:
        if "[" not in pattern:  # LIKE is several times faster than a regular expression
            like = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            return f"{column} LIKE ?", like.replace("*", "%").replace("?", "_")
        return f"{column} ~ ?", glob_to_regex(pattern)

    def _upsert(self, table: str, columns: Sequence[str], key: Sequence[str]) -> str:
        rest = [c for c in columns if c not in key]
        action = f"UPDATE SET {', '.join(f'{c}=EXCLUDED.{c}' for c in rest)}" if rest else "NOTHING"
        return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({','.join('?' * len(columns))}) "
                f"ON CONFLICT ({', '.join(key)}) DO {action}")

    def _insert_rows(self, c: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            c.copy_rows(table, columns, rows)

    def _lock(self, c: Any, *keys: str) -> None:
        for key in keys:  # callers pass them sorted, so two writers never wait on each other crosswise
            c.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (key,))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._pid == os.getpid():
                self._pool.close()
            else:
                _INHERITED.append(self._pool)

    def __enter__(self) -> PostgresStore:
        return self

    # ------------------------------------------------------------------ blobs

    def has_blob(self, sha256: str) -> bool:
        if not valid_blob_key(sha256):
            return False
        with self._read() as c:
            return c.execute("SELECT 1 FROM blobs WHERE sha256=?", (sha256,)).fetchone() is not None

    def _insert_blob(self, sha: str, size: int, chunks: Iterator[bytes]) -> None:
        """Store a blob unless it is there; ``chunks`` are read only when it is not."""
        n_chunks = (size + _CHUNK_BYTES - 1) // _CHUNK_BYTES
        with self._write() as c:
            if self._restamp(c, sha):
                return
            # The key row first: a concurrent writer of the same blob waits here, then finds it.
            if c.execute(f"INSERT INTO blobs (sha256, size, chunks, stored_at) VALUES (?,?,?,{self._NOW}) "
                         "ON CONFLICT (sha256) DO NOTHING RETURNING sha256", (sha, size, n_chunks)).fetchone() is None:
                self._restamp(c, sha)
                return
            h = hashlib.sha256()
            with c.raw.cursor() as cur, cur.copy("COPY blob_chunks (sha256, seq, data) FROM STDIN "
                                                 "(FORMAT BINARY)") as cp:
                cp.set_types(["text", "int4", "bytea"])
                for seq, chunk in enumerate(chunks):
                    h.update(chunk)
                    cp.write_row((sha, seq, chunk))
            if h.hexdigest() != sha:  # the file changed while it was stored: roll back, store nothing
                raise StoreError("a file changed while it was being stored; store it again once it is written")

    def put_blob(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        view = memoryview(data)
        self._insert_blob(sha, len(data), (bytes(view[i:i + _CHUNK_BYTES])
                                           for i in range(0, len(data), _CHUNK_BYTES)))
        return sha

    def put_file(self, path: Path) -> tuple[str, int]:
        h = hashlib.sha256()
        size = 0
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(_CHUNK_BYTES), b""):
                h.update(chunk)
                size += len(chunk)
        sha = h.hexdigest()
        with self._write() as c:
            if self._restamp(c, sha):
                return sha, size
        with open(path, "rb") as f:
            self._insert_blob(sha, size, iter(lambda: f.read(_CHUNK_BYTES), b""))
        return sha, size

    def _chunks_of(self, c: Any, sha: str) -> Iterator[bytes] | None:
        row = c.execute("SELECT chunks FROM blobs WHERE sha256=?", (sha,)).fetchone()
        if row is None:
            return None
        cur = c.raw.cursor()
        return (bytes(r[0]) for r in cur.stream(_pg_sql("SELECT data FROM blob_chunks WHERE sha256=? ORDER BY seq"),
                                                [sha]))

    def get_blob(self, sha256: str) -> bytes | None:
        """The blob's bytes; None when it is absent or ``sha256`` is not a valid key."""
        if not valid_blob_key(sha256):
            return None
        with self._read() as c:
            chunks = self._chunks_of(c, sha256)
            return None if chunks is None else b"".join(chunks)

    def blob_path(self, sha256: str) -> Path:
        """A local file with the blob's bytes (the cache under ``root``, filled from the database on
        first use and verified). For a blob the store does not hold, a path that does not exist."""
        check_blob_key(sha256)
        dest = self.root / "cache" / "blobs" / sha256[:2] / sha256[2:]
        if dest.is_file():
            return dest
        with self._cache_lock, self._read() as c:
            chunks = self._chunks_of(c, sha256)
            if chunks is None:
                return dest
            self._fill_cache(dest, sha256, chunks)
        return dest

    def _fill_cache(self, dest: Path, sha: str, chunks: Iterator[bytes]) -> None:
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
            try:
                h = hashlib.sha256()
                with os.fdopen(fd, "wb") as f:
                    for chunk in chunks:
                        h.update(chunk)
                        f.write(chunk)
                if h.hexdigest() != sha:
                    raise StoreError(f"the blob {sha[:12]} in {self.location} is damaged (its bytes do not match "
                                     "its digest); store the file again")
                os.replace(tmp, dest)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise StoreError(f"cannot write the blob cache under {self.root}: {exc.strerror}; free some space "
                             "or fix its permissions") from None

    def open_blob(self, sha256: str) -> BinaryIO | None:
        path = self.blob_path(sha256)
        return path.open("rb") if path.is_file() else None

    def read_blob(self, sha256: str) -> tuple[int, Generator[bytes, None, None]] | None:
        """(size, chunks) of a stored blob, streamed from the database on one pooled connection
        held until the chunks are consumed or closed; None when absent."""
        if not valid_blob_key(sha256):
            return None
        with self._read() as c:
            row = c.execute("SELECT size FROM blobs WHERE sha256=?", (sha256,)).fetchone()
        if row is None:
            return None

        def chunks() -> Generator[bytes, None, None]:
            with self._read() as c:
                yield from self._chunks_of(c, sha256) or ()

        return int(row[0]), chunks()

    def import_blob(self, sha256: str, size: int, chunks: Iterator[bytes]) -> bool:
        """Store a blob from another store unless it is here; its bytes must match its key.
        Returns whether it was written."""
        check_blob_key(sha256)
        with self._write() as c:
            if self._restamp(c, sha256):
                return False
        try:
            self._insert_blob(sha256, size, chunks)
        except StoreError as exc:
            if "changed while" not in str(exc):
                raise
            raise StoreError(f"the blob {sha256[:12]} being copied is damaged (its bytes do not match its "
                             "digest); repair or remove it in the source store") from None
        return True

    def _restamp(self, c: _Conn, sha: str) -> bool:
        """Whether the blob is there, its time set to now: its writer may be about to store a trace
        that refers to it, and retention spares recently stored blobs (:meth:`delete_blob`)."""
        return bool(c.execute(f"UPDATE blobs SET stored_at = {self._NOW} WHERE sha256=?", (sha,)).rowcount)

    def blobs_stored_before(self, keys: Sequence[str], when: float) -> list[str]:
        out: list[str] = []
        with self._read() as c:
            for chunk in self._chunks(sorted({k for k in keys if valid_blob_key(k)})):
                out += [r[0] for r in c.execute("SELECT sha256 FROM blobs WHERE sha256 = ANY(?) AND stored_at < ?",
                                                (chunk, when))]
        return out

    def delete_blob(self, sha256: str, *, stored_before: float) -> bool:
        """See :meth:`SQLStore.delete_blob`; also removes this machine's cached copy."""
        if not valid_blob_key(sha256):
            return False
        with self._write() as c:
            # A restamp is an UPDATE of this row: whichever of the two comes second waits for the
            # other's row lock, then sees the row as the first left it (restamped, or gone).
            deleted = c.execute("DELETE FROM blobs WHERE sha256=? AND stored_at < ?",
                                (sha256, stored_before)).rowcount
        if deleted:
            with contextlib.suppress(OSError):
                (self.root / "cache" / "blobs" / sha256[:2] / sha256[2:]).unlink()
        return bool(deleted)

    def blob_keys(self) -> Iterator[str]:
        """Every stored blob's key (for copying a store), in key order."""
        with self._read() as c:
            keys = [r[0] for r in c.execute("SELECT sha256 FROM blobs ORDER BY sha256")]
        yield from keys


def glob_to_regex(pattern: str) -> str:
    """SQLite's GLOB (``*``, ``?``, ``[abc]``, ``[^abc]``, ``[a-z]``; case-sensitive, whole string) as
    a PostgreSQL regular expression, so span-name filters mean the same on both backends."""
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[":
            j = i + 1
            negate = j < n and pattern[j] == "^"
            if negate:
                j += 1
            k = j + 1 if j < n and pattern[j] == "]" else j  # a leading ']' is literal
            while k < n and pattern[k] != "]":
                k += 1
            if k >= n:  # no closing bracket: SQLite matches nothing; so does an impossible class
                return "[^\\s\\S]"
            body = pattern[j:k]
            members = "".join("\\" + c if c in "\\^[]" else c for c in body)
            out.append(f"[{'^' if negate else ''}{members}]")
            i = k
        else:
            out.append(re.escape(ch) if not ch.isalnum() else ch)
        i += 1
    out.append("$")
    return "".join(out)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
