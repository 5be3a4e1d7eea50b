"""Record/replay cassettes: a JSONL file of request -> response pairs.

Recorded once against a real provider, a cassette lets a suite re-run deterministically, offline and
for free. A request repeated within a run (the same prompt in several trials) is answered with its
recordings in order, so stochastic trials replay as they were recorded.
"""

from __future__ import annotations

import json
import os
import threading
import time
from enum import StrEnum
from pathlib import Path
from typing import Any

from costar.errors import ConfigError
from costar.models.errors import CassetteMissError
from costar.models.types import ChatRequest, ProviderReply

MODE_ENV = "COSTAR_CASSETTE_MODE"


class CassetteMode(StrEnum):
    RECORD = "record"  # call the provider for everything; the file is rewritten from scratch
    REPLAY = "replay"  # answer only from the file; never touch the network
    RECORD_MISSING = "record_missing"  # replay what is there, record what is not


class Cassette:
    def __init__(self, path: str | Path, mode: CassetteMode | str | None = None) -> None:
        self.path = Path(path)
        raw_mode = mode or os.environ.get(MODE_ENV) or CassetteMode.REPLAY
        try:
            self.mode = CassetteMode(raw_mode)
        except ValueError as exc:
            raise ConfigError(f"unknown cassette mode '{raw_mode}': use record, replay or record_missing") from exc
        self._lock = threading.Lock()
        self._entries: dict[str, list[ProviderReply]] = {}
        self._cursor: dict[str, int] = {}
        self._truncated = False
        if self.mode != CassetteMode.RECORD:
            self._load()

    @property
    def needs_network(self) -> bool:
        return self.mode != CassetteMode.REPLAY

    def _load(self) -> None:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    doc = json.loads(line)
                    reply = ProviderReply.model_validate(doc["response"])
                    self._entries.setdefault(doc["key"], []).append(reply)
                except (ValueError, KeyError, TypeError) as exc:
                    raise ConfigError(f"{self.path}:{lineno}: not a cassette entry ({type(exc).__name__}); "
                                      f"re-record it with {MODE_ENV}=record") from exc

    def lookup(self, key: str) -> ProviderReply | None:
        """The next recording for ``key``; after the last one, the last one again."""
        if self.mode == CassetteMode.RECORD:
            return None
        with self._lock:
            replies = self._entries.get(key)
            if not replies:
                return None
            i = self._cursor.get(key, 0)
            self._cursor[key] = i + 1
            return replies[min(i, len(replies) - 1)]

    def miss(self, request: ChatRequest, model_uri: str) -> CassetteMissError:
        prompt = request.last_user_text().replace("\n", " ")
        if len(prompt) > 60:
            prompt = prompt[:57] + "..."
        return CassetteMissError(
            f"cassette {self.path} has no recording for this {model_uri} request (last user message: "
            f"{prompt!r}); re-record with {MODE_ENV}=record_missing (or cassette_mode='record_missing')")

    def record(self, key: str, request: ChatRequest, model_uri: str, reply: ProviderReply) -> None:
        entry: dict[str, Any] = {"key": key, "model": model_uri, "recorded_at": time.time(),
                                 "request": request.canonical(), "response": reply.model_dump(mode="json")}
        line = json.dumps(entry, ensure_ascii=False, default=str) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # "record" starts the file afresh, but only once something is actually recorded.
            mode = "w" if self.mode == CassetteMode.RECORD and not self._truncated else "a"
            with self.path.open(mode, encoding="utf-8") as f:
                f.write(line)
            self._truncated = True
            self._entries.setdefault(key, []).append(reply)
