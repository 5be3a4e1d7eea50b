"""Debian's chromium through Playwright for the web app's browser tests, screenshots and benchmark,
and a watch on a page: dialogs, console messages, script errors and every request it makes."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]

HAVE_CHROMIUM = shutil.which(str(CHROMIUM)) is not None
NO_CHROMIUM = "needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)"


@contextmanager
def chromium(profile: Path, *, width: int = 1400, height: int = 900) -> Iterator[Any]:
    """A fresh chromium context (its profile under ``profile``), closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height})
        try:
            yield context
        finally:
            context.close()


@dataclass
class Watch:
    """What a page did: dialogs it opened, console lines, uncaught errors, requests."""

    origin: str
    dialogs: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> Any:
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: self.requests.append(r.url))
        return page

    def foreign(self) -> list[str]:
        """Requests anywhere but this app's pages, assets and API."""
        return [u for u in self.requests if not u.startswith(self.origin + "/")]

    def assert_quiet(self) -> None:
        """Nothing ran that should not have: no dialog, no console line, no error, no foreign request."""
        assert self.dialogs == []
        assert self.console == []
        assert self.errors == []
        assert self.foreign() == []
