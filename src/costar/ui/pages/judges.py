"""The Judges pages: every judge and version with its fingerprint, agreement with each golden set
(kappa, TPR, TNR with intervals), promotion history, the active-learning queue, and labeling in
place (``costar judges list --json``, ``costar judges agreement --json``, ``costar label``).

Labeling keeps the protections of the labeling page (``costar label --web``): a same-origin,
URL-encoded POST carrying the session's form token; the label is checked like every label
(:func:`costar.align.labeling.new_label`) and saved with the labeler's name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from costar.errors import CostarError
from costar.server.auth import Caller
from costar.summary import JudgeSummary
from costar.ui.templating import path_part, query
from costar.views import run_summary, trace_detail

if TYPE_CHECKING:
    from costar.align.versions import VersionRegistry
    from costar.store.base import Store
    from costar.ui.app import WebApp

RECENT_RUNS = 20
"""Runs whose summaries say which judges ran lately, and how they did."""
QUEUE_SIZE = 20


def project_judges(project_dir: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """The project's judges as ``costar judges list --json`` prints them, and an error if they cannot
    be listed."""
    if project_dir is None:
        return [], None
    from pathlib import Path

    from costar.align.versions import project_judges as judges_of
    from costar.config import ProjectConfig, load_config
    from costar.views import judge_list

    try:
        file = Path(project_dir) / "costar.yaml"
        cfg = load_config(file) if file.is_file() else ProjectConfig(root=Path(project_dir))
        return judge_list(judges_of(cfg).infos()).model_dump(mode="json")["judges"], None
    except CostarError as exc:
        return [], str(exc)


def recent_judges(store: Store) -> dict[str, list[tuple[str, JudgeSummary]]]:
    """Each judge name seen in the recent runs: (run id, its summary in that run), newest first."""
    seen: dict[str, list[tuple[str, JudgeSummary]]] = {}
    for run in store.list_runs(RECENT_RUNS):
        for j in run_summary(store, run).judges:
            seen.setdefault(j.name, []).append((run.run_id, j))
    return seen


def versions_of(web: WebApp) -> VersionRegistry:
    """The judge versions of the app's store and project (``costar judges versions``)."""
    from costar.align.versions import VersionRegistry

    return VersionRegistry(web.store.root, web.project_dir)


def agreements(store: Store, name: str, split: str) -> list[dict[str, Any]]:
    """The judge's agreement with each golden set of its name, and with every label when it has no
    golden set: what ``costar judges agreement NAME --golden SET --json`` prints."""
    from costar.align.agreement_store import judge_agreement

    out: list[dict[str, Any]] = []
    sets = [g for g in store.golden_sets() if g.judge_name == name]
    for g in sets:
        try:
            result = judge_agreement(store, name, golden=g.name, split=split)  # type: ignore[arg-type]
            out.append({"golden": g.name, "version": g.version, "result": result, "error": None})
        except CostarError as exc:
            out.append({"golden": g.name, "version": g.version, "result": None, "error": str(exc)})
    if not sets:
        try:
            out.append({"golden": None, "version": None, "result": judge_agreement(store, name), "error": None})
        except CostarError as exc:
            out.append({"golden": None, "version": None, "result": None, "error": str(exc)})
    return out


def register(web: WebApp) -> None:
    @web.page("/judges")
    async def judges_page(request: Request, caller: Caller) -> Response:
        listed, error = await web.run(project_judges, web.project_dir)
        recent = await web.run(recent_judges, web.store)
        golden = await web.run(web.store.golden_sets)
        registry = versions_of(web)
        names = sorted({*(j["name"] for j in listed), *recent, *(g.judge_name for g in golden), *registry.names()})
        by_name = {j["name"]: j for j in listed}
        rows = []
        for name in names:
            latest = recent.get(name, [])
            rows.append({"name": name, "info": by_name.get(name), "latest": latest[0] if latest else None,
                         "runs": len(latest), "golden": [g for g in golden if g.judge_name == name],
                         "active": registry.active_version(name), "versions": len(registry.versions(name))})
        return web.render(request, "judges.html", caller, section="judges", rows=rows, listed_error=error,
                          data={"judges": listed})

    @web.page("/judges/{name}/label")
    async def label_queue_page(request: Request, caller: Caller, name: str) -> Response:
        from costar.align.labeling import label_queue

        run_id = request.query_params.get("run") or None
        labeler = _labeler(request, caller)
        items = await web.run(label_queue, web.store, name, run_id=run_id, labeler=labeler,
                              facts_cache=web.facts_cache())
        todo = [i for i in items if not i.done]
        return web.render(request, "label_queue.html", caller, section="judges", name=name, items=items[:500],
                          total=len(items), todo=len(todo), run_id=run_id, labeler=labeler,
                          next_id=todo[0].trace_id if todo else None)

    @web.page("/judges/{name}/label/{trace_id:path}")
    async def label_trace_page(request: Request, caller: Caller, name: str, trace_id: str) -> Response:
        return await _label_page(web, request, caller, name, trace_id)

    @web.page("/judges/{name}")
    async def judge_page(request: Request, caller: Caller, name: str) -> Response:
        from costar.align.active import rank_for_labeling

        split = request.query_params.get("split", "test")
        split = split if split in ("train", "validation", "test", "all") else "test"
        listed, _ = await web.run(project_judges, web.project_dir)
        info = next((j for j in listed if j["name"] == name), None)
        recent = (await web.run(recent_judges, web.store)).get(name, [])
        registry = versions_of(web)
        versions = await web.run(registry.versions, name)
        pointer = await web.run(registry.pointer, name)
        agreement = await web.run(agreements, web.store, name, split)
        try:
            queue = await web.run(rank_for_labeling, web.store, name, k=QUEUE_SIZE)
            queue_error = None
        except CostarError as exc:
            queue, queue_error = [], str(exc)
        labels = await web.run(web.store.labels, name=name)
        if info is None and not recent and not versions and not labels:
            raise HTTPException(404, f"no judge {name!r}: not in this project, its recent runs, versions or labels")
        data = {"judge": info, "agreement": [{"golden": a["golden"], "version": a["version"],
                                              "result": a["result"].model_dump(mode="json") if a["result"] else None,
                                              "error": a["error"]} for a in agreement],
                "versions": [v.model_dump(mode="json", exclude={"definition", "report"}) for v in versions],
                "queue": [c.model_dump(mode="json") for c in queue]}
        return web.render(request, "judge.html", caller, section="judges", name=name, info=info, recent=recent,
                          versions=versions, pointer=pointer, agreement=agreement, split=split, queue=queue,
                          queue_error=queue_error, labels=labels, data=data)

    @web.app.post("/judges/{name}/labels", include_in_schema=False)
    async def save_label(request: Request, name: str) -> Response:
        from costar.align.labeling import label_queue, new_label
        from costar.labels import LabelError, UnknownTraceError

        caller, fields = await web.check_post(request)
        trace_id = fields.get("trace_id", "")
        # Logged in, a person labels as their token's name: a typed name could overwrite someone else's label.
        labeler = caller.session.name if caller.session is not None else fields.get("labeler", "").strip()[:200]
        rationale = fields.get("rationale", "")[:20_000]
        run_id = fields.get("run") or None
        try:
            if not labeler:
                raise LabelError("give your labeler id (a name or email) in the labeler field")
            label = new_label(trace_id, name, fields.get("value", ""), labeler=labeler, rationale=rationale,
                              value_type="bool")
            await web.run(web.store.write_labels, [label], replace=True)
        except CostarError as exc:
            status = 404 if isinstance(exc, UnknownTraceError) else 400
            return await _label_page(web, request, caller, name, trace_id, error=str(exc), rationale=rationale,
                                     status=status)
        items = await web.run(label_queue, web.store, name, run_id=run_id, labeler=labeler,
                              facts_cache=web.facts_cache())
        todo = [i for i in items if not i.done]
        target = (f"/judges/{path_part(name)}/label/{path_part(todo[0].trace_id)}" if todo
                  else f"/judges/{path_part(name)}/label")
        response = RedirectResponse(target + query(run=run_id, saved=trace_id), status_code=303)
        response.set_cookie("costar_labeler", path_part(labeler), httponly=True, samesite="strict",
                            max_age=30 * 86400, secure=request.url.scheme == "https")
        return response


def _labeler(request: Request, caller: Caller) -> str | None:
    from urllib.parse import unquote

    if caller.session is not None:
        return caller.session.name
    return unquote(request.cookies.get("costar_labeler") or "").strip()[:200] or None


async def _label_page(web: WebApp, request: Request, caller: Caller, name: str, trace_id: str, *,
                      error: str | None = None, rationale: str | None = None, status: int = 200) -> Response:
    from costar.errors import StoreError

    try:
        view = await web.run(trace_detail, web.store, trace_id, max_spans=0)
    except StoreError:
        raise HTTPException(404, f"no trace {trace_id!r} in the store") from None
    labeler = _labeler(request, caller)
    mine = await web.run(web.store.labels, name=name, trace_ids=[view.trace_id], labeler=labeler) if labeler else []
    others = await web.run(web.store.labels, name=name, trace_ids=[view.trace_id])
    verdict = next((v for v in view.verdicts if v.name == name), None)
    return web.render(request, "label.html", caller, section="judges", status=status, name=name, view=view,
                      verdict=verdict, labeler=labeler, labeler_fixed=caller.session is not None,
                      mine=mine[0] if mine else None,
                      others=len([x for x in others if x.source_id != labeler]), error=error,
                      rationale=rationale if rationale is not None else (mine[0].rationale if mine else ""),
                      run_id=request.query_params.get("run"), saved=request.query_params.get("saved"))
