"""Put on PYTHONPATH by the coSTAR harness for command agents: captures model SDK calls.

It costs nothing until the agent imports ``openai`` or ``anthropic``; only then is coSTAR
loaded and the SDK wrapped. It then hands over to any other ``sitecustomize`` on the path.
"""

import importlib
import importlib.abc
import os
import sys

_SDKS = ("openai", "anthropic")


class _CaptureOnSdkImport(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in _SDKS:
            return None
        sys.meta_path.remove(self)
        try:
            from costar.capture.process import start_process_capture
            from costar.capture.sdk import _FINDER

            start_process_capture()
            return _FINDER.find_spec(fullname, path, target)
        except Exception:  # a Python without coSTAR, or a broken environment: run uncaptured
            return None


if os.environ.get("COSTAR_CAPTURE") == "1" and os.environ.get("COSTAR_OTLP_ENDPOINT"):
    sys.meta_path.insert(0, _CaptureOnSdkImport())

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
