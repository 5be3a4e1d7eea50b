"""costar ui: the web app over the local store."""

from __future__ import annotations

from typing import Annotated

import typer

from costar import api
from costar.cli.common import ConfigOpt, StoreOpt, app, load_project, open_project_store


@app.command("ui")
def ui(
    config: ConfigOpt = None,
    store: StoreOpt = None,
    host: Annotated[str, typer.Option("--host", help="Loopback address to listen on (the app has no login).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port (0 picks a free one; the URL is printed).")] = 8766,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Do not open a browser.")] = False,
) -> None:
    """The web app over this project's store: runs, a run, traces, comparisons, judges and
    labels, scenarios. Serves on 127.0.0.1 until Ctrl-C; opens a browser unless --no-browser."""
    cfg = load_project(config)
    st = open_project_store(cfg, store, create=False)
    try:
        api.serve_ui(store=st, host=host, port=port, open_browser=not no_browser, project=cfg)
    finally:
        st.close()
