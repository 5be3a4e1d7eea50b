"""A throwaway Ray cluster on this machine, for tests and benchmarks of ``--executor ray``.

Each node is a ``ray start --block`` process (the head, then more nodes joining it), on 127.0.0.1,
each with its own temporary folder, CPU count and custom resources, so a test can force a trial onto
a given node. Stopping kills exactly the processes this cluster started: each node's process group,
then any process still running out of its temporary folder (Ray's workers), never Ray processes
of anyone else on the machine (``ray stop`` would kill every one).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from costar._util.process import kill_group

__all__ = ["LocalRayCluster", "RayNode"]


@dataclass
class RayNode:
    """One node of a :class:`LocalRayCluster`."""

    cpus: float = 1
    """CPUs the node offers (``--num-cpus``)."""
    resources: dict[str, float] = field(default_factory=dict)
    """Custom resources the node declares (``--resources``)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray_bin() -> str:
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.exists() else (shutil.which("ray") or "ray")


class LocalRayCluster:
    """``with LocalRayCluster([RayNode(1, {"head": 1}), RayNode(1, {"node2": 1})]) as cluster:`` —
    ``cluster.address`` is what ``--executor ray:ADDRESS`` takes."""

    def __init__(self, nodes: list[RayNode] | None = None, *, env: dict[str, str] | None = None,
                 start_timeout: float = 120.0) -> None:
        self.nodes = nodes or [RayNode()]
        """The nodes: the first is the head."""
        self.env = env
        """The environment of the nodes (and so of every worker and agent); default: this process's."""
        self.start_timeout = start_timeout
        """Seconds to wait for every node to join."""
        self.port = _free_port()
        """The head's GCS port."""
        self.address = f"127.0.0.1:{self.port}"
        """``HOST:PORT`` of the head."""
        self.folder = Path(tempfile.mkdtemp(prefix="costar-ray-"))
        """The cluster's folder: each node's Ray temporary folder and log."""
        self._procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []

    def __enter__(self) -> LocalRayCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def node_dir(self, index: int) -> Path:
        """Node ``index``'s Ray temporary folder."""
        return self.folder / f"n{index}"

    def start(self) -> None:
        """Start the head, wait for it, start the other nodes, wait until all are alive."""
        for i, node in enumerate(self.nodes):
            args = [_ray_bin(), "start", "--block", "--node-ip-address", "127.0.0.1", "--num-cpus", f"{node.cpus:g}",
                    "--resources", json.dumps(node.resources), "--temp-dir", str(self.node_dir(i)),
                    "--disable-usage-stats", "--include-log-monitor", "false"]
            if i == 0:
                args += ["--head", "--port", str(self.port), "--include-dashboard", "false"]
            else:
                args += ["--address", self.address]
            log = open(self.folder / f"node{i}.log", "wb")  # noqa: SIM115 - kept open while the node runs
            self._logs.append(log)
            env = dict(self.env if self.env is not None else os.environ)
            env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            self._procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                                start_new_session=True))
            self._wait_for_nodes(i + 1)

    def alive_nodes(self) -> int:
        """How many nodes the head counts alive (asked in a child process: this one stays no Ray driver)."""
        code = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False); "
                "print(sum(1 for n in ray.nodes() if n['Alive']))")
        out = subprocess.run([sys.executable, "-c", code, self.address], capture_output=True, text=True, timeout=60)
        return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else 0

    def _wait_for_nodes(self, count: int) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            for i, proc in enumerate(self._procs):
                if proc.poll() is not None:
                    raise RuntimeError(f"ray node {i} exited with {proc.returncode}: {self.log(i)[-2000:]}")
            if count == 1:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                except OSError:
                    time.sleep(0.2)
                    continue
            if self.alive_nodes() >= count:
                return
            time.sleep(0.5)
        raise RuntimeError(f"the local Ray cluster did not reach {count} node(s) within {self.start_timeout:g}s")

    def log(self, index: int) -> str:
        """What node ``index``'s ``ray start`` printed."""
        path = self.folder / f"node{index}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def worker_pids(self) -> list[int]:
        """Process ids of this cluster's Ray workers (the processes running tasks: ``ray::…`` titles)."""
        return [pid for pid, cmd in self.processes() if cmd.startswith("ray::")]

    def processes(self) -> list[tuple[int, str]]:
        """Processes this cluster started: descendants of its ``ray start`` processes, and any process
        whose command line names its folder (one whose parent died before it)."""
        parents: dict[int, int] = {}
        commands: dict[int, str] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            pid = int(entry.name)
            parents[pid] = int(stat.rsplit(")", 1)[1].split()[1])
            commands[pid] = cmd
        ours = {p.pid for p in self._procs}
        changed = True
        while changed:
            found = {pid for pid, parent in parents.items() if parent in ours and pid not in ours}
            changed = bool(found)
            ours |= found
        mine = str(self.folder)
        ours |= {pid for pid, cmd in commands.items() if mine in cmd}
        return sorted((pid, commands[pid]) for pid in ours if pid in commands and pid != os.getpid())

    def stop(self) -> None:
        """Stop every node and whatever it started; remove the cluster's folder."""
        started = [pid for pid, _ in self.processes()]  # while the tree still says who started whom
        for proc in reversed(self._procs):
            if proc.poll() is None:
                kill_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self._procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self._procs:
            kill_group(proc.pid)
            if proc.poll() is None:
                proc.wait(timeout=10)
        for pid in started:  # workers that left the nodes' process groups
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + 10
        while (left := self.processes()) and time.monotonic() < deadline:
            for pid, _ in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.1)
        for log in self._logs:
            log.close()
        self._procs.clear()
        self._logs.clear()
        shutil.rmtree(self.folder, ignore_errors=True)
