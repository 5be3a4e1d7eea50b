"""Label files (CSV, TSV, JSON Lines, JSON arrays) and agreement between two files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix

from costar.align.agreement_files import agreement_between_files
from costar.align.agreement_results import LabelSetError, NoOverlapError, format_agreement
from costar.align.tables import LabelFileError, load_labels
from costar.labels import normalise_label
from tests.support.paths import EXTERNAL

PANDALM = EXTERNAL / "pandalm"
needs_pandalm = pytest.mark.skipif(not (PANDALM / "testset-v1.json").exists(), reason="PandaLM data not present")
HUMANS = PANDALM / "testset-v1.json"
GPT = PANDALM / "gpt-3.5-turbo-testset-v1.json"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------- loading


def test_csv_values_are_normalised(tmp_path: Path) -> None:
    path = write(tmp_path, "labels.csv", "id,label,score\n1,true,0.5\n2,False,2.0\n3,,x\n 4 ,tie,-3\n")
    assert load_labels(path, "id", "label") == {"1": True, "2": False, "3": None, "4": "tie"}
    assert load_labels(path, "id", "score") == {"1": 0.5, "2": 2, "3": "x", "4": -3}
    assert load_labels(path, "id", "score", coerce=False)["2"] == "2.0"


def test_tsv_and_quoted_multiline_cells_keep_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, "labels.tsv", 'id\tnote\tlabel\na\t"two\nlines"\tpass\nb\tshort\n')
    with pytest.raises(LabelFileError, match=r"labels\.tsv:4: row has 2 cells but the header has 3"):
        load_labels(path, "id", "label")


def test_jsonl_with_dotted_paths_and_list_indices(tmp_path: Path) -> None:
    lines = [
        {"trace": {"id": 7}, "info": {"label": "pass"}, "votes": [1, 0]},
        {"trace": {"id": 8.0}, "info": {"label": None}, "votes": [0, 0]},
        {"trace": {"id": "9"}, "info": {"label": "fail"}, "votes": [1, 1]},
    ]
    path = write(tmp_path, "labels.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n\n")
    assert load_labels(path, "trace.id", "info.label") == {"7": "pass", "8": None, "9": "fail"}
    assert load_labels(path, "trace.id", "votes.0") == {"7": 1, "8": 0, "9": 1}


def test_literal_dotted_key_wins(tmp_path: Path) -> None:
    path = write(tmp_path, "x.jsonl", json.dumps({"id": 1, "info.label": "a", "info": {"label": "b"}}))
    assert load_labels(path, "id", "info.label") == {"1": "a"}


def test_json_array_and_json_lines_under_json_suffix(tmp_path: Path) -> None:
    array = write(tmp_path, "array.json", '[\n  {"id": 1, "v": "1"},\n  {"id": 2, "v": 2}\n]\n')
    assert load_labels(array, "id", "v") == {"1": 1, "2": 2}
    lines = write(tmp_path, "lines.json", '{"id": 1, "v": "yes"}\n{"id": 2, "v": "no"}\n')
    assert load_labels(lines, "id", "v") == {"1": "yes", "2": "no"}


def test_duplicate_ids(tmp_path: Path) -> None:
    same = write(tmp_path, "same.csv", "id,label\n1,a\n2,b\n1,a\n")
    assert load_labels(same, "id", "label") == {"1": "a", "2": "b"}
    conflict = write(tmp_path, "conflict.csv", "id,label\n1,a\n2,b\n1,c\n")
    message = r"conflict\.csv:4: id '1' appears again with label='c' but line 2 has 'a'"
    with pytest.raises(LabelFileError, match=message):
        load_labels(conflict, "id", "label")


def test_missing_field_names_line_and_available_fields(tmp_path: Path) -> None:
    path = write(tmp_path, "x.jsonl", '{"id": 1, "info": {"label": 1}}\n{"id": 2, "info": {"score": 1}}\n')
    with pytest.raises(LabelFileError, match=r"x\.jsonl:2: no field 'info\.label' under 'info'; fields there: "
                                             r"score; fix the field name"):
        load_labels(path, "id", "info.label")
    with pytest.raises(LabelFileError, match=r"x\.jsonl:1: no field 'idx'; fields there: id, info; pass the id"):
        load_labels(path, "idx", "info.label")
    csv_path = write(tmp_path, "x.csv", "id,label\n1,a\n")
    with pytest.raises(LabelFileError, match=r"x\.csv:2: no field 'lable'; fields there: id, label"):
        load_labels(csv_path, "id", "lable")


def test_bad_records(tmp_path: Path) -> None:
    cases = {
        "broken.jsonl": ('{"id": 1, "v": 1}\n{"id": 2, "v": \n', r"broken\.jsonl:2: invalid JSON"),
        "broken.json": ('[\n {"id": 1, "v": 1},\n {"id": 2 "v": 2}\n]', r"broken\.json:3: invalid JSON"),
        "scalar.json": ('[\n {"id": 1, "v": 1},\n 5\n]', r"scalar\.json:3: expected a JSON object per record"),
        "object.jsonl": ('{"id": 1, "v": {"label": 1}}', r"object\.jsonl:1: field 'v' holds a dict.*'v\.<name>'"),
        "noid.jsonl": ('{"id": null, "v": 1}', r"noid\.jsonl:1: the id at key 'id' is empty"),
        "empty.json": ("[]", r"empty\.json: no records found"),
        "dupe.csv": ("id,v,v\n1,2,3\n", r"dupe\.csv:1: column\(s\) v appear twice"),
    }
    for name, (text, message) in cases.items():
        with pytest.raises(LabelFileError, match=message):
            load_labels(write(tmp_path, name, text), "id", "v")
    with pytest.raises(LabelFileError, match="cannot read the file"):
        load_labels(tmp_path / "absent.csv", "id", "v")


def test_normalise_label() -> None:
    assert [normalise_label(x) for x in ["1", " 2 ", "1.50", "1e2", "TRUE", "nan", "", 3.0, None]] == [
        1, 2, 1.5, 100, True, "nan", None, 3, None]
    with pytest.raises(TypeError):
        normalise_label([1])


# -------------------------------------------------------------------- between two files


@needs_pandalm
def test_pandalm_annotators_match_sklearn() -> None:
    records = sorted(json.loads(HUMANS.read_text()), key=lambda r: r["idx"])
    a1, a2 = [r["annotator1"] for r in records], [r["annotator2"] for r in records]
    result = agreement_between_files(HUMANS, HUMANS, "idx", "annotator1", "annotator2")
    json.dumps(result)  # JSON-serialisable as returned
    assert result["kind"] == "categorical"
    assert result["n"] == 999
    assert result["kappa"]["value"] == pytest.approx(cohen_kappa_score(a1, a2))
    assert result["kappa_quadratic"]["value"] == pytest.approx(cohen_kappa_score(a1, a2, weights="quadratic"))
    assert result["accuracy"]["value"] == pytest.approx(accuracy_score(a1, a2))
    assert result["confusion"]["counts"] == confusion_matrix(a1, a2).tolist()
    assert result["sources"]["b"] == {"path": str(HUMANS), "key": "idx", "field": "annotator2", "items": 999,
                                      "recode": {}}


@needs_pandalm
def test_pandalm_model_judge_string_verdicts_align_with_integer_labels() -> None:
    # gpt_result holds "1", "2", "Tie" and "garbage"; "1" and "2" must meet the annotators' 1 and 2.
    raw = agreement_between_files(HUMANS, GPT, "idx", "annotator1", "gpt_result")
    assert raw["labels"] == [0, 1, 2, "Tie", "garbage"]
    recoded = agreement_between_files(HUMANS, GPT, "idx", "annotator1", "gpt_result",
                                      recode_b={"Tie": 0, "garbage": None}, labels=[1, 0, 2])
    assert recoded["n"] == 974
    assert recoded["coverage"]["unlabelled"] == 25
    assert recoded["labels"] == [1, 0, 2]
    humans = {r["idx"]: r["annotator1"] for r in json.loads(HUMANS.read_text())}
    verdicts = {r["idx"]: {"1": 1, "2": 2, "Tie": 0}.get(r["gpt_result"]) for r in json.loads(GPT.read_text())}
    kept = [i for i in humans if verdicts[i] is not None]
    a, b = [humans[i] for i in kept], [verdicts[i] for i in kept]
    assert recoded["kappa"]["value"] == pytest.approx(cohen_kappa_score(a, b))
    assert recoded["kappa_linear"]["value"] == pytest.approx(
        cohen_kappa_score(a, b, labels=[1, 0, 2], weights="linear"))
    text = format_agreement(recoded)
    assert text.splitlines()[0].endswith("[annotator1] by idx (reference)")
    assert "974 items (excluded: 0 only in a, 0 only in b, 25 unlabelled)" in text


@needs_pandalm
def test_unlabelled_garbage_can_be_kept_as_a_disagreement() -> None:
    result = agreement_between_files(HUMANS, GPT, "idx", "annotator1", "gpt_result", recode_b={"Tie": 0})
    assert result["n"] == 999
    assert result["labels"] == [0, 1, 2, "garbage"]
    # The 25 unparseable verdicts count against the judge: 691 of 999 agree instead of 691 of 974.
    assert result["accuracy"]["count"] == 691
    assert result["accuracy"]["total"] == 999
    assert result["kappa_linear"] is None  # a string label has no place on the ordinal scale


def test_binary_files_with_different_id_fields(tmp_path: Path) -> None:
    humans = write(tmp_path, "humans.csv", "trace,verdict\nt1,pass\nt2,fail\nt3,pass\nt4,pass\nt5,\n")
    judge = write(tmp_path, "judge.jsonl", "\n".join(json.dumps({"tid": t, "out": {"v": v}}) for t, v in
                                                  [("t1", "pass"), ("t2", "pass"), ("t3", "pass"),
                                                   ("t4", "fail"), ("t6", "fail")]))
    result = agreement_between_files(humans, judge, "trace", "verdict", "out.v", b_key="tid", resamples=100)
    assert result["kind"] == "binary"
    assert result["positive"] == "pass"
    assert result["negative"] == "fail"
    assert (result["tp"], result["fn"], result["fp"], result["tn"]) == (2, 1, 1, 0)
    cov = result["coverage"]
    assert (cov["only_a"], cov["only_b"], cov["unlabelled"]) == (1, 1, 0)
    text = format_agreement(result)
    assert "binary agreement, positive label 'pass': 4 items" in text
    assert "TPR (recall)       0.667" in text


def test_recode_typos_and_explicit_positive(tmp_path: Path) -> None:
    a = write(tmp_path, "a.csv", "id,y\n1,good\n2,bad\n3,good\n")
    b = write(tmp_path, "b.csv", "id,y\n1,1\n2,0\n3,0\n")
    result = agreement_between_files(a, b, "id", "y", "y", recode_a={"good": 1, "bad": 0, "god": 1},
                                     positive=1, resamples=0)
    assert result["kind"] == "binary"
    assert result["positive"] == 1
    assert (result["tp"], result["fn"], result["tn"]) == (1, 1, 1)
    assert any("recode_a entry 'god' matched no label" in n for n in result["notes"])
    with pytest.raises(LabelSetError, match="binary agreement needs two labels, found 3"):
        agreement_between_files(a, b, "id", "y", "y", recode_a={"good": 1, "bda": 0}, positive=1)


def test_files_without_shared_ids(tmp_path: Path) -> None:
    a = write(tmp_path, "a.csv", "id,y\n1,a\n")
    b = write(tmp_path, "b.csv", "id,y\n2,a\n")
    with pytest.raises(NoOverlapError, match="no item id is in both sources"):
        agreement_between_files(a, b, "id", "y", "y")
