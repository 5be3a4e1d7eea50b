"""The plugin mechanism (costar.plugins) and docs/PLUGINS.md.

The worked examples of docs/PLUGINS.md are built from the page itself into a real distribution (a
package and its ``.dist-info`` folder on ``PYTHONPATH``) and run through the ``costar`` command in
child processes, with the judge's model on the scripted model server over loopback.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest

from costar import plugins
from costar.errors import ConfigError, ScenarioError
from costar.judges.checks import Check, CheckResult, parse_check, register_check
from costar.plugins import PluginError, PluginGroup
from costar.scenario import load_scenario_file
from costar.scenario.checks import CHECKS
from costar.store.sqlite import SQLiteStore
from costar.testing import Rule, ScriptedModelServer
from tests.support.cli import child_env, costar_cmd
from tests.support.paths import REPO

DOC = REPO / "docs" / "PLUGINS.md"
_BLOCK = re.compile(r"<!-- (file|project): (?P<path>\S+) -->\n```\w*\n(?P<body>.*?)```", re.DOTALL)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def make_distribution(site: Path, name: str, version: str, entry_points: dict[str, dict[str, str]],
                      files: dict[str, str] | None = None) -> None:
    """A real installed distribution: its modules and a ``.dist-info`` folder in ``site``."""
    for rel, text in (files or {}).items():
        _write(site / rel, textwrap.dedent(text))
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    _write(info / "METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    _write(info / "entry_points.txt", "".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n" for group, eps in entry_points.items()))


def example_plugins(site: Path, project: Path) -> dict[str, dict[str, str]]:
    """Build docs/PLUGINS.md's distribution in ``site`` and its project in ``project``."""
    blocks = {m["path"]: (m.group(1), m["body"]) for m in _BLOCK.finditer(DOC.read_text(encoding="utf-8"))}
    meta = tomllib.loads(blocks.pop("pyproject.toml")[1])["project"]
    for path, (kind, body) in blocks.items():
        _write((site if kind == "file" else project) / path, body)
    make_distribution(site, meta["name"], meta["version"], meta["entry-points"])
    return meta["entry-points"]


# --------------------------------------------------------------------------- the documented examples


def test_every_group_has_a_worked_example_in_the_docs(tmp_path: Path) -> None:
    declared = example_plugins(tmp_path / "site", tmp_path / "project")
    assert set(declared) == set(plugins.GROUPS)
    modules = {v.split(":")[0] for eps in declared.values() for v in eps.values()}
    for module in modules:
        assert (tmp_path / "site" / (module.replace(".", "/") + ".py")).is_file(), module


@pytest.mark.slow
def test_the_documented_plugins_run_through_costar(tmp_path: Path) -> None:
    site, project = tmp_path / "site", tmp_path / "project"
    example_plugins(site, project)
    judge_says_yes = Rule(name="judge", json={"value": True, "rationale": "It gives 42 USD."})
    server = ScriptedModelServer([Rule(name="chat", last_user="^hello$", text="hello from the gateway")],
                                 default=judge_says_yes).start()
    try:
        env = child_env(PYTHONPATH=str(site), GATEWAY_URL=server.base_url)

        def costar(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
            res = subprocess.run([*costar_cmd(), *args], cwd=project, env=env, capture_output=True, text=True,
                                 timeout=300)
            assert res.returncode == 0 or not check, res.stdout + res.stderr
            return res

        listed = json.loads(costar("plugins", "--json").stdout)
        mine = {(g, i["name"]): i for g, infos in listed.items() for i in infos if i["origin"] == "plugin"}
        assert set(mine) == {("costar.checks", "word_count"), ("costar.judge_types", "keywords"),
                             ("costar.judges", "no_shouting"), ("costar.agents", "canned"),
                             ("costar.model_providers", "gateway"), ("costar.align_optimizers", "append_guideline"),
                             ("costar.executors", "serial")}
        assert mine[("costar.checks", "word_count")]["distribution"] == "costar-example-plugins 0.1.0"

        # The model provider: a model URI reaches the gateway the environment names.
        assert "hello from the gateway" in costar("model", "chat", "gateway:/judge-model", "hello").stdout

        # The agent type, the check, the judge type, the judge and the provider, in one run.
        run = costar("run", check=False)
        assert run.returncode == 1, run.stdout + run.stderr  # "shouting" fails, on purpose
        store = SQLiteStore(project / ".costar")
        traces = {t.scenario_id: t for t in store.iter_traces(spans=False)}
        assert traces["revenue"].output == "The total revenue is 42 USD."
        scenario_of = {t.trace_id: sid for sid, t in traces.items()}
        verdicts = {(scenario_of[v.trace_id], v.name): v for v in store.verdicts()}
        assert verdicts[("revenue", "word_count(20)")].passed is True
        assert verdicts[("revenue", "word_count(20)")].value == 6
        assert verdicts[("shouting", "word_count(20)")].passed is False
        assert verdicts[("revenue", "mentions-total")].passed is True
        assert verdicts[("revenue", "no_shouting")].passed is True
        assert verdicts[("shouting", "no_shouting")].passed is False
        assert "TOTAL" in verdicts[("shouting", "no_shouting")].rationale
        assert verdicts[("revenue", "complete")].passed is True
        assert {r.model for r in server.requests} == {"judge-model"}

        # The executor: it ran the trials (and marked them), the harness stored them.
        serial = costar("run", "--executor", "serial", "--trials", "2", "--id", "revenue", "--no-progress")
        run_id = serial.stdout.rsplit("run id: ", 1)[1].split()[0]
        marks = [t.metadata.get("executor") for t in store.iter_traces(run_id, spans=False)]
        assert marks == [{"name": "serial"}, {"name": "serial"}]

        # The optimizer: align the gateway-judged judge on a golden set of labeled traces.
        # Traces of one input stay in one split (revenue and shouting ask the same), so a scenario with
        # another input gives the set its second group: one is train, the other held out.
        (project / "scenarios" / "north.yaml").write_text(
            "scenarios:\n  - id: revenue-north\n    prompt: What is the revenue of the north region?\n"
            "    judges: [complete]\n", encoding="utf-8")
        costar("run", "--trials", "5", check=False)  # shouting still fails
        trials = {t.trace_id: t.trial for t in store.iter_traces(spans=False)
                  if t.scenario_id in ("revenue", "revenue-north")}
        labels = project / "labels.csv"
        labels.write_text("trace_id,name,value,labeler\n" + "".join(  # both labels in each scenario
            f"{t},complete,{'true' if k % 2 else 'false'},ana\n" for t, k in trials.items()), encoding="utf-8")
        costar("labels", "import", str(labels))
        costar("golden", "create", "gold", "complete", "--seed", "1", "--fractions", ".5,0,.5")
        aligned = costar("judges", "align", "complete", "--optimizer", "append_guideline", "--golden", "gold",
                         "--json")
        report = json.loads(aligned.stdout)
        assert report["report"]["optimizer"] == "append_guideline"
        assert report["report"]["details"] == {"guideline": "Fail an answer that gives no currency."}
        assert report["recorded"]["version"] is not None
        versions = costar("judges", "versions", "complete").stdout
        assert "append_guideline" in versions
        store.close()
    finally:
        server.stop()


# --------------------------------------------------------------------------- precedence and errors


class _Shout(Check):
    kind = "shout_check"  # type: ignore[assignment]

    def run(self, ctx: Any) -> CheckResult:
        return CheckResult(passed=True, rationale="registered in code")


def test_a_plugin_replaces_a_built_in_and_code_replaces_both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_distribution(tmp_path, "loud-checks", "1.2", {"costar.checks": {"output_contains": "loud_checks:Contains"}},
                      {"loud_checks.py": """
                          from typing import ClassVar
                          from costar.judges.checks import Check, CheckResult

                          class Contains(Check):
                              kind: ClassVar[str] = "output_contains"
                              primary: ClassVar[str | None] = "value"
                              value: str

                              def run(self, ctx):
                                  return CheckResult(passed=True, rationale="the plugin's own")
                          """})
    group: PluginGroup[Any] = PluginGroup(plugins.CHECKS, "check")
    assert group.info("output_contains").origin == "built-in"  # type: ignore[union-attr]
    monkeypatch.syspath_prepend(str(tmp_path))  # a new sys.path: entry points are read again
    info = group.info("output_contains")
    assert info is not None
    assert (info.origin, info.distribution, info.reference) == ("plugin", "loud-checks 1.2", "loud_checks:Contains")
    assert group.get("output_contains").__module__ == "loud_checks"
    assert type(parse_check({"output_contains": "x"}).check).__module__ == "loud_checks"
    plugins.register(plugins.CHECKS, "output_contains", _Shout)
    try:
        assert group.info("output_contains").origin == "registered"  # type: ignore[union-attr]
        assert group.get("output_contains") is _Shout
    finally:
        plugins.unregister(plugins.CHECKS, "output_contains")
    assert group.info("output_contains").origin == "plugin"  # type: ignore[union-attr]
    local: PluginGroup[Any] = PluginGroup(plugins.CHECKS, "check", plugins=False)
    assert local.info("output_contains").origin == "built-in"  # type: ignore[union-attr]


def test_register_check_makes_a_new_check_usable_in_scenarios(tmp_path: Path) -> None:
    register_check(_Shout)
    try:
        assert "shout_check" in CHECKS.names()
        path = _write(tmp_path / "s.yaml", "id: s\nprompt: hi\nexpectations:\n  checks:\n    - shout_check: {}\n")
        (sc,) = load_scenario_file(path)
        assert isinstance(sc.expectations.checks[0].options, _Shout)
    finally:
        plugins.unregister(plugins.CHECKS, "shout_check")
    assert "shout_check" not in CHECKS.names()


def test_two_distributions_claiming_one_name_is_an_error_naming_both(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for dist in ("first-dist", "second-dist"):
        make_distribution(tmp_path, dist, "1.0", {"costar.agents": {"twin": f"{dist.replace('-', '_')}:make"}})
    monkeypatch.syspath_prepend(str(tmp_path))
    group: PluginGroup[Any] = PluginGroup(plugins.AGENTS, "agent type")
    with pytest.raises(PluginError) as err:
        group.find("twin")
    message = str(err.value)
    assert "agent type 'twin' (group costar.agents) is provided by two installed distributions" in message
    assert "first-dist 1.0 (first_dist:make)" in message
    assert "second-dist 1.0 (second_dist:make)" in message
    assert "\n" not in message
    from costar.run.agents import make_agent

    with pytest.raises(ConfigError, match="two installed distributions"):
        make_agent({"type": "twin"})
    (listed,) = [i for i in group.infos() if i.name == "twin"]  # a listing shows the clash instead of failing
    assert listed.distribution == "first-dist 1.0 | second-dist 1.0"
    assert "two installed distributions" in (listed.error or "")


def test_a_broken_plugin_is_one_line_naming_group_entry_point_distribution_and_cause(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_distribution(tmp_path, "broken-checks", "0.3", {"costar.checks": {"word_count": "no_such_module_xyz:WordCount",
                                                                           "not_a_check": "fine_module:THING"}},
                      {"fine_module.py": "THING = 42\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError) as err:
        CHECKS.find("word_count")
    assert str(err.value) == (
        "check 'word_count' (group costar.checks, entry point no_such_module_xyz:WordCount, distribution "
        "broken-checks 0.3) failed to load: ModuleNotFoundError: No module named 'no_such_module_xyz'; "
        "reinstall or uninstall broken-checks")
    with pytest.raises(PluginError, match=r"check 'not_a_check' \(.*fine_module:THING.*\) is not a check: it must be "
                                          r"a subclass of costar.judges.checks.Check"):
        CHECKS.find("not_a_check")
    # In a scenario the same message arrives with the file, the line and the field.
    path = _write(tmp_path / "s.yaml", "id: s\nprompt: hi\nexpectations:\n  checks:\n    - word_count: 3\n")
    with pytest.raises(ScenarioError) as bad:
        load_scenario_file(path)
    text = str(bad.value)
    assert text.startswith(f"{path}:5: field 'expectations.checks[0]': check 'word_count' (group costar.checks")
    assert "ModuleNotFoundError" in text


def test_a_code_registration_that_fails_to_load_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    group: PluginGroup[Any] = PluginGroup(plugins.MODEL_PROVIDERS, "model provider", plugins=False)
    group.register("nowhere", "no_such_module_xyz:PROVIDER")
    with pytest.raises(PluginError, match=r"^model provider 'nowhere' \(group costar.model_providers, registered in "
                                          r"code as no_such_module_xyz:PROVIDER\) failed to load: "
                                          r"ModuleNotFoundError"):
        group.find("nowhere")
    with pytest.raises(PluginError, match="unknown plugin group"):
        plugins.register("costar.nothing", "x", object())


def test_listing_names_imports_no_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_distribution(tmp_path, "lazy-plugin", "1.0", {"costar.judges": {"lazy": "lazy_plugin_module:JUDGE"}},
                      {"lazy_plugin_module.py": "raise RuntimeError('imported')\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    group: PluginGroup[Any] = PluginGroup(plugins.JUDGES, "judge")
    assert "lazy" in group.names()
    assert group.info("lazy").origin == "plugin"  # type: ignore[union-attr]
    assert "lazy_plugin_module" not in sys.modules


# --------------------------------------------------------------------------- the built-ins


def _declared() -> dict[str, dict[str, str]]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return {g: dict(eps) for g, eps in data["project"]["entry-points"].items() if g.startswith("costar.")}


def test_pyproject_declares_every_group_and_the_install_is_current() -> None:
    declared = _declared()
    assert set(declared) == set(plugins.GROUPS)
    from importlib.metadata import distribution

    installed = {g: {ep.name: ep.value for ep in distribution("costar").entry_points if ep.group == g}
                 for g in plugins.GROUPS}
    assert installed == declared, "the installed metadata is stale: run scripts/setup (pip install -e .)"


def test_every_built_in_loads_as_what_its_group_expects() -> None:
    from costar.align.versions import OPTIMIZERS
    from costar.judges.definitions import JudgeTemplate, JudgeTypeRegistry
    from costar.models.registry import ProviderRegistry
    from costar.run.agents import AGENT_TYPES

    declared = _declared()
    assert sorted(declared[plugins.CHECKS]) == sorted(n for n in CHECKS.names() if CHECKS.info(n).origin == "built-in")  # type: ignore[union-attr]
    for name in declared[plugins.CHECKS]:
        assert CHECKS.get(name).kind == name
    types = JudgeTypeRegistry(load_entry_points=False)
    assert {types.get(n).name for n in declared[plugins.JUDGE_TYPES]} == set(declared[plugins.JUDGE_TYPES])
    judges: PluginGroup[Any] = PluginGroup(plugins.JUDGES, "judge", plugins=False)
    assert all(isinstance(judges.get(n), JudgeTemplate) for n in declared[plugins.JUDGES])
    assert all(judges.get(n).name == n for n in declared[plugins.JUDGES])
    assert all(callable(AGENT_TYPES.get(n)) for n in declared[plugins.AGENTS])
    providers = ProviderRegistry(load_entry_points=False)
    assert all(providers.get(n).name == n for n in declared[plugins.MODEL_PROVIDERS])
    assert {OPTIMIZERS.get(n)().name for n in declared[plugins.ALIGN_OPTIMIZERS]} == set(declared[plugins.ALIGN_OPTIMIZERS])
