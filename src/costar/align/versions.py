"""Judge versions: every aligned definition is kept, one is active, and any can be restored.

Files, under the project's store folder (``.costar`` by default)::

    judges/<name>/v1.json          the definition the first alignment started from ("baseline")
    judges/<name>/v2.json          an aligned definition, its report and promotion decision
    judges/<name>/memory/<sha>.json  MemAlign memory, named by its SHA-256
    judges/<name>/active           {"version": 2, "history": [null]}

Without an ``active`` file (or with ``"version": null``) the judge is the one defined in the
project's ``judges/`` folder. With one, :func:`active_definitions` returns the active version's
definition so the judge registry resolves the name to it.

A version owns only what alignment changed: the instructions, the model they were aligned against,
and (MemAlign) the memory. Every other setting (``agreement_floor`` above all, ``gate``,
``apply_to``, sampling, budgets) comes from the project's definition as it is now, so editing
``judges/<name>.yaml`` after a promotion still takes effect; when the file changed since the
version was aligned from it, the entry carries a note saying which version is active, why, and
which of the file's settings it does not use.

Writes are atomic (temporary file, then rename) and ordered so an interruption leaves nothing
half-written: memory files first (content-addressed, so a leftover is harmless), then the version
file (claimed with an exclusive create, so two alignments never take the same number), then the
pointer. Changes to one judge's versions are serialised with a lock file.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from costar.align.optimize import (
    AgreementMeter,
    AlignBudget,
    AlignmentError,
    AlignmentOptimizer,
    AlignmentResult,
    JudgeSpec,
    PromotionDecision,
    SplitAgreement,
    decide_promotion,
    find_golden_set,
)
from costar.errors import ConfigError
from costar.labels import SPLITS, GoldenSet, Split
from costar.plugins import ALIGN_OPTIMIZERS, PluginGroup
from costar.store.base import Store

if TYPE_CHECKING:
    from costar.config import ProjectConfig
    from costar.judges.definitions import DefinitionEntry
    from costar.judges.registry import JudgeRegistry

__all__ = [
    "ActivePointer",
    "JudgeVersion",
    "Recorded",
    "VersionComparison",
    "VersionRegistry",
    "active_definitions",
    "align_judge",
    "get_optimizer",
    "measure_versions",
    "project_judges",
    "register_active_versions",
    "resolve_definition",
    "store_dir_of",
]

PromoteMode = Literal["auto", "never", "force"]
BASELINE = "baseline"


class JudgeVersion(BaseModel):
    """One stored definition of a judge with the agreement it was measured at."""

    model_config = ConfigDict(extra="forbid")

    judge: str
    version: int
    created_at: float = Field(default_factory=time.time)
    optimizer: str
    parent: int | None = None
    definition: dict[str, Any]
    definition_sha256: str
    fingerprint: str | None = None
    source: str = ""
    golden: str | None = None
    golden_version: int | None = None
    agreement: dict[Split, SplitAgreement] = Field(default_factory=dict)
    decision: PromotionDecision | None = None
    report: dict[str, Any] | None = None
    note: str = ""

    @property
    def type(self) -> str:
        return str(self.definition.get("type", "llm"))

    def held_out(self) -> SplitAgreement | None:
        return self.agreement.get("test")

    def line(self, active: bool = False) -> str:
        test = self.held_out()
        measured = f"{self.golden} v{self.golden_version}" if self.golden else "not measured"
        held = test.short() if test is not None else "-"
        mark = "*" if active else " "
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.created_at))
        parent = f" from v{self.parent}" if self.parent is not None else ""
        return (f"{mark} v{self.version:<3} {self.optimizer:<9}{parent:<8} {when}  test {held}  "
                f"[{measured}] fp {(self.fingerprint or '-')[:8]}")


class ActivePointer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int | None = None
    history: list[int | None] = Field(default_factory=list)  # earlier actives, newest last
    changed_at: float = Field(default_factory=time.time)
    reason: str = ""


class Recorded(BaseModel):
    """What :meth:`VersionRegistry.record` did."""

    model_config = ConfigDict(extra="forbid")

    judge: str
    version: int | None
    baseline: int | None = None
    promoted: bool
    active: int | None
    reason: str


class VersionComparison(BaseModel):
    """Two versions side by side: stored agreement per split, the rule applied to the held-out
    split (when both were measured on the same golden set version) and the definition diff."""

    model_config = ConfigDict(extra="forbid")

    judge: str
    a: int
    b: int
    rows: dict[Split, tuple[SplitAgreement | None, SplitAgreement | None]]
    same_golden: bool
    decision: PromotionDecision | None
    diff: str

    def format(self) -> str:
        lines = [f"judge {self.judge!r}: v{self.a} vs v{self.b}"]
        for split in SPLITS:
            left, right = self.rows[split]
            lines.append(f"  {split:<10} v{self.a} {left.short() if left else '-':<44} "
                         f"v{self.b} {right.short() if right else '-'}")
        if self.decision is not None:
            lines.append(f"  held out: {self.decision.reason}")
        elif not self.same_golden:
            lines.append("  held out: measured on different golden sets; re-measure both to compare")
        if self.diff:
            lines.append(self.diff)
        return "\n".join(lines)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _locked(folder: Path, *, create: bool = True) -> Iterator[None]:
    """Exclusive access to a judge's versions folder. ``create=False``: a judge without the folder
    has no versions to guard, and none is created (a failed promote leaves nothing behind)."""
    if not create and not folder.is_dir():
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: exclusive version files still prevent lost versions
        yield
        return
    with open(folder / ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _light(agreement: Mapping[Split, SplitAgreement]) -> dict[Split, SplitAgreement]:
    # Listings read every version file; the full statistics stay in the stored report.
    return {s: a.model_copy(update={"result": None}) for s, a in agreement.items()}

# What an aligned version owns. Everything else comes from the project's current definition.
_OWNED = ("type", "instructions", "model")
_MEMALIGN_OWNED = ("type", "memory", "memory_sha256", "k", "embedder")
# Settings a memalign definition keeps at its top level (the registry reads them there).
_TOP_LEVEL = ("description", "gate", "version", "agreement_floor", "apply_to")


def _file_settings(definition: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of a definition as a judges/ file would spell them (a memalign definition's
    base, with its top-level settings)."""
    if definition.get("type") == "memalign" and isinstance(definition.get("base"), Mapping):
        out = dict(definition["base"])
        out.update({k: definition[k] for k in _TOP_LEVEL if k in definition})
        return out
    return dict(definition)


def effective_definition(stored: Mapping[str, Any], current: Mapping[str, Any] | None) -> dict[str, Any]:
    """The definition a version stands for now: what alignment owns from ``stored`` (the version),
    every other setting from ``current`` (the project's definition, normalised as alignment does);
    the version as stored when the project no longer defines the judge or defines an aligned one."""
    if current is None or current.get("type") == "memalign":
        return copy.deepcopy(dict(stored))
    current = copy.deepcopy(dict(current))
    if stored.get("type") != "memalign":
        out = {k: v for k, v in current.items()}
        out.update({k: copy.deepcopy(stored[k]) for k in _OWNED if k in stored})
        return out
    stored_base = stored.get("base") or {}
    base = {k: v for k, v in current.items() if k not in _TOP_LEVEL}
    base.update({k: copy.deepcopy(stored_base[k]) for k in _OWNED if k in stored_base})
    out = {"name": stored.get("name", current.get("name")), "base": base}
    out.update({k: copy.deepcopy(stored[k]) for k in _MEMALIGN_OWNED if k in stored})
    out.update({k: current[k] for k in _TOP_LEVEL if k in current})
    return out


def _owned_key(definition: Mapping[str, Any]) -> str:
    """What alignment owns in a definition, as one comparable string."""
    if definition.get("type") == "memalign":
        base = definition.get("base") or {}
        owned = {**{k: definition.get(k) for k in _MEMALIGN_OWNED if k != "memory"},
                 "base": {k: base.get(k) for k in _OWNED}}
    else:
        owned = {k: definition.get(k) for k in _OWNED}
    return json.dumps(owned, sort_keys=True, default=str)


def file_changes(origin: Mapping[str, Any], current: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(settings of the file that changed since ``origin`` and now apply, those the version keeps its
    own of): what a version's note says when judges/<name>.yaml was edited after alignment."""
    before, now = _file_settings(origin), _file_settings(current)
    changed = sorted(k for k in set(before) | set(now) if k != "name" and before.get(k) != now.get(k))
    return [k for k in changed if k not in _OWNED], [k for k in changed if k in _OWNED]


class VersionRegistry:
    """The versions of every aligned judge of one project, under ``store_dir/judges``."""

    def __init__(self, store_dir: str | Path, project_dir: str | Path | None = None) -> None:
        self.store_dir = Path(store_dir).resolve()
        self.root = self.store_dir / "judges"
        self.project_dir = Path(project_dir).resolve() if project_dir is not None else self.store_dir.parent

    # -- reading -----------------------------------------------------------------------------------

    def _folder(self, name: str) -> Path:
        from costar.judges.definitions import NAME_PATTERN

        if not re.fullmatch(NAME_PATTERN, name):
            raise AlignmentError(f"{name!r} is not a judge name (letters, digits, '_', '.', '-')")
        return self.root / name

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and any(p.glob("v*.json")))

    def _numbers(self, name: str) -> list[int]:
        folder = self._folder(name)
        if not folder.is_dir():
            return []
        out = []
        for p in folder.glob("v*.json"):
            if p.stem[1:].isdigit():
                out.append(int(p.stem[1:]))
        return sorted(out)

    def _path(self, name: str, version: int) -> Path:
        return self._folder(name) / f"v{version}.json"

    def get(self, name: str, version: int) -> JudgeVersion:
        path = self._path(name, version)
        if not path.is_file():
            known = ", ".join(f"v{n}" for n in self._numbers(name)) or "none"
            raise AlignmentError(f"judge {name!r} has no version {version} (versions: {known}); "
                                 f"list them: costar judges versions {name}")
        try:
            return JudgeVersion.model_validate_json(path.read_bytes())
        except (ValidationError, ValueError) as exc:
            raise ConfigError(f"{path} is not a valid judge version ({str(exc).splitlines()[0]}); restore it "
                              "from a backup or delete it") from None

    def versions(self, name: str) -> list[JudgeVersion]:
        return [self.get(name, n) for n in self._numbers(name)]

    def pointer(self, name: str) -> ActivePointer:
        path = self._folder(name) / "active"
        if not path.is_file():
            return ActivePointer()
        try:
            return ActivePointer.model_validate_json(path.read_bytes())
        except (ValidationError, ValueError) as exc:
            raise ConfigError(f"{path} is not a valid active-version pointer ({str(exc).splitlines()[0]}); "
                              f"set it again: costar judges promote {name} VERSION") from None

    def active_version(self, name: str) -> int | None:
        return self.pointer(name).version

    def active(self, name: str) -> JudgeVersion | None:
        number = self.active_version(name)
        return None if number is None else self.get(name, number)

    def spec(self, name: str, version: int, *, default_model: str | None = None) -> JudgeSpec:
        v = self.get(name, version)
        return JudgeSpec(name, copy.deepcopy(v.definition), self.project_dir, default_model,
                         f"{self._path(name, version)} (v{version}, {v.optimizer})")

    # -- writing -----------------------------------------------------------------------------------

    def _write_pointer(self, name: str, pointer: ActivePointer) -> None:
        _atomic_write(self._folder(name) / "active", pointer.model_dump_json(indent=1))

    def _claim(self, record: JudgeVersion) -> JudgeVersion:
        """Write ``record`` under the next free number (exclusive create: no two writers share one)."""
        folder = self._folder(record.judge)
        folder.mkdir(parents=True, exist_ok=True)
        number = max(self._numbers(record.judge), default=0) + 1
        while True:
            record = record.model_copy(update={"version": number})
            path = self._path(record.judge, number)
            fd, tmp = tempfile.mkstemp(prefix=f".v{number}.", dir=folder)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(record.model_dump_json(indent=1))
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)  # fails if the number was taken meanwhile
            except FileExistsError:
                number += 1
                continue
            except OSError:  # no hard links here: the judge's lock already keeps writers apart
                if path.exists():
                    number += 1
                    continue
                os.replace(tmp, path)
                return record
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            return record

    def _memory_path(self, name: str, sha: str) -> Path:
        return self._folder(name) / "memory" / f"{sha}.json"

    def _project_relative(self, path: Path) -> str:
        try:
            return str(path.resolve().relative_to(self.project_dir))
        except ValueError:
            return str(path.resolve())

    def _store_attachments(self, spec: JudgeSpec) -> dict[str, Any]:
        """Write what the definition refers to by digest; return the definition pointing at it."""
        from costar.align.memalign import Memory

        raw = copy.deepcopy(spec.raw)
        if spec.type != "memalign":
            return raw
        sha = str(raw["memory_sha256"])
        memory = spec.attachments.get(sha)
        path = self._memory_path(spec.name, sha)
        if isinstance(memory, Memory) and not path.is_file():
            _atomic_write(path, memory.to_json())
        elif not path.is_file() and raw.get("memory"):
            return raw  # already stored elsewhere (a version copied from another store)
        elif not path.is_file():
            raise AlignmentError(f"judge {spec.name!r}: the memory {sha[:12]} of the new definition is missing; "
                                 "realign the judge")
        raw["memory"] = self._project_relative(path)
        return raw

    def record(self, result: AlignmentResult, *, promote: PromoteMode = "auto", note: str = "") -> Recorded:
        """Store the aligned definition as a new version (and the definition it came from, the first
        time); make it active when ``promote`` is ``force``, or ``auto`` and the report allows it."""
        report = result.report
        name = result.new_definition.name
        if not report.changed:
            active = self.active_version(name) if self._folder(name).is_dir() else None
            return Recorded(judge=name, version=None, promoted=False, active=active, reason=report.decision.reason)
        base = result.base_definition
        with _locked(self._folder(name)):
            existing = {v.definition_sha256: v for v in self.versions(name)}
            parent = existing.get(base.digest())
            if parent is None:
                # Aligned from a version as it resolves now (its owned parts, the file's other
                # settings): that version is the parent, the active one first.
                pointer = self.pointer(name)
                same = [v for v in existing.values() if _owned_key(v.definition) == _owned_key(base.raw)]
                parent = next((v for v in same if v.version == pointer.version), same[-1] if same else None)
            baseline = None
            if parent is None:
                parent = self._claim(JudgeVersion(
                    judge=name, version=0, optimizer=BASELINE, definition=copy.deepcopy(base.raw),
                    definition_sha256=base.digest(), fingerprint=report.fingerprint_before, source=base.source,
                    golden=report.golden, golden_version=report.golden_version, agreement=_light(report.before),
                    note="the definition the first alignment started from"))
                baseline = parent.version
            raw = self._store_attachments(result.new_definition)
            stored_spec = result.new_definition.with_raw(raw)
            record = self._claim(JudgeVersion(
                judge=name, version=0, optimizer=report.optimizer, parent=parent.version, definition=raw,
                definition_sha256=stored_spec.digest(), fingerprint=report.fingerprint_after, source=base.source,
                golden=report.golden, golden_version=report.golden_version, agreement=_light(report.after),
                decision=report.decision, report=report.model_dump(mode="json"), note=note))
            pointer = self.pointer(name)
            effective = pointer.version if pointer.version is not None else None
            promoted, reason = False, report.decision.reason
            if promote == "force":
                promoted, reason = True, f"promoted by request ({report.decision.reason})"
            elif promote == "auto" and report.decision.promote:
                from_active = (parent.version == effective if effective is not None
                               else parent.optimizer == BASELINE)
                if from_active:
                    promoted = True
                else:
                    shown = f"v{effective}" if effective is not None else "the project's definition"
                    reason = (f"aligned from v{parent.version} but {shown} is in use; compare them and promote "
                              f"by hand: costar judges promote {name} {record.version}")
            elif promote == "never":
                reason = f"not promoted (promotion turned off); {report.decision.reason}"
            if promoted:
                self._write_pointer(name, ActivePointer(version=record.version,
                                                        history=[*pointer.history, pointer.version],
                                                        reason=reason))
            active = record.version if promoted else pointer.version
        return Recorded(judge=name, version=record.version, baseline=baseline, promoted=promoted, active=active,
                        reason=reason)

    def promote(self, name: str, version: int, *, force: bool = False) -> PromotionDecision:
        """Make ``version`` active. Unless ``force``, its held-out agreement must not be below the
        active version's (or the baseline's), measured on the same golden set version."""
        with _locked(self._folder(name), create=False):
            target = self.get(name, version)
            pointer = self.pointer(name)
            if pointer.version == version:
                return PromotionDecision(promote=True, reason=f"v{version} is already active")
            current = (self.get(name, pointer.version) if pointer.version is not None
                       else next((v for v in reversed(self.versions(name)) if v.optimizer == BASELINE), None))
            decision = self._rule(current, target)
            if not decision.promote and not force:
                raise AlignmentError(f"v{version} is not promoted: {decision.reason}; pass force to promote anyway")
            reason = decision.reason if decision.promote else f"forced: {decision.reason}"
            self._write_pointer(name, ActivePointer(version=version, history=[*pointer.history, pointer.version],
                                                    reason=reason))
            return decision.model_copy(update={"promote": True, "reason": reason})

    def _rule(self, current: JudgeVersion | None, target: JudgeVersion) -> PromotionDecision:
        if current is None:
            return PromotionDecision(promote=True, reason="no earlier version to compare with")
        if (current.golden, current.golden_version) != (target.golden, target.golden_version):
            return PromotionDecision(promote=False, reason=(
                f"v{current.version} was measured on {current.golden} v{current.golden_version} and "
                f"v{target.version} on {target.golden} v{target.golden_version}; re-measure both on one golden set"))
        old, new = current.held_out(), target.held_out()
        if old is None or new is None:
            return PromotionDecision(promote=False, reason="a version has no held-out measurement")
        return decide_promotion(old, new, before=current.agreement, after=target.agreement)

    def rollback(self, name: str, version: int | None = None) -> int | None:
        """Restore the previous active version (or ``version``); returns the new active version,
        None meaning the project's own definition."""
        with _locked(self._folder(name), create=False):
            pointer = self.pointer(name)
            if version is not None:
                self.get(name, version)  # must exist
                new = ActivePointer(version=version, history=[*pointer.history, pointer.version],
                                    reason=f"rolled back to v{version}")
            else:
                if not pointer.history:
                    raise AlignmentError(f"judge {name!r} has no earlier active version to roll back to")
                previous = pointer.history[-1]
                new = ActivePointer(version=previous, history=pointer.history[:-1],
                                    reason=f"rolled back from v{pointer.version}")
            self._write_pointer(name, new)
            return new.version

    def deactivate(self, name: str) -> None:
        """Use the project's own definition again (versions are kept)."""
        with _locked(self._folder(name), create=False):
            pointer = self.pointer(name)
            if pointer.version is not None:
                self._write_pointer(name, ActivePointer(version=None, history=[*pointer.history, pointer.version],
                                                        reason="deactivated"))

    # -- comparing ---------------------------------------------------------------------------------

    def describe(self, name: str, version: int) -> str:
        """A definition as readable text: fields, instructions and (for memalign) guidelines."""
        v = self.get(name, version)
        raw = copy.deepcopy(v.definition)
        lines: list[str] = []
        if v.type == "memalign":
            base = raw.pop("base")
            instructions = str(base.pop("instructions", ""))
            fields = {**{k: val for k, val in raw.items() if k != "memory"}, "base": base}
            lines += json.dumps(fields, indent=1, sort_keys=True, default=str).splitlines()
            lines += ["instructions:", *instructions.splitlines()]
            memory = self._memory_text(v)
            lines += memory
        else:
            instructions = str(raw.pop("instructions", ""))
            lines += json.dumps(raw, indent=1, sort_keys=True, default=str).splitlines()
            lines += ["instructions:", *instructions.splitlines()]
        return "\n".join(lines)

    def _memory_text(self, v: JudgeVersion) -> list[str]:
        from costar.align.memalign import load_memory

        path = self.project_dir / str(v.definition.get("memory") or "")
        try:
            memory = load_memory(path, str(v.definition["memory_sha256"]))
        except ConfigError as exc:
            return [f"memory: unreadable ({exc})"]
        labels: dict[str, int] = {}
        for e in memory.examples:
            key = str(e.label).lower() if isinstance(e.label, bool) else str(e.label)
            labels[key] = labels.get(key, 0) + 1
        return [f"guidelines ({memory.guideline_source}):", *(f"- {g}" for g in memory.guidelines),
                f"cases: {len(memory.examples)} ({', '.join(f'{k} {n}' for k, n in sorted(labels.items()))}), "
                f"embedder {memory.embedder}"]

    def diff(self, name: str, a: int, b: int) -> str:
        left, right = self.describe(name, a).splitlines(), self.describe(name, b).splitlines()
        return "\n".join(difflib.unified_diff(left, right, f"v{a}", f"v{b}", lineterm=""))

    def compare(self, name: str, a: int, b: int) -> VersionComparison:
        va, vb = self.get(name, a), self.get(name, b)
        same = va.golden is not None and (va.golden, va.golden_version) == (vb.golden, vb.golden_version)
        decision = None
        held_a, held_b = va.held_out(), vb.held_out()
        if same and held_a is not None and held_b is not None:
            decision = decide_promotion(held_a, held_b, before=va.agreement, after=vb.agreement)
        rows = {s: (va.agreement.get(s), vb.agreement.get(s)) for s in SPLITS}
        return VersionComparison(judge=name, a=a, b=b, rows=rows, same_golden=same, decision=decision,
                                 diff=self.diff(name, a, b))

    # -- the judge registry's view -----------------------------------------------------------------

    def origin(self, name: str, version: int) -> JudgeVersion | None:
        """The definition the version's line of alignments started from (its baseline ancestor)."""
        seen: set[int] = set()
        v: JudgeVersion | None = self.get(name, version)
        while v is not None and v.optimizer != BASELINE and v.parent is not None and v.parent not in seen:
            seen.add(v.version)
            v = self.get(name, v.parent) if v.parent in self._numbers(name) else None
        return v if v is not None and v.optimizer == BASELINE else None

    def entries(self, *, default_model: str | None = None,
                current: Mapping[str, DefinitionEntry] | None = None) -> list[DefinitionEntry]:
        """The active version of every judge that has one, as definition entries: what alignment owns
        from the version, every other setting from ``current`` (the project's definitions by name)."""
        from costar.judges.definitions import BuildContext, DefinitionEntry, default_judge_types

        out = []
        types = default_judge_types()
        for name in self.names():
            pointer = self.pointer(name)
            number = pointer.version
            if number is None:
                continue
            v = self.get(name, number)
            source = f"{self._path(name, number)} (v{number}, {v.optimizer})"
            file_entry = (current or {}).get(name)
            file_raw = _current_settings(file_entry, default_model)
            raw = effective_definition(v.definition, file_raw)
            notes = self._notes(name, v, pointer, file_entry, file_raw) if current is not None else []
            kind = str(raw.get("type", v.type))
            try:
                definition = types.get(kind).definition.model_validate(raw)
            except ValidationError as exc:
                err = exc.errors()[0]
                raise ConfigError(f"{source} with the settings of {file_entry.source if file_entry else 'no file'}: "
                                  f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None
            ctx = BuildContext(base_dir=self.project_dir, project_dir=self.project_dir,
                               default_model=default_model, source=source)
            out.append(DefinitionEntry(name=name, type=kind, source=source, raw=raw, definition=definition,
                                       build_ctx=ctx, types=types, notes=notes))
        return out

    def _notes(self, name: str, v: JudgeVersion, pointer: ActivePointer, file_entry: DefinitionEntry | None,
               file_raw: dict[str, Any] | None) -> list[str]:
        why = f"active since: {pointer.reason}" if pointer.reason else "promoted"
        head = f"judge {name!r} uses aligned version v{v.version} ({v.optimizer}; {why})"
        if file_entry is None:
            return [f"{head}; the project no longer defines it, so v{v.version} is used as stored "
                    f"(costar judges deactivate {name} to stop using it)"]
        if file_raw is None or file_raw.get("type") == "memalign":
            return []
        origin = self.origin(name, v.version)
        if origin is None:
            return []
        applied, kept = file_changes(origin.definition, file_raw)
        if not applied and not kept:
            return []
        parts = []
        if applied:
            parts.append(f"{', '.join(applied)} from the file {'apply' if len(applied) > 1 else 'applies'}")
        if kept:
            parts.append(f"its {', '.join(kept)} stay v{v.version}'s, not the file's (costar judges deactivate "
                         f"{name} to use the file, or align it again)")
        return [f"{head}; {file_entry.source} changed since v{v.version} was aligned from it: {'; '.join(parts)}"]


def _current_settings(entry: DefinitionEntry | None, default_model: str | None) -> dict[str, Any] | None:
    """The project's definition of a judge normalised as alignment normalises one (instructions
    inline, documents project-relative, the model pinned), or None when it has none to merge."""
    if entry is None or entry.raw is None or entry.build_ctx is None:
        return None
    try:
        return JudgeSpec.from_entry(entry).raw
    except (AlignmentError, ConfigError, OSError):
        return None  # not alignable (a check judge of that name) or unreadable: the version stands alone


# --------------------------------------------------------------------------- project helpers


def store_dir_of(project_dir: str | Path) -> Path:
    """The store folder a project uses: ``store`` in its costar.yaml, else ``.costar``."""
    from costar.config import CONFIG_NAMES, load_config

    root = Path(project_dir).resolve()
    for name in CONFIG_NAMES:
        if (root / name).is_file():
            return load_config(root / name).store_path
    return root / ".costar"


def active_definitions(project_dir: str | Path, store_dir: str | Path | None = None, *,
                       default_model: str | None = None,
                       current: Mapping[str, DefinitionEntry] | None = None) -> list[DefinitionEntry]:
    """Definition entries for the judges whose active version is an aligned one, with every setting
    alignment does not own taken from ``current`` (the project's definitions by name; see
    :func:`register_active_versions`)."""
    versions = _stored_versions(project_dir, store_dir)
    return [] if versions is None else versions.entries(default_model=default_model, current=current)


def _stored_versions(project_dir: str | Path, store_dir: str | Path | None) -> VersionRegistry | None:
    """The project's version registry, or None when no judge was ever aligned there."""
    store = Path(store_dir) if store_dir is not None else store_dir_of(project_dir)
    return VersionRegistry(store, project_dir) if (store / "judges").is_dir() else None


def register_active_versions(registry: JudgeRegistry, project_dir: str | Path, store_dir: str | Path | None = None,
                             *, default_model: str | None = None) -> list[str]:
    """Push the active aligned version of every judge that has one into ``registry``, after the
    project's own judges, so each name resolves to its promoted version (with the settings of the
    project's definition that alignment does not own). Returns their names; what commands should say
    about them (a judges/ file edited since alignment) is added to ``registry.notices``."""
    versions = _stored_versions(project_dir, store_dir)
    if versions is None:
        return []
    current = {name: entry for name in versions.names() if (entry := registry.definition(name)) is not None}
    entries = versions.entries(default_model=default_model, current=current)
    for entry in entries:
        registry.register_definition(entry)
        registry.notices.extend(entry.notes)
    return [e.name for e in entries]


def project_judges(cfg: ProjectConfig) -> JudgeRegistry:
    """The judges a project's runs resolve: its ``judges/`` folder, plugins and templates, with the
    promoted version of each aligned judge (from the project's store folder) in place of its file's,
    and the judges ``judges:`` in costar.yaml gives every scenario."""
    from costar.judges.registry import project_registry

    model = cfg.models.get("judge")
    registry = project_registry(cfg.root, cfg.judges_dir, default_model=model)
    register_active_versions(registry, cfg.root, cfg.store_path, default_model=model)
    registry.prices = cfg.price_table()  # the judges' model calls cost what the project's prices say
    if cfg.judges:
        registry.apply_to_every_scenario(cfg.judges, source=str(cfg.root / "costar.yaml"))
    return registry


def resolve_definition(project_dir: str | Path, name: str, *, store_dir: str | Path | None = None,
                       judges_dir: str | Path = "judges", default_model: str | None = None) -> JudgeSpec:
    """The definition judge ``name`` has now: its active version, else the project's definition,
    else a built-in template."""
    from costar.judges.definitions import discover_judges, template_entries

    root = Path(project_dir).resolve()
    defined = {e.name: e for e in template_entries(default_model=default_model, project_dir=root)}
    defined.update({e.name: e for e in discover_judges(root, judges_dir, default_model=default_model)})
    for entry in active_definitions(root, store_dir, default_model=default_model, current=defined):
        if entry.name == name:
            return JudgeSpec.from_entry(entry)
    if name in defined:
        return JudgeSpec.from_entry(defined[name])
    raise AlignmentError(f"unknown judge {name!r}: define it in {root / judges_dir} (costar judges list shows "
                         "the judges there)")


def _not_a_factory(obj: Any) -> str | None:
    return None if callable(obj) else "it must be a class or function taking the options as keywords"


OPTIMIZERS: PluginGroup[Any] = PluginGroup(ALIGN_OPTIMIZERS, "alignment optimizer", accept=_not_a_factory)
"""Alignment optimizers by name: the ``costar.align_optimizers`` plugin group (``memalign`` and
``gepa`` are its built-ins)."""


def get_optimizer(name: str, **options: Any) -> AlignmentOptimizer:
    """The optimizer ``name`` (``memalign``, ``gepa`` or a plugin) built with ``options``."""
    factory = OPTIMIZERS.find(name)
    if factory is None:
        raise AlignmentError(f"unknown optimizer {name!r}; use one of {', '.join(OPTIMIZERS.names())}")
    optimizer: AlignmentOptimizer = factory(**options)  # a plugin: its factory is typed by the protocol only
    return optimizer


def align_judge(store: Store, judge: str | JudgeSpec, optimizer: str | AlignmentOptimizer, *,
                golden: str | GoldenSet | None = None, golden_version: int | None = None,
                budget: AlignBudget | None = None, project_dir: str | Path | None = None,
                judges_dir: str | Path = "judges", default_model: str | None = None,
                record: bool = True, promote: PromoteMode = "auto",
                options: Mapping[str, Any] | None = None) -> tuple[AlignmentResult, Recorded | None]:
    """Align a judge of the project on a golden set and (unless ``record`` is False) store the new
    version, promoting it by the held-out rule. What ``costar judges align`` runs."""
    root = Path(project_dir or store.root.parent).resolve()
    opt = get_optimizer(optimizer, **dict(options or {})) if isinstance(optimizer, str) else optimizer
    spec = judge if isinstance(judge, JudgeSpec) else resolve_definition(
        root, judge, store_dir=store.root, judges_dir=judges_dir, default_model=default_model)
    gs = find_golden_set(store, spec.name, golden, golden_version)
    result = opt.align(spec, gs, store, budget=budget)
    if not record:
        return result, None
    return result, VersionRegistry(store.root, root).record(result, promote=promote)


def measure_versions(store: Store, registry: VersionRegistry, name: str, versions: Sequence[int], *,
                     golden: str | GoldenSet | None = None, golden_version: int | None = None,
                     concurrency: int = 4) -> dict[int, dict[Split, SplitAgreement]]:
    """Measure stored versions again, on one golden set (default: the newest made for the judge),
    so versions measured at different times can be compared on equal terms."""
    gs = find_golden_set(store, name, golden, golden_version)
    meter = AgreementMeter(store, gs, concurrency=concurrency)
    meter.load(gs.trace_ids())
    return {n: meter.measure_all(registry.spec(name, n)) for n in versions}
