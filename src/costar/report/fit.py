"""Tables that fit the terminal: ids are never cut, and columns that do not fit are left out whole.

A terminal table has to choose what to give up when it is narrower than its content (80 columns,
or any pipe, which Rich treats as 80). Folding an id mid-word makes it useless (it cannot be pasted
back), and a column squeezed to three characters says nothing. So every column is either shown
whole or not at all: columns carry a priority, the least important are dropped until the table fits,
and the caller can say which were left out. Only a column marked ``flexible`` (free text such as a
description) is wrapped, at word boundaries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich import box
from rich.console import Console, Group, JustifyMethod
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text


@dataclass(frozen=True)
class Column:
    """One column of a fitted table."""

    header: str
    """The column's heading."""
    justify: JustifyMethod = "left"
    """``left`` or ``right``."""
    priority: int = 0
    """0: always shown; higher numbers are dropped first when the table does not fit."""
    flexible: bool = False
    """Free text that may wrap at word boundaries (at most one such column is useful)."""
    min_width: int | None = None
    """With ``flexible``: the narrowest it may get before lower-priority columns are dropped."""


Cell = Text | str


def _cell(value: Cell | None) -> Text:
    return value if isinstance(value, Text) else Text("" if value is None else str(value))


def _build(columns: Sequence[Column], rows: Sequence[Sequence[Cell | None]], keep: list[int],
           title: str | None) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, expand=False,
                  show_edge=False, header_style="bold", title_style="bold", collapse_padding=True)
    for i in keep:
        c = columns[i]
        table.add_column(c.header, justify=c.justify,
                         no_wrap=not c.flexible, overflow="fold" if c.flexible else "ignore",
                         min_width=c.min_width if c.flexible else None)
    for row in rows:
        table.add_row(*(_cell(row[i]) for i in keep))
    return table


def _width(console: Console, table: Table, flexible: bool) -> int:
    # Measured without the console's own width as a cap, or every table would seem to fit.
    m = Measurement.get(console, console.options.update_width(1_000_000), table)
    return m.minimum if flexible else m.maximum


def fitted_table(console: Console, columns: Sequence[Column], rows: Sequence[Sequence[Cell | None]], *,
                 title: str | None = None) -> tuple[Table | Group, list[str]]:
    """A table of ``rows`` that fits ``console``'s width, and the headers of the columns left out.

    Columns are dropped from the highest priority number down (the rightmost first among equals)
    until the table's natural width fits; a flexible column then takes what is left, wrapping at
    spaces. When even the priority-0 columns do not fit (a very long id), each row becomes a block
    instead: its first cell on a line of its own, every other cell named on the lines below."""
    table, dropped = _fit(console, columns, rows, title)
    if table is None:
        return stacked(columns, rows, console.width, title=title), []
    return table, dropped


def _fit(console: Console, columns: Sequence[Column], rows: Sequence[Sequence[Cell | None]],
         title: str | None) -> tuple[Table | None, list[str]]:
    keep = list(range(len(columns)))
    has_flexible = any(c.flexible for c in columns)
    droppable = sorted((i for i, c in enumerate(columns) if c.priority > 0),
                       key=lambda i: (columns[i].priority, i), reverse=True)
    table = _build(columns, rows, keep, title)
    for i in droppable:
        if _width(console, table, has_flexible) <= console.width:
            break
        keep.remove(i)
        table = _build(columns, rows, keep, title)
    if _width(console, table, has_flexible) > console.width:
        return None, []
    return table, [columns[i].header for i in range(len(columns)) if i not in keep]


def fitted_table_with_names(console: Console, columns: Sequence[Column],
                            rows_for: Callable[[int | None], Sequence[Sequence[Cell | None]]], *, longest: int,
                            shortest: int, title: str | None = None) -> tuple[Table | Group, list[str]]:
    """Like :func:`fitted_table` for a table whose first column holds long names that may be
    shortened: ``rows_for(limit)`` gives the rows with names cut to ``limit`` characters (None: whole).
    Names are shortened step by step, never below ``shortest``, until the table fits; when it
    cannot, the rows are stacked with their names whole."""
    limit = longest
    while True:
        table, dropped = _fit(console, columns, rows_for(limit), title)
        if table is not None:
            return table, dropped
        if limit <= shortest:
            return stacked(columns, rows_for(None), console.width, title=title), []
        limit = max(shortest, limit - max(2, (limit - shortest) // 3))


def stacked(columns: Sequence[Column], rows: Sequence[Sequence[Cell | None]], width: int, *,
            title: str | None = None) -> Group:
    """Rows as blocks for a terminal too narrow for a table: the first cell whole on its own line,
    then ``header value`` for each other cell, indented, wrapped between cells."""
    parts: list[Text] = [Text(title, style="bold")] if title else []
    for row in rows:
        parts.append(_cell(row[0]).copy())
        line = Text("  ")
        for i, column in enumerate(columns[1:], start=1):
            piece = Text(f"{column.header} ", style="dim")
            piece.append_text(_cell(row[i]))
            if len(line) > 2 and len(line) + 3 + len(piece) > width:
                parts.append(line)
                line = Text("  ")
            elif len(line) > 2:
                line.append(" · ", style="dim")
            line.append_text(piece)
        parts.append(line)
    return Group(*parts)


def dropped_note(dropped: Sequence[str], how: str = "a wider terminal or --json shows them") -> Text | None:
    """A dim line naming the columns a narrow terminal left out, or None."""
    if not dropped:
        return None
    return Text(f"({', '.join(dropped)} left out at this width; {how})", style="dim")
