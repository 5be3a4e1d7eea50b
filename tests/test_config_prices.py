"""A bad ``prices:`` in costar.yaml is a one-line error naming the file, the line, the field and the fix,
given when the project loads: ``costar run`` starts no run and writes nothing to the store."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from costar.config import load_config
from costar.errors import ConfigError
from costar.pricing import BUILTIN
from tests.support.cli import child_env, costar_cmd, one_line_error


def project(root: Path, prices: str) -> Path:
    (root / "scenarios").mkdir(parents=True)
    (root / "scenarios" / "s.yaml").write_text("id: s\nprompt: hi\n")
    (root / "costar.yaml").write_text("suite: scenarios\nagent: 'cmd:echo hi'\n" + textwrap.dedent(prices))
    return root / "costar.yaml"


BAD = [
    # (prices: as written, the line the error names, what it must say)
    ("prices: nowhere.yaml\n", 3, "prices: cannot read price file"),
    ("prices:\n  acme-llm: {input: 4, output: free}\n", 4,
     "prices.acme-llm.output: 'output' must be a non-negative number of USD per 1M tokens, got 'free'"),
    ("prices:\n  acme-llm: {input: 4, output: 16}\n  other:\n    input: 1\n    cached: 0.5\n    output: 2\n", 7,
     "prices.other.cached: has unknown field 'cached'; the fields are input, output, cache_read"),
    ("prices:\n  acme-llm: {input: 4}\n", 4, "prices.acme-llm: lacks 'output'"),
    ("prices:\n  acme-llm: 4\n", 4, "prices.acme-llm: must be {input: <USD per 1M tokens>"),
    ("prices: [4, 16]\n", 3, "prices: must be a price file path (relative to costar.yaml) or a mapping"),
    ("prices: 12\n", 3, "prices: must be a price file path"),
    # a price no float holds (inline, in the list form) or beyond the documented bound
    ("prices:\n  acme-llm: {input: 1" + "0" * 400 + ", output: 16}\n", 4,
     "prices.acme-llm.input: 'input' must be at most 1,000,000 USD per 1M tokens ($1 a token), got an integer of "
     "401 digits; write the price in USD per million tokens"),
    ("prices:\n  acme-llm: [1" + "0" * 400 + ", 2]\n", 4,
     "prices.acme-llm.input: 'input' must be at most 1,000,000 USD per 1M tokens"),
    ("prices:\n  acme-llm:\n    input: 1.0e+306\n    output: 1\n", 5,
     "prices.acme-llm.input: 'input' must be at most 1,000,000 USD per 1M tokens ($1 a token), got 1e+306"),
    # YAML 1.1 reads 1e306 (no dot) as text; it is still a number, and still too large
    ("prices:\n  acme-llm: {input: 1e306, output: 1}\n", 4,
     "prices.acme-llm.input: 'input' must be at most 1,000,000 USD per 1M tokens ($1 a token), got '1e306'"),
    # an integer longer than Python turns into a number
    ("prices:\n  acme-llm: {input: 1" + "0" * 5000 + ", output: 16}\n", 4,
     "invalid YAML: a number of 5001 digits (more than 4300); write a smaller number, or quote it to make it text"),
    # a model name YAML reads as a number, null or boolean
    ("prices:\n  gpt-4o: [1, 2]\n  1: [1, 2]\n", 5, "prices: the model name 1 reads as a number, not text; "
     "quote it: '1':"),
    ("prices:\n  1.5: {input: 1, output: 2}\n", 4, "prices: the model name 1.5 reads as a number, not text; "
     "quote it: '1.5':"),
    ("prices:\n  ~: [1, 2]\n", 4, "prices: the model name ~ reads as null, not text; quote it: '~':"),
    ("prices:\n  yes: [1, 2]\n", 4, "prices: the model name yes reads as a boolean, not text; quote it: 'yes':"),
]


@pytest.mark.parametrize(("prices", "line", "says"), BAD)
def test_a_bad_prices_setting_names_the_file_line_and_fix(tmp_path: Path, prices: str, line: int, says: str) -> None:
    file = project(tmp_path, prices)
    with pytest.raises(ConfigError) as err:
        load_config(file)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{file}:{line}: "), message
    assert says in message


def test_a_bad_entry_in_the_price_file_names_its_line_and_the_project_setting(tmp_path: Path) -> None:
    file = project(tmp_path, "prices: prices/acme.yaml\n")
    (tmp_path / "prices").mkdir()
    (tmp_path / "prices" / "acme.yaml").write_text("models:\n  acme-llm:\n    input: 4\n    output: -16\n")
    with pytest.raises(ConfigError) as err:
        load_config(file)
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'prices' / 'acme.yaml'}:4: price for 'acme-llm': 'output' must be a "
                              "non-negative number"), message
    assert message.endswith(f"(the price file of prices: at {file}:3)")


PRICE_FILES = [
    # (name, content, the line of the price file the error names, what it must say)
    ("acme.yaml", "models:\n  acme-llm: {input: 4, output: 16}\n  other: {input: 1, output\n    bad: [\n", 4,
     "invalid YAML: expected ',' or '}', but got ':'"),
    ("acme.yaml", "acme-llm: [1, 2]\nacme-llm: [3, 4]\n", 2, "invalid YAML: duplicate key 'acme-llm'"),
    ("acme.yaml", "acme-llm: [1, 2]\n---\nother: [3, 4]\n", 3, "a second YAML document starts here ('---')"),
    ("acme.yaml", "models:\n  acme-llm: [1, 2]\n  2: [1, 2]\n", 3,
     "price for '2': the model name 2 reads as a number, not text; quote it: '2':"),
    ("acme.yaml", "models:\n  acme-llm:\n    input: 1" + "0" * 400 + "\n    output: 2\n", 3,
     "price for 'acme-llm': 'input' must be at most 1,000,000 USD per 1M tokens"),
    ("acme.json", '{"acme-llm": {"input": 1,\n "output": 1' + "0" * 400 + "}}", 2,
     "price for 'acme-llm': 'output' must be at most 1,000,000 USD per 1M tokens"),
    ("acme.json", '{"acme-llm": {"input": 1,\n "output": 1' + "0" * 5000 + "}}", 2,
     "invalid JSON: a number of 5001 digits (more than 4300); write a smaller number"),
    ("acme.json", '{"acme-llm": {"input": 1,\n "output" 2}}', 2,
     "invalid JSON: Expecting ':' delimiter (column 11)"),
]


@pytest.mark.parametrize(("name", "content", "line", "says"), PRICE_FILES)
def test_a_bad_price_file_names_its_own_line_and_the_project_setting(tmp_path: Path, name: str, content: str,
                                                                    line: int, says: str) -> None:
    file = project(tmp_path, f"prices: prices/{name}\n")
    (tmp_path / "prices").mkdir()
    (tmp_path / "prices" / name).write_text(content)
    with pytest.raises(ConfigError) as err:
        load_config(file)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / 'prices' / name}:{line}: {says}"), message
    assert message.endswith(f"(the price file of prices: at {file}:3)")
    assert len(message) < 400


def test_a_json_price_file_and_an_inline_mapping_extend_the_built_in_table(tmp_path: Path) -> None:
    (tmp_path / "prices.json").write_text('{"acme-llm": {"input": 4, "output": 16, "cache_read": 0.4}}')
    table = load_config(project(tmp_path / "a", "prices: ../prices.json\n")).price_table()
    assert table.cost("openai", "acme-llm", 10**6, 10**6) == (20.0, True)
    assert table.source_of("acme-llm") == f"price file {tmp_path / 'a' / '..' / 'prices.json'}"
    assert table.source_of("gpt-4o") == BUILTIN
    inline = load_config(project(tmp_path / "b", "prices:\n  gpt-4o: [1, 2]\n")).price_table()
    assert inline.cost("openai", "gpt-4o-2024-08-06", 10**6, 10**6) == (3.0, True)
    assert inline.source_of("gpt-4o") == "costar.yaml prices"
    assert not inline.is_builtin
    assert load_config(project(tmp_path / "c", "")).price_table().is_builtin


def test_costar_run_with_bad_prices_starts_no_run_and_writes_nothing(tmp_path: Path) -> None:
    file = project(tmp_path, "prices:\n  acme-llm: {input: cheap, output: 16}\n")
    done = subprocess.run([*costar_cmd(), "run"], cwd=tmp_path, env=child_env(), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: {file}:4: prices.acme-llm.input: 'input' must be a non-negative number "
                                   "of USD per 1M tokens, got 'cheap'")
    assert not (tmp_path / ".costar").exists()


@pytest.mark.parametrize("prices", [
    "prices:\n  acme-llm: {input: 1" + "0" * 400 + ", output: 16}\n",
    "prices:\n  acme-llm: [1" + "0" * 400 + ", 16]\n",
])
def test_costar_model_prices_with_a_price_no_float_holds_is_a_one_line_error(tmp_path: Path, prices: str) -> None:
    file = project(tmp_path, prices)
    listed = subprocess.run([*costar_cmd(), "model", "prices", "--json"], cwd=tmp_path, env=child_env(),
                            capture_output=True, text=True, timeout=120)
    assert one_line_error(listed) == (f"error: {file}:4: prices.acme-llm.input: 'input' must be at most 1,000,000 "
                                      "USD per 1M tokens ($1 a token), got an integer of 401 digits; write the price "
                                      "in USD per million tokens")


def test_costar_model_prices_lists_the_effective_table_with_sources(tmp_path: Path) -> None:
    project(tmp_path, "prices:\n  acme-llm: {input: 4, output: 16}\n  gpt-4o: [1, 2]\n")
    listed = subprocess.run([*costar_cmd(), "model", "prices", "--json"], cwd=tmp_path, env=child_env(),
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    rows = {r["model"]: r for r in json.loads(listed.stdout)}
    assert rows["acme-llm"] == {"model": "acme-llm", "input": 4.0, "output": 16.0, "source": "costar.yaml prices"}
    assert rows["gpt-4o"] == {"model": "gpt-4o", "input": 1.0, "output": 2.0, "source": "costar.yaml prices"}
    assert rows["claude-sonnet-4-5"] == {"model": "claude-sonnet-4-5", "input": 3.0, "output": 15.0,
                                         "cache_read": 0.3, "cache_write": 3.75, "cache_write_1h": 6.0,
                                         "source": "built-in"}
    shown = subprocess.run([*costar_cmd(), "model", "prices"], cwd=tmp_path, env=child_env(), capture_output=True,
                           text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    (acme,) = [line for line in shown.stdout.splitlines() if "acme-llm" in line]
    assert [cell.strip() for cell in acme.split("│")[1:-1]] == ["acme-llm", "4", "16", "—", "—", "—",
                                                              "costar.yaml prices"]
