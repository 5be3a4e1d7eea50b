"""The scripted model server in a child process: the code under test does not share its CPU,
memory or GIL (benchmarks, and tests of agents that must not see the server in-process)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml


@contextlib.contextmanager
def scripted_server_process(rules: list[dict[str, Any]], *, startup_timeout: float = 30.0) -> Iterator[str]:
    """Serve ``rules`` from a child process on loopback; yields the OpenAI base URL (``…/v1``)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.yaml"
        path.write_text(yaml.safe_dump({"rules": rules}), encoding="utf-8")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        code = f"from costar.testing import serve_scripted; serve_scripted({str(path)!r}, port={port})"
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}/v1"
        try:
            deadline = time.monotonic() + startup_timeout
            while True:
                try:
                    httpx.get(f"{base}/models", timeout=1).raise_for_status()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError("the scripted server process did not start") from None
                    time.sleep(0.1)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
