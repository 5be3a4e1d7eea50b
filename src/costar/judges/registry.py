"""Finding judges by name: the project's registry, entry points, or ``module:attr``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from costar.errors import ConfigError
from costar.judges.base import Judge, JudgeContext
from costar.judges.checks import import_object, parse_check
from costar.scenario import JudgeRef, Scenario
from costar.verdict import Verdict, VerdictSource


class FunctionJudge(Judge):
    """Wraps ``f(ctx) -> Verdict | bool | (bool, rationale)`` as a judge."""

    def __init__(self, fn: Callable[[JudgeContext], Any], name: str, *, gate: bool = True,
                 options: dict[str, Any] | None = None) -> None:
        self.fn = fn
        self.name = name
        self.gating = gate
        self.options = options or {}
        try:
            source = inspect.getsource(fn)
        except (OSError, TypeError):
            source = getattr(fn, "__qualname__", repr(fn))
        self._source = source

    def config(self) -> dict[str, Any]:
        return {"function": f"{self.fn.__module__}:{getattr(self.fn, '__qualname__', '')}",
                "source": self._source, "options": self.options}

    def evaluate(self, ctx: JudgeContext) -> Verdict:
        out = self.fn(ctx, **self.options)
        if isinstance(out, Verdict):
            return out.model_copy(update={"name": self.name})
        if isinstance(out, bool):
            return Verdict(name=self.name, value=out, passed=out, rationale=f"returned {out}",
                           source=VerdictSource.CODE)
        if isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], bool):
            return Verdict(name=self.name, value=out[0], passed=out[0], rationale=str(out[1]))
        raise TypeError(f"judge function {self.name} returned {type(out).__name__}; "
                        "expected Verdict, bool or (bool, rationale)")


JudgeFactory = Callable[[JudgeRef], Judge]


class JudgeRegistry:
    """Named judges. ``register`` adds a judge (or a factory taking the scenario's JudgeRef)."""

    def __init__(self) -> None:
        self._factories: dict[str, JudgeFactory] = {}
        self._entry_points_loaded = False

    def register(self, name: str, judge: Judge | JudgeFactory) -> None:
        if isinstance(judge, Judge):
            self._factories[name] = lambda ref, j=judge: _with_ref(j, ref)
        else:
            self._factories[name] = judge

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._factories)

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group="costar.judges"):
            if ep.name in self._factories:
                continue
            obj = ep.load()
            self.register(ep.name, obj if isinstance(obj, Judge) else _factory_from(obj, ep.name))

    def resolve(self, ref: JudgeRef) -> Judge:
        self._load_entry_points()
        factory = self._factories.get(ref.name)
        if factory is not None:
            return factory(ref)
        if ":" in ref.name:
            obj = import_object(ref.name)
            return _factory_from(obj, ref.name)(ref)
        known = ", ".join(self.names()) or "none registered"
        raise ConfigError(f"unknown judge {ref.name!r} (known: {known}); define it in the project's judges/ "
                          "folder, install a plugin, or reference a Python object as 'module:attr'")

    def judges_for(self, scenario: Scenario) -> list[Judge]:
        judges: list[Judge] = list(scenario.check_judges())
        judges.extend(self.resolve(ref) for ref in scenario.judges)
        return judges


def _with_ref(judge: Judge, ref: JudgeRef) -> Judge:
    return judge.with_gating(ref.gate)


def _factory_from(obj: Any, name: str) -> JudgeFactory:
    if isinstance(obj, Judge):
        return lambda ref: _with_ref(obj, ref)
    if inspect.isclass(obj) and issubclass(obj, Judge):
        return lambda ref: _with_ref(obj(**ref.options), ref)
    if isinstance(obj, dict):
        return lambda ref: _with_ref(parse_check({**obj, "name": obj.get("name", name)}), ref)
    if callable(obj):
        short = name.rsplit(":", 1)[-1]
        return lambda ref: FunctionJudge(obj, short, gate=ref.gate, options=ref.options)
    raise ConfigError(f"{name!r} is not a judge: expected a Judge, a Judge class, a check mapping or a function")


DEFAULT_REGISTRY = JudgeRegistry()
