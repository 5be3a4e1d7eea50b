"""Finding judges by name: registered judges, the project's ``judges/`` folder, plugins,
built-in templates, or ``module:attr``.

Lookup order for a name follows :mod:`costar.plugins`: judges registered in code and defined in
the project (its ``judges/`` folder; promoted aligned versions, which :mod:`costar.align` registers
on top) come first, then plugins (entry-point group ``costar.judges``), then the built-in templates
(``skill_invocation``, ``best_practices``, ``outcome``). Project judges with ``apply_to`` join every
matching scenario (``apply_to: all``: every scenario), and the judges ``costar.yaml`` lists under
``judges:`` join every scenario (:meth:`JudgeRegistry.apply_to_every_scenario`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from costar._util.imports import import_object
from costar.errors import ConfigError, CostarError
from costar.judges.base import Judge, JudgeContext
from costar.judges.checks import parse_check, scenario_checks
from costar.plugins import JUDGES, PluginGroup
from costar.scenario import JudgeRef, Scenario
from costar.verdict import Verdict, VerdictSource

if TYPE_CHECKING:
    from costar.judges.definitions import DefinitionEntry, JudgeTypeRegistry
    from costar.pricing import PriceTable


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


@dataclass(frozen=True)
class JudgeInfo:
    """One row of ``costar judges list``. ``fingerprint`` is None (and ``error`` says why) when the
    judge cannot be built as configured, e.g. a template that needs documents it was not given."""

    name: str
    type: str
    source: str
    fingerprint: str | None
    model: str | None
    gating: bool
    description: str = ""
    agreement_floor: dict[str, Any] | None = None
    applies_to: dict[str, Any] | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)


class JudgeRegistry:
    """Named judges. ``register`` adds a judge (or a factory taking the scenario's JudgeRef);
    ``load_project`` adds the judges defined in a project's ``judges/`` folder."""

    def __init__(self, *, templates: bool = True) -> None:
        self._factories: dict[str, JudgeFactory] = {}
        self._plugins: PluginGroup[Any] = PluginGroup(JUDGES, "judge")
        self._sources: dict[str, str] = {}
        self._entries: dict[str, DefinitionEntry] = {}
        self._use_templates = templates
        self._templates: dict[str, DefinitionEntry] | None = None
        self._project_dir: Path | None = None
        self._default_model: str | None = None
        self._every: list[JudgeRef] = []
        self.prices: PriceTable | None = None
        """The model prices of the judges this registry hands out (a project's ``prices:``; None: each
        judge's own, the built-in table unless its ModelClient was given others)."""
        self.notices: list[str] = []
        """What commands should say about how names resolve (an aligned version in use although
        the judge's file changed since it was aligned, ...)."""

    def register(self, name: str, judge: Judge | JudgeFactory) -> None:
        if isinstance(judge, Judge):
            self._factories[name] = functools.partial(_with_ref, judge)
        else:
            self._factories[name] = judge
        self._sources.setdefault(name, "registered")

    def register_definition(self, entry: DefinitionEntry) -> None:
        """A judge from a definition file: a scenario's ``options`` override its fields, and its own
        ``gate`` holds unless the scenario sets one."""
        self._entries[entry.name] = entry
        self._sources[entry.name] = entry.source
        self._factories[entry.name] = functools.partial(_from_entry, entry)

    def load_project(self, project_dir: str | Path | None = None, judges_dir: str | Path = "judges", *,
                     default_model: str | None = None, types: JudgeTypeRegistry | None = None) -> list[str]:
        """Register every judge under ``project_dir/judges_dir``; returns their names.

        ``default_model`` is the model for judges (and templates) that name none; ``types`` the judge
        types to build with (default: built-ins and the ``costar.judge_types`` plugins). Promoted
        aligned versions are not read here: :mod:`costar.align.versions` registers them on top
        (``register_active_versions``), which is what :func:`costar.api.project_judges` does."""
        from costar.judges.definitions import discover_judges

        self._project_dir = Path(project_dir or Path.cwd()).resolve()
        self._default_model = default_model
        self._templates = None  # templates pick up the project's default model and folder
        entries = discover_judges(self._project_dir, judges_dir, default_model=default_model, types=types)
        for e in entries:
            self.register_definition(e)
        return sorted(e.name for e in entries)

    def definition(self, name: str) -> DefinitionEntry | None:
        """The definition ``name`` resolves to when it is one (a judges/ file, a template), else None."""
        if name in self._entries:
            return self._entries[name]
        if name in self._factories or name in self._plugin_names():
            return None
        return self._template_entries().get(name)

    def names(self) -> list[str]:
        return sorted(set(self._factories) | self._plugin_names() | set(self._template_entries()))

    def _plugin_names(self) -> set[str]:
        """Plugin judges (templates among the group's entries resolve through _template_entries)."""
        from costar.judges.definitions import JudgeTemplate

        return {n for n in self._plugins.names() if not isinstance(self._plugins.find(n), JudgeTemplate)}

    def _source(self, name: str) -> str:
        if name in self._factories:
            return self._sources.get(name, "registered")
        info = self._plugins.info(name)
        return info.describe() if info is not None else "registered"

    def _factory(self, name: str) -> JudgeFactory:
        factory = self._factories.get(name) or self._plugin_factory(name)
        if factory is None:
            raise ConfigError(f"unknown judge {name!r}")
        return factory

    def _plugin_factory(self, name: str) -> JudgeFactory | None:
        from costar.judges.definitions import JudgeTemplate

        obj = self._plugins.find(name)
        return None if obj is None or isinstance(obj, JudgeTemplate) else _factory_from(obj, name)

    def _template_entries(self) -> dict[str, DefinitionEntry]:
        if not self._use_templates:
            return {}
        if self._templates is None:
            from costar.judges.definitions import template_entries

            self._templates = {e.name: e for e in template_entries(default_model=self._default_model,
                                                                    project_dir=self._project_dir)}
        return self._templates

    def resolve(self, ref: JudgeRef) -> Judge:
        return self._priced(self._resolve(ref))

    def _priced(self, judge: Judge) -> Judge:
        if self.prices is not None:
            judge.use_prices(self.prices)
        return judge

    def _resolve(self, ref: JudgeRef) -> Judge:
        factory = self._factories.get(ref.name) or self._plugin_factory(ref.name)
        if factory is not None:
            return factory(ref)
        template = self._template_entries().get(ref.name)
        if template is not None:
            return _from_entry(template, ref)
        if ":" in ref.name:
            obj = import_object(ref.name)
            return _factory_from(obj, ref.name)(ref)
        known = ", ".join(self.names()) or "none registered"
        raise ConfigError(f"unknown judge {ref.name!r} (known: {known}); define it in the project's judges/ "
                          "folder, install a plugin, or reference a Python object as 'module:attr'")

    def apply_to_every_scenario(self, refs: Sequence[JudgeRef | str | Mapping[str, Any]], *,
                                source: str = "costar.yaml") -> None:
        """Judges every scenario gets (``judges:`` in costar.yaml), as if each listed them; a scenario
        that lists one itself keeps its own options. Each must resolve now: a typo fails before a run."""
        parsed: list[JudgeRef] = []
        for i, raw in enumerate(refs):
            try:
                ref = raw if isinstance(raw, JudgeRef) else JudgeRef.model_validate(
                    {"name": raw} if isinstance(raw, str) else raw)
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(x) for x in err["loc"]) or "entry"
                raise ConfigError(f"{source}: judges[{i}]: {where}: {err['msg']} (a judge name, or "
                                  "{name, options, gate})") from None
            try:
                self.resolve(ref)
            except ConfigError as exc:
                raise ConfigError(f"{source}: judges[{i}]: {exc}") from None
            parsed.append(ref)
        self._every = parsed

    def judges_for(self, scenario: Scenario) -> list[Judge]:
        judges: list[Judge] = list(scenario_checks(scenario))
        judges.extend(self.resolve(ref) for ref in scenario.judges)
        listed = {ref.name for ref in scenario.judges}
        for ref in self._every:
            if ref.name not in listed:
                judges.append(self.resolve(ref))
                listed.add(ref.name)
        for name, entry in self._entries.items():
            if name not in listed and entry.apply_to is not None and entry.apply_to.matches(scenario):
                judges.append(self._priced(entry.judge()))
        return judges

    def unapplied_criteria(self, scenarios: Sequence[Scenario], *, limit: int = 5) -> list[str]:
        """Warnings for scenarios with natural-language criteria that no judge of theirs reads (no
        model judge whose instructions use ``{{criteria}}``): their criteria would be ignored."""
        missing: list[Scenario] = []
        for sc in scenarios:
            if not sc.expectations.criteria:
                continue
            try:
                judges = self.judges_for(sc)
            except CostarError:
                continue  # a judge that does not resolve is reported by the run itself
            if not any(j.uses_criteria for j in judges):
                missing.append(sc)
        out = []
        for sc in missing[:limit]:
            where = f" ({sc.source})" if sc.source is not None else ""
            n = len(sc.expectations.criteria)
            what, it, is_ = ("criterion", "it", "it is") if n == 1 else ("criteria", "them", "they are")
            out.append(f"scenario {sc.id!r}{where} has {n} natural-language {what} but no model judge applies "
                       f"{it}, so {is_} ignored")
        if len(missing) > limit:
            out.append(f"… and {len(missing) - limit} more scenario(s) with criteria no judge applies")
        if out:
            out.append("to apply criteria, name a model judge that reads {{criteria}} (e.g. the built-in outcome): "
                       "judges: [outcome] in the scenario, judges: [outcome] in costar.yaml for every scenario, "
                       "or apply_to: all in a judge file under judges/")
        return out

    def infos(self) -> list[JudgeInfo]:
        """Every judge this registry can resolve by name, for listing."""
        out: list[JudgeInfo] = []
        templates = self._template_entries()
        plugins = self._plugin_names()
        for name in sorted(set(self._factories) | plugins | set(templates)):
            coded = name in self._factories or name in plugins
            entry = self._entries.get(name) or (templates.get(name) if not coded else None)
            source = entry.source if entry is not None else self._source(name)
            try:
                judge = entry.judge() if entry is not None else self._factory(name)(JudgeRef(name=name))
            except Exception as exc:  # listing shows a broken judge instead of failing the whole list
                out.append(JudgeInfo(name=name, type=entry.type if entry is not None else "?", source=source,
                                     fingerprint=None, model=None, gating=entry.gating if entry else True,
                                     description=entry.description if entry is not None else "",
                                     error=f"{type(exc).__name__}: {exc}",
                                     notes=list(entry.notes) if entry is not None else []))
                continue
            out.append(_info(name, judge, source, entry))
        return out


def _info(name: str, judge: Judge, source: str, entry: DefinitionEntry | None) -> JudgeInfo:
    from costar.judges.definitions import judge_type_of

    floor = entry.agreement_floor if entry is not None else None
    applies = entry.apply_to if entry is not None else None
    return JudgeInfo(
        name=name, type=entry.type if entry is not None else judge_type_of(judge), source=source,
        fingerprint=judge.fingerprint(), model=getattr(judge, "model", None), gating=judge.gating,
        description=(entry.description if entry is not None else "") or str(getattr(judge, "description", "") or ""),
        agreement_floor=floor.model_dump() if floor is not None else None,
        applies_to=applies.model_dump(exclude_defaults=True) if applies is not None else None,
        notes=list(entry.notes) if entry is not None else [])


def _from_entry(entry: DefinitionEntry, ref: JudgeRef) -> Judge:
    judge = entry.with_options(ref.options)
    # JudgeRef.gate defaults to true; only a gate the scenario wrote overrides the definition's own.
    return judge.with_gating(ref.gate) if "gate" in ref.model_fields_set else judge


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


def project_registry(project_dir: str | Path | None = None, judges_dir: str | Path = "judges", *,
                     default_model: str | None = None, extra: Sequence[tuple[str, Judge]] = (),
                     types: JudgeTypeRegistry | None = None) -> JudgeRegistry:
    """A registry with the project's judges (from ``project_dir/judges_dir``), plugins and templates
    (promoted aligned versions are registered on top by :func:`costar.align.versions.project_judges`)."""
    reg = JudgeRegistry()
    for name, judge in extra:
        reg.register(name, judge)
    reg.load_project(project_dir, judges_dir, default_model=default_model, types=types)
    return reg
