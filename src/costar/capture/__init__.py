"""Zero-code capture: model SDK calls become LLM spans without changing the agent's code."""

from costar.capture.sdk import instrument, set_prices

__all__ = ["instrument", "set_prices"]
