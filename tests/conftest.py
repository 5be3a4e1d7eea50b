from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Property-based tests: a modest, reproducible run in CI ("ci", the default); HYPOTHESIS_PROFILE=deep
# explores far more inputs (run it after touching a parser or an importer).
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("deep", max_examples=3000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch project folder as the working directory, importable for python agents/checks."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


# ----------------------------------------------------------------------------- stores
#
# Every test that takes the ``store`` fixture runs twice: on the embedded SQLite store and on a
# PostgreSQL store (a fresh database of a throwaway cluster started once per test session, or per
# xdist worker). Without PostgreSQL the second run skips with the reason; in CI it fails instead.

_TEMPLATE_DB = "costar_template"
_db_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_cluster():
    """A throwaway PostgreSQL server (initdb + pg_ctl as the postgres user), removed at the end."""
    from costar.store.pg_cluster import ClusterUnavailable, ThrowawayCluster

    try:
        import psycopg  # noqa: F401
        cluster = ThrowawayCluster().start()
    except (ImportError, ClusterUnavailable) as exc:
        reason = f"PostgreSQL store tests need a PostgreSQL server: {exc}"
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI must run them)")
        pytest.skip(reason)
    try:
        from costar.store.postgres import PostgresStore

        with cluster.admin() as admin:
            admin.execute(f"CREATE DATABASE {_TEMPLATE_DB}")
        # The template holds the current schema, so each test's database starts migrated.
        PostgresStore(cluster.url(_TEMPLATE_DB), local_dir=cluster.dir / "unused").close()
        yield cluster
    finally:
        cluster.stop()


def _new_database(cluster, template: str) -> str:
    name = f"t{os.getpid()}_{next(_db_counter)}"
    with cluster.admin() as admin:
        admin.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    return name


def _drop_database(cluster, name: str) -> None:
    with cluster.admin() as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def pg_url(pg_cluster):
    """The URL of a new database holding an empty store at the current schema; dropped afterwards."""
    name = _new_database(pg_cluster, _TEMPLATE_DB)
    yield pg_cluster.url(name)
    _drop_database(pg_cluster, name)


@pytest.fixture
def pg_empty_url(pg_cluster):
    """The URL of a new, empty database (no coSTAR tables); dropped afterwards."""
    name = _new_database(pg_cluster, "template0")
    yield pg_cluster.url(name)
    _drop_database(pg_cluster, name)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_backend(request) -> str:
    return request.param


@pytest.fixture
def store(request, store_backend: str, tmp_path: Path):
    if store_backend == "sqlite":
        from costar.store.sqlite import SQLiteStore

        st = SQLiteStore(tmp_path / ".costar")
    else:
        from costar.store.postgres import PostgresStore

        st = PostgresStore(request.getfixturevalue("pg_url"), local_dir=tmp_path / ".costar")
    yield st
    st.close()


@pytest.fixture
def sqlite_store(tmp_path: Path):
    """For tests of what only the embedded store has (its file, WAL, the blob folder)."""
    from costar.store.sqlite import SQLiteStore

    st = SQLiteStore(tmp_path / ".costar")
    yield st
    st.close()

