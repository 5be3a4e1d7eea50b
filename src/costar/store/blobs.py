"""Blob keys: the SHA-256 of the bytes, 64 lowercase hex digits, checked before any use."""

from __future__ import annotations

import re
from typing import Any

from costar.errors import StoreError

_SHA256 = re.compile(r"[0-9a-f]{64}")


def valid_blob_key(key: Any) -> bool:
    return isinstance(key, str) and _SHA256.fullmatch(key) is not None


def check_blob_key(key: Any) -> str:
    """``key`` when it is a blob key. Any other key (``..``, ``/``) could name a file outside the
    blob folder, so it is refused."""
    if not valid_blob_key(key):
        shown = repr(key)[:80]
        raise StoreError(f"{shown} is not a blob key (a sha256 of 64 lowercase hex digits); "
                         "the trace holding it is damaged or crafted")
    return str(key)
