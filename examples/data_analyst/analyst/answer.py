"""Prompts for the end of a run: the final answer, and whether the task is finished yet.

Both show the model only the task and what the tools found, not the transcript of tool calls.
No quotation marks in the text: the embedded model's chat template HTML-escapes them (``&#34;``),
and a small model copies the escapes into what it writes.
"""

from __future__ import annotations

import re
from typing import Any

from analyst.transcript import calls_made, results, succeeded

Message = dict[str, Any]

ANSWER_SYSTEM = ("You tell the user the outcome of a data task in one or two sentences, using only the facts "
                 "given: their numbers and the files written. If the facts show an error or an empty file, "
                 "say so. Never invent numbers.")

# One worked example: small models copy the shape of an example far better than they follow a rule.
EXAMPLE: list[Message] = [
    {"role": "user", "content": "Task: Remove the duplicate rows from the data and save the result.\n"
                                "Facts: removed 12 duplicate rows from data.csv (kept 88 of 100); "
                                "wrote data_clean.csv"},
    {"role": "assistant", "content": "I removed 12 duplicate rows from data.csv, which leaves 88 rows, and saved "
                                     "the result to data_clean.csv."},
]

FINISHED_SYSTEM = "You check whether a data task is finished. Reply with JSON."
FINISHED_SCHEMA = {"type": "object", "properties": {"finished": {"type": "boolean"}}, "required": ["finished"]}

FACT_CHARS = 700


def answer_messages(messages: list[Message]) -> list[Message]:
    return [{"role": "system", "content": ANSWER_SYSTEM}, *EXAMPLE,
            {"role": "user", "content": _unquoted(f"Task: {_task(messages)}\nFacts: {_facts(messages)}")}]


def finished_messages(messages: list[Message]) -> list[Message]:
    """Ask whether the findings so far complete the task (the reply follows FINISHED_SCHEMA)."""
    question = (f"Task: {_task(messages)}\nFacts: {_facts(messages)}\n"
                "Is every part of the task done, every file it asks for written?")
    return [{"role": "system", "content": FINISHED_SYSTEM}, {"role": "user", "content": _unquoted(question)}]


def first_sentences(text: str, n: int = 2) -> str:
    """The answer was asked to be one or two sentences; whatever a small model rambles on with
    after that is not grounded in the facts."""
    parts = re.split(r"(?<=[.!?])\s+(?=[A-Z])", text.strip())
    return " ".join(parts[:n]).strip()


def findings(messages: list[Message]) -> list[str]:
    """What the tool calls found, oldest first: successful results once each (skills are
    instructions, not findings); only when nothing succeeded, the last error."""
    skill_calls = {cid for cid, name, _ in calls_made(messages) if name == "load_skill"}
    found = [" ".join(text.split()) for cid, text in results(messages).items() if cid not in skill_calls]
    ok = list(dict.fromkeys(r for r in found if succeeded(r)))
    return ok or found[-1:]


def _task(messages: list[Message]) -> str:
    return next((str(m.get("content") or "") for m in messages if m["role"] == "user"), "")


def _facts(messages: list[Message]) -> str:
    facts = " ".join(findings(messages)) or "no tool was used"
    return facts if len(facts) <= FACT_CHARS else facts[:FACT_CHARS] + " …"


def _unquoted(text: str) -> str:
    return text.replace('"', "").replace("'", "")
