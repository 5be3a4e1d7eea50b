"""coSTAR's errors survive pickling (a process pool or a Ray worker sends them back to the caller)
with their message and attributes, whatever their constructor takes."""

from __future__ import annotations

import pickle
from concurrent.futures import ProcessPoolExecutor

import pytest

from costar.errors import ConfigError, ConfigFileError, CostarError, NotInStoreError, ScenarioError
from costar.store.base import DuplicateTrialError

ERRORS = [
    ConfigError("costar.yaml: judges: unknown judge 'x'; run 'costar judges list'"),
    ConfigFileError("price file", "prices.yaml", 3, "a price must be a number"),
    ScenarioError("unknown field 'promt'", file="s.yaml", line=4, field="promt"),
    DuplicateTrialError("r1", "s0", 2, stored="aa", refused="bb"),
    NotInStoreError("no trace 'x' in .costar"),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_an_error_comes_back_from_pickle_as_it_was(error: CostarError) -> None:
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert str(back) == str(error)
    assert back.__dict__ == error.__dict__


def _raise(index: int) -> None:
    raise ERRORS[index]


def test_an_error_raised_in_a_worker_process_reaches_the_caller_whole() -> None:
    with ProcessPoolExecutor(max_workers=1) as pool:
        for i, error in enumerate(ERRORS):
            with pytest.raises(type(error)) as caught:
                pool.submit(_raise, i).result(timeout=60)
            assert str(caught.value) == str(error)
