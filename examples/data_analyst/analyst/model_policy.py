"""A policy backed by a real model: any model URI coSTAR's model layer understands.

    ModelPolicy("local:/smollm2")                          # embedded, offline
    ModelPolicy("openai:/gpt-4.1-mini")                    # hosted
    ModelPolicy("openai-compatible:/x?base_url=http://…")  # vLLM, Ollama, the scripted test server

Each step sends the (size-capped) conversation and the tool definitions; the model's tool calls
become the step. When the model stops calling tools, the answer is written by a separate call
(analyst/answer.py). What a weak model gets wrong is handled here rather than crashing the run:
malformed calls end the run with an answer that says so, a call written as text is read as a
call, and a call that repeats an earlier successful one is taken as the sign to answer.
"""

from __future__ import annotations

from typing import Any

from analyst.answer import FINISHED_SCHEMA, answer_messages, finished_messages, first_sentences
from analyst.context import fit_messages, tools_tokens
from analyst.loop import Step, ToolCall
from analyst.transcript import calls_in_text, last_step_succeeded_with, repeats

from costar.models import ChatResult, ModelClient, ModelOutputError, ModelRequestError
from costar.models.providers.local import DEFAULT_N_CTX
from costar.trace import SpanKind, current_span, span

# Hosted models have far larger windows; the cap keeps a long run's cost bounded all the same.
HOSTED_CONTEXT_TOKENS = 32_000
# Room for the chat template and the tool-calling instructions a provider adds around the tools.
TEMPLATE_TOKENS = 250


class ModelPolicy:
    """``next_step`` asks the model; keyword options that are not the policy's go to ``ModelClient``."""

    def __init__(self, model_uri: str, *, temperature: float = 0.0, max_tokens: int = 256, seed: int | None = 0,
                 context_tokens: int | None = None, finishing_tools: frozenset[str] = frozenset(),
                 client: ModelClient | None = None, **client_options: Any) -> None:
        self.client = client or ModelClient(model_uri, **client_options)
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.seed = seed
        self.context_tokens = context_tokens or _context_window(self.client)
        # Tools whose success usually completes a task: after one, the model must confirm it wants
        # to go on. Small models otherwise keep calling tools long after the work is done.
        self.finishing_tools = finishing_tools

    def next_step(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Step:
        with span("model policy", SpanKind.CHAIN) as s:
            step, note = self._decide(messages, tools)
            s.set_attribute("output.value", step.text or ", ".join(c.name for c in step.tool_calls))
            if note:
                s.set_attribute("analyst.policy.note", note)
            return step

    # -- one decision -----------------------------------------------------------------------------

    def _decide(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> tuple[Step, str]:
        if not tools:
            return Step(text=self._answer(messages)), "step budget spent: answered"
        try:
            result = self._chat(messages, tools)
        except ModelOutputError as exc:
            return Step(text=f"I could not finish the task: the model kept producing malformed tool calls "
                             f"({_first_line(exc)})."), "malformed tool calls"
        calls, note = _calls(result, {_name(t) for t in tools}, id_prefix=f"text_{len(messages)}")
        if not calls:
            return Step(text=self._answer(messages)), note or "the model finished: answered"
        if any(repeats(c, messages) for c in calls):
            return Step(text=self._answer(messages)), "repeated a successful tool call: answered"
        if last_step_succeeded_with(messages, self.finishing_tools) and self._finished(messages):
            return Step(text=self._answer(messages)), "the model judged the task finished: answered"
        return Step(text=result.text, tool_calls=calls), note

    def _finished(self, messages: list[dict[str, Any]]) -> bool:
        try:
            result = self._chat(finished_messages(messages), [], json_schema=FINISHED_SCHEMA)
        except ModelOutputError:
            return False  # no verdict: let the model go on with the call it asked for
        return isinstance(result.parsed, dict) and result.parsed.get("finished") is True

    def _answer(self, messages: list[dict[str, Any]]) -> str:
        """The final answer, written in a call of its own from the task and what the tools found.

        A small model that answers straight after a transcript of tool calls tends to echo the
        transcript's syntax; given only the task and the findings, it reports them. Larger models
        lose little: the findings are the basis of the answer either way."""
        try:
            result = self._chat(answer_messages(messages), [])
        except ModelOutputError as exc:
            return f"I could not finish the task: the model failed to answer ({_first_line(exc)})."
        return first_sentences(result.text) or "I could not finish the task: the model gave no answer."

    def _chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
              json_schema: dict[str, Any] | None = None) -> ChatResult:
        budget = self.context_tokens - self.max_tokens - tools_tokens(tools) - TEMPLATE_TOKENS
        try:
            return self._send(messages, budget, tools, json_schema)
        except ModelRequestError as exc:
            # The size estimate is a heuristic: if the window still overflowed, retry once with half.
            if "context" not in str(exc):
                raise
            return self._send(messages, budget // 2, tools, json_schema)

    def _send(self, messages: list[dict[str, Any]], budget: int, tools: list[dict[str, Any]],
              json_schema: dict[str, Any] | None) -> ChatResult:
        fitted, cut = fit_messages(messages, budget)
        if cut:
            current = current_span()
            if current is not None:
                current.set_attribute("analyst.context.cut_chars", cut)
        return self.client.chat(fitted, tools=tools or None, json_schema=json_schema, temperature=self.temperature,
                                max_tokens=self.max_tokens, seed=self.seed)


def _context_window(client: ModelClient) -> int:
    spec = client.spec
    if spec.provider == "local":
        return int(spec.options.get("n_ctx", DEFAULT_N_CTX))
    return HOSTED_CONTEXT_TOKENS


def _name(tool: dict[str, Any]) -> str:
    return str((tool.get("function") or tool).get("name", ""))


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:300]


def _calls(result: ChatResult, offered: set[str], *, id_prefix: str) -> tuple[list[ToolCall], str]:
    if result.tool_calls:
        return [ToolCall(id=c.id, name=c.name, arguments=c.arguments) for c in result.tool_calls], ""
    found = calls_in_text(result.text, offered, id_prefix)
    return found, ("read a tool call written as text" if found else "")
