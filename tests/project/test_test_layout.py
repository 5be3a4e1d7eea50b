"""Where a test lives (tests/README.md): tests/X/ holds the tests of src/costar/X/, tests/test_Y*.py the
tests of the top-level module src/costar/Y.py, and a few folders hold what cuts across packages. A test
module anywhere else fails here, so a new file dropped at tests/ root is moved before it is merged."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

from tests.support.paths import REPO

# The folders for what cuts across packages; tests/README.md says what goes in each.
CROSS_CUTTING = frozenset({"hostile", "project", "examples", "frameworks"})
# Folders that hold no test modules: helpers, vendored data.
NO_TESTS = frozenset({"support", "data"})
# Not ours, or not Python we import: skipped without walking them (node_modules is large).
SKIP = frozenset({"data", "node_modules", "__pycache__"})


def python_files(tests: Path) -> list[Path]:
    """The .py files under ``tests``, sorted, outside the folders of SKIP."""
    found = []
    for folder, dirs, files in os.walk(tests):
        dirs[:] = [d for d in dirs if d not in SKIP]
        found += [Path(folder) / f for f in files if f.endswith(".py")]
    return sorted(found)


def misplaced(tests: Path, package: Path) -> list[str]:
    """The test modules under ``tests`` that are not where the layout puts them, each with the reason."""
    modules = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    found = []
    for path in python_files(tests):
        rel = path.relative_to(tests)
        if not path.name.startswith("test_"):
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


def bare_imports(tests: Path) -> list[str]:
    """Imports of ``conftest`` or of a sibling module by its bare name (``from matrix import …``): they
    work only while that folder is on sys.path, and break when a file moves. Import ``tests.x.y``."""
    found = []
    for path in python_files(tests):
        rel = path.relative_to(tests)
        if "agents" in rel.parts:
            continue  # the framework agents run as child processes with their own folder on the path
        siblings = {p.stem for p in path.parent.glob("*.py")} | {"conftest"}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                     else [])
            found += [f"tests/{rel}:{node.lineno}: import of '{name}' by its bare name"
                      for name in names if name.split(".")[0] in siblings]
    return found


def test_helpers_are_imported_from_the_repository_root() -> None:
    assert bare_imports(REPO / "tests") == []


def test_every_test_folder_is_described_in_the_tests_readme() -> None:
    readme = (REPO / "tests" / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`([a-z_/]+)/`", readme))
    folders = {str(p.parent.relative_to(REPO / "tests")) for p in python_files(REPO / "tests")
               if p.name.startswith("test_") and p.parent != REPO / "tests"}
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


def test_the_import_check_finds_conftest_and_sibling_imports(tmp_path: Path) -> None:
    (tmp_path / "frameworks").mkdir()
    (tmp_path / "frameworks" / "matrix.py").write_text("")
    (tmp_path / "frameworks" / "test_x.py").write_text(
        "import json\nfrom conftest import costar_cmd\nfrom matrix import run\nfrom tests.frameworks.matrix import run\n")
    assert [line.split(": ")[0] for line in bare_imports(tmp_path)] == [
        "tests/frameworks/test_x.py:2", "tests/frameworks/test_x.py:3"]
