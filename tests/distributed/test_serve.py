"""``RerankDeployment`` on a local Ray Serve: the package's HTTP API, in-process scores, replicas passed through."""

from __future__ import annotations

import socket

import pytest

from rerank_plugins import Reranker

pytest.importorskip("ray.serve", reason="needs the 'ray' extra: pip install 'rerank-plugins[ray]'")
pytest.importorskip("fastapi", reason="needs the 'serve' extra")

from rerank_plugins.distributed import RerankDeployment, rerank_app  # noqa: E402
from rerank_plugins.serving import ServeSettings  # noqa: E402

QUERY = "What is the capital of France?"
DOCS = [
    "Paris is the capital and most populous city of France.",
    "서울은 대한민국의 수도이며 가장 큰 도시이다.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Water boils at one hundred degrees Celsius at sea level.",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_deployment_answers_rerank_with_in_process_scores(ray_session, tiny_bert):
    import httpx
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        app = rerank_app(tiny_bert, num_replicas=2, ray_actor_options={"num_cpus": 0.5},
                         settings=ServeSettings(max_wait_ms=1.0), device="cpu")
        serve.run(app, name="rerank", route_prefix="/", blocking=False)
        status = serve.status().applications["rerank"].deployments["RerankDeployment"]
        assert status.replica_states.get("RUNNING") == 2  # num_replicas reached Serve

        expected = Reranker(tiny_bert, device="cpu").rerank(QUERY, DOCS)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            assert client.get("/health").status_code == 200
            tei = client.post("/rerank", json={"query": QUERY, "texts": DOCS})
            assert tei.status_code == 200, tei.text
            assert [r["index"] for r in tei.json()] == [r.index for r in expected]
            assert [r["score"] for r in tei.json()] == pytest.approx([r.score for r in expected], abs=1e-5)
            raw = client.post("/rerank", json={"query": QUERY, "texts": DOCS, "raw_scores": True}).json()
            assert [r["score"] for r in raw] == pytest.approx([r.logit for r in expected], abs=1e-5)
            cohere = client.post("/v1/rerank", json={"query": QUERY, "documents": DOCS, "top_n": 2}).json()
            assert [r["index"] for r in cohere["results"]] == [r.index for r in expected[:2]]
            bad = client.post("/rerank", json={"query": QUERY, "texts": ["ok", 3]})
            assert bad.status_code == 422  # the same validation as rerank-plugins serve
    finally:
        serve.shutdown()


def test_rerank_app_arguments():
    with pytest.raises(ValueError, match="num_replicas or autoscaling_config, not both"):
        rerank_app("m", num_replicas=2, autoscaling_config={"min_replicas": 1, "max_replicas": 2})
    with pytest.raises(TypeError, match="settings must be a ServeSettings"):
        rerank_app("m", settings={"max_wait_ms": 1})
    auto = {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 8}
    app = rerank_app("m", autoscaling_config=auto, ray_actor_options={"num_gpus": 1}, dtype="float16")
    deployment = app._bound_deployment
    assert deployment.name == RerankDeployment.name
    assert deployment._deployment_config.autoscaling_config.max_replicas == 4
    assert deployment.ray_actor_options["num_gpus"] == 1
    assert deployment._replica_config.init_args[:2] == ("m", {"dtype": "float16"})
