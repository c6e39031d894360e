"""``rerank-plugins serve`` as a subprocess on 127.0.0.1: parity, SIGTERM with requests in flight, the real model."""

from __future__ import annotations

import threading
import time

import _tiny
import httpx
import numpy as np
import pytest
from _servers import free_port

from rerank_plugins import Reranker

QUERY = "Which city is the capital of France?"
TEXTS = list(_tiny.ENGLISH)
REAL_QUERY = "What is the capital of France?"
REAL_TEXTS = [
    "Berlin is the capital and largest city of Germany.",
    "Paris is the capital and most populous city of France.",
    "The Eiffel Tower is a wrought-iron lattice tower in Paris.",
    "France is a country in Western Europe with several overseas territories.",
    "Photosynthesis converts light energy into chemical energy.",
    "Lyon is the third-largest city of France.",
]


def metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def check_parity(url: str, local_raw: Reranker, local: Reranker, query: str, texts: list[str]) -> None:
    logits = np.asarray(local_raw.score(query, texts), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: -logits[i])
    tei = httpx.post(f"{url}/rerank", json={"query": query, "texts": texts, "raw_scores": True}, timeout=60)
    assert tei.status_code == 200
    assert [r["index"] for r in tei.json()] == order
    np.testing.assert_allclose([r["score"] for r in tei.json()], logits[order], atol=1e-5)
    cohere = httpx.post(f"{url}/v1/rerank", json={"query": query, "documents": texts, "top_n": 3}, timeout=60)
    assert cohere.status_code == 200
    want = local.rerank(query, texts, top_n=3)
    assert [r["index"] for r in cohere.json()["results"]] == [r.index for r in want]
    np.testing.assert_allclose([r["relevance_score"] for r in cohere.json()["results"]],
                               [r.score for r in want], atol=1e-5)


def test_subprocess_serves_in_process_scores_and_sigterm_finishes_in_flight(serve_process, tiny_cross_encoder):
    # A 5 s gathering window holds the requests in flight while SIGTERM arrives.
    server = serve_process(tiny_cross_encoder, "--max-wait-ms", "5000", "--max-batch-pairs", "100000").wait_ready()
    assert server.health_statuses[-1] == 200
    local_raw, local = Reranker(tiny_cross_encoder, normalize="none"), Reranker(tiny_cross_encoder)
    check_parity(server.url, local_raw, local, QUERY, TEXTS)

    n = 6
    queries = [f"{QUERY} #{i}" for i in range(n)]
    answers: list[httpx.Response | BaseException | None] = [None] * n

    def call(i: int) -> None:
        try:
            answers[i] = httpx.post(f"{server.url}/rerank", json={"query": queries[i], "texts": TEXTS,
                                                                   "raw_scores": True}, timeout=60)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertions below
            answers[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while metric(server.url, "rerank_in_flight") < n + 1 and time.monotonic() < deadline:  # +1: this /metrics
        time.sleep(0.05)
    assert metric(server.url, "rerank_in_flight") == n + 1
    assert server.terminate(timeout=60) == 0
    for t in threads:
        t.join(timeout=60)
    for query, answer in zip(queries, answers, strict=True):
        assert isinstance(answer, httpx.Response), answer
        assert answer.status_code == 200
        got = {r["index"]: r["score"] for r in answer.json()}
        np.testing.assert_allclose([got[i] for i in range(len(TEXTS))], local_raw.score(query, TEXTS), atol=1e-5)
    with pytest.raises(httpx.ConnectError):  # new requests are refused once it has exited
        httpx.get(f"{server.url}/health", timeout=5)


@pytest.mark.real
def test_subprocess_real_model_matches_in_process(serve_process, ms_marco_dir):
    server = serve_process(ms_marco_dir).wait_ready()
    # Before the model loaded, /health was 503 (or the port was not open yet); never 200 early.
    assert set(server.health_statuses[:-1]) <= {0, 503} and server.health_statuses[-1] == 200
    local_raw, local = Reranker(ms_marco_dir, normalize="none"), Reranker(ms_marco_dir)
    check_parity(server.url, local_raw, local, REAL_QUERY, REAL_TEXTS)
    best = httpx.post(f"{server.url}/v1/rerank", json={"query": REAL_QUERY, "documents": REAL_TEXTS, "top_n": 1},
                      timeout=60).json()["results"][0]
    assert best["index"] == 1 and best["relevance_score"] > 0.9
    assert server.terminate() == 0


def test_serve_cli_refuses_a_missing_model_and_bad_flags(tmp_path, capsys, monkeypatch):
    from rerank_plugins.cli import main

    assert main(["serve", "--model", str(tmp_path / "missing"), "--port", str(free_port())]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["serve", "--model", str(tmp_path), "--max-wait-ms", "-3"]) == 2
    assert "--max-wait-ms" in capsys.readouterr().err
    monkeypatch.delenv("RERANK_NO_SUCH_KEY", raising=False)
    assert main(["serve", "--model", str(tmp_path), "--api-key-env", "RERANK_NO_SUCH_KEY"]) == 1
    assert "RERANK_NO_SUCH_KEY is unset or empty" in capsys.readouterr().err


def test_serve_exits_1_when_the_model_cannot_load(serve_process, tmp_path):
    (tmp_path / "config.json").write_text("{}")  # a directory with no usable model
    server = serve_process(tmp_path)
    try:
        code = server.proc.wait(timeout=120)
    except Exception:
        server.close()
        raise
    out = server.output()
    assert code == 1, out
    assert "rerank-plugins: error: --model:" in out and "cannot detect the reranker kind" in out
