"""Names a package exports but imports only on first use (PEP 562 module ``__getattr__``).

A package lists ``name -> module`` once, and imports the same names under ``TYPE_CHECKING`` (as
``X as X``) so type checkers and editors know what they are; tests/project/test_public_docs.py keeps the two
lists equal. ``import costar.judges`` then costs nothing until ``costar.judges.Judge`` is read.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package`` for ``exports`` (name -> defining module):
    ``__getattr__, __dir__ = lazy_exports(__name__, _LAZY)``. A name is imported once, then cached
    in the package."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__
