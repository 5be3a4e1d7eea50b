"""The JSON views (``--json``): one module of versioned shapes, documented by docs/JSON.md."""

from __future__ import annotations

import json
from pathlib import Path

from costar.store.sqlite import SQLiteStore
from costar.summary import summarize
from costar.views import (
    SCHEMA_VERSION,
    VIEWS,
    RunList,
    RunReport,
    TraceDetail,
    TraceList,
    json_reference,
    run_list,
    run_report,
    trace_detail,
    trace_list,
)
from tests.support.paths import REPO
from tests.support.report import sample_run


def test_json_md_is_generated_from_the_views() -> None:
    committed = (REPO / "docs" / "JSON.md").read_text(encoding="utf-8")
    assert committed == json_reference(), "stale: run python -m costar.views > docs/JSON.md"
    for view in VIEWS:
        assert f"## {view.__name__}" in committed
        assert f"`{view.kind_name}`" in committed
        view.model_json_schema()  # every view has a JSON Schema (the server publishes them)


def test_views_round_trip_with_whole_ids(tmp_path: Path) -> None:
    run, traces, verdicts = sample_run()
    with SQLiteStore(tmp_path / ".costar") as store:
        store.create_run(run)
        store.write_traces(traces)
        store.write_verdicts(verdicts, run_id=run.run_id)
        views = [run_list(store), trace_list(store, run.run_id), trace_detail(store, traces[0].trace_id[:10]),
                 run_report(store, run.run_id)]
    for view in views:
        text = view.model_dump_json()
        data = json.loads(text)
        assert list(data)[:2] == ["schema_version", "kind"]
        assert data["schema_version"] == SCHEMA_VERSION
        again = type(view).model_validate_json(text)
        assert again == view
    runs, listed, detail, report = views
    assert isinstance(runs, RunList)
    assert runs.runs[0].run_id == run.run_id
    assert isinstance(listed, TraceList)
    assert {t.trace_id for t in listed.traces} == {t.trace_id for t in traces}
    keys = [(t.scenario_id, t.trial) for t in listed.traces]
    assert keys == sorted(keys)
    assert isinstance(detail, TraceDetail)
    assert detail.trace_id == traces[0].trace_id  # a prefix in, a whole id out
    assert isinstance(report, RunReport)
    assert report.model_dump(exclude={"schema_version", "kind", "origin"}) == \
        summarize(run, traces, verdicts).model_dump()


def test_span_rows_read_untrusted_attributes_as_the_tree_does() -> None:
    """``traces show --json`` and the web app's tree read a span's facts one way: a value of the
    wrong type (a boolean, text, an infinite number) is left out, never an error."""
    from costar.store.span_tree import span_facts
    from costar.trace.model import Span, SpanKind
    from costar.views import SpanRow

    odd = Span(trace_id="t", span_id="s", name="chat", kind=SpanKind.LLM, start_ns=0, end_ns=2_000_000,
               attributes={"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": float("inf"),
                           "gen_ai.usage.output_tokens": True, "costar.usage.cost_usd": "n/a",
                           "gen_ai.tool.name": ""})
    row = SpanRow.of(odd, attributes=False)
    assert (row.model, row.tool, row.input_tokens, row.output_tokens, row.cost_usd) == ("m", None, None, None, None)
    assert row.duration_ms == 2.0
    assert row.attributes is None
    assert row.model_dump(exclude={"span_id", "parent_id", "duration_ms", "attributes"}) == span_facts(odd)


def test_a_trace_page_reads_the_start_of_a_few_artifacts_not_every_byte_of_all(tmp_path: Path) -> None:
    from costar.trace.model import Artifact, Trace
    from costar.views import MAX_ARTIFACT_PREVIEWS, trace_detail

    store = SQLiteStore(tmp_path / "store")
    big = ("line of text\n" * 400_000).encode()  # 5 MB: the agent decides how large its files are
    arts = []
    for i in range(MAX_ARTIFACT_PREVIEWS + 5):
        data = big if i == 0 else f"file {i}\n".encode()
        arts.append(Artifact(path=f"f{i}.txt", sha256=store.put_blob(data), size=len(data)))
    store.write_traces([Trace(trace_id="t" * 32, artifacts=arts)])
    read: list[int] = []
    real = store.read_blob

    def counting(sha256: str) -> object:
        found = real(sha256)
        assert found is not None
        size, chunks = found

        def counted() -> object:
            for chunk in chunks:
                read.append(len(chunk))
                yield chunk
        return size, counted()

    store.read_blob = counting  # type: ignore[method-assign,assignment]
    store.get_blob = None  # type: ignore[method-assign,assignment]  # never the whole blob
    view = trace_detail(store, "t" * 32, max_spans=0, artifact_chars=4000)
    assert [a.text is not None for a in view.artifacts] == [True] * MAX_ARTIFACT_PREVIEWS + [False] * 5
    first = view.artifacts[0]
    assert first.text == big[:4000].decode()
    assert first.text_truncated
    assert sum(read) <= (1 << 20) * MAX_ARTIFACT_PREVIEWS  # one chunk of each, not 5 MB
    assert view.artifacts[1].text == "file 1\n"
    assert not view.artifacts[1].text_truncated
