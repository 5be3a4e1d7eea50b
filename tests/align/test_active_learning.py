"""Active learning: unlabeled traces ranked by judge uncertainty (self-consistency, versions, judges,
threshold), labeled traces excluded, deterministic order, and a queue file `costar label` reads."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from costar.align.active import (
    ActiveLearningError,
    Weights,
    binary_entropy,
    format_candidates,
    queue_file,
    rank_for_labeling,
)
from costar.align.labeling import label_queue, new_label
from costar.cli.label_commands import _ids as read_queue  # the reader behind `costar label --queue FILE`
from costar.store.base import Run
from costar.store.sqlite import SQLiteStore
from costar.trace.model import Trace
from costar.verdict import Verdict, VerdictSource

JUDGE = "helpful"


def add_traces(store: SQLiteStore, ids: list[str], run_id: str | None = None) -> None:
    if run_id is not None:
        store.create_run(Run(run_id=run_id))
    store.write_traces([Trace(trace_id=t, run_id=run_id, scenario_id="s", trial=i) for i, t in enumerate(ids)])


def sampled(tid: str, samples: list[object], *, name: str = JUDGE, fp: str = "f" * 16) -> Verdict:
    """A self-consistent verdict as the LLM judge writes it: majority value, agreement as confidence."""
    ok = [s for s in samples if s is not None]
    value = max(set(ok), key=lambda x: (ok.count(x), x is False))
    return Verdict(name=name, value=value, passed=value if isinstance(value, bool) else None,
                   confidence=ok.count(value) / len(samples), trace_id=tid, fingerprint=fp,
                   source=VerdictSource.LLM, metadata={"samples": samples})


def plain(tid: str, value: object, *, name: str = JUDGE, fp: str = "f" * 16, passed: bool | None = None,
          error: str | None = None) -> Verdict:
    if error is not None:
        return Verdict.failure(name, error, trace_id=tid, fingerprint=fp)
    return Verdict(name=name, value=value, passed=value if passed is None and isinstance(value, bool) else passed,
                   trace_id=tid, fingerprint=fp, source=VerdictSource.LLM)


@pytest.fixture
def scene(store: SQLiteStore) -> SQLiteStore:
    ids = ["split", "twothirds", "sure", "flipped", "rivals", "labeled", "broken", "quiet"]
    add_traces(store, ids, run_id="r1")
    store.write_verdicts([
        sampled("split", [True, False]),  # a 1/1 split: the most uncertain a vote can be
        sampled("twothirds", [True, True, False]),
        sampled("sure", [True, True, True]),
        plain("flipped", True, fp="a1b2c3d4" * 2),
        plain("rivals", True), plain("rivals", False, name="outcome"),
        sampled("labeled", [True, False]),
        plain("broken", None, error="timeout"),
        plain("quiet", False), plain("quiet", False, name="outcome"),
    ])
    store.write_verdicts([plain("flipped", False, fp="c3d4e5f6" * 2)])  # the newer version says fail
    store.write_labels([new_label("labeled", JUDGE, True, labeler="ana")])
    return store


def test_ranking_reasons_and_exclusions(scene: SQLiteStore) -> None:
    ranked = rank_for_labeling(scene, JUDGE, related=["outcome"])
    by_id = {c.trace_id: c for c in ranked}
    assert [c.trace_id for c in ranked] == ["flipped", "rivals", "split", "twothirds"]
    assert by_id["split"].score == 1.0
    assert by_id["split"].reason == "2 samples split 1/1"
    assert by_id["twothirds"].score == pytest.approx(binary_entropy(2 / 3)) == pytest.approx(0.918296, abs=1e-6)
    assert by_id["twothirds"].reason == "3 samples split 2/1"
    assert by_id["flipped"].reason == "versions disagree: fail (fp c3d4e5f6) vs pass (fp a1b2c3d4)"
    assert by_id["rivals"].reason == "judges disagree: pass (helpful) vs fail (outcome)"
    # Unanimous, agreeing, errored and already labeled traces are not proposed.
    assert not {"sure", "quiet", "broken", "labeled"} & set(by_id)
    # Equal scores (1.0 each) break on signal count, then on trace id: the order is reproducible.
    assert [c.trace_id for c in rank_for_labeling(scene, JUDGE, related=["outcome"])] == list(by_id)
    text = format_candidates(ranked)
    # rank, score, trace id, its scenario and trial, why
    first = ranked[0]
    assert text.splitlines()[0].split() == ["1.", "1.00", "flipped", f"{first.scenario_id}[{first.trial}]", "versions",
                                            "disagree:", "fail", "(fp", "c3d4e5f6)", "vs", "pass", "(fp", "a1b2c3d4)"]


def test_labeler_filter_k_weights_and_run(scene: SQLiteStore) -> None:
    # Labeled by ana only: someone else still has it to label.
    assert "labeled" in [c.trace_id for c in rank_for_labeling(scene, JUDGE, labeler="bo")]
    assert "labeled" not in [c.trace_id for c in rank_for_labeling(scene, JUDGE, labeler="ana")]
    assert len(rank_for_labeling(scene, JUDGE, k=2)) == 2
    only_samples = rank_for_labeling(scene, JUDGE, related=["outcome"],
                                     weights=Weights(versions=0, judges=0, threshold=0))
    assert [c.trace_id for c in only_samples] == ["split", "twothirds"]
    add_traces(scene, ["elsewhere"], run_id="r2")
    scene.write_verdicts([sampled("elsewhere", [True, False, True, False])])
    assert [c.trace_id for c in rank_for_labeling(scene, JUDGE, run_id="r2")] == ["elsewhere"]
    assert "elsewhere" in {c.trace_id for c in rank_for_labeling(scene, JUDGE)}
    with pytest.raises(ActiveLearningError, match="at least one trace"):
        rank_for_labeling(scene, JUDGE, k=0)
    with pytest.raises(ActiveLearningError, match="judge 'nobody' has no verdicts; score traces first"):
        rank_for_labeling(scene, "nobody")
    with pytest.raises(ValueError, match="at least one weight"):
        Weights(consistency=0, versions=0, judges=0, threshold=0)


def test_signals_add_up(store: SQLiteStore) -> None:
    add_traces(store, ["both", "one"])
    store.write_verdicts([sampled("both", [True, True, False], fp="1" * 16), sampled("one", [True, True, False])])
    store.write_verdicts([plain("both", False, fp="2" * 16)])
    store.write_verdicts([sampled("both", [True, True, False], fp="1" * 16)])  # back to the first version
    ranked = rank_for_labeling(store, JUDGE)
    assert [c.trace_id for c in ranked] == ["both", "one"]
    assert ranked[0].signals == {"consistency": pytest.approx(0.918296, abs=1e-6), "versions": 1.0}
    assert ranked[0].score == pytest.approx(1.918296, abs=1e-6)
    assert ranked[0].reasons[1] == "versions disagree: pass (fp 11111111) vs fail (fp 22222222)"


def test_numeric_scores_near_the_threshold(store: SQLiteStore) -> None:
    add_traces(store, ["s1", "s2", "s3", "s5"])
    store.write_verdicts([plain("s1", 1), plain("s2", 2.8), plain("s3", 3.2), plain("s5", 5)])
    ranked = rank_for_labeling(store, JUDGE, threshold=3, margin=1.0)
    assert [(c.trace_id, c.signals["threshold"]) for c in ranked] == [("s2", pytest.approx(0.8)),
                                                                       ("s3", pytest.approx(0.8))]
    assert ranked[0].score == pytest.approx(0.4)  # threshold closeness weighs half
    assert ranked[0].reason == "score 2.8 is 0.2 from the pass threshold 3"
    # Default margin: a tenth of the spread of scores (5 - 1 = 4, so 0.4).
    assert [c.trace_id for c in rank_for_labeling(store, JUDGE, threshold=3)] == ["s2", "s3"]
    assert rank_for_labeling(store, JUDGE, threshold=3)[0].signals["threshold"] == pytest.approx(0.5)
    assert rank_for_labeling(store, JUDGE) == []  # no threshold, no samples: nothing to go on


def test_numeric_and_label_samples_use_one_minus_confidence(store: SQLiteStore) -> None:
    add_traces(store, ["n", "c"])
    store.write_verdicts([
        Verdict(name=JUDGE, value=4, confidence=0.6, trace_id="n", metadata={"samples": [4, 4, 4, 1, 2]}),
        Verdict(name=JUDGE, value="polite", confidence=0.5, trace_id="c",
                metadata={"samples": ["polite", "rude", "polite", "neutral"]}),
    ])
    ranked = {c.trace_id: c for c in rank_for_labeling(store, JUDGE)}
    assert ranked["n"].signals["consistency"] == pytest.approx(0.4)
    assert ranked["n"].reason == "5 samples, 60% agree with 4: 4, 4, 4, 1, 2"
    assert ranked["c"].signals["consistency"] == pytest.approx(0.5)
    assert ranked["c"].reason == "4 samples split 2/1/1"


def test_confidence_without_samples_and_failed_samples(store: SQLiteStore) -> None:
    add_traces(store, ["conf", "failed", "lone", "mixed"])
    store.write_verdicts([
        Verdict(name=JUDGE, value=True, passed=True, confidence=0.75, trace_id="conf"),
        Verdict(name=JUDGE, value=True, passed=True, confidence=2 / 3, trace_id="failed",
                metadata={"samples": [True, True, None]}),
        Verdict(name=JUDGE, value=True, passed=True, confidence=1 / 3, trace_id="lone",
                metadata={"samples": [True, None, None]}),
        Verdict(name=JUDGE, value=False, passed=False, confidence=0.5, trace_id="mixed",
                metadata={"samples": [True, False, False, None]}),
    ])
    ranked = {c.trace_id: c for c in rank_for_labeling(store, JUDGE)}
    assert ranked["conf"].signals["consistency"] == pytest.approx(binary_entropy(0.75))
    assert ranked["conf"].reason == "self-consistency 0.75"
    # Failed samples are no votes: two (or one) successful samples that agree show no doubt.
    assert "failed" not in ranked
    assert "lone" not in ranked
    assert ranked["mixed"].reason == "3 samples split 2/1 (1 failed)"
    assert math.isclose(binary_entropy(0.5), 1.0)
    assert binary_entropy(1.0) == 0.0


def test_queue_file_feeds_costar_label(scene: SQLiteStore, tmp_path: Path) -> None:
    ranked = rank_for_labeling(scene, JUDGE, related=["outcome"])
    path = queue_file(ranked, tmp_path / "queues" / "next.txt")
    ids = read_queue(path)
    assert ids == [c.trace_id for c in ranked]
    items = label_queue(scene, JUDGE, queue=ids, labeler="ana")
    assert [i.trace_id for i in items] == ids
    assert not any(i.done for i in items)
