"""The remote kind against a server this package did not write: Infinity (``infinity-emb``).

Infinity pins numpy<2 and sentence-transformers<4, so it cannot share this
environment: the fixture builds its own virtual environment (torch's CPU wheel
first, as everywhere here, then ``infinity-emb[server,torch]``), starts
``infinity_emb v2`` on 127.0.0.1 serving ``../shared``'s ms-marco-MiniLM-L-12-v2
by path, and waits for ``/health`` (bounded). If the install or the start fails,
the tests skip with pip's or the server's own last lines as the reason.

The venv is kept under ``$RERANK_PLUGINS_INFINITY_VENV`` when that is set (a
developer's reruns skip the install); by default it lives in pytest's temporary
directory and goes with it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from _servers import HOST, free_port

from rerank_plugins import Reranker

INFINITY = "infinity-emb[server,torch]==0.0.77"
# Infinity's pinned typer 0.12 fails on click >= 8.2 ("Secondary flag is not valid for non-boolean flag").
CLICK = "click<8.2"
TORCH = "torch==2.13.0"
INSTALL_TIMEOUT_S = 900
START_TIMEOUT_S = 240

QUERY = "Which NFL team represented the AFC at Super Bowl 50?"
DOCS = [
    "The American Football Conference (AFC) champion Denver Broncos defeated the National Football "
    "Conference (NFC) champion Carolina Panthers 24-10 to earn their third Super Bowl title.",
    "The game was played on February 7, 2016, at Levi's Stadium in the San Francisco Bay Area.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "Super Bowl 50 was an American football game to determine the champion of the NFL for the 2015 season.",
    "서울은 대한민국의 수도이다.",
]


def _tail(text: str, lines: int = 15) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def _install(venv: Path) -> Path:
    """Create ``venv`` with Infinity in it (once); return its ``infinity_emb`` script."""
    script = venv / "bin" / "infinity_emb"
    if script.is_file():
        return script
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", TORCH],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", INFINITY, CLICK],
    ]
    deadline = time.monotonic() + INSTALL_TIMEOUT_S
    for cmd in steps:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.skip(f"installing Infinity took over {INSTALL_TIMEOUT_S} s")
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=left)
        except subprocess.TimeoutExpired:
            pytest.skip(f"installing Infinity took over {INSTALL_TIMEOUT_S} s (at: {' '.join(cmd[-2:])})")
        if done.returncode != 0:
            pytest.skip(f"could not install Infinity ({' '.join(cmd[-2:])}): {_tail(done.stderr or done.stdout)}")
    if not script.is_file():
        pytest.skip(f"{INFINITY} installed no infinity_emb script")
    return script


@pytest.fixture(scope="module")
def infinity_url(ms_marco_dir, tmp_path_factory):
    venv = Path(os.environ.get("RERANK_PLUGINS_INFINITY_VENV") or tmp_path_factory.mktemp("infinity") / "venv")
    script = _install(venv)
    port = free_port()
    log = venv.parent / f"infinity-{port}.log"
    env = {**os.environ, "INFINITY_ANONYMOUS_USAGE_STATS": "0", "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(script), "v2", "--model-id", str(ms_marco_dir), "--host", HOST, "--port", str(port),
             "--url-prefix", "/v1", "--engine", "torch", "--device", "cpu", "--dtype", "float32",
             "--no-bettertransformer", "--batch-size", "32"],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.skip(f"Infinity exited with {proc.returncode} on start: {_tail(log.read_text())}")
            try:  # /health sits outside --url-prefix
                if httpx.get(f"{url}/health", timeout=5.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.skip(f"Infinity did not answer /health within {START_TIMEOUT_S} s: {_tail(log.read_text())}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def test_infinity_scores_equal_in_process(infinity_url, ms_marco_dir):
    remote = Reranker(f"{infinity_url}/v1/rerank", kind="remote")
    assert remote.backend.api == "cohere"
    local = Reranker(ms_marco_dir, dtype="float32", engine="torch", overflow="truncate")
    got, want = remote.score(QUERY, DOCS), local.score(QUERY, DOCS)
    # Infinity returns sigmoid(logit) in float32; compare on that scale.
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert [r.index for r in remote.rerank(QUERY, DOCS)] == [r.index for r in local.rerank(QUERY, DOCS)]
    assert remote.rerank(QUERY, DOCS)[0].index == 0


def test_infinity_behind_both_adapters(infinity_url, ms_marco_dir):
    pytest.importorskip("langchain_core")
    pytest.importorskip("llama_index.core")
    from langchain_core.documents import Document
    from llama_index.core.schema import NodeWithScore, TextNode

    from rerank_plugins.integrations.langchain import RerankCompressor
    from rerank_plugins.integrations.llamaindex import RerankPostprocessor

    local = Reranker(ms_marco_dir, dtype="float32", engine="torch", overflow="truncate")
    want = [r.index for r in local.rerank(QUERY, DOCS, top_n=3)]
    compressor = RerankCompressor(reranker=f"{infinity_url}/v1/rerank", top_n=3)
    kept = compressor.compress_documents([Document(page_content=d) for d in DOCS], QUERY)
    assert [DOCS.index(d.page_content) for d in kept] == want
    post = RerankPostprocessor(reranker=f"{infinity_url}/v1/rerank", top_n=3)
    nodes = post.postprocess_nodes([NodeWithScore(node=TextNode(text=d)) for d in DOCS], query_str=QUERY)
    assert [DOCS.index(n.node.get_content()) for n in nodes] == want
