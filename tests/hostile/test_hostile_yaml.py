"""Broken YAML (control characters, non-UTF-8 bytes, wrong types) is one line naming file:line, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from costar.errors import ConfigError, ScenarioError
from tests.support.cli import costar, one_line_error

SCENARIO = "id: a\nprompt: hello\ndescription: fine\n"


@pytest.mark.parametrize(("raw", "line", "what"), [
    (b"id: a\nprompt: hello\ndescription: bad \x01 char\n", 3, "U+0001"),
    (b"id: a\nprompt: hello\n\ndescription: \x1b[2J\n", 4, "U+001B"),
    (b"id: a\nprompt: caf\xe9\n", 2, "not UTF-8"),
])
def test_scenario_with_control_character_or_bad_bytes(tmp_path: Path, raw: bytes, line: int, what: str) -> None:
    (tmp_path / "s.yaml").write_bytes(raw)
    err = one_line_error(costar("scenarios", "s.yaml", cwd=tmp_path))
    assert f"s.yaml:{line}:" in err, err
    assert what in err, err
    assert "\x1b" not in err


@pytest.mark.parametrize(("raw", "line", "what"), [
    (b"suite: scenarios\nstore: .costar\x07\n", 2, "U+0007"),
    (b"suite: scenarios\n# caf\xe9\n", 2, "not UTF-8"),
    (b"suite: scenarios\nconcurrency: lots\n", 2, "concurrency"),
    (b"- just\n- a list\n", 1, "mapping"),
    (b"suite: [unclosed\n", 2, "invalid YAML"),
])
def test_project_file_errors_name_the_file_and_line(tmp_path: Path, raw: bytes, line: int, what: str) -> None:
    (tmp_path / "costar.yaml").write_bytes(raw)
    (tmp_path / "s.yaml").write_text(SCENARIO, encoding="utf-8")
    err = one_line_error(costar("scenarios", "s.yaml", cwd=tmp_path))
    assert f"costar.yaml:{line}:" in err, err
    assert what in err, err


def test_library_errors_are_costar_errors(tmp_path: Path) -> None:
    from costar.config import load_config
    from costar.scenario import load_scenario_file

    (tmp_path / "s.yaml").write_bytes(b"id: a\nprompt: \x00\n")
    with pytest.raises(ScenarioError, match=r"s\.yaml:2: .*U\+0000"):
        load_scenario_file(tmp_path / "s.yaml")
    (tmp_path / "costar.yaml").write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match=r"costar\.yaml:1: .*not UTF-8"):
        load_config(tmp_path / "costar.yaml")


def test_judge_file_with_control_character(tmp_path: Path) -> None:
    (tmp_path / "judges").mkdir()
    (tmp_path / "judges" / "j.yaml").write_bytes(b"name: j\ntype: llm\ninstructions: \"ok\"\n\x1b[2J\n")
    err = one_line_error(costar("judges", "list", cwd=tmp_path))
    assert "j.yaml:4:" in err, err
    assert "U+001B" in err, err
