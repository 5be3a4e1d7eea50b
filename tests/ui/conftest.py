"""What the web app's browser tests share: one chromium per module and a watched tab over the
module's ``ui`` fixture (the app's base URL)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.browser import Watch, chromium


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
