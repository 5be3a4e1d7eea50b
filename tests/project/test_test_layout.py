"""Where a test lives (tests/README.md): tests/X/ holds the tests of src/costar/X/, tests/test_Y*.py the
tests of the top-level module src/costar/Y.py, and a few folders hold what cuts across packages. A test
module anywhere else fails here, so a new file dropped at tests/ root is moved before it is merged."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.paths import REPO

# The folders for what cuts across packages; tests/README.md says what goes in each.
CROSS_CUTTING = frozenset({"hostile", "project", "examples", "frameworks"})
# Folders that hold no test modules: helpers, vendored data.
NO_TESTS = frozenset({"support", "data"})


def misplaced(tests: Path, package: Path) -> list[str]:
    """The test modules under ``tests`` that are not where the layout puts them, each with the reason."""
    modules = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    found = []
    for path in sorted(tests.rglob("test_*.py")):
        rel = path.relative_to(tests)
        if "node_modules" in rel.parts or rel.parts[0] in ("data",):
            continue
        if len(rel.parts) == 1:
            stem = path.stem.removeprefix("test_")
            if not any(stem == m or stem.startswith(m + "_") for m in modules):
                found.append(f"tests/{rel}: at the top, but no src/costar/<module>.py is named by "
                             f"'test_<module>[_…].py'; move it into the folder of the package it tests")
            continue
        folder = rel.parent
        if folder.parts[0] in NO_TESTS:
            found.append(f"tests/{rel}: tests/{folder.parts[0]}/ holds helpers, not tests")
        elif folder.parts[0] not in CROSS_CUTTING and not (package / folder / "__init__.py").exists():
            found.append(f"tests/{rel}: tests/{folder}/ mirrors no package src/costar/{folder}/")
        if not (path.parent / "__init__.py").exists():
            found.append(f"tests/{rel}: tests/{folder}/ has no __init__.py")
    return found


def test_every_test_module_is_where_the_layout_puts_it() -> None:
    assert misplaced(REPO / "tests", REPO / "src" / "costar") == []


def test_every_test_folder_is_described_in_the_tests_readme() -> None:
    readme = (REPO / "tests" / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`([a-z_/]+)/`", readme))
    folders = {str(p.parent.relative_to(REPO / "tests")) for p in (REPO / "tests").rglob("test_*.py")
               if "node_modules" not in p.parts and p.parent != REPO / "tests"}
    assert folders - named == set()


def test_the_layout_check_finds_a_module_out_of_place(tmp_path: Path) -> None:
    package = tmp_path / "src" / "costar"
    (package / "store").mkdir(parents=True)
    (package / "store" / "__init__.py").write_text("")
    (package / "compare.py").write_text("")
    tests = tmp_path / "tests"
    for rel in ("test_compare.py", "test_compare_runs.py", "store/test_sqlite.py", "hostile/test_yaml.py",
                "store/__init__.py", "hostile/__init__.py", "support/__init__.py", "webapp/__init__.py",
                "test_store_copy.py", "test_comparison.py", "support/test_helper.py", "webapp/test_page.py",
                "run/test_harness.py"):
        (tests / rel).parent.mkdir(parents=True, exist_ok=True)
        (tests / rel).write_text("")
    assert [line.split(":")[0] for line in misplaced(tests, package)] == [
        "tests/run/test_harness.py",  # no package src/costar/run/ here
        "tests/run/test_harness.py",  # and no __init__.py
        "tests/support/test_helper.py",
        "tests/test_comparison.py",  # 'comparison' is not 'compare' nor 'compare_…'
        "tests/test_store_copy.py",  # store is a package: its tests go in tests/store/
        "tests/webapp/test_page.py",
    ]
