"""YAML loading that remembers the line of every key, so errors can point at the file and line."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

Loc = tuple[str | int, ...]


def field_path(loc: Sequence[Any]) -> str:
    """A location (keys and list indexes) as people write a field: ``alerts[0].judge``."""
    return ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in loc).replace(".[", "[")


class YamlDocument:
    def __init__(self, data: Any, lines: dict[Loc, int], start_line: int) -> None:
        self.data = data
        self.lines = lines
        self.start_line = start_line

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
            data = _construct(loader, node, (), lines)
            docs.append(YamlDocument(data, lines, node.start_mark.line + 1))
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


def _construct(loader: yaml.SafeLoader, node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> Any:
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
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
            out[key] = _construct(loader, value_node, sub, lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            sub = (*loc, i)
            lines[sub] = item.start_mark.line + 1
            items.append(_construct(loader, item, sub, lines))
        return items
    return loader.construct_object(node, deep=True)


def read_config_file(path: Path, what: str) -> Any:
    """A small YAML (or ``.json``) settings file as data; errors name ``what`` and the file."""
    from costar.errors import ConfigError

    try:
        text = decode_utf8(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}; fix the path") from exc
    except YamlSyntaxError as exc:
        raise ConfigError(f"{what} {path}:{exc.line}: {exc}") from None
    is_json = path.suffix == ".json"
    try:
        return json.loads(text) if is_json else yaml.safe_load(text)
    except yaml.reader.ReaderError as exc:
        err = _reader_error(exc, text)
        raise ConfigError(f"{what} {path}:{err.line}: {err}") from None
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{what} {path} is not valid {'JSON' if is_json else 'YAML'}: "
                          f"{str(exc).splitlines()[0]}") from exc
