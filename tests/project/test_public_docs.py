"""The core types are documented where they are defined, and every package says what it makes public.

* Every public class of the core modules has a docstring, and so has every public method and
  property of those classes (the ``Store`` protocol's included).
* Every field of their pydantic models has a description: an attribute docstring read by pydantic
  (``use_attribute_docstrings=True``), so it shows in ``model_fields`` and in JSON Schemas. Fields of
  dataclasses, members of enums and attributes of protocols have an attribute docstring.
* Every package's ``__init__`` declares ``__all__``, every name in it resolves, and a package that
  loads its names on first use tells type checkers what they are (the same names under
  ``TYPE_CHECKING``).
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import importlib
import inspect
import subprocess
import sys
from types import ModuleType

import pytest
from pydantic import BaseModel

from tests.support.paths import REPO

SRC = REPO / "src" / "costar"

CORE_MODULES = [
    "costar.verdict",
    "costar.trace.model",
    "costar.scenario.model",
    "costar.scenario.checks",
    "costar.store.base",
    "costar.run.harness",
    "costar.run.trial",
    "costar.run.executors",
    "costar.run.agents",
    "costar.assess",
    "costar.summary",
    "costar.suites",
]
"""Scenario and its parts, Trace, Span, SpanKind, Verdict, Store, Harness and its options, trials and
the executor contract, the agent contract, RunSummary and the api's results (RunOutcome, RunEvents, Selection, AssessStats)."""


def _class_nodes(module: ModuleType) -> dict[str, ast.ClassDef]:
    tree = ast.parse(inspect.getsource(module))
    return {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}


def _public_classes(module: ModuleType) -> list[tuple[type, ast.ClassDef]]:
    nodes = _class_nodes(module)
    return [(obj, nodes[name]) for name, obj in vars(module).items()
            if isinstance(obj, type) and obj.__module__ == module.__name__ and not name.startswith("_")
            and name in nodes]


def _attribute_docstrings(node: ast.ClassDef) -> dict[str, str | None]:
    """Every attribute a class body declares (annotated or assigned), with the string right after it."""
    out: dict[str, str | None] = {}
    body = node.body
    for i, stmt in enumerate(body):
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            name = stmt.target.id
        elif (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)):
            name = stmt.targets[0].id
        else:
            continue
        after = body[i + 1] if i + 1 < len(body) else None
        doc = (after.value.value if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
               and isinstance(after.value.value, str) else None)
        out[name] = doc
    return out


def _inherited_doc(cls: type, name: str) -> str | None:
    for base in cls.__mro__[1:]:
        if name in vars(base):
            return inspect.getdoc(vars(base)[name])
    return None


def _core_classes() -> list[tuple[str, type, ast.ClassDef]]:
    out = []
    for name in CORE_MODULES:
        module = importlib.import_module(name)
        out += [(name, cls, node) for cls, node in _public_classes(module)]
    return out


CORE_CLASSES = _core_classes()


def test_the_core_modules_define_the_core_types() -> None:
    names = {cls.__name__ for _, cls, _ in CORE_CLASSES}
    assert {"Scenario", "Setup", "Expectations", "JudgeRef", "CheckSpec", "Trace", "Span", "SpanKind", "Verdict",
            "Store", "Run", "Harness", "HarnessOptions", "RunSummary", "RunOutcome", "RunEvents", "Selection",
            "AgentTask", "AgentResult"} <= names


@pytest.mark.parametrize(("module", "cls", "node"), CORE_CLASSES, ids=[c.__qualname__ for _, c, _ in CORE_CLASSES])
def test_every_public_class_method_and_property_of_the_core_modules_has_a_docstring(
        module: str, cls: type, node: ast.ClassDef) -> None:
    assert ast.get_docstring(node), f"{module}.{cls.__name__} has no docstring"
    # An override may rely on the docstring of the method it overrides (inspect.getdoc finds it).
    undocumented = [f.name for f in node.body
                    if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef) and not f.name.startswith("_")
                    and not inspect.getdoc(inspect.getattr_static(cls, f.name))
                    and not _inherited_doc(cls, f.name)]
    assert not undocumented, f"{module}.{cls.__name__}: methods without a docstring: {', '.join(undocumented)}"


CAPTURE_PATH = {"costar.trace.model"}
"""Modules every captured agent imports: their models keep attribute docstrings in the source only
(pydantic reading them at import would slow every agent's start; see the module's comment)."""


@pytest.mark.parametrize(("module", "cls", "node"), CORE_CLASSES, ids=[c.__qualname__ for _, c, _ in CORE_CLASSES])
def test_every_field_of_the_core_contracts_is_documented(module: str, cls: type, node: ast.ClassDef) -> None:
    written = _attribute_docstrings(node)
    if issubclass(cls, BaseModel):
        own = [f for f in cls.model_fields if f in written]
        undocumented = [f for f in own if not written[f]]
        assert not undocumented, f"{module}.{cls.__name__}: fields without an attribute docstring: {', '.join(undocumented)}"
        if module not in CAPTURE_PATH:
            missing = [f for f in own if not cls.model_fields[f].description]
            assert not missing, (f"{module}.{cls.__name__}: fields without a description: {', '.join(missing)} "
                                 "(the model needs use_attribute_docstrings=True)")
        return
    if dataclasses.is_dataclass(cls):
        fields = [f.name for f in dataclasses.fields(cls) if f.name in written]
    elif issubclass(cls, enum.Enum):
        fields = [m for m in cls.__members__ if m in written]
    elif getattr(cls, "_is_protocol", False):
        fields = [a for a in written if not a.startswith("_")]
    else:
        return
    missing = [f for f in fields if not written[f]]
    assert not missing, f"{module}.{cls.__name__}: attributes without a docstring: {', '.join(missing)}"


def test_a_captured_agent_does_not_pay_for_reading_attribute_docstrings() -> None:
    code = ("import sys, costar.capture.process\n"
            "from pydantic import BaseModel\n"
            "slow = sorted(f'{m}.{n}' for m, mod in list(sys.modules.items()) if m.startswith('costar')\n"
            "              for n, c in vars(mod).items() if isinstance(c, type) and issubclass(c, BaseModel)\n"
            "              and c.__module__ == m and c.model_config.get('use_attribute_docstrings'))\n"
            "print(' '.join(slow))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "", f"models read for their docstrings on the capture path: {out.stdout}"


def test_every_method_of_the_store_protocol_says_what_it_does() -> None:
    from costar.store.base import Store

    methods = [name for name, value in vars(Store).items() if callable(value) and not name.startswith("_")]
    assert len(methods) >= 30
    undocumented = [name for name in methods if not (getattr(Store, name).__doc__ or "").strip()]
    assert not undocumented, f"Store methods without a docstring: {', '.join(undocumented)}"


def test_the_scenario_schema_describes_every_field_of_the_scenario_models() -> None:
    from costar.scenario import scenario_json_schema

    defs = scenario_json_schema()["$defs"]
    for model in ("Scenario", "Setup", "SetupFile", "Expectations", "JudgeRef"):
        undescribed = [name for name, prop in defs[model]["properties"].items() if not prop.get("description")]
        assert not undescribed, f"{model} fields without a description in the schema: {', '.join(undescribed)}"


# --------------------------------------------------------------------------- packages say what is public


PACKAGES = sorted(p.parent.relative_to(SRC.parent).as_posix().replace("/", ".")
                  for p in SRC.rglob("__init__.py") if "site" not in p.parts)


def _declared_all(tree: ast.Module) -> list[str] | None:
    for stmt in tree.body:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if isinstance(stmt, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return []
    return None


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_declares_what_is_public_and_every_name_resolves(package: str) -> None:
    init = SRC.parent / package.replace(".", "/") / "__init__.py"
    assert _declared_all(ast.parse(init.read_text(encoding="utf-8"))) is not None, f"{init} has no __all__"
    module = importlib.import_module(package)
    assert ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))), f"{init} has no docstring"
    unresolved = [name for name in module.__all__ if not hasattr(module, name)]
    assert not unresolved, f"{package}.__all__ names what it does not have: {', '.join(unresolved)}"


def _type_checking_imports(tree: ast.Module) -> dict[str, str]:
    """Names imported under ``if TYPE_CHECKING:`` as ``X as X`` (re-exported), with their modules."""
    out: dict[str, str] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.If) and isinstance(stmt.test, ast.Name) and stmt.test.id == "TYPE_CHECKING":
            for node in stmt.body:
                if isinstance(node, ast.ImportFrom) and node.module:
                    out.update({a.name: node.module for a in node.names if a.asname == a.name})
    return out


LAZY = ["costar", "costar.api", *(p for p in PACKAGES if p not in ("costar",))]


@pytest.mark.parametrize("package", LAZY)
def test_names_loaded_on_first_use_are_typed_for_type_checkers(package: str) -> None:
    module = importlib.import_module(package)
    lazy = {name: mod for attr in ("_EXPORTS", "_JUDGE_LOOP", "_LAZY")
            for name, mod in (getattr(module, attr, None) or {}).items()}
    if not lazy:
        pytest.skip(f"{package} imports its names directly")
    source = inspect.getsource(module)
    declared = _type_checking_imports(ast.parse(source))
    assert declared == lazy, (f"{package}: what loads on first use and what TYPE_CHECKING imports as 'X as X' "
                              f"differ: {sorted(set(declared.items()) ^ set(lazy.items()))}")
    for name, mod in lazy.items():
        # costar.api wraps a Store-first function so it also takes store= (functools.wraps).
        assert inspect.unwrap(getattr(module, name)) is getattr(importlib.import_module(mod), name)


def test_every_built_in_check_says_what_it_checks_and_what_each_option_means() -> None:
    from costar.scenario.checks import CHECKS

    built_in = [CHECKS.get(kind) for kind in CHECKS.names()]
    built_in = [cls for cls in built_in if cls.__module__ == "costar.judges.checks"]
    assert len(built_in) >= 19
    for cls in built_in:
        assert (cls.__doc__ or "").strip(), f"check {cls.kind!r} ({cls.__name__}) has no docstring"
        undescribed = [name for name, field in cls.model_fields.items() if not field.description]
        assert not undescribed, f"check {cls.kind!r}: options without a description: {', '.join(undescribed)}"


def test_no_name_costar_exports_is_also_one_of_its_modules() -> None:
    # Importing costar.X sets the attribute X on the package to the module, replacing a function of
    # that name: which one ``costar.X`` is would depend on what was imported before.
    import costar

    modules = {p.stem for p in SRC.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    clashes = sorted(set(costar.__all__) & modules)
    assert not clashes, f"costar exports names that are also its modules: {', '.join(clashes)}"
