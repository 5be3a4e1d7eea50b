"""Keep the conversation inside the model's context window.

Tool results are what grows: a read_file of a CSV is thousands of tokens, and a small model has
4096 in all. Before each model call the conversation is copied and shrunk, oldest and bulkiest
first; the agent's own record of the run is never modified.

Skill instructions are kept whole as long as possible: they are what the model is meant to follow.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from analyst.errors import NOT_RUN

Message = dict[str, Any]

# What an old tool result is cut down to: enough to remember what the call found.
OLD_RESULT_CHARS = 300
MIN_RESULT_CHARS = 120


def estimate_tokens(text: str) -> int:
    """A tokenizer-free, deliberately high estimate. BPE vocabularies of small models split digits
    and punctuation into single tokens (a CSV is about one token per character), while words
    take about one token per 3-4 letters."""
    digits = punct = letters = 0
    for c in text:
        if c.isdigit():
            digits += 1
        elif c.isalpha():
            letters += 1
        elif not c.isspace():
            punct += 1
    return int((digits + punct + letters / 3.5 + text.count("\n")) * 1.1) + 1


def message_tokens(message: Message) -> int:
    text = message.get("content") or ""
    calls = message.get("tool_calls") or []
    # Role markers and the template around every message cost a few tokens each.
    return estimate_tokens(text if isinstance(text, str) else json.dumps(text)) + \
        sum(estimate_tokens(json.dumps(c)) for c in calls) + 6


def tools_tokens(tools: list[dict[str, Any]]) -> int:
    """Tool definitions as chat templates render them: each name with its parameters schema."""
    total = 0
    for t in tools:
        fn = t.get("function") or t
        total += estimate_tokens(f"functions.{fn.get('name', '')}:\n{json.dumps(fn.get('parameters') or {})}") + 2
    return total


def shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n…[shortened: {len(text) - limit} more characters not shown]"


def _skill_results(messages: list[Message]) -> set[str]:
    """Ids of tool calls whose result is a skill's text: load_skill, and calls deferred until the
    skill they follow was read (their result is that skill)."""
    ids: set[str] = set()
    for m in messages:
        for c in m.get("tool_calls") or []:
            if (c.get("function") or {}).get("name") == "load_skill":
                ids.add(str(c.get("id")))
        if m["role"] == "tool" and str(m.get("content") or "").startswith(NOT_RUN):
            ids.add(str(m.get("tool_call_id")))
    return ids


def fit_messages(messages: list[Message], budget: int) -> tuple[list[Message], int]:
    """A copy of ``messages`` whose estimated size is at most ``budget`` tokens (when possible),
    and how many characters were cut."""
    out = copy.deepcopy(messages)
    before = sum(len(m.get("content") or "") for m in out if isinstance(m.get("content"), str))

    def total() -> int:
        return sum(message_tokens(m) for m in out)

    if total() > budget:
        skills = _skill_results(out)
        last_assistant = max((i for i, m in enumerate(out) if m["role"] == "assistant"), default=len(out))
        tool_results = [i for i, m in enumerate(out) if m["role"] == "tool"]
        # 1. Older results shrink to a reminder; skills stay.
        for i in tool_results:
            if i < last_assistant and str(out[i].get("tool_call_id")) not in skills:
                out[i]["content"] = shorten(out[i]["content"] or "", OLD_RESULT_CHARS)
        # 2. Drop the oldest exchanges that are not skills (an assistant turn with its results).
        while total() > budget and _drop_oldest_exchange(out, skills):
            pass
        # 3. The newest results (and, last of all, skills) share what is left.
        for protect in (True, False):
            if total() <= budget:
                break
            shrinkable = [i for i, m in enumerate(out) if m["role"] == "tool"
                          and not (protect and str(m.get("tool_call_id")) in skills)]
            if not shrinkable:
                continue
            spare_tokens = budget - sum(message_tokens(m) for i, m in enumerate(out) if i not in shrinkable)
            # Worst case is one token per character (digits), so characters = tokens.
            each = max(MIN_RESULT_CHARS, spare_tokens // len(shrinkable) - 40)
            for i in shrinkable:
                out[i]["content"] = shorten(out[i]["content"] or "", each)
    after = sum(len(m.get("content") or "") for m in out if isinstance(m.get("content"), str))
    return out, max(0, before - after)


def _drop_oldest_exchange(messages: list[Message], skills: set[str]) -> bool:
    """Remove the oldest assistant tool-call turn (and its results) that loaded no skill and is not
    the newest one. Returns False when there is nothing left to drop."""
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant" and m.get("tool_calls")]
    for i in turns[:-1]:
        ids = {str(c.get("id")) for c in messages[i]["tool_calls"]}
        if ids & skills:
            continue
        j = i + 1
        while j < len(messages) and messages[j]["role"] == "tool":
            j += 1
        del messages[i:j]
        return True
    return False
