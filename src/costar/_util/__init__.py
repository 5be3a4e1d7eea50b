"""Low-level helpers that every layer of coSTAR may use, and that use nothing of coSTAR but
:mod:`costar.errors`.

* :mod:`~costar._util.aio` — calling async code from sync code (one way, one event loop);
* :mod:`~costar._util.gcpause` — pausing the cyclic garbage collector around bulk construction;
* :mod:`~costar._util.imports` — importing an object named ``module:attribute``;
* :mod:`~costar._util.lazy` — package names imported on first use;
* :mod:`~costar._util.process` — subprocesses with bounded output, killed as a process group,
  escaped children found by their marker, nothing outliving coSTAR;
* :mod:`~costar._util.reaper` — the watchdog process that kills coSTAR's commands if coSTAR dies;
* :mod:`~costar._util.signals` — SIGTERM and SIGHUP handled like Ctrl-C;
* :mod:`~costar._util.server` — an ASGI app on loopback in a background thread;
* :mod:`~costar._util.yamlfile` — YAML that remembers the line of every key.

Private: the names here may change between releases; the public API is :mod:`costar.api`.
"""

__all__: list[str] = []  # nothing here is public API
