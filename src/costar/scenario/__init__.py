"""Scenarios: test fixtures for agents (initial state, prompt, expectations), in YAML or Python.

* :mod:`~costar.scenario.model` — the :class:`Scenario` model and its parts;
* :mod:`~costar.scenario.checks` — check entries, parsed and validated once at load;
* :mod:`~costar.scenario.files` — files and folders of scenarios, selection, the JSON Schema.
"""

from costar.scenario.checks import CHECKS, CheckOptions, CheckSpec, check_json_schema
from costar.scenario.files import (
    SCENARIO_SUFFIXES,
    discover_scenario_files,
    load_scenario_file,
    load_suite,
    scenario_json_schema,
    select,
)
from costar.scenario.model import (
    SCENARIO_ID_PATTERN,
    Expectations,
    JudgeRef,
    Resources,
    Scenario,
    Setup,
    SetupFile,
)

__all__ = [
    "CHECKS",
    "SCENARIO_ID_PATTERN",
    "SCENARIO_SUFFIXES",
    "CheckOptions",
    "CheckSpec",
    "Expectations",
    "JudgeRef",
    "Resources",
    "Scenario",
    "Setup",
    "SetupFile",
    "check_json_schema",
    "discover_scenario_files",
    "load_scenario_file",
    "load_suite",
    "scenario_json_schema",
    "select",
]
