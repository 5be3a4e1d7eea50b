"""YAML loading that remembers the line of every key, so errors can point at the file and line."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

Loc = tuple[str | int, ...]


def field_path(loc: Sequence[Any]) -> str:
    """A location (keys and list indexes) as people write a field: ``alerts[0].judge``."""
    return ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in loc).replace(".[", "[")


class YamlDocument:
    def __init__(self, data: Any, lines: dict[Loc, int], start_line: int,
                 key_texts: dict[Loc, str] | None = None) -> None:
        self.data = data
        self.lines = lines
        self.start_line = start_line
        self.key_texts = key_texts or {}
        """The source text of mapping keys that YAML read as something other than a string
        (``1``, ``~``, ``yes``), so an error can show the key as it was written."""

    def line_of(self, loc: Loc) -> int:
        """The line of the deepest known prefix of ``loc`` (1-based)."""
        for n in range(len(loc), 0, -1):
            line = self.lines.get(tuple(loc[:n]))
            if line is not None:
                return line
        return self.start_line


class YamlSyntaxError(Exception):
    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


def _reader_error(exc: yaml.reader.ReaderError, text: str) -> YamlSyntaxError:
    """PyYAML refuses control characters (and other unprintable ones) before parsing anything."""
    line = text.count("\n", 0, exc.position) + 1 if isinstance(exc.position, int) else None
    char = exc.character if isinstance(exc.character, str) else chr(exc.character)
    return YamlSyntaxError(f"invalid YAML: the control character U+{ord(char):04X} is not allowed; remove it, "
                           f"or write it as \\x{ord(char):02x} inside a double-quoted string", line)


def load_yaml_documents(text: str) -> list[YamlDocument]:
    try:
        loader = yaml.SafeLoader(text)  # checks every character first
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text) from None
    docs: list[YamlDocument] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            lines: dict[Loc, int] = {}
            key_texts: dict[Loc, str] = {}
            data = _construct(loader, node, (), lines, key_texts)
            docs.append(YamlDocument(data, lines, node.start_mark.line + 1, key_texts))
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or str(exc)
        raise YamlSyntaxError(f"invalid YAML: {problem}", line) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(f"invalid YAML: {exc}", None) from None
    finally:
        loader.dispose()
    return docs


def decode_utf8(raw: bytes) -> str:
    """Bytes of a text file as str; a YamlSyntaxError naming the line of the first bad byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise YamlSyntaxError(f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8", line) from None


def load_yaml_file(path: Path) -> list[YamlDocument]:
    """Every document of a YAML file; YamlSyntaxError (with the line) for bad bytes or syntax."""
    return load_yaml_documents(decode_utf8(path.read_bytes()))


def _value(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    """The node's value; a ConstructorError with the node's line for a scalar Python refuses to make
    (an integer longer than Python converts, a date like 2024-13-45) instead of a bare ValueError."""
    try:
        return loader.construct_object(node, deep=True)
    except ValueError as exc:
        text = node.value if isinstance(node, yaml.ScalarNode) else ""
        if node.tag == "tag:yaml.org,2002:int" and isinstance(text, str):
            problem = (f"a number of {len(re.sub(r'[^0-9]', '', text))} digits (more than "
                       f"{sys.get_int_max_str_digits()}); write a smaller number, or quote it to make it text")
        else:
            shown = text if len(text) <= 40 else text[:37] + "..."
            problem = f"cannot read {shown!r}: {exc}; fix the value, or quote it to make it text"
        raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None


def _construct(loader: yaml.SafeLoader, node: yaml.Node, loc: Loc, lines: dict[Loc, int],
               key_texts: dict[Loc, str]) -> Any:
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _value(loader, key_node)
            if isinstance(key, list | dict):
                raise yaml.constructor.ConstructorError(
                    None, None, "mapping keys must be plain values", key_node.start_mark
                )
            if key in out:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}'", key_node.start_mark
                )
            sub = (*loc, key)
            lines[sub] = key_node.start_mark.line + 1
            if not isinstance(key, str) and isinstance(key_node, yaml.ScalarNode):
                key_texts[sub] = key_node.value
            out[key] = _construct(loader, value_node, sub, lines, key_texts)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            sub = (*loc, i)
            lines[sub] = item.start_mark.line + 1
            items.append(_construct(loader, item, sub, lines, key_texts))
        return items
    return _value(loader, node)


def read_config_file(path: Path, what: str) -> Any:
    """A small YAML (or ``.json``) settings file as data. A file that cannot be read is a ConfigError
    naming ``what`` and the file; one that does not parse a ConfigFileError with the line and problem."""
    from costar.errors import ConfigError, ConfigFileError

    try:
        text = decode_utf8(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}; fix the path") from exc
    except YamlSyntaxError as exc:
        raise ConfigFileError(what, str(path), exc.line, str(exc)) from None
    if path.suffix == ".json":
        return _read_json(text, path, what)
    try:
        docs = load_yaml_documents(text)
    except YamlSyntaxError as exc:
        raise ConfigFileError(what, str(path), exc.line, str(exc)) from None
    if len(docs) > 1:
        raise ConfigFileError(what, str(path), docs[1].start_line,
                              "a second YAML document starts here ('---'); keep one document in the file")
    return docs[0].data if docs else None


class _LongInteger(ValueError):
    def __init__(self, digits: str) -> None:
        super().__init__(digits)
        self.digits = digits


def _json_int(digits: str) -> int:
    # json would raise Python's own message (about sys.set_int_max_str_digits) with no line.
    if len(digits.lstrip("-")) > sys.get_int_max_str_digits():
        raise _LongInteger(digits)
    return int(digits)


def _read_json(text: str, path: Path, what: str) -> Any:
    from costar.errors import ConfigFileError

    try:
        return json.loads(text, parse_int=_json_int)
    except json.JSONDecodeError as exc:
        raise ConfigFileError(what, str(path), exc.lineno, f"invalid JSON: {exc.msg} (column {exc.colno})") from None
    except _LongInteger as exc:
        at = text.find(exc.digits)
        line = text.count("\n", 0, at) + 1 if at >= 0 else None
        raise ConfigFileError(what, str(path), line, f"invalid JSON: a number of {len(exc.digits.lstrip('-'))} "
                              f"digits (more than {sys.get_int_max_str_digits()}); write a smaller number") from None
