"""Tool definitions (OpenAI function format), rebuilt from the workspace before every model call.

Arguments that must name something that exists (an input file, a column, a skill) are enums of
what exists right now. Providers that decode under a grammar (the embedded model) then cannot
invent a file or a column, and hosted models get the same list as documentation. Output names
are patterns, so a file the model creates still has a sensible name and extension.
"""

from __future__ import annotations

from typing import Any

# Enums longer than this cost more context than they save; the argument becomes free text.
MAX_ENUM = 40

# "[.]", not a backslash escape: llama.cpp's pattern-to-grammar converter rejects "\.".
OUTPUT_CSV = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,40}[.]csv$", "maxLength": 48}
OUTPUT_JSON = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,40}[.]json$", "maxLength": 48}


def _choice(values: list[str], max_length: int = 200) -> dict[str, Any]:
    if 0 < len(values) <= MAX_ENUM:
        return {"type": "string", "enum": values}
    return {"type": "string", "maxLength": max_length}


def _fn(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    # The description is repeated inside the parameters schema (a valid JSON Schema annotation):
    # llama-cpp's function-calling template shows the model only the parameters, not the description.
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "description": description, "properties": properties, "required": required}}}


def tool_definitions(*, files: list[str], csv_files: list[str], columns: list[str],
                     skills: list[str]) -> list[dict[str, Any]]:
    path, csv_path, column = _choice(files), _choice(csv_files), _choice(columns, 100)
    # The order is part of the prompt: small models drift towards the first tools listed. The
    # one-call CSV tools come first, so a small model reaches for them rather than for raw reads;
    # the tools send it to load their skill before they run (Toolbox.call).
    csv_tools = [
        _fn("profile_csv", "Rows, columns, types, missing values and number statistics of a CSV file; "
            "optionally saved as JSON.", {"path": csv_path, "output": OUTPUT_JSON}, ["path"]),
        _fn("drop_duplicates", "Remove exact duplicate rows (keeps the first) and save the result.",
            {"path": csv_path, "output": OUTPUT_CSV}, ["path", "output"]),
    ]
    column_tools = [
        _fn("fill_missing", "Fill missing values of a numeric column with its mean or median and save the result.",
            {"path": csv_path, "column": column, "strategy": {"type": "string", "enum": ["mean", "median"]},
             "output": OUTPUT_CSV}, ["path", "column", "strategy", "output"]),
        _fn("convert_numeric", "Turn text such as \"$1,200.50\" into numbers; unknown values become empty.",
            {"path": csv_path, "column": column, "output": OUTPUT_CSV}, ["path", "column", "output"]),
        _fn("count_by", "Count rows per value of a column (streams big files) and save the counts.",
            {"path": csv_path, "column": column, "output": OUTPUT_CSV}, ["path", "column", "output"]),
    ]
    general = [
        _fn("load_skill", "Load the instructions for a kind of task. Do this first.",
            {"name": _choice(skills, 64)}, ["name"]),
        _fn("list_files", "List the files in the workspace with their sizes.", {}, []),
        _fn("read_file", "Read the start of a text file (max_bytes, default 16000).",
            {"path": path, "max_bytes": {"type": "integer"}}, ["path"]),
        _fn("write_file", "Write a text file.",
            {"path": {"type": "string", "maxLength": 120}, "content": {"type": "string"}}, ["path", "content"]),
        _fn("run_python", "Run a Python 3 script (standard library only) in the workspace; returns its output.",
            {"code": {"type": "string"}}, ["code"]),
    ]
    # A tool is offered only where it can apply: with no CSV file, or no column to name, a small
    # model would otherwise fill the argument with whatever text it last saw.
    return [*(csv_tools if csv_files else []), *(column_tools if columns else []), *general]
