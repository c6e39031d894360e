"""kind="remote" against this package's server: every front door, both adapters and the CLI give in-process results."""

from __future__ import annotations

import asyncio
import json
import threading

import _tiny
import numpy as np
import pytest
from _servers import thread_server

from rerank_plugins import ModelLoadError, RemoteError, Reranker
from rerank_plugins.serving import ServeSettings, create_app

QUERY = "Which city is the capital of France?"
TEXTS = list(_tiny.ENGLISH)
QUERIES = [QUERY, "How do cross-encoders score passages?", "When did the oil crisis begin?"]
DOCS = [TEXTS, TEXTS[3:9], TEXTS[::-1][:5]]


@pytest.fixture(scope="module")
def local(tiny_cross_encoder) -> Reranker:
    return Reranker(tiny_cross_encoder)


@pytest.fixture(scope="module")
def server_url(local):
    # max_documents=4: the server's limit, read from /info, makes the client cut requests into chunks of 4.
    app = create_app(local, settings=ServeSettings(max_documents=4, max_wait_ms=2))
    with thread_server(app) as url:
        yield url


@pytest.fixture(scope="module")
def remote(server_url) -> Reranker:
    return Reranker(server_url)


def test_auto_detects_remote_tei_and_the_server_limit(remote, server_url, local):
    assert remote.kind == "remote" and remote.model_id == server_url
    assert remote.backend.api == "tei" and remote.backend.chunk_size == 4
    assert remote.backend.served_model == local.model_id
    assert remote.max_length == local.max_length
    assert "kind='remote'" in repr(remote)


def test_score_and_rerank_match_in_process(remote, local):
    np.testing.assert_allclose(remote.score(QUERY, TEXTS), local.score(QUERY, TEXTS), atol=1e-5)
    got, want = remote.rerank(QUERY, TEXTS, top_n=5), local.rerank(QUERY, TEXTS, top_n=5)
    assert [r.index for r in got] == [r.index for r in want]
    assert [r.text for r in got] == [r.text for r in want]
    np.testing.assert_allclose([r.logit for r in got], [r.logit for r in want], atol=1e-5)
    np.testing.assert_allclose([r.score for r in got], [r.score for r in want], atol=1e-5)
    # Between the 3rd and 4th scores: the two sides agree within 1e-5, not bit for bit.
    threshold = (want[2].score + want[3].score) / 2
    assert [r.index for r in remote.rerank(QUERY, TEXTS, score_threshold=threshold)] == [r.index for r in want[:3]]


def test_many_queries_match_in_process(remote, local):
    got, want = remote.score_many(QUERIES, DOCS), local.score_many(QUERIES, DOCS)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, atol=1e-5)
    got_r, want_r = remote.rerank_many(QUERIES, DOCS, top_n=2), local.rerank_many(QUERIES, DOCS, top_n=2)
    assert [[r.index for r in rs] for rs in got_r] == [[r.index for r in rs] for rs in want_r]


async def test_async_front_doors_match_in_process(remote, local):
    got = await remote.arerank(QUERY, TEXTS, top_n=4)
    assert [(r.index, round(r.logit, 4)) for r in got] == [(r.index, round(r.logit, 4))
                                                          for r in local.rerank(QUERY, TEXTS, top_n=4)]
    scores = await asyncio.gather(*(remote.ascore(q, d) for q, d in zip(QUERIES, DOCS, strict=True)))
    for s, q, d in zip(scores, QUERIES, DOCS, strict=True):
        np.testing.assert_allclose(s, local.score(q, d), atol=1e-5)


def test_async_path_awaits_the_server_natively(remote, monkeypatch):
    def sync_path(*args, **kwargs):
        raise AssertionError("the remote async path must not run the blocking path in a thread")

    for name in ("score", "rerank"):
        monkeypatch.setattr(remote, name, sync_path)
    monkeypatch.setattr(remote.backend, "score_pairs", sync_path)
    assert len(asyncio.run(remote.ascore(QUERY, TEXTS[:3]))) == 3
    assert len(asyncio.run(remote.arerank(QUERY, TEXTS[:3]))) == 3


@pytest.mark.parametrize("normalize", ["none", "softmax"])
def test_normalize_means_the_same_as_in_process(server_url, tiny_cross_encoder, normalize):
    remote = Reranker(server_url, normalize=normalize)
    local = Reranker(tiny_cross_encoder, normalize=normalize)
    np.testing.assert_allclose(remote.score(QUERY, TEXTS), local.score(QUERY, TEXTS), atol=1e-5)


def test_cohere_api_gives_the_served_relevance_scores(server_url, local):
    remote = Reranker(server_url, api="cohere")
    assert remote.backend.endpoint == "/v1/rerank"
    # The server's relevance scores are sigmoid(logit): read back as logits, the default sigmoid returns them.
    np.testing.assert_allclose(remote.score(QUERY, TEXTS), local.score(QUERY, TEXTS), atol=1e-6)
    raw = Reranker(server_url, api="cohere", normalize="none").score(QUERY, TEXTS)
    np.testing.assert_allclose(raw, Reranker(local.model_id, normalize="none").score(QUERY, TEXTS), atol=1e-3)


def test_langchain_adapter_over_a_url(server_url, local):
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document

    from rerank_plugins.integrations.langchain import RerankCompressor

    docs = [Document(page_content=t, metadata={"i": i}) for i, t in enumerate(TEXTS)]
    remote_c = RerankCompressor(reranker=server_url, top_n=4)
    local_c = RerankCompressor(reranker=local, top_n=4)
    assert remote_c.reranker.kind == "remote"
    got, want = remote_c.compress_documents(docs, QUERY), local_c.compress_documents(docs, QUERY)
    assert [d.metadata["i"] for d in got] == [d.metadata["i"] for d in want]
    np.testing.assert_allclose([d.metadata["relevance_score"] for d in got],
                               [d.metadata["relevance_score"] for d in want], atol=1e-5)
    agot = asyncio.run(remote_c.acompress_documents(docs, QUERY))
    assert [d.metadata["i"] for d in agot] == [d.metadata["i"] for d in want]


def test_llamaindex_adapter_over_a_url(server_url, local):
    pytest.importorskip("llama_index.core")
    from llama_index.core.schema import NodeWithScore, TextNode

    from rerank_plugins.integrations.llamaindex import RerankPostprocessor

    nodes = [NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=0.0) for i, t in enumerate(TEXTS)]
    got = RerankPostprocessor(server_url, top_n=3).postprocess_nodes(nodes, query_str=QUERY)
    want = RerankPostprocessor(local, top_n=3).postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in got] == [n.node.node_id for n in want]
    np.testing.assert_allclose([n.score for n in got], [n.score for n in want], atol=1e-5)


def test_cli_score_against_a_url(server_url, local, capsys):
    from rerank_plugins.cli import main

    assert main(["score", "--reranker", server_url, "--query", QUERY, *TEXTS[:5]]) == 0
    remote_out = json.loads(capsys.readouterr().out)
    assert main(["score", "--reranker", local.model_id, "--query", QUERY, *TEXTS[:5]]) == 0
    local_out = json.loads(capsys.readouterr().out)
    assert remote_out["model"] == server_url
    assert [r["index"] for r in remote_out["results"]] == [r["index"] for r in local_out["results"]]
    np.testing.assert_allclose([r["logit"] for r in remote_out["results"]],
                               [r["logit"] for r in local_out["results"]], atol=1e-5)


def test_api_key_is_sent_and_checked(local, monkeypatch):
    monkeypatch.setenv("RERANK_REMOTE_KEY", "k-123")
    app = create_app(local, settings=ServeSettings(api_key_env="RERANK_REMOTE_KEY"))
    with thread_server(app) as url:
        ok = Reranker(url, api_key="k-123")
        np.testing.assert_allclose(ok.score(QUERY, TEXTS[:3]), local.score(QUERY, TEXTS[:3]), atol=1e-5)
        with pytest.raises(ModelLoadError, match="401"):
            Reranker(url, api_key="wrong")


def test_retries_until_the_server_has_loaded(tiny_cross_encoder):
    gate = threading.Event()

    def load() -> Reranker:
        assert gate.wait(timeout=60)
        return Reranker(tiny_cross_encoder)

    app = create_app(load, settings=ServeSettings(retry_after_s=1))
    with thread_server(app) as url:
        with pytest.raises(ModelLoadError, match="503"):  # no retries: the loading server's 503 is the answer
            Reranker(url, timeout=5)
        timer = threading.Timer(0.3, gate.set)
        timer.start()
        remote = Reranker(url, timeout=30)  # 503 + Retry-After, retried (bounded) until the model is up
        timer.join()
        assert remote.backend.api == "tei"
        assert len(remote.score(QUERY, TEXTS[:2])) == 2


def test_unreachable_server_is_a_load_error():
    from _servers import free_port

    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ModelLoadError, match="could not use the remote reranker"):
        Reranker(url, timeout=2)


def test_server_errors_surface_as_remote_errors(server_url):
    remote = Reranker(server_url)
    with pytest.raises(RemoteError, match="max_document_chars=100000") as info:
        remote.score(QUERY, ["short", "x" * 100_001])
    assert info.value.status == 413


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"api": "tei"}, "api= applies to kind='remote'"),
        ({"api_key": "k"}, "api_key= applies to kind='remote'"),
        ({"timeout": 3}, "timeout= applies to kind='remote'"),
        ({"max_batch_tokens": 0}, "max_batch_tokens must be a positive int"),
        ({"max_batch_tokens": True}, "max_batch_tokens must be a positive int"),
    ],
)
def test_remote_only_options_are_refused_for_local_models(tiny_cross_encoder, kwargs, match):
    with pytest.raises(ValueError, match=match):
        Reranker(tiny_cross_encoder, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"device": "cpu"}, "device= does not apply to kind='remote'"),
        ({"max_length": 64}, "max_length= does not apply"),
        ({"api": "grpc"}, "api must be one of"),
        ({"timeout": 0}, "timeout must be a positive number"),
        ({"prompt": "p"}, "prompt= does not apply to kind='remote'"),
    ],
)
def test_remote_options_are_validated(server_url, kwargs, match):
    with pytest.raises(ValueError, match=match):
        Reranker(server_url, **kwargs)


def test_remote_kind_needs_a_url(tiny_cross_encoder):
    with pytest.raises(ValueError, match="needs an http:// or https:// URL"):
        Reranker(tiny_cross_encoder, kind="remote")


def test_a_cohere_server_without_info_is_chunked_by_the_default(local):
    """Cohere, Infinity and vLLM have no ``GET /info``: the client falls back to 32 texts a request."""
    from fastapi import FastAPI

    app = FastAPI()
    sizes: list[int] = []

    @app.post("/v1/rerank")
    def rerank(body: dict) -> dict:
        sizes.append(len(body["documents"]))
        scores = local.score(body["query"], body["documents"])  # sigmoid, as Infinity and vLLM send
        order = sorted(range(len(scores)), key=lambda i: -scores[i])
        return {"results": [{"index": i, "relevance_score": scores[i]} for i in order]}

    docs = [TEXTS[i % len(TEXTS)] + f" ({i})" for i in range(40)]
    with thread_server(app) as url:
        remote = Reranker(url)
        assert remote.backend.api == "cohere" and remote.backend.chunk_size == 32
        np.testing.assert_allclose(remote.score(QUERY, docs), local.score(QUERY, docs), atol=1e-5)
    assert sizes == [32, 8]
