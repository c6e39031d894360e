"""The FastAPI app in-process (httpx.ASGITransport): parity with Reranker, limits, errors, batching, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import _tiny
import httpx
import numpy as np
import pytest

from rerank_plugins import Reranker
from rerank_plugins.serving import ServeSettings, create_app

QUERY = "Which city is the capital of France?"
TEXTS = list(_tiny.ENGLISH)
QUERIES = [
    QUERY,
    "How do cross-encoders score passages?",
    "When did the oil crisis begin?",
    "What do plants do with light?",
    "At what temperature does water boil?",
    "Where is the Amazon rainforest?",
]


@contextlib.asynccontextmanager
async def asgi_client(app, **headers):
    """The app with its lifespan running, reached through httpx without a socket."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app", headers=headers) as client:
            yield client


@pytest.fixture
def reranker(tiny_cross_encoder) -> Reranker:
    return Reranker(tiny_cross_encoder)


def expected_logits(reranker: Reranker, query: str, texts: list[str]) -> np.ndarray:
    """The in-process reference: Reranker.score with normalize='none' over the same weights."""
    raw = Reranker(reranker.model_id, normalize="none")
    return np.asarray(raw.score(query, texts), dtype=np.float32)


def sorted_indices(scores) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: -scores[i])


# --------------------------------------------------------------------------- parity


async def test_tei_rerank_matches_reranker(reranker):
    app = create_app(reranker, settings=ServeSettings())
    logits = expected_logits(reranker, QUERY, TEXTS)
    probs = 1 / (1 + np.exp(-logits.astype(np.float64)))
    async with asgi_client(app) as client:
        raw = await client.post("/rerank", json={"query": QUERY, "texts": TEXTS, "raw_scores": True})
        norm = await client.post("/rerank", json={"query": QUERY, "texts": TEXTS, "return_text": True})
    assert raw.status_code == 200 and norm.status_code == 200
    raw_body, norm_body = raw.json(), norm.json()
    assert [r["index"] for r in raw_body] == sorted_indices(logits)
    assert [r["index"] for r in norm_body] == sorted_indices(logits)
    for r in raw_body:
        assert r["score"] == pytest.approx(float(logits[r["index"]]), abs=1e-5)
        assert "text" not in r
    for r in norm_body:
        assert r["score"] == pytest.approx(float(probs[r["index"]]), abs=1e-5)
        assert r["text"] == TEXTS[r["index"]]


async def test_cohere_rerank_matches_reranker_top_n_documents_usage(reranker):
    app = create_app(reranker, settings=ServeSettings(model_name="tiny-ce"))
    expected = reranker.rerank(QUERY, TEXTS, top_n=3)
    documents = [t if i % 2 else {"text": t} for i, t in enumerate(TEXTS)]  # both accepted shapes
    async with asgi_client(app) as client:
        response = await client.post(
            "/v1/rerank", json={"model": "ignored", "query": QUERY, "documents": documents, "top_n": 3,
                                "return_documents": True},
        )
        bare = await client.post("/v1/rerank", json={"query": QUERY, "documents": TEXTS})
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "tiny-ce"
    assert [r["index"] for r in body["results"]] == [r.index for r in expected]
    for got, want in zip(body["results"], expected, strict=True):
        assert got["relevance_score"] == pytest.approx(want.score, abs=1e-5)
        assert got["document"] == {"text": want.text}
    tokenizer = reranker.backend.tokenizer
    want_tokens = sum(len(tokenizer(QUERY, t, truncation=True, max_length=reranker.max_length)["input_ids"])
                      for t in TEXTS)
    assert body["usage"] == {"total_tokens": want_tokens}
    all_results = bare.json()["results"]
    assert len(all_results) == len(TEXTS) and all("document" not in r for r in all_results)


async def test_softmax_normalisation_is_served_as_in_process(tiny_bert):
    reranker = Reranker(tiny_bert, normalize="softmax")
    app = create_app(reranker, settings=ServeSettings())
    want = reranker.score(QUERY, TEXTS)
    async with asgi_client(app) as client:
        body = (await client.post("/rerank", json={"query": QUERY, "texts": TEXTS})).json()
    assert sum(r["score"] for r in body) == pytest.approx(1.0, abs=1e-5)
    for r in body:
        assert r["score"] == pytest.approx(want[r["index"]], abs=1e-5)


async def test_concurrent_requests_share_batches_and_keep_their_own_scores(reranker):
    app = create_app(reranker, settings=ServeSettings(max_wait_ms=200))
    want = [expected_logits(reranker, q, TEXTS[i:] + TEXTS[:i]) for i, q in enumerate(QUERIES)]
    async with asgi_client(app) as client:
        responses = await asyncio.gather(*(
            client.post("/rerank", json={"query": q, "texts": TEXTS[i:] + TEXTS[:i], "raw_scores": True})
            for i, q in enumerate(QUERIES)
        ))
        metrics = (await client.get("/metrics")).text
    for response, logits in zip(responses, want, strict=True):
        assert response.status_code == 200
        got = {r["index"]: r["score"] for r in response.json()}
        np.testing.assert_allclose([got[i] for i in range(len(TEXTS))], logits, atol=1e-5)
    # All six requests arrived within the 200 ms window: fewer scoring calls than requests.
    calls = _metric(metrics, "rerank_batch_requests_count")
    assert 1 <= calls < len(QUERIES)
    assert _metric(metrics, "rerank_pairs_scored_total") == len(QUERIES) * len(TEXTS)


async def test_batching_off_scores_each_request_alone(reranker):
    app = create_app(reranker, settings=ServeSettings(batching=False, max_wait_ms=200))
    async with asgi_client(app) as client:
        responses = await asyncio.gather(*(client.post("/rerank", json={"query": q, "texts": TEXTS})
                                           for q in QUERIES[:3]))
        metrics = (await client.get("/metrics")).text
    assert all(r.status_code == 200 for r in responses)
    assert _metric(metrics, "rerank_batch_requests_count") == 3


async def test_empty_texts_and_info_and_metrics(reranker):
    app = create_app(reranker, settings=ServeSettings(max_documents=7))
    async with asgi_client(app) as client:
        empty = await client.post("/rerank", json={"query": QUERY, "texts": []})
        info = (await client.get("/info")).json()
        await client.post("/rerank", json={"query": QUERY, "texts": "not a list"})
        metrics = await client.get("/metrics")
    assert empty.status_code == 200 and empty.json() == []
    assert info["model_id"] == reranker.model_id and info["kind"] == "cross-encoder"
    assert info["dtype"] == "float32" and info["max_length"] == reranker.max_length
    assert info["max_client_batch_size"] == 7 and info["limits"]["max_documents"] == 7
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'rerank_requests_total{path="/rerank",status="422"} 1.0' in metrics.text
    assert 'rerank_requests_total{path="/rerank",status="200"} 1.0' in metrics.text
    assert "rerank_request_seconds_bucket" in metrics.text and "rerank_queue_depth 0.0" in metrics.text


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("settings", "body", "named"),
    [
        (ServeSettings(max_documents=3), {"query": "q", "texts": ["a", "b", "c", "d"]}, "max_documents=3"),
        (ServeSettings(max_document_chars=10), {"query": "q", "texts": ["short", "x" * 11]},
         "texts[1]: 11 characters exceed max_document_chars=10"),
        (ServeSettings(max_total_chars=20), {"query": "q" * 5, "texts": ["x" * 10, "y" * 10]},
         "max_total_chars=20"),
    ],
)
async def test_413_names_the_limit(reranker, settings, body, named):
    app = create_app(reranker, settings=settings)
    async with asgi_client(app) as client:
        tei = await client.post("/rerank", json=body)
        cohere = await client.post("/v1/rerank", json={"query": body["query"], "documents": body["texts"]})
    for response in (tei, cohere):
        assert response.status_code == 413
        message = response.json()["message"]
        assert named.replace("texts", "documents" if response is cohere else "texts") in message


async def test_413_when_not_truncating_a_pair_over_max_length(tiny_cross_encoder):
    reranker = Reranker(tiny_cross_encoder, max_length=24)
    app = create_app(reranker, settings=ServeSettings())
    long_text = " ".join(TEXTS)
    async with asgi_client(app) as client:
        refused = await client.post("/rerank", json={"query": QUERY, "texts": ["short", long_text],
                                                      "truncate": False})
        truncated = await client.post("/rerank", json={"query": QUERY, "texts": ["short", long_text]})
    assert refused.status_code == 413
    assert "texts[1]" in refused.json()["message"] and "max_length=24" in refused.json()["message"]
    assert truncated.status_code == 200


@pytest.mark.parametrize(
    ("path", "payload", "named"),
    [
        ("/rerank", {"query": 3, "texts": ["a"]}, "query"),
        ("/rerank", {"query": "q", "texts": ["a", 2]}, "texts[1]"),
        ("/rerank", {"query": "q"}, "texts"),
        ("/rerank", {"query": "q", "texts": ["a"], "raw_scores": "yes"}, "raw_scores"),
        ("/v1/rerank", {"query": "q", "documents": ["a"], "top_n": 0}, "top_n"),
        ("/v1/rerank", {"query": "q", "documents": [{"txt": "a"}]}, "documents[0]"),
        ("/v1/rerank", {"query": "q", "documents": ["a"], "top_n": "2"}, "top_n"),
    ],
)
async def test_422_names_the_field(reranker, path, payload, named):
    app = create_app(reranker, settings=ServeSettings())
    async with asgi_client(app) as client:
        response = await client.post(path, json=payload)
    assert response.status_code == 422
    body = response.json()
    assert body["error_type"] == "validation"
    assert body["message"].startswith(f"{named}: ") or f"; {named}: " in body["message"]


async def test_422_on_malformed_json(reranker):
    app = create_app(reranker, settings=ServeSettings())
    async with asgi_client(app) as client:
        response = await client.post("/rerank", content=b'{"query": "q", "texts": [', headers={
            "content-type": "application/json"})
    assert response.status_code == 422
    assert "JSON" in response.json()["message"]


async def test_401_without_the_bearer_key(reranker, monkeypatch):
    monkeypatch.setenv("RERANK_TEST_KEY", "s3cret-key")
    app = create_app(reranker, settings=ServeSettings(api_key_env="RERANK_TEST_KEY"))
    body = {"query": QUERY, "texts": TEXTS[:2]}
    async with asgi_client(app) as client:
        missing = await client.post("/rerank", json=body)
        wrong = await client.post("/v1/rerank", json={"query": QUERY, "documents": TEXTS[:2]},
                                  headers={"Authorization": "Bearer nope"})
        info = await client.get("/info")
        health = await client.get("/health")
        ok = await client.post("/rerank", json=body, headers={"Authorization": "Bearer s3cret-key"})
    for response in (missing, wrong, info):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert "s3cret" not in response.text and "API key" in response.json()["message"]
    assert health.status_code == 200 and ok.status_code == 200


def test_api_key_env_must_be_set(reranker, monkeypatch):
    monkeypatch.delenv("RERANK_UNSET_KEY", raising=False)
    with pytest.raises(ValueError, match="RERANK_UNSET_KEY is unset or empty"):
        create_app(reranker, settings=ServeSettings(api_key_env="RERANK_UNSET_KEY"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"max_documents": 0}, "max_documents"), ({"max_queue": True}, "max_queue"),
     ({"max_wait_ms": -1}, "max_wait_ms"), ({"api_key_env": ""}, "api_key_env")],
)
def test_settings_are_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ServeSettings(**kwargs)


class GatedReranker(Reranker):
    """A real Reranker whose rerank_many waits for a gate: holds the worker busy on demand."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.entered = threading.Event()

    def rerank_many(self, *args, **kwargs):
        self.entered.set()
        assert self.gate.wait(timeout=60), "the test never opened the gate"
        return super().rerank_many(*args, **kwargs)


async def test_503_with_retry_after_when_the_queue_is_full(tiny_cross_encoder):
    reranker = GatedReranker(tiny_cross_encoder)
    app = create_app(reranker, settings=ServeSettings(max_queue=1, max_wait_ms=0, retry_after_s=3))
    body = {"query": QUERY, "texts": TEXTS, "raw_scores": True}
    async with asgi_client(app) as client:
        first = asyncio.create_task(client.post("/rerank", json=body))
        for _ in range(500):  # bounded: until the worker holds the first request
            if reranker.entered.is_set():
                break
            await asyncio.sleep(0.01)
        assert reranker.entered.is_set()
        second = asyncio.create_task(client.post("/rerank", json=body))  # waits in the queue
        for _ in range(500):
            if app.state.rerank.queue.depth == 1:
                break
            await asyncio.sleep(0.01)
        refused = await client.post("/rerank", json=body)
        refused_cohere = await client.post("/v1/rerank", json={"query": QUERY, "documents": TEXTS})
        reranker.gate.set()
        answered = await asyncio.gather(first, second)
    for response in (refused, refused_cohere):
        assert response.status_code == 503
        assert response.headers["retry-after"] == "3"
        assert "queue is full" in response.json()["message"]
    want = expected_logits(reranker, QUERY, TEXTS)
    for response in answered:  # nothing lost: the admitted requests are answered with their scores
        assert response.status_code == 200
        got = {r["index"]: r["score"] for r in response.json()}
        np.testing.assert_allclose([got[i] for i in range(len(TEXTS))], want, atol=1e-5)


async def test_health_is_503_until_the_model_is_loaded(tiny_cross_encoder):
    gate = threading.Event()

    def load() -> Reranker:
        assert gate.wait(timeout=60)
        return Reranker(tiny_cross_encoder)

    app = create_app(load, settings=ServeSettings())
    async with asgi_client(app) as client:
        before = await client.get("/health")
        scoring = await client.post("/rerank", json={"query": QUERY, "texts": TEXTS})
        gate.set()
        deadline = time.monotonic() + 60
        while (after := await client.get("/health")).status_code != 200 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        ok = await client.post("/rerank", json={"query": QUERY, "texts": TEXTS})
    assert before.status_code == 503 and before.json()["status"] == "loading"
    assert before.headers["retry-after"] == "1"
    assert scoring.status_code == 503 and scoring.json()["message"] == "the model is loading"
    assert after.status_code == 200 and after.json() == {"status": "ok"}
    assert ok.status_code == 200 and len(ok.json()) == len(TEXTS)


async def test_health_reports_a_failed_load(tmp_path):
    app = create_app(lambda: Reranker(tmp_path / "missing"), settings=ServeSettings())
    async with asgi_client(app) as client:
        deadline = time.monotonic() + 30
        while app.state.rerank.load_error is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        health = await client.get("/health")
    assert health.status_code == 503
    assert health.json()["status"] == "failed" and "does not exist" in health.json()["message"]


async def test_unknown_path_is_a_json_404(reranker):
    app = create_app(reranker, settings=ServeSettings())
    async with asgi_client(app) as client:
        response = await client.get("/nope")
    assert response.status_code == 404 and response.json()["message"] == "Not Found"


@pytest.mark.parametrize("fixture", ["tiny_qwen3", "tiny_gemma"])
async def test_llm_rerankers_are_served_with_in_process_scores(request, fixture):
    """Qwen3-Reranker (log-odds) and bge-gemma through the server equal the in-process Reranker."""
    reranker = Reranker(request.getfixturevalue(fixture), normalize="none")
    logits = np.asarray(reranker.score(QUERY, TEXTS[:5]), dtype=np.float32)
    app = create_app(reranker, settings=ServeSettings())
    async with asgi_client(app) as client:
        tei = await client.post("/rerank", json={"query": QUERY, "texts": TEXTS[:5], "raw_scores": True})
        cohere = await client.post("/v1/rerank", json={"query": QUERY, "documents": TEXTS[:5], "top_n": 2})
    assert tei.status_code == 200 and cohere.status_code == 200
    assert [r["index"] for r in tei.json()] == sorted_indices(logits)
    for r in tei.json():
        assert r["score"] == pytest.approx(float(logits[r["index"]]), abs=1e-5)
    assert [r["index"] for r in cohere.json()["results"]] == sorted_indices(logits)[:2]
