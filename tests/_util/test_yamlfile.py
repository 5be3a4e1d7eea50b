"""costar._util.yamlfile: a value Python refuses to build is a YamlSyntaxError with its line (never a
bare ValueError), keys YAML reads as non-strings keep their source text, and read_config_file names
the line and problem of a settings file that does not parse."""

from __future__ import annotations

from pathlib import Path

import pytest

from costar._util.yamlfile import YamlSyntaxError, load_yaml_documents, read_config_file
from costar.errors import ConfigError, ConfigFileError


@pytest.mark.parametrize(("text", "line", "says"), [
    ("a: 1\nb: 1" + "0" * 5000 + "\n", 2,
     "invalid YAML: a number of 5001 digits (more than 4300); write a smaller number, or quote it to make it text"),
    ("a: 1\n? 1" + "0" * 5000 + "\n: 2\n", 2, "invalid YAML: a number of 5001 digits"),  # as a key
    ("a:\n  - 1\n  - 2024-13-45\n", 3,
     "invalid YAML: cannot read '2024-13-45': month must be in 1..12; fix the value, or quote it to make it text"),
])
def test_a_value_python_refuses_to_build_is_a_syntax_error_with_its_line(text: str, line: int, says: str) -> None:
    with pytest.raises(YamlSyntaxError) as err:
        load_yaml_documents(text)
    assert err.value.line == line
    assert str(err.value).startswith(says), str(err.value)


def test_keys_that_are_not_strings_keep_their_source_text() -> None:
    (doc,) = load_yaml_documents("prices:\n  yes: 1\n  ~: 2\n  0x10: 3\n  name: 4\n")
    assert doc.key_texts == {("prices", True): "yes", ("prices", None): "~", ("prices", 16): "0x10"}
    assert doc.line_of(("prices", None)) == 3


@pytest.mark.parametrize(("name", "text", "line", "problem"), [
    ("r.yaml", "rules:\n  - {text: hi\n", 3, "invalid YAML: expected ',' or '}', but got '<stream end>'"),
    ("r.yaml", "rules: []\n---\nrules: []\n", 3,
     "a second YAML document starts here ('---'); keep one document in the file"),
    ("r.json", '{"rules":\n [1,, 2]}', 2, "invalid JSON: Expecting value (column 5)"),
    ("r.json", '{"rules":\n [1' + "0" * 5000 + "]}", 2,
     "invalid JSON: a number of 5001 digits (more than 4300); write a smaller number"),
])
def test_a_settings_file_that_does_not_parse_names_its_line_and_problem(tmp_path: Path, name: str, text: str,
                                                                        line: int, problem: str) -> None:
    file = tmp_path / name
    file.write_text(text)
    with pytest.raises(ConfigFileError) as err:
        read_config_file(file, "rules file")
    assert (err.value.path, err.value.line, err.value.problem) == (str(file), line, problem)
    assert str(err.value) == f"rules file {file}:{line}: {problem}"


def test_a_settings_file_reads_as_its_data(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("rules:\n  - {text: hi}\n")
    (tmp_path / "b.json").write_text('{"rules": [{"text": "hi"}], "n": 12}')
    (tmp_path / "c.yaml").write_text("")
    assert read_config_file(tmp_path / "a.yaml", "rules file") == {"rules": [{"text": "hi"}]}
    assert read_config_file(tmp_path / "b.json", "rules file") == {"rules": [{"text": "hi"}], "n": 12}
    assert read_config_file(tmp_path / "c.yaml", "rules file") is None
    with pytest.raises(ConfigError, match=r"cannot read rules file .*nowhere\.yaml: No such file or directory; "
                                          "fix the path"):
        read_config_file(tmp_path / "nowhere.yaml", "rules file")
