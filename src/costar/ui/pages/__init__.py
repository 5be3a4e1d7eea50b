"""The pages, one module each; :func:`register_pages` adds them all to a :class:`~costar.ui.app.WebApp`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from costar.ui.app import WebApp

__all__ = ["register_pages"]


def register_pages(web: WebApp) -> None:
    """Add every page's routes to ``web``."""
    from costar.ui.pages import compare, judges, monitors, run, runs, scenarios, trace

    runs.register(web)
    compare.register(web)
    run.register(web)
    trace.register(web)
    judges.register(web)
    scenarios.register(web)
    monitors.register(web)
