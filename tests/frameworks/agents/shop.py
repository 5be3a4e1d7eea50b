"""The task every framework agent of the matrix does: two tools, one of which fails once.

``lookup_customer`` always answers; ``list_orders`` fails on its first call in a workspace (the
marker file makes "once" hold per trial, across processes). The agent writes the model's final
answer to ``answer.txt``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PROMPT = "Look up customer C-42 and list their open orders. Write the answer to answer.txt."
ANSWER_FILE = "answer.txt"
SYSTEM = "You are a support agent. Use the tools."
FAILURE = "orders service temporarily unavailable"

# OpenAI chat-completions tool definitions (other APIs reshape them).
PARAMETERS = {"type": "object", "properties": {"customer_id": {"type": "string"}}, "required": ["customer_id"]}
DESCRIPTIONS = {"lookup_customer": "Look up a customer by id.", "list_orders": "List a customer's open orders."}
OPENAI_TOOLS = [{"type": "function", "function": {"name": n, "description": d, "parameters": PARAMETERS}}
                for n, d in DESCRIPTIONS.items()]


class Shop:
    """The tools, bound to one trial's workspace."""

    def __init__(self, workspace: str | Path = ".") -> None:
        self.workspace = Path(workspace)

    def lookup_customer(self, customer_id: str) -> dict[str, Any]:
        return {"id": customer_id, "name": "Ada Lovelace", "tier": "gold"}

    def list_orders(self, customer_id: str) -> list[dict[str, Any]]:
        marker = self.workspace / ".orders_failed_once"
        if not marker.exists():
            marker.write_text("1")
            raise RuntimeError(FAILURE)
        return [{"id": "O-1", "status": "open"}, {"id": "O-7", "status": "open"}]

    def call(self, name: str, arguments: str | dict[str, Any]) -> tuple[str, bool]:
        """Run a tool by name: (result text, whether it failed), as a hand-written loop does."""
        args = json.loads(arguments) if isinstance(arguments, str) else arguments
        try:
            return json.dumps(getattr(self, name)(**args)), False
        except Exception as exc:
            return f"Error: {exc}", True

    def write_answer(self, text: str) -> None:
        (self.workspace / ANSWER_FILE).write_text(text)
