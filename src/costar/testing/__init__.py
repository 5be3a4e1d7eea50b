"""Test helpers users can use too: a scripted OpenAI/Anthropic-compatible model server and pytest fixtures."""

from costar.testing.process import scripted_server_process
from costar.testing.rules import Rule, ScriptedToolCall, load_rules, parse_rules
from costar.testing.scripted_server import ReceivedRequest, ScriptedModelServer, serve_scripted

__all__ = [
    "ReceivedRequest",
    "Rule",
    "ScriptedModelServer",
    "ScriptedToolCall",
    "load_rules",
    "parse_rules",
    "scripted_server_process",
    "serve_scripted",
]
