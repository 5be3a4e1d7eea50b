"""Human labels: storage rules, CSV/JSONL import and export, the labeling queue, the terminal flow."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from costar.align.label_files import export_labels, import_labels
from costar.align.labeling import label_queue, new_label, save_labels
from costar.align.labeling_terminal import label_in_terminal
from costar.align.tables import LabelFileError
from costar.labels import LabelConflictError, LabelError, UnknownTraceError, ValueType
from costar.store.sqlite import SQLiteStore
from costar.trace.model import Artifact, Span, SpanKind, Totals, Trace
from costar.verdict import Verdict, VerdictSource

JUDGE = "report_quality"


def make_traces(store: SQLiteStore, n: int = 4, *, output: str = "the answer is 42") -> list[str]:
    sha = store.put_blob(b"a,b\n1,2\n")
    traces = []
    for i in range(n):
        tid = f"trace-{i:03d}"
        traces.append(Trace(
            trace_id=tid, run_id=None, scenario_id=f"scenario-{i % 2}", trial=i, input=f"question {i}",
            output=f"{output} ({i})", start_ns=i, totals=Totals(llm_calls=1, tool_calls=1, latency_s=1.5),
            artifacts=[Artifact(path="out/result.csv", sha256=sha, size=8)],
            spans=[Span(trace_id=tid, span_id=f"s{i}", name="invoke_agent a", kind=SpanKind.AGENT, start_ns=0,
                        end_ns=10)]))
    store.write_traces(traces)
    store.write_verdicts([Verdict(name=JUDGE, value=i % 2 == 0, passed=i % 2 == 0, rationale=f"judge says {i}",
                                  source=VerdictSource.LLM, trace_id=t.trace_id) for i, t in enumerate(traces)])
    return [t.trace_id for t in traces]


def snapshot(store: SQLiteStore) -> list[str]:
    return sorted(v.model_dump_json() for v in store.labels())


# ----------------------------------------------------------------------------- storage


def test_labels_live_beside_verdicts_without_shadowing_them(store: SQLiteStore) -> None:
    ids = make_traces(store)
    label = new_label(ids[0], JUDGE, "fail", labeler=" ana@example.com ", rationale=" misses the totals ",
                      value_type="bool")
    assert (label.value, label.passed, label.source, label.source_id, label.rationale) == (
        False, False, VerdictSource.HUMAN, "ana@example.com", "misses the totals")
    assert save_labels(store, [label, new_label(ids[1], JUDGE, True, labeler="bo")], value_type="bool") == 2
    assert [v.value for v in store.labels(name=JUDGE)] == [False, True]
    assert [v.trace_id for v in store.labels(labeler="bo")] == [ids[1]]
    assert [v.trace_id for v in store.labels(trace_ids=[ids[0], "nope"])] == [ids[0]]
    assert store.labels(name="other") == []
    # The judge's own verdicts are untouched: a label of the same name never replaces one.
    judged = store.verdicts(trace_ids=ids[:2])
    assert [v.source for v in judged] == [VerdictSource.LLM, VerdictSource.LLM]
    assert judged[0].value is True


def test_identical_label_is_a_no_op_a_different_one_needs_replace(store: SQLiteStore) -> None:
    ids = make_traces(store)
    first = new_label(ids[0], JUDGE, True, labeler="ana", rationale="fine")
    assert store.write_labels([first]) == 1
    assert store.write_labels([first.model_copy(update={"created_at": 5.0})]) == 0
    before = snapshot(store)
    changed = new_label(ids[0], JUDGE, False, labeler="ana", rationale="on reflection, no")
    with pytest.raises(LabelConflictError, match=r"'ana' already labeled trace 'trace-000'.*pass replace=True"):
        store.write_labels([changed])
    assert snapshot(store) == before
    # Another labeler's label for the same trace is not a conflict.
    assert store.write_labels([new_label(ids[0], JUDGE, False, labeler="bo")]) == 1
    assert store.write_labels([changed], replace=True) == 1
    assert {(v.source_id, v.value) for v in store.labels(name=JUDGE)} == {("ana", False), ("bo", False)}
    assert store.delete_labels(name=JUDGE, labeler="ana") == 1
    assert store.delete_labels(name=JUDGE, trace_ids=[ids[0]]) == 1
    assert store.labels() == []


def _bad_batches(ids: list[str]) -> list[tuple[str, list[Verdict], dict, type[Exception], str]]:
    ok = new_label(ids[1], JUDGE, True, labeler="ana")
    human = {"source": VerdictSource.HUMAN, "name": JUDGE}
    return [
        ("unknown trace", [ok, new_label("no-such-trace", JUDGE, True, labeler="ana")], {},
         UnknownTraceError, r"no trace 'no-such-trace' in .*import the trace first"),
        ("conflict in the batch", [ok, new_label(ids[1], JUDGE, False, labeler="ana")], {},
         LabelConflictError, r"two different labels from 'ana'.*keep one"),
        ("conflict with the store", [ok, new_label(ids[0], JUDGE, False, labeler="ana")], {},
         LabelConflictError, r"already labeled .* pass replace=True"),
        ("wrong type for a bool judge", [ok, Verdict(value="great", source_id="ana", trace_id=ids[2], **human)],
         {"value_type": ValueType.of("bool")}, LabelError, r"expected pass/fail .* got 'great'; fix the value"),
        ("number out of range", [Verdict(value=7, source_id="ana", trace_id=ids[2], **human)],
         {"value_type": ValueType(kind="number", minimum=1, maximum=5)}, LabelError, r"≤ 5, got 7"),
        ("label not allowed", [Verdict(value="meh", source_id="ana", trace_id=ids[2], **human)],
         {"value_type": ValueType.of(["good", "bad"])}, LabelError, r"one of good, bad, got 'meh'"),
        ("empty labeler", [ok, Verdict(value=True, source_id="  ", trace_id=ids[2], **human)], {},
         LabelError, r"empty labeler id; give who labeled it"),
        ("not a human label", [Verdict(value=True, name=JUDGE, source=VerdictSource.LLM, source_id="j",
                                       trace_id=ids[2])], {}, LabelError, r"labels come from humans"),
        ("no value", [Verdict(value=None, source_id="ana", trace_id=ids[2], **human)], {},
         LabelError, r"got None"),
    ]


@pytest.mark.parametrize("case", range(9))
def test_every_bad_batch_is_refused_whole(store: SQLiteStore, case: int) -> None:
    ids = make_traces(store)
    store.write_labels([new_label(ids[0], JUDGE, True, labeler="ana")])
    before = snapshot(store)
    _, batch, kwargs, error, message = _bad_batches(ids)[case]
    with pytest.raises(error, match=message) as info:
        store.write_labels(batch, **kwargs)
    assert "\n" not in str(info.value)
    assert snapshot(store) == before  # the good label of the batch was not written either


def test_value_types() -> None:
    assert ValueType.of("bool").parse(" Pass ") is True
    assert ValueType.of("bool").parse("f") is False
    assert ValueType.of("number").parse("2.50") == 2.5
    assert ValueType.of("number").parse(3.0) == 3
    assert isinstance(ValueType.of("number").parse(3.0), int)
    assert ValueType.of(["Good", "Bad"]).parse("good") == "Good"
    assert ValueType.of(["1", "2"]).parse(2) == "2"
    assert ValueType.of(None).parse("true") is True
    assert ValueType.of(None).parse("tie") == "tie"
    with pytest.raises(LabelError, match="expected pass/fail"):
        ValueType.of("bool").check(1)  # a typed 1 is not a boolean
    with pytest.raises(LabelError, match="unknown value type 'score'"):
        ValueType.of("score")
    with pytest.raises(LabelError, match="distinct"):
        ValueType.of(["a", "a"])
    with pytest.raises(LabelError, match="got nan"):
        ValueType.of("number").check(float("nan"))


# ----------------------------------------------------------------------------- files


def _seed_mixed(store: SQLiteStore, ids: list[str]) -> None:
    save_labels(store, [new_label(ids[0], JUDGE, True, labeler="ana", rationale='says "ok", then\nstops'),
                        new_label(ids[1], JUDGE, "fail", labeler="bo", rationale="ünïcode, commas, ; and 'quotes'",
                                  value_type="bool")],
                value_type="bool")
    save_labels(store, [new_label(ids[0], "helpfulness", 4, labeler="ana"),
                        new_label(ids[1], "helpfulness", 2.5, labeler="ana")], value_type="number")
    tone = ["1", "2", "neutral"]  # labels that look like numbers must come back as text
    save_labels(store, [new_label(ids[2], "tone", "1", labeler="ana", rationale="=cmd|' /C calc'!A0",
                                  value_type=tone)], value_type=tone)


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_export_import_round_trip(tmp_path: Path, store: SQLiteStore, suffix: str) -> None:
    ids = make_traces(store)
    _seed_mixed(store, ids)
    path = tmp_path / f"labels.{suffix}"
    assert export_labels(store, path) == 5
    if suffix == "csv":
        assert path.read_text().splitlines()[0] == "trace_id,name,value,labeler,rationale,created_at"
    other = SQLiteStore(tmp_path / "other")
    try:
        make_traces(other)
        types = {JUDGE: "bool", "helpfulness": "number", "tone": ["1", "2", "neutral"]}
        result = import_labels(other, path, value_type=types)
        assert (result.records, result.written, result.unchanged) == (5, 5, 0)

        def key(v: Verdict) -> tuple:
            return v.trace_id, v.name, v.source_id, type(v.value).__name__, v.value, v.passed, v.rationale

        assert sorted(map(key, other.labels())) == sorted(map(key, store.labels()))
        for a, b in zip(sorted(other.labels(), key=key), sorted(store.labels(), key=key), strict=True):
            assert a.created_at == pytest.approx(b.created_at, abs=1e-5)
        # Importing the same file again changes nothing.
        assert import_labels(other, path, value_type=types).unchanged == 5
    finally:
        other.close()


def _write(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(["trace_id,name,value,labeler,rationale,created_at", *rows]) + "\n")
    return path


@pytest.mark.parametrize(("rows", "kwargs", "message"), [
    (["trace-000,q,pass,ana,,", "trace-001,q,excellent,ana,,"], {"value_type": "bool"},
     r"labels.csv:3: expected pass/fail .* got 'excellent'"),
    (["trace-000,q,pass,ana,,", "trace-999,q,fail,ana,,"], {}, r"labels.csv:3: no trace 'trace-999' in the store"),
    (["trace-000,q,pass,ana,,", "trace-000,q,fail,ana,,"], {"value_type": "bool"},
     r"labels.csv:3: .* labeled False here but True on line 2; keep one"),
    (["trace-002,q,pass,ana,,", "trace-002,q,fail,ana,,"], {},  # without a type, pass/fail are text labels
     r"labels.csv:3: .* labeled 'fail' here but 'pass' on line 2; keep one"),
    (["trace-000,q,pass,,,"], {}, r"labels.csv:2: no labeler; add a 'labeler' column"),
    (["trace-000,other,pass,ana,,"], {"name": "q"}, r"labels.csv:2: the label is for judge 'other' but the import"),
    (["trace-000,q,pass,ana,,yesterday"], {}, r"labels.csv:2: created_at 'yesterday' is not an ISO 8601 time"),
    (["trace-000,q,pass,ana,", "trace-001,q"], {}, r"labels.csv:2: row has 5 cells but the header has 6"),
    (["trace-001,q,true,ana,,", "trace-000,q,true,ana,,"], {}, r"labels.csv:3: 'ana' already labeled trace "
                                                                r"'trace-000' for 'q' as False .*\(--replace\)"),
])
def test_import_checks_everything_first_and_names_the_line(tmp_path: Path, store: SQLiteStore, rows: list[str],
                                                           kwargs: dict, message: str) -> None:
    make_traces(store)
    store.write_labels([new_label("trace-000", "q", False, labeler="ana")])
    before = snapshot(store)
    with pytest.raises(LabelFileError, match=message) as info:
        import_labels(store, _write(tmp_path / "labels.csv", rows), **kwargs)
    assert "\n" not in str(info.value)
    assert snapshot(store) == before


def test_import_defaults_skips_empty_values_and_replaces(tmp_path: Path, store: SQLiteStore) -> None:
    make_traces(store)
    store.write_labels([new_label("trace-000", JUDGE, False, labeler="ana")])
    path = tmp_path / "sheet.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"trace_id": "trace-000", "value": "pass", "rationale": "changed my mind"},
        {"trace_id": "trace-001", "value": None},
        {"trace_id": "trace-002", "value": "fail", "created_at": 1700000000},
    ]) + "\n")
    result = import_labels(store, path, name=JUDGE, labeler="ana", value_type="bool", replace=True)
    assert (result.records, result.written, result.empty) == (3, 2, 1)
    got = {v.trace_id: v for v in store.labels(name=JUDGE)}
    assert got["trace-000"].value is True
    assert got["trace-000"].rationale == "changed my mind"
    assert got["trace-002"].created_at == 1700000000.0
    with pytest.raises(LabelError, match=r"name the file \*\.csv or \*\.jsonl"):
        export_labels(store, tmp_path / "labels.xlsx")


# ----------------------------------------------------------------------------- queue and terminal


def test_queue_puts_unlabeled_traces_first(store: SQLiteStore) -> None:
    ids = make_traces(store)
    store.write_labels([new_label(ids[0], JUDGE, True, labeler="ana"), new_label(ids[2], JUDGE, True, labeler="bo")])
    assert [i.trace_id for i in label_queue(store, JUDGE)] == [ids[1], ids[3], ids[0], ids[2]]
    assert [i.trace_id for i in label_queue(store, JUDGE, labeler="ana")] == [ids[1], ids[2], ids[3], ids[0]]
    queue = label_queue(store, JUDGE, queue=[ids[3], ids[0]], labeler="ana")
    assert [(i.trace_id, i.done, i.position) for i in queue] == [(ids[3], False, 0), (ids[0], True, 1)]
    assert queue[0].verdict is not None
    assert queue[0].verdict.rationale == "judge says 3"
    with pytest.raises(UnknownTraceError, match="the queue names 1 trace"):
        label_queue(store, JUDGE, queue=["nope"])


class Script:
    """Answers prompts from a list, then behaves like a closed stdin."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = list(answers)
        self.prompts: list[str] = []

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        if not self.answers:
            raise EOFError
        return self.answers.pop(0)


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=140, color_system=None, highlight=False), out


def test_terminal_labeling_saves_each_answer_at_once(store: SQLiteStore) -> None:
    ids = make_traces(store, output="line one\nline two \x1b]0;pwned\x07\x1b[31mred")
    console, out = _console()
    script = Script(["p", "totals are right", "s", "maybe", "f", "", "q"])
    session = label_in_terminal(store, JUDGE, labeler="ana", value_type="bool", console=console, input_fn=script)
    assert [(v.trace_id, v.value, v.rationale) for v in session.saved] == [
        (ids[0], True, "totals are right"), (ids[2], False, "")]
    assert session.skipped == [ids[1]]
    assert session.quit
    assert session.remaining == 2
    assert [(v.trace_id, v.value) for v in store.labels(name=JUDGE, labeler="ana")] == [(ids[0], True), (ids[2], False)]
    text = out.getvalue()
    for expected in ("1/4 · trace trace-000", "scenario scenario-0", "input: question 0", "line one",
                     "judge report_quality: PASS", "rationale: judge says 0", "out/result.csv (8 B)",
                     "not understood: expected pass/fail", "2 labels saved, 1 skipped, 2 still to label"):
        assert expected in text, expected
    assert "\x1b" not in text
    assert "\x07" not in text  # the output's terminal escapes were removed
    assert script.prompts[0] == "label — [p]ass, [f]ail, [s]kip, [q]uit > "

    # A second session offers only what this labeler has not labeled; end of input quits cleanly.
    console, out = _console()
    again = label_in_terminal(store, JUDGE, labeler="ana", value_type="bool", console=console,
                              input_fn=Script(["fail", "wrong file"]))
    assert [(v.trace_id, v.value) for v in again.saved] == [(ids[1], False)]
    assert again.quit
    assert again.remaining == 1
    assert "Labeling judge report_quality as ana: 2 to label, 2 of 4 already labeled by you" in out.getvalue()


def test_terminal_labeling_with_categorical_and_relabel(store: SQLiteStore) -> None:
    ids = make_traces(store, n=2)
    store.write_labels([new_label(ids[0], "tone", "rude", labeler="ana")])
    console, out = _console()
    session = label_in_terminal(store, "tone", labeler="ana", value_type=["polite", "rude"], console=console,
                                input_fn=Script(["1", "", "RUDE", "curt"]), relabel=True)
    assert [(v.trace_id, v.value) for v in session.saved] == [(ids[1], "polite"), (ids[0], "rude")]
    assert {v.trace_id: v.rationale for v in store.labels(name="tone")} == {ids[0]: "curt", ids[1]: ""}
    assert "your earlier label: rude" in out.getvalue()
    with pytest.raises(LabelError, match="give a labeler id"):
        label_in_terminal(store, "tone", labeler=" ", console=console, input_fn=Script([]))
