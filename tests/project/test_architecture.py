"""The package structure: imports go down the layers of ``costar._layers`` and never in a circle.

Every import counts — at module level, inside functions and under ``TYPE_CHECKING`` — because a
lazy import is still a dependency: it only moves the failure to run time.
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from pathlib import Path

from costar import _layers
from tests.support.paths import REPO

SRC = REPO / "src"
ARCHITECTURE = REPO / "docs" / "ARCHITECTURE.md"


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    where: str


def packages(src: Path) -> set[str]:
    """The subpackages and top-level modules of ``costar``."""
    root = src / "costar"
    return {p.stem for p in root.iterdir()
            if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.stem != "__init__")}


def package_imports(src: Path) -> list[Import]:
    """Every import from one costar package into another, with the first file:line making it."""
    root = src / "costar"
    known = packages(src)
    out: list[Import] = []
    for file in sorted(root.rglob("*.py")):
        parts = list(file.relative_to(src).with_suffix("").parts)
        if len(parts) < 2 or parts[1] == "__init__":
            continue  # costar/__init__.py exports names lazily, importing nothing
        me = parts[1]
        here = parts[:-1]
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name.split(".") for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = here[: len(here) - (node.level - 1)] if node.level else []
                module = base + (node.module.split(".") if node.module else [])
                targets = [[*module, alias.name] for alias in node.names] if len(module) == 1 else [module]
            else:
                continue
            for target in targets:
                if len(target) >= 2 and target[0] == "costar" and target[1] in known and target[1] != me:
                    out.append(Import(me, target[1], f"{file.relative_to(src)}:{node.lineno}"))
    return out


def violations(imports: list[Import]) -> list[str]:
    """Imports the layer table does not allow, one line each."""
    out = []
    for imp in imports:
        if _layers.allowed(imp.importer, imp.imported):
            continue
        a, b = _layers.layer_of(imp.importer), _layers.layer_of(imp.imported)
        why = ("goes up the layers" if a is not None and b is not None and b > a
               else "stays inside one layer without an entry in SAME_LAYER" if a == b
               else "involves a package missing from LAYERS")
        out.append(f"{imp.where}: {imp.importer} (layer {a}) imports {imp.imported} (layer {b}): {why}")
    return out


def cycles(imports: list[Import]) -> list[list[str]]:
    """Groups of packages that reach each other (strongly connected components of two or more)."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        graph.setdefault(imp.importer, set()).add(imp.imported)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def test_every_package_has_a_layer() -> None:
    missing = sorted(p for p in packages(SRC) if _layers.layer_of(p) is None)
    assert missing == [], f"add these packages to costar._layers.LAYERS: {missing}"


def test_every_package_says_what_it_is_for() -> None:
    listed = {p for layer in _layers.LAYERS for p in layer}
    assert set(_layers.PURPOSE) == listed


def test_no_import_goes_up_the_layers() -> None:
    found = violations(package_imports(SRC))
    assert not found, "imports against costar._layers:\n" + "\n".join(found)


def test_no_packages_import_each_other_in_a_circle() -> None:
    found = cycles(package_imports(SRC))
    assert not found, "packages that import each other: " + "; ".join(", ".join(g) for g in found)


def test_every_same_layer_exception_is_still_needed() -> None:
    used = {(i.importer, i.imported) for i in package_imports(SRC)}
    stale = sorted(set(_layers.SAME_LAYER) - used)
    assert stale == [], f"remove these entries from costar._layers.SAME_LAYER: {stale}"
    wrong = sorted(k for k in _layers.SAME_LAYER if _layers.layer_of(k[0]) != _layers.layer_of(k[1]))
    assert wrong == [], f"these SAME_LAYER entries are not inside one layer: {wrong}"


def test_architecture_doc_shows_the_current_layers() -> None:
    assert _layers.render() in ARCHITECTURE.read_text(encoding="utf-8"), (
        "docs/ARCHITECTURE.md is out of date: paste the output of 'python -m costar._layers' into its layers section")


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")


def test_the_check_finds_an_upward_import_hidden_in_a_function_and_the_cycle_it_makes(tmp_path: Path) -> None:
    _write(tmp_path, "costar/__init__.py", "")
    _write(tmp_path, "costar/errors.py", "class CostarError(Exception): ...\n")
    _write(tmp_path, "costar/trace/__init__.py", "")
    _write(tmp_path, "costar/trace/model.py", """\
        from costar.errors import CostarError

        def late():
            from costar.judges import checks  # upward: trace sits below judges
            return checks
        """)
    _write(tmp_path, "costar/judges/__init__.py", "")
    _write(tmp_path, "costar/judges/checks.py", "from ..trace.model import late\n")
    imports = package_imports(tmp_path)
    assert {(i.importer, i.imported) for i in imports} == {("trace", "errors"), ("trace", "judges"),
                                                           ("judges", "trace")}
    found = violations(imports)
    assert len(found) == 1
    assert found[0].startswith("costar/trace/model.py:4: trace (layer 3) imports judges (layer 6): goes up")
    assert cycles(imports) == [["judges", "trace"]]


def test_the_check_counts_imports_under_type_checking(tmp_path: Path) -> None:
    _write(tmp_path, "costar/__init__.py", "")
    _write(tmp_path, "costar/store/__init__.py", "")
    _write(tmp_path, "costar/store/base.py", """\
        from typing import TYPE_CHECKING

        if TYPE_CHECKING:
            from costar.report.summary import RunSummary
        """)
    _write(tmp_path, "costar/report/__init__.py", "")
    _write(tmp_path, "costar/report/summary.py", "")
    assert violations(package_imports(tmp_path)) == [
        "costar/store/base.py:4: store (layer 4) imports report (layer 9): goes up the layers"]
