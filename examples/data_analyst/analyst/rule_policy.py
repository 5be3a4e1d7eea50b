"""A deterministic policy: recognises a few analysis tasks and writes the code for them.

It stands in for a model so the example runs anywhere, and it reads the skills it loads: the
missing-values skill decides whether it imputes with the median or the mean.
"""

from __future__ import annotations

import re
from typing import Any

from analyst.loop import Step, ToolCall

from costar.trace import SpanKind, span

CSV_NAME = re.compile(r"[\w./-]+\.csv")
OUTPUT_NAME = re.compile(r"(?:save|write|as|to)\s+(?:it\s+)?(?:as\s+|to\s+)?`?([\w./-]+\.(?:csv|json|md))`?", re.I)


def _task(prompt: str) -> str:
    p = prompt.lower()
    if "duplicate" in p:
        return "dedupe"
    if "missing" in p and ("fill" in p or "impute" in p):
        return "impute"
    if "convert" in p or ("number" in p and "price" in p):
        return "types"
    if "profile" in p or "summar" in p:
        return "profile"
    if "count" in p and (" per " in p or " by " in p):
        return "count"
    return "unsupported"


SKILL_FOR = {"dedupe": "deduplication", "types": "data-cleaning", "impute": "missing-values",
             "profile": "csv-profiling", "count": "counting"}

PROFILE_CODE = """
import csv, json, statistics
MISSING = {{"", "na", "n/a", "null", "none"}}
with open({src!r}, newline="") as f:
    rows = list(csv.reader(f))
if not rows:
    print("EMPTY")
else:
    header, body = rows[0], rows[1:]
    missing = {{c: sum(1 for r in body if i >= len(r) or r[i].strip().lower() in MISSING) for i, c in enumerate(header)}}
    profile = {{"rows": len(body), "columns": header, "missing": missing}}
    if {out!r}:
        with open({out!r}, "w") as f:
            json.dump(profile, f, indent=2)
    print(json.dumps(profile))
"""

DEDUPE_CODE = """
import csv
with open({src!r}, newline="") as f:
    rows = list(csv.reader(f))
header, body = rows[0], rows[1:]
seen, kept = set(), []
for r in body:
    key = tuple(r)
    if key not in seen:
        seen.add(key)
        kept.append(r)
with open({out!r}, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(header)
    w.writerows(kept)
print(f"kept {{len(kept)}} of {{len(body)}} rows; removed {{len(body) - len(kept)}} duplicates")
"""

IMPUTE_CODE = """
import csv, statistics
with open({src!r}, newline="") as f:
    rows = list(csv.DictReader(f))
col = {col!r}
values = [float(r[col]) for r in rows if r[col].strip()]
mean, median = statistics.mean(values), statistics.median(values)
skewed = abs(mean - median) > 0.1 * abs(median)
use = {strategy!r}
if use == "median-if-skewed":
    use = "median" if skewed else "mean"
fill = median if use == "median" else mean
filled = 0
for r in rows:
    if not r[col].strip():
        r[col] = str(round(fill, 2))
        filled += 1
with open({out!r}, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
print(f"filled {{filled}} missing {{col}} values with the {{use}} ({{fill:.2f}}); mean={{mean:.2f}} median={{median:.2f}} skewed={{skewed}}")
"""

TYPES_CODE = """
import csv
UNKNOWN = {{"", "na", "n/a", "unknown", "null"}}
with open({src!r}, newline="") as f:
    rows = list(csv.DictReader(f))
col = {col!r}
converted = blank = 0
for r in rows:
    raw = r[col].strip()
    if raw.lower() in UNKNOWN:
        r[col] = ""
        blank += 1
        continue
    r[col] = str(float(raw.replace("$", "").replace(",", "").strip()))
    converted += 1
with open({out!r}, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
print(f"converted {{converted}} values to numbers; {{blank}} unknown values left empty")
"""

COUNT_CODE = """
import csv
from collections import Counter
counts = Counter()
with open({src!r}, newline="") as f:
    reader = csv.DictReader(f)
    for r in reader:
        counts[r[{col!r}]] += 1
with open({out!r}, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow([{col!r}, "count"])
    for k, v in sorted(counts.items()):
        w.writerow([k, v])
print(", ".join(f"{{k}}: {{v}}" for k, v in sorted(counts.items())), f"(total {{sum(counts.values())}})")
"""


class RulePolicy:
    """Emits one tool call per step following a fixed plan for the recognised task."""

    def __init__(self) -> None:
        self._n = 0

    def _call(self, tool: str, **arguments: Any) -> Step:
        self._n += 1
        return Step(tool_calls=[ToolCall(id=f"call_{self._n}", name=tool, arguments=arguments)])

    def next_step(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Step:
        with span("rule policy", SpanKind.CHAIN) as s:
            step = self._decide(messages)
            s.set_attribute("output.value", step.text or ", ".join(c.name for c in step.tool_calls))
            return step

    def _decide(self, messages: list[dict[str, Any]]) -> Step:
        prompt = next(m["content"] for m in messages if m["role"] == "user")
        done = [m for m in messages if m["role"] == "assistant"]
        results = [m["content"] for m in messages if m["role"] == "tool"]
        task = _task(prompt)
        files = results[0] if results else ""
        src = next((c for c in CSV_NAME.findall(prompt) if c.split("/")[-1] in files or not results), None)
        if len(done) == 0:
            return self._call("list_files")
        if task == "unsupported":
            return Step(text="I can profile, clean, deduplicate, impute and count CSV data, but I cannot do "
                             "this task.")
        if src is None:
            return Step(text=f"I could not find the CSV file this task is about. Files: {files}")
        if len(done) == 1:
            return self._call("load_skill", name=SKILL_FOR[task])
        if len(done) == 2:
            return self._call("read_file", path=src, max_bytes=2000)
        if len(done) == 3:
            if "(the file is empty)" in results[-1]:
                return Step(text=f"The file {src} is empty: it has no header and no rows, so there is nothing "
                                 "to analyse.")
            return self._call("run_python", code=self._code(task, prompt, src, skill=results[1], head=results[-1]))
        return Step(text=self._answer(task, results[-1]))

    def _code(self, task: str, prompt: str, src: str, *, skill: str, head: str) -> str:
        header = head.splitlines()[0].split(",") if head else []
        out_match = [m for m in OUTPUT_NAME.findall(prompt) if m != src]
        stem = src.rsplit(".", 1)[0]
        if task == "profile":
            return PROFILE_CODE.format(src=src, out=out_match[0] if out_match else "")
        if task == "dedupe":
            return DEDUPE_CODE.format(src=src, out=out_match[0] if out_match else f"{stem}_clean.csv")
        if task == "impute":
            col = next((c for c in header if c.lower() in prompt.lower()), header[-1])
            # Follow the loaded skill: it says which statistic fills which columns.
            if re.search(r"always[^.\n]*median", skill, re.I):
                strategy = "median"
            elif re.search(r"skew\w*[^.\n]*median", skill, re.I):
                strategy = "median-if-skewed"
            else:
                strategy = "mean"
            return IMPUTE_CODE.format(src=src, col=col, strategy=strategy,
                                      out=out_match[0] if out_match else f"{stem}_filled.csv")
        if task == "types":
            col = next((c for c in header if c.lower() in prompt.lower() and c.lower() != "sku"), header[-1])
            return TYPES_CODE.format(src=src, col=col, out=out_match[0] if out_match else f"{stem}_clean.csv")
        col = next((c for c in header if c.lower() in prompt.lower()), header[1] if len(header) > 1 else header[0])
        return COUNT_CODE.format(src=src, col=col, out=out_match[0] if out_match else "counts.csv")

    @staticmethod
    def _answer(task: str, result: str) -> str:
        if result.startswith("error:"):
            return f"The analysis failed: {result[6:].strip()[:300]}"
        if "EMPTY" in result:
            return "The file is empty: there is nothing to analyse."
        return f"Done. {result.strip()[:1500]}"
