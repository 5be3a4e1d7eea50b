"""costar agreement: agreement statistics between two label files."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from costar import api
from costar.cli.common import app, say
from costar.errors import ConfigError


def _recode(pairs: list[str] | None, flag: str) -> dict[str, Any] | None:
    """``TIE=0`` pairs; an empty right side (``garbage=``) marks the label as unlabelled."""
    if not pairs:
        return None
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"{flag} takes FROM=TO (e.g. {flag} Tie=0), got {pair!r}")
        src, _, dst = pair.partition("=")
        out[src] = _label(dst) if dst != "" else None
    return out


def _label(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


@app.command()
def agreement(
    file_a: Annotated[Path, typer.Argument(help="Reference labels (CSV, TSV, JSONL or a JSON array).")],
    file_b: Annotated[Path, typer.Argument(help="Labels to compare with the reference.")],
    key: Annotated[str, typer.Option("--key", help="Item id field in A (and B unless --b-key).")],
    a_field: Annotated[str, typer.Option("--a-field", help="Label field in A (dotted paths allowed).")],
    b_field: Annotated[str, typer.Option("--b-field", help="Label field in B.")],
    b_key: Annotated[str | None, typer.Option("--b-key", help="Item id field in B, if it differs.")] = None,
    positive: Annotated[str | None, typer.Option("--positive", help="The positive label (binary statistics).")] = None,
    labels: Annotated[str | None, typer.Option("--labels", help="Label order for weighted kappa, e.g. 1,0,2.")] = None,
    recode_a: Annotated[list[str] | None, typer.Option("--recode-a", help="Rename A's labels: FROM=TO (TO empty: unlabelled).")] = None,
    recode_b: Annotated[list[str] | None, typer.Option("--recode-b", help="Rename B's labels: FROM=TO.")] = None,
    confidence: Annotated[float, typer.Option("--confidence", min=0.5, max=0.999)] = 0.95,
    resamples: Annotated[int, typer.Option("--resamples", min=100)] = 2000,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Agreement between two label sources: accuracy, Cohen's kappa, TPR/TNR, confusion matrix, CIs."""
    result = api.agreement_between_files(
        file_a, file_b, key, a_field, b_field, b_key=b_key,
        positive=_label(positive) if positive is not None else None,
        labels=[_label(x) for x in labels.split(",")] if labels else None,
        recode_a=_recode(recode_a, "--recode-a"), recode_b=_recode(recode_b, "--recode-b"),
        confidence=confidence, resamples=resamples, seed=seed)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        say(api.format_agreement(result))
