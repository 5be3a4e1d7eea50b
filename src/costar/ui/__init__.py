"""The web app (``costar ui`` locally, and ``costar server`` for a team): runs, a run, a trace, two
runs compared, judges with labeling in place, and scenarios, each page a shareable URL
showing the same data as the matching ``--json`` output (docs/WEBAPP.md).

Public: :func:`create_ui_app` (the app over a local store: pages plus the JSON API),
:func:`mount_webapp` (the pages on a running ``costar server``), :func:`serve_ui` (``costar ui``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from costar._util.lazy import lazy_exports

if TYPE_CHECKING:
    from costar.ui.app import create_ui_app as create_ui_app
    from costar.ui.app import mount_webapp as mount_webapp
    from costar.ui.app import serve_ui as serve_ui

_LAZY = {"create_ui_app": "costar.ui.app", "mount_webapp": "costar.ui.app", "serve_ui": "costar.ui.app"}

__all__ = sorted(_LAZY)
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
