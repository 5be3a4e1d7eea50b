"""Where things are: the repository root and the vendored public data the tests read."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Real public data (tau-bench, SWE-agent, OpenInference, PandaLM, the OTel GenAI conventions),
# kept in the repository with its licenses so a clean checkout tests against it.
EXTERNAL = REPO / "tests" / "data" / "external"
