"""Golden sets: named, versioned sets of human-labeled traces that a judge is aligned against.

Each version is an immutable snapshot of (trace, reference label, split). The reference label is
the labelers' majority (or one labeler's label). Splits are fixed by the seed:

* **Reproducible.** Inside each label class, traces are ranked by a seeded hash of their id and
  dealt out to reach the target counts, so the same traces, labels and seed give the same splits.
* **Stable.** A trace already in the set (or in any earlier version) keeps its split forever; new
  traces only fill the gaps. An example a judge was tuned on can therefore never turn up in the
  test split later, which would inflate the judge's measured agreement.
* **Stratified.** Targets are computed per label class (for pass/fail and categorical labels),
  with at least ``min_per_class`` of every class in every requested split.
* **Grouped.** Traces of one scenario, and traces with the same input, are one group, and a group
  lies in one split: trials of a scenario in both train and test would let test agreement leak
  from what a judge was tuned on. Groups are dealt out whole (the larger first), each to the split
  whose per-class shortfall it fills best; :func:`golden_set_splits` shows which trace is where.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from costar.labels import (
    SPLITS,
    GoldenExample,
    GoldenSet,
    GoldenSetError,
    GoldenSetInfo,
    LabelError,
    LabelValue,
    Split,
    ValueType,
    ValueTypeLike,
    same_value,
)
from costar.store.base import Store
from costar.trace.model import Trace
from costar.verdict import Verdict

__all__ = [
    "SPLITS",
    "GoldenDiff",
    "GoldenExample",
    "GoldenSet",
    "GoldenSetError",
    "GoldenSetInfo",
    "GoldenSplits",
    "Move",
    "Relabel",
    "Split",
    "SplitMember",
    "assign_splits",
    "create_golden_set",
    "diff_golden_set",
    "diff_golden_sets",
    "extend_golden_set",
    "get_golden_set",
    "golden_set_splits",
    "list_golden_sets",
    "reference_labels",
    "remove_from_golden_set",
]

DEFAULT_FRACTIONS = (0.6, 0.2, 0.2)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_SHOWN = 5


# ----------------------------------------------------------------------------- splitting


def _rank(seed: int, trace_id: str) -> tuple[int, str]:
    digest = hashlib.sha256(f"{seed}\x00{trace_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big"), trace_id


def _targets(n: int, fractions: Sequence[float], minimum: int) -> list[int]:
    """How many of ``n`` examples each split should get: largest remainders, then topped up to
    ``minimum`` in every requested split from the split with the most to spare."""
    requested = [i for i, f in enumerate(fractions) if f > 0]
    quotas = [n * f for f in fractions]
    counts = [math.floor(q) for q in quotas]
    by_remainder = sorted(requested, key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    for i in requested:
        while counts[i] < minimum:
            donors = [j for j in requested if j != i and counts[j] > minimum]
            if not donors:
                break
            donor = max(donors, key=lambda j: (counts[j] - minimum, -j))
            counts[donor] -= 1
            counts[i] += 1
    return counts


def _label_key(value: LabelValue) -> tuple[str, LabelValue]:
    # True and 1 are equal in Python; as classes they must stay apart.
    return type(value).__name__, value


def assign_splits(labels: Mapping[str, LabelValue], *, seed: int, fractions: Sequence[float] = DEFAULT_FRACTIONS,
                  min_per_class: int = 1, stratify: bool = True,
                  previous: Mapping[str, Split] | None = None,
                  groups: Mapping[str, str] | None = None) -> dict[str, Split]:
    """trace id -> split. Traces in ``previous`` keep their split; a group (``groups``: trace id ->
    group key; default every trace its own group) lies in one split: new members join the split its
    earlier members are in, and new groups, the larger first and then in seeded-hash order, go to
    the split whose per-class (or, without ``stratify``, whole-set) shortfall against its targets
    they fill best."""
    previous = previous or {}
    groups = groups or {}

    def cls(value: LabelValue) -> tuple[str, LabelValue]:
        return _label_key(value) if stratify else ("", "")

    requested = [i for i, f in enumerate(fractions) if f > 0]
    sizes = Counter(cls(v) for v in labels.values())
    targets = {c: _targets(n, fractions, min_per_class) for c, n in sizes.items()}
    counts = {c: [0, 0, 0] for c in sizes}
    members: dict[str, list[str]] = {}
    for tid in labels:
        members.setdefault(groups.get(tid, "trace:" + tid), []).append(tid)
    out: dict[str, Split] = {}
    free: list[tuple[str, list[str]]] = []
    for key, tids in members.items():
        placed = [previous[t] for t in tids if t in previous]
        if not placed:
            free.append((key, tids))
            continue
        # Earlier members fix the group's split (the most common one, should an old set have split it).
        home = Counter(placed).most_common(1)[0][0]
        for t in tids:
            out[t] = previous.get(t, home)
            counts[cls(labels[t])][SPLITS.index(out[t])] += 1

    def score(i: int, composition: Counter[tuple[str, LabelValue]]) -> tuple[int, int, float, int]:
        filled = overshoot = deficit = 0
        for c, k in composition.items():
            short = targets[c][i] - counts[c][i]
            filled += min(k, max(0, short))
            overshoot += max(0, k - max(0, short))
            deficit += k * short
        return filled - overshoot, deficit, fractions[i], -i

    # A group is ranked by its smallest trace id: a set of one-trace groups splits as it always has.
    for _key, tids in sorted(free, key=lambda kv: (-len(kv[1]), _rank(seed, min(kv[1])))):
        composition = Counter(cls(labels[t]) for t in tids)
        i = max(requested, key=lambda j: score(j, composition))
        for t in tids:
            out[t] = SPLITS[i]
            counts[cls(labels[t])][i] += 1
    return out


def split_groups(store: Store, trace_ids: Sequence[str]) -> dict[str, str]:
    """trace id -> group key: traces of one scenario, or with the same input, share a group (and,
    through either, every trace linked to them). Traces the store lacks are left out."""
    return _groups_of(store.get_traces(list(trace_ids), spans=False))


def _groups_of(traces: Sequence[Trace]) -> dict[str, str]:
    """:func:`split_groups` over traces already read."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def order(key: str) -> tuple[int, str]:
        # A group is named after a scenario when it has one, else after an input, else a trace.
        return ({"scenario": 0, "input": 1}.get(key.split(":", 1)[0], 2), key)

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            first, second = sorted((ra, rb), key=order)
            parent[second] = first

    for t in traces:
        node = "trace:" + t.trace_id
        find(node)
        if t.scenario_id:
            union(node, "scenario:" + t.scenario_id)
        if t.input not in (None, "", [], {}):
            text = t.input if isinstance(t.input, str) else json.dumps(t.input, sort_keys=True, default=str)
            union(node, "input:" + hashlib.sha256(text.strip().encode()).hexdigest()[:16])
    return {t.trace_id: find("trace:" + t.trace_id) for t in traces}


# ----------------------------------------------------------------------------- reference labels


def reference_labels(labels: Iterable[Verdict]) -> dict[str, tuple[LabelValue, tuple[str, ...]]]:
    """trace id -> (the labelers' majority label, the labelers). A tie is an error, since picking
    one side silently would make the golden set say more than the experts did."""
    votes: dict[str, list[Verdict]] = {}
    for lab in labels:
        votes.setdefault(str(lab.trace_id), []).append(lab)
    out: dict[str, tuple[LabelValue, tuple[str, ...]]] = {}
    for tid, labs in votes.items():
        tally = Counter(_label_key(v.value) for v in labs if v.value is not None)
        ranked = tally.most_common()
        if not ranked:
            continue
        if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
            said = ", ".join(f"{v.source_id}: {v.value!r}" for v in labs[:_SHOWN])
            raise GoldenSetError(f"the labelers disagree on trace {tid!r} with no majority ({said}); resolve it "
                                 "(relabel or delete a label) or build the set from one labeler's labels")
        out[tid] = (ranked[0][0][1], tuple(sorted(str(v.source_id) for v in labs)))
    return out


def _infer_type(values: Iterable[LabelValue], previous: ValueType | None) -> ValueType:
    vals = list(values)
    if vals and all(isinstance(v, bool) for v in vals):
        return ValueType(kind="bool")
    if vals and all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals):
        return ValueType(kind="number")
    if vals and all(isinstance(v, str) for v in vals):
        known = list(previous.labels) if previous is not None and previous.kind == "label" else []
        return ValueType(kind="label", labels=tuple(known + sorted({str(v) for v in vals} - set(known))))
    return ValueType()


# ----------------------------------------------------------------------------- building versions


def _check_options(name: str, fractions: Sequence[float], min_per_class: int) -> tuple[float, float, float]:
    if not _NAME.fullmatch(name):
        raise GoldenSetError(f"golden set name {name!r} is not usable; use up to 100 letters, digits, "
                             "'.', '_' or '-', starting with a letter or digit")
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or any(not math.isfinite(f) or f < 0 for f in fr) or abs(sum(fr) - 1) > 1e-6 or max(fr) == 0:
        raise GoldenSetError(f"fractions {tuple(fractions)!r} are not three non-negative shares of train, "
                             "validation and test that add up to 1; e.g. (0.6, 0.2, 0.2)")
    if min_per_class < 0:
        raise GoldenSetError(f"min_per_class is {min_per_class}; give 0 or more")
    return fr[0], fr[1], fr[2]


def _preview(ids: Sequence[str]) -> str:
    return ", ".join(repr(t) for t in ids[:_SHOWN]) + (", …" if len(ids) > _SHOWN else "")


def _split_names(indices: Sequence[int]) -> str:
    names = [SPLITS[i] for i in indices]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _show(value: LabelValue) -> str:
    return ("pass" if value else "fail") if isinstance(value, bool) else repr(value)


def _check_size(name: str, refs: Mapping[str, LabelValue], fractions: Sequence[float], minimum: int,
                categorical: bool) -> None:
    requested = [i for i, f in enumerate(fractions) if f > 0]
    need = minimum * len(requested)
    if need == 0:
        return
    groups = Counter(_label_key(v) for v in refs.values()) if categorical else Counter({("", "all"): len(refs)})
    for (_, value), have in sorted(groups.items(), key=lambda kv: kv[1]):
        if have < need:
            what = f"{have} examples are labeled {_show(value)}" if categorical else f"it has {have} examples"
            each = "of every label " if categorical else ""
            more = f"label {need - have} more {_show(value)} trace(s)" if categorical else \
                f"label {need - have} more trace(s)"
            raise GoldenSetError(f"golden set {name!r} is too small to split: {what}, but {_split_names(requested)} "
                                 f"each need at least {minimum} {each}so {need} are needed; {more}, lower "
                                 "min_per_class, or give a split a fraction of 0")


def _check_filled(name: str, refs: Mapping[str, LabelValue], splits: Mapping[str, Split],
                  fractions: Sequence[float], minimum: int, categorical: bool, groups: int) -> None:
    """After assignment: existing examples keep their split, so a gap can remain that only new
    examples can fill."""
    have = Counter((splits[t], _label_key(v) if categorical else ("", "all")) for t, v in refs.items())
    classes = {_label_key(v) if categorical else ("", "all") for v in refs.values()}
    for i, f in enumerate(fractions):
        if f <= 0:
            continue
        for cls in sorted(classes, key=str):
            count = have[(SPLITS[i], cls)]
            if count < minimum:
                what = f"examples labeled {_show(cls[1])}" if categorical else "examples"
                raise GoldenSetError(
                    f"golden set {name!r}: the {SPLITS[i]} split would have {count} {what} (needs {minimum}): its "
                    f"{len(refs)} traces form {groups} group(s), as traces of one scenario (or with the same input) "
                    "stay in one split and existing examples keep theirs; label traces of more scenarios, lower "
                    "min_per_class, or give a split a fraction of 0")


@dataclass
class _Plan:
    """What a new version should hold, before splits are assigned."""

    name: str
    judge_name: str
    members: list[str] | None  # None: every trace labeled for the judge
    seed: int
    fractions: tuple[float, float, float]
    min_per_class: int
    value_type: ValueType | None
    labeler: str | None
    note: str = ""
    previous: GoldenSet | None = None


def _build(store: Store, plan: _Plan) -> GoldenSet:
    labels = store.labels(name=plan.judge_name, labeler=plan.labeler)
    if not labels:
        who = f" from {plan.labeler!r}" if plan.labeler else ""
        raise GoldenSetError(f"no human labels{who} for judge {plan.judge_name!r} in {store.root}; label some "
                             "traces first (costar label), or import labels")
    refs_all = reference_labels(labels)
    members = list(dict.fromkeys(plan.members)) if plan.members is not None else list(refs_all)
    if plan.members is not None:
        known = {t.trace_id for t in store.get_traces(members, spans=False)}
        missing = [t for t in members if t not in known]
        if missing:
            raise GoldenSetError(f"{len(missing)} of the traces are not in the store ({_preview(missing)}); "
                                 "check the ids or import those traces")
        unlabeled = [t for t in members if t not in refs_all]
        if unlabeled:
            raise GoldenSetError(f"{len(unlabeled)} of the traces have no human label for {plan.judge_name!r} "
                                 f"({_preview(unlabeled)}); label them first, or leave them out")
    if not members:
        raise GoldenSetError(f"golden set {plan.name!r} would be empty; give the traces to put in it")
    refs = {t: refs_all[t][0] for t in members}
    prev_type = plan.previous.value_type if plan.previous is not None else None
    vt = plan.value_type or _infer_type(refs.values(), prev_type)
    for tid, value in refs.items():
        try:
            vt.check(value)
        except LabelError as exc:
            raise GoldenSetError(f"trace {tid!r} is labeled {value!r}, which the golden set's value type does not "
                                 f"allow ({exc}); relabel it or give the right value type") from None
    categorical = vt.kind in ("bool", "label")
    previous: dict[str, Split] = {}
    if plan.previous is not None:
        previous = {**plan.previous.retired, **{e.trace_id: e.split for e in plan.previous.examples}}
    if not all(t in previous for t in refs):  # only new traces can be placed, so only then can size fail
        _check_size(plan.name, refs, plan.fractions, plan.min_per_class, categorical)
    groups = split_groups(store, list(refs))
    splits = assign_splits(refs, seed=plan.seed, fractions=plan.fractions, min_per_class=plan.min_per_class,
                           stratify=categorical, previous=previous, groups=groups)
    _check_filled(plan.name, refs, splits, plan.fractions, plan.min_per_class, categorical,
                  len({groups.get(t, t) for t in refs}))
    examples = [GoldenExample(trace_id=t, label=refs[t], split=splits[t], labelers=refs_all[t][1]) for t in members]
    retired = {t: s for t, s in previous.items() if t not in refs}
    version = 1 if plan.previous is None else plan.previous.version + 1
    golden = GoldenSet(name=plan.name, version=version, judge_name=plan.judge_name, value_type=vt, seed=plan.seed,
                       fractions=plan.fractions, min_per_class=plan.min_per_class, labeler=plan.labeler,
                       note=plan.note, examples=examples, retired=retired)
    if plan.previous is not None and _same_content(plan.previous, golden):
        return plan.previous
    store.write_golden_set(golden)
    return golden


def _same_content(a: GoldenSet, b: GoldenSet) -> bool:
    def key(g: GoldenSet) -> dict[str, tuple[Split, tuple[str, LabelValue], tuple[str, ...]]]:
        return {e.trace_id: (e.split, _label_key(e.label), e.labelers) for e in g.examples}

    return (key(a) == key(b) and a.value_type == b.value_type and a.retired == b.retired
            and a.min_per_class == b.min_per_class and a.labeler == b.labeler)


def _latest(store: Store, name: str) -> GoldenSet | None:
    if not store.golden_sets(name):
        return None
    return store.golden_set(name)


def create_golden_set(store: Store, name: str, judge_name: str, trace_ids: Sequence[str] | None = None, *,
                      seed: int | None = None, fractions: Sequence[float] | None = None,
                      value_type: ValueTypeLike = None, labeler: str | None = None,
                      min_per_class: int | None = None, note: str = "") -> GoldenSet:
    """Create golden set ``name`` for judge ``judge_name`` from ``trace_ids`` (or from every
    trace labeled for the judge), or — when it exists — save a new version holding exactly those
    traces. Nothing changes (and the current version is returned) when the content is the same.

    ``seed`` and ``fractions`` are fixed when the set is created; giving different ones later is an
    error, because they would move examples between splits. ``value_type`` defaults to what the
    labels hold; ``labeler`` restricts the set to one labeler's labels; ``min_per_class`` (default 1)
    is the least number of examples of every label (of every example, for numbers) per split.
    """
    prev = _latest(store, name)
    if prev is not None:
        if prev.judge_name != judge_name:
            raise GoldenSetError(f"golden set {name!r} calibrates judge {prev.judge_name!r}, not {judge_name!r}; "
                                 "choose another set name")
        if seed is not None and seed != prev.seed:
            raise GoldenSetError(f"golden set {name!r} was created with seed {prev.seed}; a new seed would move "
                                 f"examples between splits: pass seed={prev.seed} or create a set with a new name")
        if fractions is not None and tuple(float(f) for f in fractions) != prev.fractions:
            raise GoldenSetError(f"golden set {name!r} was created with fractions {prev.fractions}; keep them or "
                                 "create a set with a new name")
    if min_per_class is None:
        min_per_class = prev.min_per_class if prev else 1
    fr = _check_options(name, fractions or (prev.fractions if prev else DEFAULT_FRACTIONS), min_per_class)
    plan = _Plan(name=name, judge_name=judge_name, members=None if trace_ids is None else [str(t) for t in trace_ids],
                 seed=(prev.seed if prev else 0) if seed is None else seed, fractions=fr, min_per_class=min_per_class,
                 value_type=None if value_type is None else ValueType.of(value_type),
                 labeler=labeler if labeler is not None else (prev.labeler if prev else None),
                 note=note, previous=prev)
    return _build(store, plan)


def extend_golden_set(store: Store, name: str, trace_ids: Sequence[str] | None = None, *,
                      note: str = "") -> GoldenSet:
    """A new version with ``trace_ids`` added (default: every trace labeled for the judge since).
    Existing examples keep their split; their labels are refreshed from the store."""
    prev = store.golden_set(name)
    current = prev.trace_ids()
    if trace_ids is None:
        refs = reference_labels(store.labels(name=prev.judge_name, labeler=prev.labeler))
        present = set(current)
        adding = [t for t in refs if t not in present]
    else:
        adding = [str(t) for t in trace_ids]
    plan = _Plan(name=name, judge_name=prev.judge_name, members=current + adding, seed=prev.seed,
                 fractions=prev.fractions, min_per_class=prev.min_per_class, value_type=None, labeler=prev.labeler,
                 note=note, previous=prev)
    return _build(store, plan)


def remove_from_golden_set(store: Store, name: str, trace_ids: Sequence[str], *, note: str = "") -> GoldenSet:
    """A new version without ``trace_ids``. Removed traces remember their split, should they come back."""
    prev = store.golden_set(name)
    current = prev.trace_ids()
    drop = {str(t) for t in trace_ids}
    absent = sorted(drop - set(current))
    if absent:
        raise GoldenSetError(f"{len(absent)} of the traces are not in golden set {name!r} version {prev.version} "
                             f"({_preview(absent)}); check the ids")
    plan = _Plan(name=name, judge_name=prev.judge_name, members=[t for t in current if t not in drop],
                 seed=prev.seed, fractions=prev.fractions, min_per_class=prev.min_per_class, value_type=None,
                 labeler=prev.labeler, note=note, previous=prev)
    return _build(store, plan)


def get_golden_set(store: Store, name: str, version: int | None = None) -> GoldenSet:
    """A version of a golden set; the latest when ``version`` is None."""
    return store.golden_set(name, version)


def list_golden_sets(store: Store, name: str | None = None, *, all_versions: bool = False) -> list[GoldenSetInfo]:
    """The golden sets (their latest versions, or every version with ``all_versions``)."""
    infos = store.golden_sets(name)
    if all_versions:
        return infos
    latest: dict[str, GoldenSetInfo] = {}
    for info in infos:
        latest[info.name] = info
    return list(latest.values())


# ----------------------------------------------------------------------------- which trace is where


class SplitMember(BaseModel):
    """One example of a golden set with what groups it: its scenario and its split group."""

    model_config = ConfigDict(extra="forbid")

    trace_id: str
    split: Split
    label: LabelValue
    scenario_id: str | None = None
    group: str | None = None
    """Traces with the same group (one scenario, or the same input) belong in one split."""


class GoldenSplits(BaseModel):
    """Every example of one golden set version by split, and any group found in more than one split
    (a set built before splits were grouped)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    version: int
    members: list[SplitMember] = Field(default_factory=list)
    leaks: dict[str, list[Split]] = Field(default_factory=dict)

    def by_split(self) -> dict[Split, list[SplitMember]]:
        out: dict[Split, list[SplitMember]] = {s: [] for s in SPLITS}
        for m in self.members:
            out[m.split].append(m)
        return out

    def format(self) -> str:
        lines = [f"golden set {self.name} v{self.version}"]
        for split, members in self.by_split().items():
            scenarios = sorted({m.scenario_id or "(no scenario)" for m in members})
            lines.append(f"{split} ({len(members)} traces, {len(scenarios)} scenarios: {', '.join(scenarios)})")
            lines.extend(f"  {m.trace_id}  {m.scenario_id or '-'}  {_show(m.label)}" for m in members)
        for group, splits in sorted(self.leaks.items()):
            lines.append(f"warning: {group} is in {' and '.join(splits)}: test agreement can leak from train; "
                         "create the set again under a new name to regroup it")
        return "\n".join(lines)


def _group_label(group: str) -> str:
    kind, _, key = group.partition(":")
    return key if kind == "scenario" else f"{kind} {key}"


def golden_set_splits(store: Store, name: str, version: int | None = None) -> GoldenSplits:
    """Which trace of a golden set version is in which split, with its scenario and group."""
    gs = store.golden_set(name, version)
    traces = store.get_traces(gs.trace_ids(), spans=False)
    groups = _groups_of(traces)
    scenarios = {t.trace_id: t.scenario_id for t in traces}
    members = [SplitMember(trace_id=e.trace_id, split=e.split, label=e.label, scenario_id=scenarios.get(e.trace_id),
                           group=_group_label(groups[e.trace_id]) if e.trace_id in groups else None)
               for e in gs.examples]
    spread: dict[str, set[Split]] = {}
    for m in members:
        if m.group is not None:
            spread.setdefault(m.group, set()).add(m.split)
    leaks = {g: sorted(s, key=SPLITS.index) for g, s in spread.items() if len(s) > 1}
    return GoldenSplits(name=gs.name, version=gs.version, members=members, leaks=leaks)


# ----------------------------------------------------------------------------- diff


class Relabel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trace_id: str
    split: Split
    old: LabelValue
    new: LabelValue


class Move(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trace_id: str
    old: Split
    new: Split


class GoldenDiff(BaseModel):
    """What changed from one version of a golden set to another."""

    model_config = ConfigDict(extra="forbid")

    name: str
    old_version: int
    new_version: int
    added: list[GoldenExample] = Field(default_factory=list)
    removed: list[GoldenExample] = Field(default_factory=list)
    relabeled: list[Relabel] = Field(default_factory=list)
    # Never produced by this module's own edits; reported in case a set was built elsewhere.
    moved: list[Move] = Field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.relabeled or self.moved)

    def format(self) -> str:
        def by_split(examples: Sequence[GoldenExample]) -> str:
            counts = Counter(e.split for e in examples)
            return ", ".join(f"{s} {counts[s]}" for s in SPLITS if counts[s])

        parts = [f"{len(self.added)} added" + (f" ({by_split(self.added)})" if self.added else ""),
                 f"{len(self.removed)} removed" + (f" ({by_split(self.removed)})" if self.removed else ""),
                 f"{len(self.relabeled)} relabeled"]
        if self.moved:
            parts.append(f"{len(self.moved)} moved between splits")
        return f"golden set {self.name} v{self.old_version} -> v{self.new_version}: " + ", ".join(parts)


def diff_golden_sets(old: GoldenSet, new: GoldenSet) -> GoldenDiff:
    before = {e.trace_id: e for e in old.examples}
    after = {e.trace_id: e for e in new.examples}
    diff = GoldenDiff(name=new.name, old_version=old.version, new_version=new.version,
                      added=[e for t, e in after.items() if t not in before],
                      removed=[e for t, e in before.items() if t not in after])
    for tid, e in after.items():
        b = before.get(tid)
        if b is None:
            continue
        if not same_value(b.label, e.label):
            diff.relabeled.append(Relabel(trace_id=tid, split=e.split, old=b.label, new=e.label))
        if b.split != e.split:
            diff.moved.append(Move(trace_id=tid, old=b.split, new=e.split))
    return diff


def diff_golden_set(store: Store, name: str, old_version: int, new_version: int | None = None) -> GoldenDiff:
    """Diff two stored versions of ``name`` (``new_version`` defaults to the latest)."""
    return diff_golden_sets(store.golden_set(name, old_version), store.golden_set(name, new_version))
