from __future__ import annotations

import asyncio
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from costar.trace import Recording, SpanKind, StatusCode, current_span, propagate, span, traced, unrecorded


def by_name(rec: Recording) -> dict:
    return {s.name: s for s in rec.spans()}


def test_nesting_status_and_attributes() -> None:
    with Recording("agent") as rec:
        with span("plan", attributes={"step": 1}) as plan:
            plan.add_event("thinking", {"n": 2})
            with span("inner", SpanKind.LLM):
                pass
        with pytest.raises(ValueError), span("fails"):
            raise ValueError("bad input")
    spans = by_name(rec)
    assert set(spans) == {"agent", "plan", "inner", "fails"}
    assert spans["plan"].parent_id == spans["agent"].span_id
    assert spans["inner"].parent_id == spans["plan"].span_id
    assert spans["inner"].kind == SpanKind.LLM
    assert spans["plan"].attributes == {"step": 1}
    assert spans["plan"].events[0].name == "thinking"
    assert spans["fails"].status.code == StatusCode.ERROR
    assert "bad input" in spans["fails"].status.message
    assert spans["fails"].events[0].attributes["exception.type"] == "ValueError"
    assert all(s.trace_id == rec.trace_id for s in spans.values())
    assert all(s.end_ns >= s.start_ns for s in spans.values())


def test_traced_decorator_sync_and_async_tool_spans() -> None:
    @traced(kind="TOOL")
    def add(a: int, b: int) -> int:
        return a + b

    @traced(name="fetch")
    async def fetch(url: str) -> dict:
        await asyncio.sleep(0)
        return {"url": url, "ok": True}

    with Recording() as rec:
        assert add(2, b=3) == 5
        assert asyncio.run(fetch("http://x")) == {"url": "http://x", "ok": True}
    spans = by_name(rec)
    t = spans["add"]
    assert t.kind == SpanKind.TOOL
    assert t.attributes["gen_ai.tool.name"] == "add"
    assert t.attributes["gen_ai.tool.call.arguments"] == {"a": 2, "b": 3}
    assert t.attributes["gen_ai.tool.call.result"] == 5
    assert spans["fetch"].attributes["output.value"] == '{"url": "http://x", "ok": true}'


def test_no_recording_means_no_overhead_and_no_error() -> None:
    with span("orphan") as s:
        s.set_attribute("x", 1)
    assert current_span() is None


def test_concurrent_asyncio_tasks_keep_their_own_parents() -> None:
    async def worker(i: int) -> None:
        with span(f"task-{i}"):
            await asyncio.sleep(0.01 * (3 - i))  # the tasks interleave and finish in reverse order
            with span(f"child-{i}"):
                await asyncio.sleep(0.001)

    async def main() -> Recording:
        with Recording() as rec:
            await asyncio.gather(*(worker(i) for i in range(3)))
        return rec

    rec = asyncio.run(main())
    spans = by_name(rec)
    for i in range(3):
        assert spans[f"child-{i}"].parent_id == spans[f"task-{i}"].span_id
        assert spans[f"task-{i}"].parent_id == rec.root.span_id


def test_two_concurrent_recordings_in_tasks_do_not_mix() -> None:
    async def one(name: str) -> Recording:
        with Recording(name) as rec:
            for i in range(5):
                with span(f"{name}-{i}"):
                    await asyncio.sleep(0.001)  # hands over to the other recording's task mid-span
        return rec

    async def main() -> list[Recording]:
        return await asyncio.gather(one("a"), one("b"))

    a, b = asyncio.run(main())
    assert {s.name for s in a.spans()} == {"a", *(f"a-{i}" for i in range(5))}
    assert {s.name for s in b.spans()} == {"b", *(f"b-{i}" for i in range(5))}


def test_threads_without_context_attach_to_the_single_active_recording() -> None:
    def work() -> None:
        with span("in-thread"):
            pass

    with Recording() as rec:
        t = threading.Thread(target=work)
        t.start()
        t.join()
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda _: work(), range(3)))
    names = [s.name for s in rec.spans()]
    assert names.count("in-thread") == 4
    assert all(s.parent_id == rec.root.span_id for s in rec.spans() if s.name == "in-thread")


def test_unrecorded_work_never_falls_back_to_the_single_active_recording() -> None:
    """Judges scoring a trace while one trial still records: nothing they open joins that trial,
    in the block itself, in tasks it starts, or in worker threads it hands work to."""

    def work() -> None:
        with span("judge-work"):
            pass

    async def judge() -> None:
        with span("judge-task"):
            await asyncio.to_thread(work)

    with Recording() as rec:
        with unrecorded():
            assert current_span() is None
            work()
            asyncio.run(judge())
            with ThreadPoolExecutor(1) as pool:  # an executor that carries the context along
                pool.submit(contextvars.copy_context().run, work).result()
        with span("agent-work"):
            pass
    names = [s.name for s in rec.spans()]
    assert "judge-work" not in names
    assert "judge-task" not in names
    assert "agent-work" in names


def test_a_recording_entered_inside_unrecorded_work_records() -> None:
    with unrecorded(), Recording("trial") as rec, span("step"):
        assert current_span() is not None
    assert {s.name for s in rec.spans()} == {"trial", "step"}


def test_a_recording_without_fallback_takes_no_context_less_threads() -> None:
    """A command agent's trial: its code runs in another process, so nothing of this one may land in it."""
    def work() -> None:
        with span("stray"):
            pass

    with Recording(fallback=False) as rec:
        t = threading.Thread(target=work)
        t.start()
        t.join()
    assert [s.name for s in rec.spans()] == ["agent"]


def test_propagate_carries_the_current_span_into_a_thread() -> None:
    results: list[str] = []

    def work() -> None:
        with span("threaded"):
            results.append("done")

    # Two active recordings: the single-recording fallback does not apply, propagate must.
    with Recording() as other, Recording() as rec, span("parent") as parent:
        t = threading.Thread(target=propagate(work))
        t.start()
        t.join()
    spans = by_name(rec)
    assert spans["threaded"].parent_id == spans["parent"].span_id == parent.span_id
    assert "threaded" not in by_name(other)
    assert results == ["done"]


def test_unfinished_spans_are_closed_and_marked() -> None:
    rec = Recording()
    with rec:
        s = rec.start_span("never ended")
        assert s.end_ns is None
    out = by_name(rec)["never ended"]
    assert out.attributes["costar.unfinished"] is True
    assert out.end_ns is not None
