"""The store: runs, traces, spans, artifacts, verdicts, human labels and golden sets.

:mod:`~costar.store.base` is the contract (the ``Store`` protocol and ``Run``); the embedded store is
:mod:`~costar.store.sqlite` (SQLite plus a content-addressed blob folder), the shared one
:mod:`~costar.store.postgres`; :mod:`~costar.store.location` finds and opens either by location.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from costar.store.base import Store


def open_store(store: Store | str | Path | None = None, *, local_dir: str | Path | None = None,
               create: bool = True) -> Store:
    """A store: ``store`` itself when it is one, else the one at that location (a folder or a
    ``postgresql://`` URL; default: COSTAR_STORE, else ``.costar``). ``local_dir`` is the local
    folder of a database store (default ``.costar``)."""
    if store is None or isinstance(store, str | Path):
        from costar.store.location import open_store as open_location

        return open_location(store, local_dir=local_dir, create=create)
    return store


__all__ = ["open_store"]
