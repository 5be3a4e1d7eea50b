"""costar model …, costar testing …: serving models and the scripted model server."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from costar.cli.common import ConfigOpt, app, console, load_project, say

model_app = typer.Typer(no_args_is_help=True, help="Serve and try models (any model URI).")
testing_app = typer.Typer(no_args_is_help=True, help="Test tools: the scripted OpenAI-compatible model server.")
app.add_typer(model_app, name="model")
app.add_typer(testing_app, name="testing")

HostOpt = Annotated[str, typer.Option("--host", help="Interface to bind (loopback by default).")]
PortOpt = Annotated[int, typer.Option("--port", min=0, max=65535)]


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


@model_app.command("serve")
def model_serve(uri: Annotated[str, typer.Argument(help="e.g. local:/smollm2, openai:/gpt-4.1-mini")],
                host: HostOpt = "127.0.0.1", port: PortOpt = 8000) -> None:
    """Expose a model as an OpenAI-compatible endpoint (/v1/chat/completions, /v1/models)."""
    from costar.models.serve import serve_openai_compatible

    console.print(f"serving {uri} on http://{_url_host(host)}:{port}/v1 (Ctrl-C to stop)", markup=False,
                  highlight=False)
    serve_openai_compatible(uri, host=host, port=port)


@model_app.command("chat")
def model_chat(uri: Annotated[str, typer.Argument(help="A model URI.")],
               prompt: Annotated[str, typer.Argument(help="The user message.")],
               max_tokens: Annotated[int, typer.Option("--max-tokens", min=1)] = 256,
               system: Annotated[str | None, typer.Option("--system")] = None) -> None:
    """Send one message to a model and print the answer, tokens and cost (a quick connectivity check)."""
    from costar.models import ModelClient

    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    with ModelClient(uri, cache="off") as client:
        result = client.chat(messages, max_tokens=max_tokens)
    say(result.text)
    console.print(f"[dim]{result.usage.input_tokens} in / {result.usage.output_tokens} out tokens · "
                  f"${result.cost_usd:.6f} · {result.latency_s:.2f} s[/]")


@model_app.command("prices")
def model_prices(config: ConfigOpt = None,
                 as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """The model prices the project's runs use (USD per 1M tokens): the built-in table and costar.yaml's
    prices:, each with its source."""
    from rich.table import Table

    table = load_project(config).price_table()
    entries = table.to_mapping()
    rows = [{"model": name, **entries[name], "source": table.source_of(name)} for name in table.models()]
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    out = Table("model", "input", "output", "cache read", "cache write", "cache write 1h", "source")
    for row in rows:
        out.add_row(str(row["model"]), *(f"{row[k]:g}" if k in row else "—" for k in
                                         ("input", "output", "cache_read", "cache_write", "cache_write_1h")),
                    str(row["source"]))
    console.print(out, markup=False, highlight=False)


@model_app.command("cache-clear")
def model_cache_clear(folder: Annotated[Path, typer.Option("--folder")] = Path(".costar/cache/models")) -> None:
    """Delete the on-disk model response cache."""
    from costar.models import ResponseCache

    ResponseCache(folder).clear()
    console.print(f"cleared {folder}")


@testing_app.command("serve")
def testing_serve(rules: Annotated[Path | None, typer.Argument(help="Rules file (YAML or JSON).")] = None,
                  host: HostOpt = "127.0.0.1", port: PortOpt = 8000) -> None:
    """Serve scripted model answers (rules match requests; faults can be injected) on loopback."""
    from costar.testing.scripted_server import serve_scripted

    console.print(f"scripted model server on http://{_url_host(host)}:{port}/v1 (Ctrl-C to stop)", markup=False,
                  highlight=False)
    serve_scripted(rules, host=host, port=port)
