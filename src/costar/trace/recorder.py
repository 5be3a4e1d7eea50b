"""In-process recording for Python agents: ``span`` (context manager), ``traced`` (decorator).

The current span lives in a ContextVar, so nesting is correct across asyncio tasks (each
task copies its context). Threads do not inherit context in Python; spans opened in a thread
with no context at all attach to the process's single *fallback* recording when there is exactly
one (a recording that owns the process's agent code: the capture of a command agent's own process,
or an in-process agent's trial), and ``propagate`` carries context explicitly when several
recordings run concurrently. A context that belonged to a recording that has ended (the thread of
an in-process agent call abandoned at its trial's timeout) records nowhere: it never falls back.

Work that is not the agent's (judges scoring traces while later trials run, the harness's own
bookkeeping) runs under :func:`unrecorded`: nothing opened there is recorded, and it never falls
back to a recording, however it reaches a thread (asyncio tasks and ``asyncio.to_thread`` carry
the mark along). A recording entered inside it records as usual.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast, overload

from costar._util.gcpause import gc_paused
from costar.trace.model import (
    Span,
    SpanEvent,
    SpanKind,
    StatusCode,
    make_span,
    new_span_id,
    new_trace_id,
)

F = TypeVar("F", bound=Callable[..., Any])



class _Unrecorded:
    """The current-span value of work that must not be recorded (see ``unrecorded``)."""

    __slots__ = ()


_UNRECORDED = _Unrecorded()
# None: nothing set in this context (a thread started without one): the fallback recording applies.
_current_span: contextvars.ContextVar[LiveSpan | _Unrecorded | None] = contextvars.ContextVar(
    "costar_span", default=None)
_active: list[Recording] = []
_active_lock = threading.Lock()


class LiveSpan:
    """A span being recorded. Cheap to create; turned into a ``Span`` when the recording ends."""

    __slots__ = ("_token", "attributes", "end_ns", "events", "kind", "name", "parent_id", "recording",
                 "span_id", "start_ns", "status_code", "status_message")

    def __init__(self, recording: Recording, name: str, kind: SpanKind, parent_id: str | None,
                 attributes: dict[str, Any] | None) -> None:
        self.recording = recording
        self.name = name
        self.kind = kind
        self.parent_id = parent_id
        self.span_id = new_span_id()
        self.start_ns = time.time_ns()
        self.end_ns: int | None = None
        self.attributes: dict[str, Any] = dict(attributes) if attributes else {}
        self.events: list[SpanEvent] = []
        self.status_code = StatusCode.UNSET
        self.status_message: str | None = None
        self._token: contextvars.Token[LiveSpan | _Unrecorded | None] | None = None

    @property
    def trace_id(self) -> str:
        return self.recording.trace_id

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        self.attributes.update(attributes)

    def add_event(self, name: str, attributes: dict[str, Any] | None = None) -> None:
        self.events.append(SpanEvent.model_construct(name=name, time_ns=time.time_ns(),
                                                     attributes=attributes or {}))

    def set_status(self, code: StatusCode | str, message: str | None = None) -> None:
        self.status_code = StatusCode(code)
        self.status_message = message

    def record_exception(self, exc: BaseException) -> None:
        self.add_event("exception", {"exception.type": type(exc).__name__,
                                     "exception.message": str(exc)})
        self.set_status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}")

    def end(self, end_ns: int | None = None) -> None:
        """End the span now, or at ``end_ns`` (when what it measures ended before the bookkeeping that
        follows it); ending it again changes nothing."""
        if self.end_ns is None:
            self.end_ns = end_ns if end_ns is not None else time.time_ns()
            self.recording._finish(self)

    def __enter__(self) -> LiveSpan:
        self._token = _current_span.set(self)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None and not isinstance(exc, GeneratorExit):
            self.record_exception(exc)
        elif self.status_code == StatusCode.UNSET:
            self.status_code = StatusCode.OK
        self.end()
        if self._token is not None:
            try:
                _current_span.reset(self._token)
            except ValueError:  # exited in another context (e.g. a generator closed elsewhere)
                _current_span.set(None)
            self._token = None

    def to_span(self) -> Span:
        return make_span(self.recording.trace_id, self.span_id, self.parent_id, self.name, self.kind,
                         self.start_ns, self.end_ns, self.status_code, self.status_message, self.attributes,
                         self.events)


class Recording:
    """Collects the spans of one trace. Use as a context manager; the root span is its body.

    ``fallback``: while entered, the recording also takes spans opened in threads that have no
    context at all, when it is the only such recording in the process. Right when the code being
    recorded runs in this process and may start threads of its own; a recording of code that runs
    elsewhere (a command agent's process) passes False, so nothing of this process can land in it.
    """

    def __init__(self, name: str = "agent", *, kind: SpanKind = SpanKind.AGENT,
                 trace_id: str | None = None, attributes: dict[str, Any] | None = None,
                 fallback: bool = True) -> None:
        self.trace_id = trace_id or new_trace_id()
        self.fallback = fallback
        self._lock = threading.Lock()
        self._finished: list[LiveSpan] = []
        self._open: dict[str, LiveSpan] = {}
        self._extra: list[Span] = []
        self.root = LiveSpan(self, name, kind, None, attributes)
        self._open[self.root.span_id] = self.root

    def start_span(self, name: str, kind: SpanKind | str = SpanKind.CHAIN,
                   attributes: dict[str, Any] | None = None, parent: LiveSpan | None = None) -> LiveSpan:
        parent_id = parent.span_id if parent is not None else self.root.span_id
        s = LiveSpan(self, name, SpanKind(kind), parent_id, attributes)
        with self._lock:
            self._open[s.span_id] = s
        return s

    def _finish(self, s: LiveSpan) -> None:
        with self._lock:
            self._open.pop(s.span_id, None)
            self._finished.append(s)

    def add_spans(self, spans: list[Span]) -> None:
        """Attach spans captured elsewhere (e.g. over OTLP); they must already use this trace id."""
        with self._lock:
            self._extra.extend(spans)

    def spans(self) -> list[Span]:
        """Finished spans, then spans still open (closed now, marked unfinished), then extras."""
        with self._lock:
            done = list(self._finished)
            still_open = list(self._open.values())
            extra = list(self._extra)
        now = time.time_ns()
        with gc_paused():
            out = [s.to_span() for s in done]
        for s in still_open:
            sp = s.to_span()
            sp.end_ns = now
            sp.attributes = {**sp.attributes, "costar.unfinished": True}
            out.append(sp)
        out.extend(extra)
        out.sort(key=lambda s: s.start_ns)
        return out

    def activate(self) -> None:
        """Record as the process's fallback, without becoming the current span of this context
        (spans opened where nothing else is recording land here)."""
        with _active_lock:
            if self not in _active:
                _active.append(self)

    def deactivate(self) -> None:
        with _active_lock:
            if self in _active:
                _active.remove(self)

    def __enter__(self) -> Recording:
        if self.fallback:
            self.activate()
        self.root.__enter__()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        try:
            self.root.__exit__(exc_type, exc, tb)
        finally:
            self.deactivate()


def current_span() -> LiveSpan | None:
    s = _current_span.get()
    if isinstance(s, _Unrecorded):
        return None
    if s is not None and s.end_ns is None:
        return s
    if s is not None and s.recording.root.end_ns is not None:
        # This context was a recording's (an in-process agent's call, carried into its thread) and
        # that recording has ended: the call outlived its trial (it timed out and was abandoned).
        # What it does now belongs to no trace; falling back would put it in another trial's.
        return None
    # A thread that did not inherit context: fall back to the only active recording's root.
    with _active_lock:
        if len(_active) == 1:
            return _active[0].root
    return s


@contextlib.contextmanager
def unrecorded() -> Iterator[None]:
    """Run a block whose spans (model calls, tool calls, ``span``) are recorded nowhere: not into
    the current span's trace, not into a fallback recording. Judges run in it, so scoring a trace
    while other trials still run never adds the judge's model calls to an agent's trace."""
    token = _current_span.set(_UNRECORDED)
    try:
        yield
    finally:
        _current_span.reset(token)


def current_recording() -> Recording | None:
    s = current_span()
    return s.recording if s is not None else None


class _NoopSpan:
    """Returned when nothing is recording, so instrumented code runs unchanged outside a harness."""

    span_id = ""
    trace_id = ""
    attributes: dict[str, Any] = {}

    def set_attribute(self, key: str, value: Any) -> None: ...
    def set_attributes(self, attributes: dict[str, Any]) -> None: ...
    def add_event(self, name: str, attributes: dict[str, Any] | None = None) -> None: ...
    def set_status(self, code: StatusCode | str, message: str | None = None) -> None: ...
    def record_exception(self, exc: BaseException) -> None: ...
    def end(self) -> None: ...

    def __enter__(self) -> _NoopSpan:
        return self

    def __exit__(self, *a: Any) -> None: ...


NOOP_SPAN = _NoopSpan()


def span(name: str, kind: SpanKind | str = SpanKind.CHAIN,
         attributes: dict[str, Any] | None = None) -> LiveSpan | _NoopSpan:
    """Open a child of the current span: ``with span("plan", kind="CHAIN") as s: ...``."""
    parent = current_span()
    if parent is None:
        return NOOP_SPAN
    return parent.recording.start_span(name, kind, attributes, parent=parent)


def _jsonable(v: Any, limit: int = 8192) -> str:
    if isinstance(v, str):
        text = v
    else:
        try:
            text = json.dumps(v, default=repr)
        except (TypeError, ValueError):
            text = repr(v)
    return text if len(text) <= limit else text[:limit] + "…"


def _structured(v: Any, limit: int = 65536) -> Any:
    """Tool arguments and results stay structured (dicts, lists) when they are JSON and small."""
    try:
        text = json.dumps(v, default=repr)
    except (TypeError, ValueError):
        return _jsonable(v, limit)
    return json.loads(text) if len(text) <= limit else text[:limit] + "…"


@overload
def traced(fn: F, *, name: str | None = None, kind: SpanKind | str = SpanKind.CHAIN, capture: bool = True) -> F: ...


@overload
def traced(fn: None = None, *, name: str | None = None, kind: SpanKind | str = SpanKind.CHAIN,
           capture: bool = True) -> Callable[[F], F]: ...


def traced(fn: F | None = None, *, name: str | None = None, kind: SpanKind | str = SpanKind.CHAIN,
           capture: bool = True) -> F | Callable[[F], F]:
    """Decorate a function (sync or async) so each call is a span; TOOL spans follow gen_ai.tool.*."""

    def wrap(f: F) -> F:
        span_name = name or f.__name__
        span_kind = SpanKind(kind)
        sig = inspect.signature(f)

        def start(args: tuple[Any, ...], kwargs: dict[str, Any]) -> LiveSpan | _NoopSpan:
            attrs: dict[str, Any] = {}
            if capture:
                try:
                    bound = sig.bind_partial(*args, **kwargs)
                    arguments = {k: v for k, v in bound.arguments.items() if k not in ("self", "cls")}
                except TypeError:
                    arguments = {"args": list(args), "kwargs": kwargs}
                if span_kind == SpanKind.TOOL:
                    attrs = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": span_name,
                             "gen_ai.tool.call.arguments": _structured(arguments)}
                else:
                    attrs = {"input.value": _jsonable(arguments)}
            elif span_kind == SpanKind.TOOL:
                attrs = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": span_name}
            return span(span_name, span_kind, attrs)

        def finish(s: LiveSpan | _NoopSpan, result: Any) -> None:
            if capture:
                if span_kind == SpanKind.TOOL:
                    s.set_attribute("gen_ai.tool.call.result", _structured(result))
                else:
                    s.set_attribute("output.value", _jsonable(result))

        if inspect.iscoroutinefunction(f):
            @functools.wraps(f)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                with start(args, kwargs) as s:
                    result = await f(*args, **kwargs)
                    finish(s, result)
                    return result
            return cast(F, awrapper)  # functools.wraps keeps f's signature, which F stands for

        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with start(args, kwargs) as s:
                result = f(*args, **kwargs)
                finish(s, result)
                return result
        return cast(F, wrapper)

    return wrap(fn) if fn is not None else wrap


def propagate(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Bind ``fn`` to the caller's context, for handing work to a thread you start yourself."""
    ctx = contextvars.copy_context()
    return functools.partial(ctx.run, fn)
