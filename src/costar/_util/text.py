"""Text helpers: excerpts for messages that keep what matters at both ends, and text any encoder takes."""

from __future__ import annotations

import re

_SURROGATE = re.compile("[\ud800-\udfff]")


def valid_unicode(s: str) -> str:
    """``s`` with lone surrogates (from JSON escapes or surrogateescape decoding; no UTF-8 file, database
    or protobuf message can hold them) replaced by U+FFFD, one for one, so offsets still hold; the same
    object when there are none."""
    if s.isascii():
        return s
    return _SURROGATE.sub("\ufffd", s) if _SURROGATE.search(s) else s


def head_and_tail_lines(text: str, *, head: int = 3, tail: int = 3, max_chars: int = 800,
                        separator: str = " | ") -> str:
    """The first ``head`` and the last ``tail`` non-blank lines of ``text`` on one line, with how many
    were left out between them. A crash's cause is usually near the top of its stderr (``Error:
    Cannot find module …``) and its context at the bottom (``Node.js v20``), so both are kept;
    each end gets half of ``max_chars``."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if len(lines) <= head + tail:
        return _bounded(separator.join(lines), max_chars)
    left_out = len(lines) - head - tail
    first = _bounded(separator.join(lines[:head]), max_chars // 2)
    last = _bounded(separator.join(lines[-tail:]), max_chars // 2, keep_end=True)
    return f"{first}{separator}[{left_out} more line{'s' if left_out != 1 else ''}]{separator}{last}"


def _bounded(text: str, limit: int, *, keep_end: bool = False) -> str:
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    return f"[{cut} characters]…{text[-limit:]}" if keep_end else f"{text[:limit]}…[{cut} characters]"
