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
from tests.support.cli import child_env, costar_cmd


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
