"""What the web app's tests share: one chromium per module and a watched tab over the module's
``ui`` fixture (the app's base URL), and the seeded store with monitors that the monitor pages'
tests read."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from costar._util.server import BackgroundServer
from costar.ui.app import create_ui_app
from tests.support.browser import Watch, chromium
from tests.support.webapp_monitor_seed import MonitorSeed, add_monitors
from tests.support.webapp_seed import Seeded, seed_store


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with chromium(tmp_path_factory.mktemp("profile")) as context:
        yield context


@pytest.fixture
def tab(browser: Any, ui: str) -> Iterator[tuple[Any, Watch]]:
    """A new page in the shared browser, watched."""
    watch = Watch(origin=ui)
    page = watch.attach(browser.new_page())
    try:
        yield page, watch
    finally:
        page.close()


@pytest.fixture(scope="module")
def monitor_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Seeded, MonitorSeed]]:
    """A seeded store with the monitors of tests.support.webapp_monitor_seed, in a project folder."""
    root = tmp_path_factory.mktemp("monitors")
    s = seed_store(root)
    (root / "costar.yaml").write_text("suite: scenarios\n")
    m = add_monitors(s.store, root)
    try:
        yield s, m
    finally:
        s.store.close()


@pytest.fixture(scope="module")
def monitor_world_url(monitor_world: tuple[Seeded, MonitorSeed]) -> Iterator[str]:
    """The web app over :func:`monitor_world`'s store, served on loopback."""
    s, _ = monitor_world
    with BackgroundServer(create_ui_app(s.store, project_dir=str(s.store.root.parent))) as srv:
        yield srv.url
