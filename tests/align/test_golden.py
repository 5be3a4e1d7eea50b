"""Golden sets: seeded stratified splits, stability as the set grows, versions, diffs, errors."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from costar.align.agreement_stats import binary_agreement
from costar.align.golden import (
    SPLITS,
    GoldenSet,
    GoldenSetError,
    assign_splits,
    create_golden_set,
    diff_golden_set,
    extend_golden_set,
    get_golden_set,
    list_golden_sets,
    remove_from_golden_set,
)
from costar.align.labeling import new_label
from costar.store.sqlite import SQLiteStore
from costar.trace.model import Trace
from costar.verdict import Verdict, VerdictSource

JUDGE = "correctness"


def add_traces(store: SQLiteStore, ids: list[str]) -> None:
    """One trace per scenario: each is its own split group (trials of one scenario stay together)."""
    store.write_traces([Trace(trace_id=t, scenario_id=f"s-{t}", trial=0) for t in ids])


def label(store: SQLiteStore, values: dict[str, object], labeler: str = "ana", judge: str = JUDGE) -> None:
    store.write_labels([new_label(t, judge, v, labeler=labeler) for t, v in values.items()], replace=True)


def labeled_store(store: SQLiteStore, n: int, *, start: int = 0, positive_every: int = 3) -> dict[str, bool]:
    values = {f"t{i:04d}": i % positive_every != 0 for i in range(start, start + n)}
    add_traces(store, list(values))
    label(store, values)
    return values


def splits_of(golden: GoldenSet) -> dict[str, str]:
    return {e.trace_id: e.split for e in golden.examples}


def test_seeded_splits_are_reproducible_and_stratified(tmp_path: Path, store: SQLiteStore) -> None:
    values = labeled_store(store, 50)
    golden = create_golden_set(store, "gs", JUDGE, seed=7)
    assert (golden.version, golden.judge_name, golden.value_type.kind, len(golden.examples)) == (1, JUDGE, "bool", 50)
    # 33 passes and 17 fails, each dealt 60/20/20 by largest remainder.
    assert golden.counts() == {"train": {"true": 20, "false": 10}, "validation": {"true": 7, "false": 4},
                               "test": {"true": 6, "false": 3}}
    assert golden.labels("test") == {e.trace_id: values[e.trace_id] for e in golden.split("test")}

    other = SQLiteStore(tmp_path / "other")
    try:
        labeled_store(other, 50)
        assert splits_of(create_golden_set(other, "gs", JUDGE, seed=7)) == splits_of(golden)
        assert splits_of(create_golden_set(other, "gs-8", JUDGE, seed=8)) != splits_of(golden)
    finally:
        other.close()


def test_growing_never_moves_existing_examples(store: SQLiteStore) -> None:
    labeled_store(store, 20)
    v1 = create_golden_set(store, "gs", JUDGE, seed=1)
    labeled_store(store, 12, start=20, positive_every=2)
    v2 = extend_golden_set(store, "gs", note="second batch")
    assert v2.version == 2
    assert len(v2.examples) == 32
    assert v2.note == "second batch"
    assert {t: s for t, s in splits_of(v2).items() if t in splits_of(v1)} == splits_of(v1)
    # New examples fill each class towards the targets.
    assert v2.counts() == {"train": {"true": 11, "false": 8}, "validation": {"true": 4, "false": 3},
                           "test": {"true": 4, "false": 2}}
    diff = diff_golden_set(store, "gs", 1)
    assert (len(diff.added), diff.removed, diff.relabeled, diff.moved) == (12, [], [], [])
    assert diff.format() == ("golden set gs v1 -> v2: 12 added (train 7, validation 2, test 3), 0 removed, "
                             "0 relabeled")
    # Nothing new: no new version.
    assert extend_golden_set(store, "gs").version == 2
    assert create_golden_set(store, "gs", JUDGE).version == 2


def test_assignment_is_stable_under_random_growth() -> None:
    rng = random.Random(3)
    labels: dict[str, object] = {}
    previous: dict[str, str] = {}
    for step in range(8):
        for i in range(rng.randint(1, 40)):
            labels[f"s{step}-{i}"] = rng.choice(["good", "bad", "ugly"])
        splits = assign_splits(labels, seed=11, fractions=(0.5, 0.25, 0.25), min_per_class=0,
                               previous=previous)  # type: ignore[arg-type]
        assert {t: splits[t] for t in previous} == previous
        assert set(splits) == set(labels)
        previous = splits  # type: ignore[assignment]
    for value in ("good", "bad", "ugly"):  # still close to 50/25/25 in every class
        counts = Counter(previous[t] for t, v in labels.items() if v == value)
        total = sum(counts.values())
        assert abs(counts["train"] - total / 2) <= 2
        assert abs(counts["test"] - total / 4) <= 2


def test_relabel_remove_and_readd(store: SQLiteStore) -> None:
    labeled_store(store, 15)
    v1 = create_golden_set(store, "gs", JUDGE, seed=3)
    flipped = v1.examples[0]
    label(store, {flipped.trace_id: not flipped.label})
    v2 = create_golden_set(store, "gs", JUDGE)  # refresh: same members, current labels
    diff = diff_golden_set(store, "gs", 1, 2)
    assert [(r.trace_id, r.old, r.new) for r in diff.relabeled] == [(flipped.trace_id, flipped.label,
                                                                     not flipped.label)]
    assert splits_of(v2) == splits_of(v1)

    test_id = v2.split("test")[0].trace_id
    v3 = remove_from_golden_set(store, "gs", [test_id])
    assert test_id not in splits_of(v3)
    assert v3.retired == {test_id: "test"}
    v4 = extend_golden_set(store, "gs", [test_id])
    assert splits_of(v4)[test_id] == "test"
    assert v4.retired == {}  # it comes back where it was
    assert [i.version for i in list_golden_sets(store, "gs", all_versions=True)] == [1, 2, 3, 4]
    assert [(i.name, i.version, i.size) for i in list_golden_sets(store)] == [("gs", 4, 15)]
    assert get_golden_set(store, "gs", 1) == v1
    assert get_golden_set(store, "gs") == v4
    with pytest.raises(GoldenSetError, match=r"not in golden set 'gs' version 4 \('nope'\)"):
        remove_from_golden_set(store, "gs", ["nope"])


def test_too_small_to_split(store: SQLiteStore) -> None:
    add_traces(store, ["a", "b", "c", "d", "e"])
    label(store, {"a": True, "b": True, "c": True, "d": False, "e": False})
    with pytest.raises(GoldenSetError, match=r"too small to split: 2 examples are labeled fail, but train, validation "
                                             r"and test each need at least 1 of every label so 3 are needed; label 1 "
                                             r"more fail trace\(s\)"):
        create_golden_set(store, "gs", JUDGE)
    assert list_golden_sets(store) == []
    # Without a validation split two of each class are enough: one for train, one for test.
    small = create_golden_set(store, "gs", JUDGE, fractions=(0.8, 0.0, 0.2))
    assert small.counts() == {"train": {"true": 2, "false": 1}, "validation": {}, "test": {"true": 1, "false": 1}}
    loose = create_golden_set(store, "loose", JUDGE, min_per_class=0)
    assert sum(len(c) for c in loose.counts().values()) > 0
    # Removing the only test example of a class is refused.
    lone = next(e.trace_id for e in small.split("test") if e.label is False)
    with pytest.raises(GoldenSetError, match=r"the test split would have 0 examples labeled fail \(needs 1\)"):
        remove_from_golden_set(store, "gs", [lone])


def test_numbers_and_categories(store: SQLiteStore) -> None:
    add_traces(store, [f"n{i}" for i in range(6)])
    label(store, {f"n{i}": i / 2 for i in range(6)}, judge="score")
    golden = create_golden_set(store, "scores", "score")
    assert golden.value_type.kind == "number"
    assert (Counter(splits_of(golden).values()) == {
        "train": 4, "validation": 1, "test": 1})
    label(store, {"n0": "a", "n1": "b", "n2": "a", "n3": "b", "n4": "a", "n5": "b"}, judge="kind")
    with pytest.raises(GoldenSetError, match=r"3 examples are labeled 'a', .*at least 2 of every label so 6 are "
                                             r"needed; label 3 more 'a' trace"):
        create_golden_set(store, "kinds", "kind", min_per_class=2)
    kinds = create_golden_set(store, "kinds", "kind")
    assert kinds.value_type.labels == ("a", "b")


def test_majority_ties_and_one_labeler(store: SQLiteStore) -> None:
    values = labeled_store(store, 12)
    label(store, dict.fromkeys(values, True), labeler="bo")
    label(store, dict.fromkeys(values, True), labeler="cy")
    golden = create_golden_set(store, "majority", JUDGE)
    assert {e.label for e in golden.examples} == {True}  # bo and cy outvote ana on her fails
    assert golden.examples[0].labelers == ("ana", "bo", "cy")
    store.delete_labels(name=JUDGE, labeler="cy")
    with pytest.raises(GoldenSetError, match=r"disagree on trace 't0000' with no majority \(ana: False, bo: True\)"):
        create_golden_set(store, "tie", JUDGE)
    only_ana = create_golden_set(store, "ana-only", JUDGE, labeler="ana")
    assert only_ana.labels() == values
    assert only_ana.labeler == "ana"


def test_errors_name_the_fix(store: SQLiteStore) -> None:
    labeled_store(store, 10)
    add_traces(store, ["unlabeled"])
    with pytest.raises(GoldenSetError, match=r"no human labels for judge 'other' .*label some traces first"):
        create_golden_set(store, "gs", "other")
    with pytest.raises(GoldenSetError, match=r"1 of the traces are not in the store \('ghost'\)"):
        create_golden_set(store, "gs", JUDGE, ["t0001", "ghost"])
    with pytest.raises(GoldenSetError, match=r"1 of the traces have no human label for 'correctness' \('unlabeled'\)"):
        create_golden_set(store, "gs", JUDGE, ["t0001", "unlabeled"])
    with pytest.raises(GoldenSetError, match=r"would be empty; give the traces"):
        create_golden_set(store, "gs", JUDGE, [])
    with pytest.raises(GoldenSetError, match=r"fractions .* add up to 1"):
        create_golden_set(store, "gs", JUDGE, fractions=(0.5, 0.2, 0.2))
    with pytest.raises(GoldenSetError, match=r"name 'my set' is not usable"):
        create_golden_set(store, "my set", JUDGE)
    with pytest.raises(GoldenSetError, match=r"no golden set 'gs' .*create one first"):
        get_golden_set(store, "gs")
    create_golden_set(store, "gs", JUDGE, seed=5)
    with pytest.raises(GoldenSetError, match=r"created with seed 5; .*pass seed=5"):
        create_golden_set(store, "gs", JUDGE, seed=6)
    with pytest.raises(GoldenSetError, match=r"calibrates judge 'correctness', not 'other'"):
        create_golden_set(store, "gs", "other")
    with pytest.raises(GoldenSetError, match=r"has no version 9; it has versions 1 to 1"):
        get_golden_set(store, "gs", 9)
    with pytest.raises(GoldenSetError, match=r"value type does not allow"):
        create_golden_set(store, "typed", JUDGE, value_type=["good", "bad"])
    stale = get_golden_set(store, "gs").model_copy(update={"version": 1})
    with pytest.raises(GoldenSetError, match=r"at version 1, so the next version is 2, not 1; reload"):
        store.write_golden_set(stale)


def test_golden_labels_feed_agreement(store: SQLiteStore) -> None:
    values = labeled_store(store, 30)
    golden = create_golden_set(store, "gs", JUDGE, seed=2)
    # A judge that is wrong on exactly one test example.
    test_ids = golden.trace_ids("test")
    store.write_verdicts([Verdict(name=JUDGE, value=values[t] if t != test_ids[0] else not values[t],
                                  passed=values[t], source=VerdictSource.LLM, trace_id=t) for t in values])
    judged = {v.trace_id: v.value for v in store.verdicts(trace_ids=test_ids)}
    result = binary_agreement(golden.labels("test"), judged)
    assert result.n == len(test_ids) == 6
    assert result.accuracy.value == pytest.approx(5 / 6)
    assert SPLITS == ("train", "validation", "test")


# ----------------------------------------------------------------------------- grouped splits (issue 9, item 6)


def _trials_of_scenarios(store: SQLiteStore, scenarios: int, trials: int) -> dict[str, bool]:
    """``trials`` traces of each scenario (one prompt each), passing on every other trial."""
    values: dict[str, bool] = {}
    traces = []
    for s in range(scenarios):
        for k in range(trials):
            tid = f"sc{s:02d}-t{k}"
            traces.append(Trace(trace_id=tid, scenario_id=f"scenario-{s:02d}", trial=k, input=f"task {s}"))
            values[tid] = (s + k) % 2 == 0
    store.write_traces(traces)
    label(store, values)
    return values


def test_no_scenario_and_no_input_lies_in_two_splits(store: SQLiteStore) -> None:
    from costar.align.golden import golden_set_splits

    _trials_of_scenarios(store, scenarios=10, trials=3)
    # Two imported traces without a scenario that asked the same thing, and one that asked the same as scenario 3.
    store.write_traces([Trace(trace_id="imp-a", input="Refund order 17"), Trace(trace_id="imp-b", input="Refund order 17"),
                        Trace(trace_id="imp-c", input="task 3")])
    label(store, {"imp-a": True, "imp-b": False, "imp-c": True})
    golden = create_golden_set(store, "gs", JUDGE, seed=5)
    splits = splits_of(golden)
    by_scenario: dict[str, set[str]] = {}
    for tid, split in splits.items():
        if tid.startswith("sc"):
            by_scenario.setdefault(tid.split("-")[0], set()).add(split)
    assert all(len(s) == 1 for s in by_scenario.values()), by_scenario
    assert splits["imp-a"] == splits["imp-b"]
    assert splits["imp-c"] == splits["sc03-t0"]
    assert {split for split in splits.values()} == set(SPLITS)  # still split three ways, every class in each
    assert all(set(c) == {"true", "false"} for c in golden.counts().values()), golden.counts()

    shown = golden_set_splits(store, "gs")
    assert {m.trace_id: m.split for m in shown.members} == splits
    assert shown.leaks == {}
    members = {m.trace_id: m for m in shown.members}
    assert members["sc03-t1"].scenario_id == "scenario-03"
    assert members["sc03-t1"].group == members["imp-c"].group
    text = shown.format()
    test_line = next(line for line in text.splitlines() if line.startswith("test ("))
    assert "scenario-" in test_line

    # Growing the set: a new trial of a scenario joins the split its scenario is in.
    store.write_traces([Trace(trace_id="sc07-t3", scenario_id="scenario-07", trial=3, input="task 7")])
    label(store, {"sc07-t3": False})
    grown = extend_golden_set(store, "gs")
    assert splits_of(grown)["sc07-t3"] == splits["sc07-t0"]


def test_a_set_split_before_grouping_is_reported(store: SQLiteStore) -> None:
    from costar.align.golden import golden_set_splits

    _trials_of_scenarios(store, scenarios=1, trials=4)
    examples = [("sc00-t0", "train"), ("sc00-t1", "train"), ("sc00-t2", "test"), ("sc00-t3", "validation")]
    store.write_golden_set(GoldenSet(name="old", judge_name=JUDGE, examples=[
        {"trace_id": t, "label": (int(t[-1]) % 2 == 0), "split": s} for t, s in examples]))
    shown = golden_set_splits(store, "old")
    assert shown.leaks == {"scenario-00": ["train", "validation", "test"]}
    assert "warning: scenario-00 is in train and validation and test" in shown.format()


def test_too_few_scenarios_to_split_by_scenario(store: SQLiteStore) -> None:
    _trials_of_scenarios(store, scenarios=2, trials=5)
    with pytest.raises(GoldenSetError, match=r"its 10 traces form 2 group\(s\), as traces of one scenario \(or with "
                                             r"the same input\) stay in one split"):
        create_golden_set(store, "gs", JUDGE)
