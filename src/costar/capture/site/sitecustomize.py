"""Put on PYTHONPATH by the coSTAR harness for command agents: captures model SDK calls.

It then hands over to any other ``sitecustomize`` further along the path.
"""

import importlib
import os
import sys

if os.environ.get("COSTAR_CAPTURE") == "1":
    try:
        from costar.capture.process import start_process_capture

        start_process_capture()
    except Exception:  # a Python without coSTAR installed, or a broken environment: run uncaptured
        pass

_here = os.path.dirname(os.path.abspath(__file__))
_rest = [p for p in sys.path if os.path.abspath(p or ".") != _here]
if len(_rest) != len(sys.path):
    _saved, sys.path[:] = list(sys.path), _rest
    sys.modules.pop("sitecustomize", None)
    try:
        importlib.import_module("sitecustomize")
    except ImportError:
        pass
    finally:
        sys.path[:] = _saved
