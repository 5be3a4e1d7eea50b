"""Put on PYTHONPATH by the coSTAR harness for command agents: records the agent's process.

It costs nothing until the agent imports a model SDK (``openai``, ``anthropic``, the OpenAI Agents
SDK ``agents``), the MCP SDK (``mcp``) or coSTAR itself
(``from costar.trace import span``); only then is coSTAR's capture loaded: the process is recorded
from then on and its spans are sent to the harness at exit. It then hands over to any other
``sitecustomize`` on the path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import os
import sys

# The agent's Python may be older than coSTAR's: annotations are never evaluated, and their names
# are imported for the type checker only (it treats any TYPE_CHECKING as true), not at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType

_SDKS = ("openai", "anthropic", "agents", "mcp")  # agents: the OpenAI Agents SDK; mcp: the MCP SDK
_COSTAR = "costar"


class _CaptureOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname not in _SDKS and fullname != _COSTAR:
            return None
        sys.meta_path.remove(self)
        if fullname == _COSTAR:
            return self._costar_spec(path, target)
        try:
            from costar.capture.process import start_process_capture
            from costar.capture.sdk import _FINDER

            start_process_capture()
            return _FINDER.find_spec(fullname, path, target)
        except Exception:  # a Python without coSTAR, or a broken environment: run uncaptured
            return None

    @staticmethod
    def _costar_spec(path: Sequence[str] | None, target: ModuleType | None) -> ModuleSpec | None:
        # coSTAR itself is being imported (an agent adding its own spans): load it as the other
        # finders would, then start recording once its package exists.
        spec: ModuleSpec | None = None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if find is not None:
                spec = find(_COSTAR, path, target)
                if spec is not None:
                    break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_capture(module: ModuleType) -> None:
            exec_module(module)
            try:
                from costar.capture.process import start_process_capture

                start_process_capture()
            except Exception as exc:  # never break the agent's import of coSTAR
                print(f"costar: could not start capture: {exc}", file=sys.stderr)

        # Patching this one loader instance is the point: coSTAR is recorded right after it loads.
        spec.loader.exec_module = exec_and_capture  # type: ignore[method-assign]
        return spec


if os.environ.get("COSTAR_CAPTURE") == "1" and os.environ.get("COSTAR_OTLP_ENDPOINT"):
    sys.meta_path.insert(0, _CaptureOnImport())

_here = os.path.dirname(os.path.abspath(__file__))
_rest = [p for p in sys.path if os.path.abspath(p or ".") != _here]
if len(_rest) != len(sys.path):
    _self = sys.modules.get("sitecustomize")
    _saved, sys.path[:] = list(sys.path), _rest
    sys.modules.pop("sitecustomize", None)
    try:
        importlib.import_module("sitecustomize")
    except ImportError:
        pass
    finally:
        sys.path[:] = _saved
        # site.py looks this module up by name once it has run: it must be us again.
        if _self is not None:
            sys.modules["sitecustomize"] = _self
