"""Agentic judges: a model that explores a stored trace with tools, then submits a verdict.

The trace is never put into the prompt: the judge asks for pages of it (trace_tools), can run Python
against a copy of the workspace files (sandbox), and finishes by calling ``submit_verdict`` with a
value, a rationale and the span ids its verdict rests on. Iterations, tokens and money are budgeted;
running out of any is an error verdict that names the budget.

The exploration fits the model's context window when the model layer knows it (a local model's
``n_ctx``, ``?context_window=`` on any URI): the answer's share is reserved, the tool set shrinks to
the core tools when the full one would leave too little room, tool results are clipped and old ones
elided so the history fits what is left, and a request the model still rejects as too long is
retried with less history before it becomes an error verdict saying so. On the last turn
``submit_verdict`` is the only tool and the model must call it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from costar._util.units import format_usd
from costar.errors import ConfigError
from costar.judges.base import Judge, JudgeContext
from costar.judges.llm import (
    DEFAULT_MODEL,
    RATIONALE_MAX,
    ClientHolder,
    Sample,
    Spend,
    ValueSpec,
    build_verdict,
    check_template,
    context_values,
    docs_digest,
    render,
    sampling,
    template_variables,
)
from costar.judges.sandbox import Sandbox, SandboxLimits
from costar.judges.trace_tools import ALL_TOOLS, ToolLimits, TraceToolbox, TraceView, clip, tool_specs
from costar.models.errors import ContextWindowError, ModelError, ModelOutputError
from costar.verdict import Verdict, VerdictSource

if TYPE_CHECKING:
    from costar.models.client import ModelClient
    from costar.pricing import PriceTable

SUBMIT = "submit_verdict"
MAX_EVIDENCE = 20
DEFAULT_TOOLS = ALL_TOOLS

SYSTEM_PROMPT = """You judge an AI agent's work from the recording of one of its runs: a trace of spans \
(model calls, tool calls, skills, errors) plus the files its workspace held at the end. A trace can be far \
too large to read whole, so you explore it with tools and look only at what the question needs. Tool \
results are clipped; their notes say how to page for more. Base the verdict on what the tools showed you, \
not on what the agent claims.

When you know the answer, call submit_verdict once with:
- rationale: what you checked and what you found, at most {rationale_max} characters
- value: {value}
- evidence: ids of the spans that support the verdict, the earliest cause first

You have at most {iterations} turns."""

TASK_FOOTER = "\n\nExplore the trace with the tools (trace_info is a good start), then call submit_verdict."
NUDGE = "Keep using the tools if you need more evidence; when you are done, call submit_verdict."
LAST_TURN = ("This is your last turn: call submit_verdict now, with the value, a rationale from what you saw, "
             "and the span ids it rests on.")

# Fitting a context window without a tokenizer: data (CSV, JSON) tokenizes at 1.7–2.5 characters per
# token (SmolLM2's tokenizer), tool schemas at 3.4, prose at 4–5; each estimate errs on the safe side,
# and the first call's prompt tokens, as the model counted them, replace the estimate of the start.
DATA_CHARS_PER_TOKEN = 1.5
PROMPT_CHARS_PER_TOKEN = 2.0
MESSAGE_OVERHEAD_CHARS = 8  # a chat template's framing of each message (role, separators), in characters
# The tools a judge keeps when the full set's schemas would leave too little room for the history.
CORE_TOOLS = ("trace_info", "list_spans", "get_span", "tool_call_timeline", "list_artifacts", "read_artifact")
MIN_HISTORY_TOKENS = 300
# Shrinking the history and asking again, when the model still rejects a request as too long.
MAX_SHRINKS = 3


@dataclass(frozen=True)
class WindowFit:
    """How one exploration fits the model's context window (``window`` None: not known, defaults apply)."""

    window: int | None
    tools: tuple[str, ...]
    max_output_tokens: int
    max_result_chars: int
    history_tokens: int | None  # room left for tool results and turns, before the first call measures it

    def context_chars(self, start_chars: int, base_tokens: int | None, default: int) -> int:
        """The characters of message content the conversation may hold: everything the start holds
        plus what fits in the room left, measured once the first call reported its prompt's tokens
        (``base_tokens``: the start and the tool schemas, as the model's tokenizer counts them)."""
        room = self.room(base_tokens)
        if room is None:
            return default
        return min(default, start_chars + max(0, int(room * DATA_CHARS_PER_TOKEN)))

    def room(self, base_tokens: int | None) -> int | None:
        """Tokens left for the history: estimated, or measured from the first prompt's tokens."""
        if self.window is None or self.history_tokens is None:
            return None
        if base_tokens is None:
            return self.history_tokens
        return self.window - self.max_output_tokens - base_tokens - _margin(self.window)


def _margin(window: int) -> int:
    return 32 + window // 32


@dataclass(frozen=True)
class Budget:
    """Per exploration: model turns, tokens (input + output, summed over turns) and money."""

    max_iterations: int = 12
    max_tokens: int | None = 60_000
    max_cost_usd: float | None = None


def _content_chars(m: Mapping[str, Any]) -> int:
    n = len(m.get("content") or "")
    for call in m.get("tool_calls") or ():
        n += len(call.get("function", {}).get("arguments") or "")
    return n


def _history_chars(messages: Sequence[Mapping[str, Any]]) -> int:
    """The characters a conversation holds, each message's framing counted."""
    return sum(_content_chars(m) + MESSAGE_OVERHEAD_CHARS for m in messages)


def _result_chars(room: int) -> int:
    """A tool result's size when three must fit ``room`` tokens (the history keeps the latest two whole)."""
    return max(200, int(room * DATA_CHARS_PER_TOKEN / 3))


def bound_history(messages: list[dict[str, Any]], max_chars: int, elided: set[int], *, keep: int = 2) -> None:
    """Elide the oldest tool results until the conversation fits ``max_chars``: every turn resends the
    history, so without this a long exploration grows its prompt without bound. The latest ``keep``
    results are always kept."""
    total = _history_chars(messages)
    if total <= max_chars:
        return
    tool_idx = [i for i, m in enumerate(messages) if m.get("role") == "tool" and i not in elided]
    for i in tool_idx[:len(tool_idx) - keep]:
        old = messages[i]["content"] or ""
        note = f"[elided: an earlier tool result of {len(old)} characters; call the tool again if you need it]"
        messages[i] = {**messages[i], "content": note}
        elided.add(i)
        total -= len(old) - len(note)
        if total <= max_chars:
            return


def _clip_latest(messages: list[dict[str, Any]]) -> bool:
    """Halve the latest tool result in place (with a note saying so); False when none is worth it."""
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if m.get("role") == "tool":
            text = m.get("content") or ""
            if len(text) < 200:
                return False
            messages[i] = {**m, "content": clip(text, len(text) // 2, hint="result cut to fit the context window")}
            return True
    return False


def _elidable(messages: Sequence[Mapping[str, Any]], elided: set[int]) -> bool:
    """Whether the history still holds a tool result that could be elided (all but the latest)."""
    return sum(1 for i, m in enumerate(messages) if m.get("role") == "tool" and i not in elided) > 1


def order_evidence(view: TraceView, ids: Sequence[str]) -> tuple[list[str], list[str]]:
    """(known ids ordered by start time, earliest first; ids that are not spans of this trace)."""
    known: list[tuple[int, str]] = []
    unknown: list[str] = []
    for span_id in dict.fromkeys(ids):
        s = view.spans.get(span_id)
        if s is None:
            unknown.append(span_id)
        else:
            known.append((s.start_ns, span_id))
    return [i for _, i in sorted(known)], unknown


def _sandbox_note(sandbox: Sandbox | None) -> str | None:
    if sandbox is None:
        return None
    if "refused" in sandbox.modes:
        return ("[run_python was refused: no sandbox is available here, so the judge could not run code; "
                "install bubblewrap, or opt in with --allow-unsandboxed-code]")
    if "unsandboxed" in sandbox.modes:
        return "[the judge's code ran WITHOUT a sandbox: no sandbox is available and the user opted in]"
    return None


class AgenticJudge(Judge):
    """A judge that is itself an agent: it explores the trace with bounded tools and submits a verdict."""

    source = VerdictSource.AGENT
    # Explores through TraceView, which pages the store when the trace was loaded without its spans.
    needs_spans = False

    def __init__(self, name: str, instructions: str, *, model: str | ModelClient = DEFAULT_MODEL,
                 value: ValueSpec | str | Mapping[str, Any] = "bool", tools: Sequence[str] | None = None,
                 budget: Budget | None = None, samples: int = 1, temperature: float | None = None,
                 seed: int | None = None, tool_limits: ToolLimits | None = None,
                 sandbox: SandboxLimits | None = None, max_context_chars: int = 40_000,
                 max_output_tokens: int = 1024, max_chars: int = 4000, system: str | None = None,
                 docs: Mapping[str, str] | None = None, tool_choice: Literal["required", "auto"] = "required",
                 gate: bool = True, description: str = "", version: str = "1",
                 max_concurrency: int | None = None) -> None:
        if samples < 1:
            raise ConfigError(f"judge {name!r}: samples must be at least 1")
        wanted = list(tools) if tools is not None else list(DEFAULT_TOOLS)
        unknown = [t for t in wanted if t not in ALL_TOOLS]
        if unknown:
            raise ConfigError(f"judge {name!r}: unknown tool(s) {unknown} (known: {', '.join(ALL_TOOLS)})")
        self.name = name
        self.instructions = instructions
        self.value = value if isinstance(value, ValueSpec) else ValueSpec.model_validate(value)
        self.tools = wanted
        self.budget = budget or Budget()
        if self.budget.max_iterations < 1:
            raise ConfigError(f"judge {name!r}: max_iterations must be at least 1")
        self.samples = samples
        self.temperature, self._seeds = sampling(samples, temperature, seed)
        self.seed = seed
        self.tool_limits = tool_limits or ToolLimits()
        self.sandbox_limits = sandbox or SandboxLimits()
        self.max_context_chars = max_context_chars
        self.max_output_tokens = max_output_tokens
        self.max_chars = max_chars
        self.system = system
        self.docs = dict(docs or {})
        self.tool_choice = tool_choice
        self.gating = gate
        self.description = description
        self.version = str(version)
        check_template(instructions, name)
        self._prompt = instructions + TASK_FOOTER
        self._prompt_vars = template_variables(self._prompt)
        # Malformed tool-call JSON cannot be answered with a tool result, so the client re-asks.
        self._clients = ClientHolder(model, output_retries=2, max_concurrency=max_concurrency)

    def use_prices(self, prices: PriceTable) -> None:
        self._clients.use_prices(prices)

    @property
    def model(self) -> str:
        return self._clients.uri

    @property
    def uses_criteria(self) -> bool:
        return "criteria" in self._prompt_vars

    def config(self) -> dict[str, Any]:
        return {"type": "agentic", "instructions": self.instructions, "system": self.system, "model": self.model,
                "value": self.value.model_dump(exclude_defaults=True), "tools": sorted(self.tools),
                "budget": dataclasses.asdict(self.budget), "samples": self.samples,
                "temperature": self.temperature, "seed": self.seed,
                "tool_limits": dataclasses.asdict(self.tool_limits),
                "sandbox": dataclasses.asdict(self.sandbox_limits), "max_context_chars": self.max_context_chars,
                "max_output_tokens": self.max_output_tokens, "max_chars": self.max_chars,
                "tool_choice": self.tool_choice, "docs": docs_digest(self.docs)}

    def submit_spec(self) -> dict[str, Any]:
        return {"type": "function", "function": {
            "name": SUBMIT, "description": "Submit the verdict. Call it once, when you are done exploring.",
            "parameters": {"type": "object", "additionalProperties": False, "required": ["rationale", "value"],
                           "properties": {
                               "rationale": {"type": "string", "maxLength": RATIONALE_MAX},
                               "value": self.value.json_schema(),
                               "evidence": {"type": "array", "maxItems": MAX_EVIDENCE,
                                            "items": {"type": "string", "maxLength": 64},
                                            "description": "span ids, earliest cause first"}}}}}

    def messages(self, ctx: JudgeContext) -> list[dict[str, Any]]:
        values = context_values(ctx, self._prompt_vars, max_chars=self.max_chars, docs=self.docs)
        system = self.system or SYSTEM_PROMPT.format(rationale_max=RATIONALE_MAX, value=self.value.describe(),
                                                     iterations=self.budget.max_iterations)
        return [{"role": "system", "content": system}, {"role": "user", "content": render(self._prompt, values)}]

    def fit(self, window: int | None, start: Sequence[Mapping[str, Any]]) -> WindowFit | str:
        """How to fit ``window`` tokens (None: unknown, the configured limits apply), or why the
        judge cannot: its instructions and the submit tool alone leave no room to explore."""
        if window is None:
            return WindowFit(None, tuple(self.tools), self.max_output_tokens, self.tool_limits.max_result_chars, None)
        out = min(self.max_output_tokens, max(128, window // 8))
        start_tokens = _history_chars(start) / PROMPT_CHARS_PER_TOKEN
        candidates = [tuple(t for t in self.tools if t != "read_doc" or self.docs)]
        core = tuple(t for t in self.tools if t in CORE_TOOLS)
        if core and core != candidates[0]:
            candidates.append(core)
        for tools in candidates:
            schemas = len(json.dumps([*tool_specs(tools), self.submit_spec()])) / PROMPT_CHARS_PER_TOKEN
            room = int(window - out - start_tokens - schemas - _margin(window))
            if room >= max(MIN_HISTORY_TOKENS, window // 4) or (tools == candidates[-1] and room >= MIN_HISTORY_TOKENS):
                clip_at = max(200, min(self.tool_limits.max_result_chars, _result_chars(room)))
                return WindowFit(window, tools, out, clip_at, room)
        return (f"the judge's instructions and tools alone need about {int(start_tokens + schemas)} of the "
                f"{window} tokens of {self.model}'s context window, leaving no room to explore the trace: use a "
                "model with a longer context (a local model: ?n_ctx=8192) or shorter instructions")

    async def aevaluate(self, ctx: JudgeContext) -> Verdict:
        started = time.perf_counter()
        view = TraceView.of(ctx)
        messages = await asyncio.to_thread(self.messages, ctx)
        fit = self.fit(self._clients.get().context_window, messages)
        if isinstance(fit, str):
            return build_verdict(self.name, self.value, [Sample(error=fit)], Spend(), started, source=self.source,
                                 model=self.model, metadata={"turns": 0})
        limits = dataclasses.replace(self.tool_limits, max_result_chars=fit.max_result_chars)
        sandbox = Sandbox(ctx.trace.artifacts, ctx.store, self.sandbox_limits) if "run_python" in fit.tools else None
        try:
            toolbox = TraceToolbox(view, limits=limits, enabled=list(fit.tools), sandbox=sandbox, docs=self.docs)
            spend = Spend()
            refits: list[WindowFit] = []
            samples = await asyncio.gather(*(self._explore(toolbox, messages, seed, spend, fit, refits)
                                             for seed in self._seeds))
            fit = min(refits, key=lambda f: f.window or 0, default=fit)
        finally:
            if sandbox is not None:
                sandbox.close()
        meta: dict[str, Any] = {"turns": spend.calls, "tool_calls": dict(toolbox.calls)}
        if sandbox is not None and sandbox.modes:
            meta["sandbox"] = ", ".join(sorted(sandbox.modes))
        if fit.window is not None:
            meta["context_window"] = {"tokens": fit.window, "tools": list(toolbox.tools),
                                      "max_result_chars": toolbox.limits.max_result_chars,
                                      "max_output_tokens": fit.max_output_tokens}
        verdict = build_verdict(self.name, self.value, samples, spend, started, source=self.source, model=self.model,
                                metadata=meta)
        note = _sandbox_note(sandbox)
        if note:  # the verdict says how (or whether) the judge's code ran, whatever the model wrote
            verdict = verdict.model_copy(update={"rationale": f"{verdict.rationale} {note}".strip()})
        if len(samples) > 1 and verdict.evidence:  # merged from several explorations: order them again
            ordered, _ = await asyncio.to_thread(order_evidence, view, verdict.evidence)
            verdict = verdict.model_copy(update={"evidence": ordered})
        return verdict

    async def _explore(self, toolbox: TraceToolbox, start: list[dict[str, Any]], seed: int | None,
                       total: Spend, fit: WindowFit, refits: list[WindowFit]) -> Sample:
        client = self._clients.get()
        specs = [*toolbox.specs(), self.submit_spec()]
        messages = list(start)
        start_chars = _history_chars(start)
        elided: set[int] = set()
        mine = Spend()  # budgets hold per exploration; ``total`` is what the verdict reports
        b = self.budget
        base_tokens: int | None = None
        shrink = 1.0
        overflows = 0
        last_reply = ""
        turn = 0
        while turn < b.max_iterations:
            turn += 1
            last = turn == b.max_iterations
            if last:
                messages.append({"role": "user", "content": LAST_TURN})
            limit = fit.context_chars(start_chars, base_tokens, self.max_context_chars)
            bound_history(messages, int(limit * shrink), elided, keep=2 if shrink == 1.0 else 1)
            try:
                # The last turn offers submit_verdict alone and requires it: the model must answer.
                r = await client.achat(messages, tools=[self.submit_spec()] if last else specs,
                                       tool_choice="required" if last else self.tool_choice,
                                       temperature=self.temperature, seed=seed, max_tokens=fit.max_output_tokens)
            except ContextWindowError as exc:
                if exc.window is not None and (fit.window is None or exc.window < fit.window):
                    # The model's window is smaller than we were told: fit that one (fewer tools, a
                    # shorter answer, smaller results) and ask again.
                    refit = self.fit(exc.window, start)
                    if isinstance(refit, str):
                        return Sample(error=refit, attempts=turn)
                    fit, base_tokens = refit, None
                    refits.append(fit)
                    specs = [s for s in specs if s["function"]["name"] in (*fit.tools, SUBMIT)]
                    if fit.max_result_chars < toolbox.limits.max_result_chars:
                        toolbox.limits = dataclasses.replace(toolbox.limits, max_result_chars=fit.max_result_chars)
                    turn -= 1
                    if last:
                        messages.pop()
                    continue
                # The estimate of the history's size was too low: ask again with half of it (older
                # results elided, then the latest clipped), a few times, before giving up.
                overflows += 1
                if overflows > MAX_SHRINKS or not (_elidable(messages, elided) or _clip_latest(messages)):
                    return Sample(error=f"the conversation does not fit the model's context window even with its "
                                        f"history cut down (turn {turn}): {exc}", attempts=turn)
                shrink = max(shrink / 2, 1 / 16)
                turn -= 1
                if last:
                    messages.pop()
                continue
            except ModelOutputError as exc:
                if last:
                    return Sample(error=f"no verdict after {turn} turn(s) (max_iterations={b.max_iterations}): on "
                                        "the last turn, where submit_verdict was the only tool and required, the "
                                        f"model answered otherwise ({exc})", attempts=turn)
                return Sample(error=f"model call failed on turn {turn}: {exc}", attempts=turn)
            except ModelError as exc:
                return Sample(error=f"model call failed on turn {turn}: {exc}", attempts=turn)
            overflows = 0
            if base_tokens is None and turn == 1 and r.usage.input_tokens:
                base_tokens = r.usage.input_tokens
                room = fit.room(base_tokens)
                if room is not None:  # measured: results clipped so that three fit what is left
                    clip_at = _result_chars(room)
                    if clip_at < toolbox.limits.max_result_chars:
                        toolbox.limits = dataclasses.replace(toolbox.limits, max_result_chars=clip_at)
            mine.add(r)
            total.add(r)
            if b.max_tokens is not None and mine.tokens > b.max_tokens:
                return Sample(error=f"token budget exceeded: {mine.tokens} tokens after {turn} turn(s) "
                                    f"(max_tokens={b.max_tokens})", attempts=turn)
            if b.max_cost_usd is not None and not mine.cost_known:
                # An unpriced model would make the money budget silently unenforced.
                return Sample(error=f"money budget cannot be enforced: the price of {r.provider}:/{r.model} is "
                                    "unknown (add it to the price table, or remove max_cost_usd)", attempts=turn)
            if b.max_cost_usd is not None and mine.cost_usd > b.max_cost_usd:
                return Sample(error=f"money budget exceeded: {format_usd(mine.cost_usd)} after {turn} turn(s) "
                                    f"(max_cost_usd={b.max_cost_usd:g})", attempts=turn)
            messages.append(r.message())
            last_reply = r.text or ", ".join(c.name for c in r.tool_calls)
            if not r.tool_calls:
                messages.append({"role": "user", "content": NUDGE})
                continue
            for call in r.tool_calls:
                if call.name == SUBMIT:
                    outcome = await self._submission(call.arguments, toolbox.view)
                    if isinstance(outcome, Sample):
                        outcome.attempts = turn
                        return outcome
                    text = outcome
                    if last:
                        return Sample(error=f"no usable verdict: the model's submit_verdict on its last turn was "
                                            f"unusable ({text.removeprefix('error: ')})", attempts=turn)
                else:
                    text = await toolbox.call(call.name, call.arguments)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": text})
        shown = clip(" ".join(last_reply.split()), 160) if last_reply else "nothing"
        return Sample(error=f"no verdict after {b.max_iterations} turn(s) (max_iterations={b.max_iterations}): the "
                            "model did not call submit_verdict, not even on the last turn where it was the only tool "
                            f"and required (its last reply: {shown})", attempts=b.max_iterations)

    async def _submission(self, args: Mapping[str, Any], view: TraceView) -> Sample | str:
        """A Sample when the submission is usable; otherwise an error text the model gets back."""
        try:
            value = self.value.coerce(args.get("value"))
        except ValueError as exc:
            return f"error: {exc}; call submit_verdict again with a valid value"
        rationale = args.get("rationale")
        if not isinstance(rationale, str) or not rationale.strip():
            return "error: rationale must be a non-empty string; call submit_verdict again"
        raw = args.get("evidence") or []
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
            return "error: evidence must be a list of span ids (strings); call submit_verdict again"
        evidence, unknown = await asyncio.to_thread(order_evidence, view, raw[:MAX_EVIDENCE])
        notes: dict[str, Any] = {"unknown_evidence": unknown} if unknown else {}
        return Sample(value=value, rationale=clip(rationale.strip(), RATIONALE_MAX), evidence=evidence, notes=notes)
