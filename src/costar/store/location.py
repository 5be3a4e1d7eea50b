"""Where a store is: a folder (the embedded SQLite store) or a ``postgresql://`` URL, and opening it.

The location comes from, first to last: an explicit argument (``--store``), the ``COSTAR_STORE``
environment variable, ``store:`` in costar.yaml, and ``.costar``. A store that is a database also
needs a *local folder* for this machine's state (workspaces, the blob cache, judge versions); for
a folder store that folder is the store itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from costar.config import DEFAULT_FOLDER, from_environment, is_url
from costar.errors import StoreError
from costar.trace.sanitize import Sanitizer

if TYPE_CHECKING:
    from costar.store.sql import SQLStore

_POSTGRES = ("postgresql://", "postgres://")


def local_folder(location: str | os.PathLike[str], local_dir: str | os.PathLike[str] | None = None) -> Path:
    """The local folder for a store: ``local_dir`` when given; the store itself for a folder store;
    ``.costar`` (in the working directory) for a database store."""
    if local_dir is not None:
        return Path(local_dir)
    return Path(DEFAULT_FOLDER) if is_url(location) else Path(location)


def open_store(location: str | os.PathLike[str] | None = None, *, local_dir: str | os.PathLike[str] | None = None,
               create: bool = True, sanitizer: Sanitizer | None = None, migrate: bool = True) -> SQLStore:
    """Open the store at ``location`` (a folder or ``postgresql://…``; default ``COSTAR_STORE`` or
    ``.costar``). ``create=False`` is for read-only use: a missing store is an error, and a store
    from an older coSTAR is not upgraded (the error names ``costar store migrate``)."""
    where = from_environment(location) or DEFAULT_FOLDER
    if is_url(where):
        url = str(where)
        if not url.startswith(_POSTGRES):
            scheme = url.split("://", 1)[0]
            raise StoreError(f"unsupported store URL scheme {scheme!r}; a store is a folder (the embedded "
                             "SQLite store) or a postgresql://user:password@host:port/dbname URL")
        from costar.store.postgres import PostgresStore

        return PostgresStore(url, local_dir=local_folder(url, local_dir), sanitizer=sanitizer, create=create,
                             migrate=migrate)
    from costar.store.sqlite import SQLiteStore

    return SQLiteStore(Path(where), sanitizer=sanitizer, create=create, migrate=migrate)


def migrate_store(location: str | os.PathLike[str] | None = None, *,
                  local_dir: str | os.PathLike[str] | None = None) -> tuple[str, int, int, list[str]]:
    """Upgrade the store at ``location`` to this coSTAR's schema (an empty database gets the whole
    schema); returns (where, from version, to version, notes on what the upgrade changed in the
    data). A folder that holds no store is an error."""
    where = from_environment(location) or DEFAULT_FOLDER
    if not is_url(where) and not (Path(where) / "costar.db").is_file():
        raise StoreError(f"no coSTAR store at {where}; give the folder that holds costar.db, or a postgresql:// URL")
    store = open_store(where, local_dir=local_dir, migrate=False)
    try:
        start, end = store.migrate()
        return store.location, start, end, list(store.migration_notes)
    finally:
        store.close()
