"""Untrusted text (trace content, model output, rationales) made safe to print on a terminal.

Everything an agent or a model wrote can hold terminal escape sequences (``ESC]0;title BEL`` sets
the window title, ``ESC[2J`` clears the screen, OSC 52 writes the clipboard), carriage returns that
overwrite what was printed, and bidi overrides that make text read differently than it is (the
"Trojan Source" trick). ``for_terminal`` is the one function every command uses before printing
such text: those characters are shown as visible escapes (``\\x1b``, ``\\u202e``), never sent, and
the result is bounded. It returns a plain ``str``: print it with ``markup=False`` or inside a Rich
``Text`` so square brackets stay literal too.
"""

from __future__ import annotations

import json
from typing import Any

DEFAULT_LIMIT = 20_000

# Bidi embeddings, overrides and isolates, and the marks that steer them.
_BIDI = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))


def _visible(cp: int) -> str:
    return f"\\x{cp:02x}" if cp < 0x100 else f"\\u{cp:04x}"


def _table(keep_newlines: bool) -> dict[int, str | None]:
    table: dict[int, str | None] = {}
    for cp in (*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), *_BIDI):
        table[cp] = _visible(cp)
    # Lone surrogates (from bytes decoded with surrogateescape) cannot be encoded by the terminal.
    for cp in range(0xD800, 0xE000):
        table[cp] = _visible(cp)
    table[0x09] = "\t" if keep_newlines else " "
    table[0x0A] = "\n" if keep_newlines else " "
    table[0x2028] = table[0x2029] = "\n" if keep_newlines else " "
    return table


_MULTI_LINE = _table(True)
_ONE_LINE = _table(False)


def for_terminal(value: Any, limit: int | None = DEFAULT_LIMIT, *, one_line: bool = False) -> str:
    """``value`` as text that cannot drive a terminal, at most ``limit`` characters (None: no bound).

    Control characters (C0 but newline and tab, DEL, C1 with its 8-bit CSI), bidi controls and lone
    surrogates become visible escapes. ``one_line`` also folds every run of whitespace into one space.
    Non-string values are shown as JSON.
    """
    if isinstance(value, str):
        text = value
    elif value is None:
        text = ""
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError, RecursionError):
            text = repr(value)
    text = text.replace("\r\n", "\n")
    if one_line:
        # Folding whitespace shrinks the text, so look at a little more than the limit.
        head = text if limit is None else text[: 4 * limit + 64]
        flat = " ".join(head.translate(_ONE_LINE).split())
        if limit is not None and (len(flat) > limit or len(head) < len(text)):
            return flat[: max(0, limit - 1)] + "…"
        return flat
    if limit is None or len(text) <= limit:
        return text.translate(_MULTI_LINE)
    # Escapes make the shown text longer than what it shows (at most 6-fold): bounded all the same.
    return f"{text[:limit].translate(_MULTI_LINE)}…[{len(text) - limit:,} more characters]"
