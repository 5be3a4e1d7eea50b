"""A throwaway PostgreSQL cluster for tests and benchmarks: ``initdb`` + ``pg_ctl`` on a temporary
folder and a free loopback port, removed again by :meth:`ThrowawayCluster.stop`.

The server refuses to run as root, so as root the cluster runs as the ``postgres`` system user
(Debian's ``postgresql`` package creates it). TCP connections need a password (scram-sha-256),
so tests can check what a wrong one does. Durability is off (``fsync=off``) unless asked for: the
data is thrown away anyway.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


class ClusterUnavailable(RuntimeError):
    """PostgreSQL cannot be started here (not installed, no ``postgres`` user, initdb failed)."""


def find_bin_dir() -> Path:
    """The newest installed PostgreSQL's ``bin`` folder (Debian: /usr/lib/postgresql/N/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).resolve().parent
    raise ClusterUnavailable("PostgreSQL is not installed (no pg_ctl); install Debian's 'postgresql' package")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThrowawayCluster:
    """One PostgreSQL server of our own; ``url(dbname)`` connects to it as its superuser."""

    user = "postgres"

    def __init__(self, *, base: str | Path | None = None, max_connections: int = 300, durable: bool = False) -> None:
        """``durable=True`` keeps PostgreSQL's durability on (fsync, synchronous commit, full page
        writes), for benchmarks that should measure what a production server pays."""
        self.bin = find_bin_dir()
        self.password = secrets.token_hex(12)
        self.port = 0
        self.host = "127.0.0.1"
        self.max_connections = max_connections
        self.durable = durable
        self.dir = Path(tempfile.mkdtemp(prefix="costar-pg-", dir=base))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self._as: list[str] = []
        self._started = False
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise ClusterUnavailable("running as root and there is no 'postgres' system user to run "
                                         "the server as; install Debian's 'postgresql' package") from None
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"] if shutil.which("runuser") else []
            if not self._as:
                raise ClusterUnavailable("running as root without 'runuser' to start the server as 'postgres'")

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self._as, *args], capture_output=True, text=True, timeout=timeout,
                              cwd=self.dir, check=False)

    def start(self) -> ThrowawayCluster:
        pwfile = self.dir / "pw"
        pwfile.write_text(self.password + "\n")
        if self._as:
            pw = pwd.getpwnam("postgres")
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        os.chmod(pwfile, 0o600)
        res = self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", self.user, "--pwfile", str(pwfile),
                        "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync")
        pwfile.unlink()
        if res.returncode != 0:
            self.remove()
            raise ClusterUnavailable(f"initdb failed: {(res.stderr or res.stdout).strip()[-500:]}")
        for _attempt in range(5):  # the free port may be taken between choosing and binding it
            self.port = free_port()
            durability = "" if self.durable else "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 {durability}"
                       f"-c max_connections={self.max_connections}")
            res = self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                            "-o", options, "start")
            if res.returncode == 0:
                self._started = True
                return self
            if "already in use" not in self.server_log():
                break
        log = self.server_log()[-500:]
        self.remove()
        raise ClusterUnavailable(f"pg_ctl start failed: {(res.stderr or res.stdout).strip()[-300:]} {log}")

    def server_log(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def url(self, dbname: str = "postgres", *, password: str | None = None) -> str:
        pw = self.password if password is None else password
        return f"postgresql://{self.user}:{pw}@{self.host}:{self.port}/{dbname}"

    def admin(self) -> object:
        """An autocommit psycopg connection to the ``postgres`` database."""
        import psycopg

        return psycopg.connect(self.url(), autocommit=True)

    def stop(self) -> None:
        if self._started:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
            self._started = False
        self.remove()

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            shutil.rmtree(self.dir)

    def __enter__(self) -> ThrowawayCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
