"""Plugins: every pluggable kind of thing is found by name, one way.

A plugin group is an entry-point group. coSTAR reads seven (:data:`GROUPS`); its own built-ins are
entry points of the ``costar`` distribution, declared in its ``pyproject.toml`` like any plugin's.
Where a name comes from, lowest precedence first:

1. **built-in** — an entry point of the ``costar`` distribution;
2. **plugin** — an entry point of another installed distribution: it replaces a built-in of the
   same name (that is how a built-in is swapped out);
3. **registered in code** — :func:`register` (for the whole process) or ``PluginGroup.register``
   (for one registry, e.g. one project's judges): it replaces both; a later registration replaces
   an earlier one.

Two installed distributions that declare the same name in one group are a :class:`PluginError`
when that name is used, naming both: coSTAR never picks one silently. A plugin that fails to load
(an import error, a missing attribute, an object of the wrong kind) is a :class:`PluginError`
with one line naming the group, the entry point, the distribution and the cause.

Entry points are read once per ``sys.path`` and a plugin is imported on first use of its name, so
listing names imports nothing.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, Literal, TypeVar, cast

from costar.errors import ConfigError

CHECKS = "costar.checks"
JUDGE_TYPES = "costar.judge_types"
JUDGES = "costar.judges"
AGENTS = "costar.agents"
MODEL_PROVIDERS = "costar.model_providers"
ALIGN_OPTIMIZERS = "costar.align_optimizers"
EXECUTORS = "costar.executors"

GROUPS: dict[str, str] = {
    CHECKS: "a deterministic check: a costar.judges.checks.Check subclass (its options are its fields)",
    JUDGE_TYPES: "a judge type: an object with name, definition (a JudgeDefinition model) and build()",
    JUDGES: "a judge: a Judge, a Judge class, a check mapping or a function f(ctx) -> Verdict | bool",
    AGENTS: "an agent type: a function f(spec: dict) -> Agent",
    MODEL_PROVIDERS: "a model provider: a ProviderFactory (configure(spec) and create(spec, settings))",
    ALIGN_OPTIMIZERS: "an alignment optimizer: a class or function f(**options) -> AlignmentOptimizer",
    EXECUTORS: "an executor (where trials run): a function f(spec: dict) -> Executor",
}
"""Every entry-point group coSTAR reads, and what a plugin in it is."""

BUILTIN_DISTRIBUTION = "costar"

Origin = Literal["built-in", "plugin", "registered"]
T = TypeVar("T")


class PluginError(ConfigError):
    """A plugin cannot be used: it failed to load, is not what its group expects, or two
    distributions claim its name."""


@dataclass(frozen=True)
class PluginInfo:
    """Where one name of a group comes from."""

    name: str
    """The name the plugin is used by (a check key, a judge type, a provider of a model URI...)."""
    group: str
    """The entry-point group, e.g. ``costar.checks``."""
    origin: Origin
    """``built-in``, ``plugin`` (another distribution's entry point) or ``registered`` (in code)."""
    reference: str
    """``module:attribute``, or the registered object's qualified name."""
    distribution: str | None = None
    """``name version`` of the distribution that declares the entry point."""
    error: str | None = None
    """Why the name cannot be used as it is (two distributions claim it), for listings."""

    def describe(self) -> str:
        """One phrase for listings and messages, e.g. ``plugin my-judges 1.0 (my_judges:POLITE)``."""
        if self.origin == "registered":
            return f"registered in code ({self.reference})"
        if self.origin == "built-in":
            return f"built-in ({self.reference})"
        return f"plugin {self.distribution} ({self.reference})"

    def where(self) -> str:
        """The group, the entry point and the distribution, for error messages."""
        if self.origin == "registered":
            return f"group {self.group}, registered in code as {self.reference}"
        kind = "built-in entry point" if self.origin == "built-in" else "entry point"
        return f"group {self.group}, {kind} {self.reference}, distribution {self.distribution}"


def _dist_key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class _Entry:
    """One entry point with the facts about its distribution read once (reading a distribution's
    name parses its METADATA file every time)."""

    name: str
    value: str
    distribution: str
    builtin: bool


def _entry(ep: EntryPoint) -> _Entry:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return _Entry(ep.name, ep.value, "unknown", False)
    name = dist.name
    return _Entry(ep.name, ep.value, f"{name} {dist.version}", _dist_key(name) == BUILTIN_DISTRIBUTION)


_scan_lock = threading.Lock()
_scans: dict[tuple[str, tuple[str, ...]], tuple[_Entry, ...]] = {}


def _scan(group: str) -> tuple[_Entry, ...]:
    """The group's entry points, read once per sys.path (a test or a notebook may add a folder)."""
    key = (group, tuple(sys.path))
    with _scan_lock:
        found = _scans.get(key)
        if found is None:
            found = _scans[key] = tuple(_entry(ep) for ep in entry_points(group=group))
        return found


def refresh() -> None:
    """Read entry points again (after installing a distribution in a running process)."""
    global _generation
    with _scan_lock:
        _scans.clear()
    with _registered_lock:
        _generation += 1


_registered_lock = threading.RLock()
_registered: dict[str, dict[str, Any]] = {}
_generation = 0  # changes whenever a registration (or a refresh) may change what a name resolves to


def register(group: str, name: str, obj: Any) -> None:
    """Register ``obj`` (or a ``"module:attribute"`` reference, imported on first use) under
    ``name`` for the whole process; it takes precedence over plugins and built-ins."""
    if group not in GROUPS:
        raise PluginError(f"unknown plugin group {group!r} (groups: {', '.join(GROUPS)})")
    global _generation
    with _registered_lock:
        _registered.setdefault(group, {})[name] = obj
        _generation += 1


def unregister(group: str, name: str) -> None:
    """Undo :func:`register` (a plugin or built-in of that name is used again)."""
    global _generation
    with _registered_lock:
        _registered.get(group, {}).pop(name, None)
        _generation += 1


def _reference_of(obj: Any) -> str:
    if isinstance(obj, str):
        return obj
    target = obj if isinstance(obj, type) or (callable(obj) and hasattr(obj, "__qualname__")) else type(obj)
    return f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', type(target).__name__)}"


class PluginGroup(Generic[T]):
    """The plugins of one entry-point group, by name, with the precedence described above.

    ``what`` names one plugin in messages ("check", "model provider"); ``accept`` returns why an
    object is not a plugin of this group (None when it is). ``builtins=False`` leaves the costar
    distribution's own entry points out and ``plugins=False`` every other distribution's (tests
    use both for isolation); ``fold_case`` makes names case-insensitive."""

    def __init__(self, group: str, what: str, *, accept: Callable[[Any], str | None] | None = None,
                 builtins: bool = True, plugins: bool = True, fold_case: bool = False) -> None:
        if group not in GROUPS:
            raise ValueError(f"unknown plugin group {group!r}")
        self.group = group
        self.what = what
        self._accept = accept
        self._builtins = builtins
        self._plugins = plugins
        self._fold_case = fold_case
        self._lock = threading.RLock()
        self._own: dict[str, Any] = {}
        self._own_generation = 0
        self._loaded: dict[tuple[Origin, str, int], T] = {}
        self._view_key: tuple[Any, ...] | None = None
        self._view: tuple[dict[str, Any], dict[str, list[_Entry]], list[str]] = ({}, {}, [])

    def _key(self, name: str) -> str:
        return name.lower() if self._fold_case else name

    # -- registering -------------------------------------------------------------------------------

    def register(self, name: str, obj: T | str) -> None:
        """Register for this group object only (e.g. one project's registry); ``obj`` may be a
        ``"module:attribute"`` reference, imported on first use."""
        with self._lock:
            self._own[self._key(name)] = obj
            self._own_generation += 1

    def unregister(self, name: str) -> None:
        with self._lock:
            self._own.pop(self._key(name), None)
            self._own_generation += 1

    # -- finding -----------------------------------------------------------------------------------

    def _current(self) -> tuple[dict[str, Any], dict[str, list[_Entry]], list[str]]:
        """Registrations, entry points by name, and all names, recomputed only when sys.path or a
        registration changed (scenario loading asks for every check it parses)."""
        key = (tuple(sys.path), _generation, self._own_generation)
        with self._lock:
            if key != self._view_key:
                entries: dict[str, list[_Entry]] = {}
                for ep in _scan(self.group):
                    if (ep.builtin and self._builtins) or (not ep.builtin and self._plugins):
                        entries.setdefault(self._key(ep.name), []).append(ep)
                with _registered_lock:
                    shared = {self._key(k): v for k, v in _registered.get(self.group, {}).items()}
                registered = {**shared, **self._own}
                self._view = (registered, entries, sorted(set(registered) | set(entries)))
                self._view_key = key
            return self._view

    def names(self) -> list[str]:
        """Every name this group resolves (nothing is imported)."""
        return list(self._current()[2])

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        registered, entries, _ = self._current()
        key = self._key(name)
        return key in registered or key in entries

    def info(self, name: str) -> PluginInfo | None:
        """Where ``name`` comes from now, or None when no plugin has that name."""
        key = self._key(name)
        registered, entries, _ = self._current()
        if key in registered:
            return PluginInfo(key, self.group, "registered", _reference_of(registered[key]))
        eps = entries.get(key, [])
        plugins = sorted((ep for ep in eps if not ep.builtin), key=lambda e: e.distribution)
        if len(plugins) > 1:
            claims = " and ".join(f"{ep.distribution} ({ep.value})" for ep in plugins)
            raise PluginError(f"{self.what} {name!r} (group {self.group}) is provided by two installed distributions: "
                              f"{claims}; uninstall one, or register the one to use in code")
        chosen = plugins or [ep for ep in eps if ep.builtin]
        if not chosen:
            return None
        ep = chosen[0]
        return PluginInfo(key, self.group, "plugin" if plugins else "built-in", ep.value, ep.distribution)

    def infos(self) -> list[PluginInfo]:
        """Where every name comes from; a name two distributions claim is listed with the error."""
        out = []
        for name in self.names():
            try:
                info = self.info(name)
            except PluginError as exc:
                claims = sorted(self._current()[1].get(self._key(name), []), key=lambda ep: ep.distribution)
                info = PluginInfo(self._key(name), self.group, "plugin", " | ".join(ep.value for ep in claims),
                                  " | ".join(ep.distribution for ep in claims if not ep.builtin), error=str(exc))
            if info is not None:
                out.append(info)
        return out

    def find(self, name: str) -> T | None:
        """The plugin named ``name``, loaded, or None when there is none."""
        info = self.info(name)
        if info is None:
            return None
        key = self._key(name)
        if info.origin == "registered":
            raw = self._current()[0][key]
            cache_key: tuple[Origin, str, int] = (info.origin, key, id(raw))
        else:
            raw = None
            cache_key = (info.origin, info.reference, 0)
        with self._lock:
            hit = self._loaded.get(cache_key)
            if hit is not None:
                return hit
            obj = self._load(info, raw)
            self._loaded[cache_key] = obj
            return obj

    def get(self, name: str) -> T:
        """Like :meth:`find`, but an unknown name is a :class:`PluginError` listing the known ones."""
        obj = self.find(name)
        if obj is None:
            known = ", ".join(self.names()) or "none"
            raise PluginError(f"unknown {self.what} {name!r} (known: {known}); install a plugin that provides it "
                              f"(entry-point group {self.group}) or register one in code")
        return obj

    def _load(self, info: PluginInfo, raw: Any) -> T:
        try:
            if raw is not None and not isinstance(raw, str):
                obj = raw
            else:
                obj = EntryPoint(name=info.name, value=info.reference, group=self.group).load()
        except Exception as exc:
            cause = (str(exc).splitlines() or [""])[0]
            fix = {"built-in": "reinstall costar", "registered": "fix the reference or the module it names",
                   "plugin": f"reinstall or uninstall {str(info.distribution).split(' ')[0]}"}[info.origin]
            raise PluginError(f"{self.what} {info.name!r} ({info.where()}) failed to load: "
                              f"{type(exc).__name__}: {cause}; {fix}") from exc
        problem = self._accept(obj) if self._accept is not None else None
        if problem:
            raise PluginError(f"{self.what} {info.name!r} ({info.where()}) is not a {self.what}: {problem}")
        return cast(T, obj)  # loaded by name: what the group accepts is what T stands for


def describe_groups(groups: Iterable[str] = GROUPS) -> dict[str, list[PluginInfo]]:
    """Every name of every group with where it comes from (for ``costar plugins``)."""
    return {g: PluginGroup(g, g.rsplit(".", 1)[-1]).infos() for g in groups}
