from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from costar.errors import ScenarioError
from costar.judges.checks import scenario_checks
from costar.scenario import Scenario, load_scenario_file, load_suite, scenario_json_schema, select
from tests.support.paths import REPO


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_single_list_defaults_and_multidoc(tmp_path: Path) -> None:
    write(tmp_path / "data.csv", "a,b\n1,2\n")
    write(tmp_path / "one.yaml", """
id: one
prompt: hello
setup:
  files: [data.csv]
  env: {MODE: test, N: 3}
expectations:
  checks:
    - output_contains: hi
  criteria: "be polite"
""")
    write(tmp_path / "many.yaml", """
defaults:
  tags: [smoke]
  trials: 3
  expectations:
    criteria: [shared]
scenarios:
  - id: m1
    prompt: [turn one, turn two]
  - id: m2
    prompt: p
    trials: 1
    split: holdout
""")
    write(tmp_path / "sub" / "docs.yml", "id: d1\nprompt: a\n---\nid: d2\nprompt: b\n")
    scs = load_suite(tmp_path)
    by_id = {s.id: s for s in scs}
    assert sorted(by_id) == ["d1", "d2", "m1", "m2", "one"]
    one = by_id["one"]
    assert one.setup.env == {"MODE": "test", "N": "3"}
    assert one.expectations.criteria == ["be polite"]
    assert one.source == (tmp_path / "one.yaml").resolve()
    assert by_id["m1"].turns == ["turn one", "turn two"]
    assert by_id["m1"].trials == 3
    assert by_id["m1"].tags == ["smoke"]
    assert by_id["m2"].trials == 1
    assert by_id["m2"].split == "holdout"


def test_selection_by_glob_tag_split(tmp_path: Path) -> None:
    scs = [Scenario(id="csv/clean", prompt="x", tags=["csv"]),
           Scenario(id="csv/huge", prompt="x", tags=["csv", "slow"], split="holdout"),
           Scenario(id="chat/hi", prompt="x")]
    assert [s.id for s in select(scs, ids=["csv/*"])] == ["csv/clean", "csv/huge"]
    assert [s.id for s in select(scs, tags=["slow"])] == ["csv/huge"]
    assert [s.id for s in select(scs, exclude_tags=["slow"])] == ["csv/clean", "chat/hi"]
    assert [s.id for s in select(scs, split="train")] == ["csv/clean", "chat/hi"]


def test_python_api_builds_the_same_scenario() -> None:
    sc = Scenario(id="py", prompt="go", expectations={"checks": [{"not": {"output_contains": "error"}}]})
    judges = scenario_checks(sc)
    assert [j.name for j in judges] == ["agent_completed", 'not output_contains("error")']
    assert Scenario.model_validate_json(sc.model_dump_json()) == sc


@pytest.mark.parametrize(("text", "line", "fragment"), [
    ("id: a\nprompt: hi\nexpectations:\n  checks:\n    - output_containz: x\n", 5, "unknown check 'output_containz'"),
    ("id: a\nprompt: hi\ntrails: 3\n", 3, "unknown field"),
    ("id: a\nprompt: hi\ntrials: many\n", 3, "valid integer"),
    ("id: a\nprompt: [unclosed\n", 3, "invalid YAML"),
    ("id: a\n  prompt: bad indent\n", 2, "invalid YAML"),
    ("id: a\nexpectations: {}\n", 1, "required field is missing"),
    ("id: a\nprompt: x\nexpectations:\n  checks:\n    - csv: {file: a.csv, min_rows: lots}\n", 5, "min_rows"),
    ("id: a\nprompt: x\nexpectations:\n  checks:\n    - output_matches: '(['\n", 5, "invalid regular expression"),
    ("id: a\nprompt: x\nexpectations:\n  checks:\n    - json: {schema: {type: 12}}\n", 5, "invalid JSON Schema"),
    ("id: a\nprompt: x\nid: b\n", 3, "duplicate key"),
    ("- 12\n", 1, "must be a mapping"),
])
def test_bad_scenario_files_name_file_line_and_fix(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    f = write(tmp_path / "bad.yaml", text)
    with pytest.raises(ScenarioError) as err:
        load_scenario_file(f)
    msg = str(err.value)
    assert msg.startswith(f"{f}:{line}:"), msg
    assert fragment in msg
    assert "\n" not in msg


def test_missing_setup_file_is_reported_at_its_line(tmp_path: Path) -> None:
    f = write(tmp_path / "s.yaml", "id: a\nprompt: x\nsetup:\n  files:\n    - present.txt\n    - absent.csv\n")
    write(tmp_path / "present.txt", "ok")
    with pytest.raises(ScenarioError) as err:
        load_scenario_file(f)
    assert f"{f}:6:" in str(err.value)
    assert "absent.csv" in str(err.value)


def test_duplicate_ids_across_files(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "id: same\nprompt: x\n")
    write(tmp_path / "b.yaml", "id: same\nprompt: y\n")
    with pytest.raises(ScenarioError, match="duplicate scenario id 'same'"):
        load_suite(tmp_path)


def test_schema_validates_good_files_and_rejects_bad_ones(tmp_path: Path) -> None:
    schema = scenario_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    v = jsonschema.Draft202012Validator(schema)
    good = {"scenarios": [{"id": "a", "prompt": "x", "setup": {"files": ["d.csv"]},
                           "expectations": {"checks": [{"csv": {"file": "o.csv", "min_rows": 1}, "gate": False},
                                                       {"not_output_contains": "error"},
                                                       {"tool_called": "read_file"}]},
                           "judges": ["outcome", {"name": "best_practices", "gate": False}]}]}
    assert not list(v.iter_errors(good))
    bad = {"id": "a", "prompt": "x", "expectations": {"checks": [{"csv": {"file": "o", "rows": 3}}]}}
    assert list(v.iter_errors(bad))
    assert list(v.iter_errors({"id": "a", "prompt": "x", "unknown": 1}))
    json.dumps(schema)  # serialisable as the CLI prints it


def test_example_suite_validates_against_schema() -> None:
    import yaml

    root = REPO / "examples"
    files = sorted(root.rglob("scenarios/*.yaml"))
    assert files, "the bundled example has scenario files"
    v = jsonschema.Draft202012Validator(scenario_json_schema())
    for f in files:
        for doc in yaml.safe_load_all(f.read_text()):
            assert not list(v.iter_errors(doc)), f
