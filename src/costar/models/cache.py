"""On-disk response cache: one JSON file per request fingerprint, sharded by its first two hex digits.

Writes go to a temporary file in the same folder and are renamed into place, so a reader never sees
a half-written entry and concurrent writers of the same key simply race to an identical result.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import tempfile
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path

from pydantic import ValidationError

from costar.errors import ConfigError
from costar.models.types import ProviderReply

DEFAULT_CACHE_DIR = Path(".costar") / "cache" / "models"


_bypassed: contextvars.ContextVar[bool] = contextvars.ContextVar("costar_cache_bypassed", default=False)


@contextlib.contextmanager
def cache_bypassed() -> Iterator[None]:
    """Within this block (and the tasks and threads it starts), model calls neither read nor write the
    response cache: re-asking a judge must reach the model, not replay its last answer."""
    token = _bypassed.set(True)
    try:
        yield
    finally:
        _bypassed.reset(token)


def is_cache_bypassed() -> bool:
    return _bypassed.get()


class CacheMode(StrEnum):
    OFF = "off"
    READ_WRITE = "read_write"
    READ_ONLY = "read_only"


class ResponseCache:
    def __init__(self, folder: str | Path = DEFAULT_CACHE_DIR, mode: CacheMode | str = CacheMode.READ_WRITE) -> None:
        try:
            self.mode = CacheMode(mode)
        except ValueError as exc:
            raise ConfigError(f"unknown cache mode '{mode}': use off, read_write or read_only") from exc
        self.folder = Path(folder)

    @property
    def enabled(self) -> bool:
        return self.mode != CacheMode.OFF

    def path_for(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> ProviderReply | None:
        if not self.enabled:
            return None
        try:
            data = self.path_for(key).read_bytes()
        except OSError:
            return None
        try:
            return ProviderReply.model_validate_json(data)
        except ValidationError:
            return None  # an entry from an incompatible version is a miss, and gets rewritten

    def put(self, key: str, reply: ProviderReply) -> None:
        if self.mode != CacheMode.READ_WRITE:
            return
        path = self.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key[:8]}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(reply.model_dump_json())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def clear(self) -> int:
        """Delete every entry; returns how many were removed."""
        removed = 0
        if not self.folder.is_dir():
            return 0
        for entry in self.folder.glob("*/*.json"):
            try:
                entry.unlink()
                removed += 1
            except OSError:
                pass
        return removed


def resolve_cache(cache: ResponseCache | CacheMode | str | None, folder: str | Path | None) -> ResponseCache:
    if isinstance(cache, ResponseCache):
        return cache
    mode = CacheMode.OFF if cache is None else cache
    return ResponseCache(folder or os.environ.get("COSTAR_MODEL_CACHE_DIR") or DEFAULT_CACHE_DIR, mode)
