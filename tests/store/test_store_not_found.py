"""A run or trace that is not in the store is told by its type (NotInStoreError), so the web app
and the server's API answer 404 for it and 503/400 for the store's other failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from costar.errors import NotInStoreError, StoreError
from costar.store.base import Run
from costar.store.sqlite import SQLiteStore


@pytest.mark.parametrize("ref", ["no-such-run", "latest", "branch:nope", "tag:nope~2"])
def test_a_run_that_is_not_there_is_not_in_store(tmp_path: Path, ref: str) -> None:
    with SQLiteStore(tmp_path / "s") as store, pytest.raises(NotInStoreError):
        store.get_run(ref)


def test_a_trace_that_is_not_there_is_not_in_store(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "s") as store, pytest.raises(NotInStoreError, match="'costar traces list RUN'"):
        store.get_trace("feedbeef")


def test_an_ambiguous_run_prefix_is_a_store_error_but_not_a_missing_run(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "s") as store:
        store.create_run(Run(run_id="abc1"))
        store.create_run(Run(run_id="abc2"))
        with pytest.raises(StoreError, match="ambiguous") as err:
            store.get_run("abc")
        assert not isinstance(err.value, NotInStoreError)
