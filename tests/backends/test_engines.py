"""Engines: the OpenVINO runner against torch float32, its disk cache, and engine resolution."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from rerank_plugins import MissingExtraError, Reranker
from rerank_plugins.backends import engines
from rerank_plugins.backends.engines import resolve_engine

pytest.importorskip("openvino", reason="the 'fast' extra (openvino) is not installed")

QUERY = "capital of France?"
DOCS = [
    "Paris is the capital and most populous city of France.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "서울은 대한민국의 수도이며 가장 큰 도시이다.",
    "Water boils at one hundred degrees Celsius at sea level. " * 12,
]


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("RERANK_PLUGINS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("fixture", ["tiny_cross_encoder", "tiny_xlmr"])
def test_openvino_float32_equals_torch(request, fixture, cache_dir):
    path = request.getfixturevalue(fixture)
    ref = np.array(Reranker(path, normalize="none", dtype="float32", engine="torch").score(QUERY, DOCS))
    ov = Reranker(path, normalize="none", dtype="float32", engine="openvino")
    assert ov.engine == "openvino" and ov.backend.engine == "openvino"
    np.testing.assert_allclose(ov.score(QUERY, DOCS), ref, atol=1e-4)
    ranked = ov.rerank_many([QUERY, "Korean capital?"], [DOCS, DOCS[::-1]])
    assert sorted(r.index for r in ranked[1]) == [0, 1, 2, 3]


def test_openvino_splits_a_batch_across_streams_without_changing_scores(tiny_xlmr, cache_dir, monkeypatch):
    import openvino

    from rerank_plugins import clear_model_cache

    clear_model_cache()  # build a fresh runner under the spy
    streams = []
    real_queue = openvino.AsyncInferQueue

    def counting_queue(compiled, jobs):
        streams.append(jobs)
        return real_queue(compiled, jobs)

    monkeypatch.setattr(openvino, "AsyncInferQueue", counting_queue)
    ov = Reranker(tiny_xlmr, normalize="none", dtype="float32", engine="openvino", overflow="truncate")
    batched = ov.score(QUERY, DOCS * 3)
    one_by_one = [ov.score(QUERY, [doc])[0] for doc in DOCS * 3]
    assert streams, "the runner did not use an AsyncInferQueue"
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    ref = Reranker(tiny_xlmr, normalize="none", dtype="float32", engine="torch", overflow="truncate")
    np.testing.assert_allclose(batched, ref.score(QUERY, DOCS * 3), atol=1e-4)


def test_a_process_with_fewer_threads_than_cores_does_not_pin_them(tiny_cross_encoder, cache_dir, monkeypatch):
    import openvino

    from rerank_plugins import clear_model_cache

    # OpenVINO pins each process's threads from core 0: two 1-thread Ray actors shared one core.
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert engines._compile_config("f32", 1)["ENABLE_CPU_PINNING"] is False
    assert engines._compile_config("f32", 3)["ENABLE_CPU_PINNING"] is False
    assert engines._compile_config("f32", 4)["ENABLE_CPU_PINNING"] is True
    assert engines._compile_config("bf16", 2)["INFERENCE_NUM_THREADS"] == 2

    # The settings reach the compiled model (OpenVINO accepts them and reads them back).
    clear_model_cache()
    compiled = []
    real_compile = openvino.Core.compile_model

    def spy(self, model, device=None, config=None):
        result = real_compile(self, model, device, config or {})
        compiled.append(result)
        return result

    monkeypatch.setattr(openvino.Core, "compile_model", spy)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ov = Reranker(tiny_cross_encoder, normalize="none", dtype="float32", engine="openvino")
        ov.score(QUERY, DOCS)
    finally:
        torch.set_num_threads(threads)
    assert compiled, "the model was not compiled"
    assert compiled[-1].get_property("INFERENCE_NUM_THREADS") == 1
    assert compiled[-1].get_property("ENABLE_CPU_PINNING") is False
    clear_model_cache()


def test_openvino_bfloat16_stays_close(tiny_xlmr, cache_dir):
    ref = np.array(Reranker(tiny_xlmr, normalize="none", dtype="float32", engine="torch").score(QUERY, DOCS))
    got = np.array(Reranker(tiny_xlmr, normalize="none", dtype="bfloat16", engine="openvino").score(QUERY, DOCS))
    assert np.abs(got - ref).max() < 0.1


def test_the_converted_model_is_cached_on_disk(tiny_bert, cache_dir, monkeypatch):
    from rerank_plugins import clear_model_cache

    first = Reranker(tiny_bert, normalize="none", dtype="float32", engine="openvino").score(QUERY, DOCS)
    cached = list((cache_dir / "openvino").glob("*/model.xml"))
    assert len(cached) == 1
    assert not [p for p in (cache_dir / "openvino").iterdir() if p.name.startswith(".tmp-")]
    clear_model_cache()
    import openvino

    def no_convert(*args, **kwargs):
        raise AssertionError("converted again despite the cache")

    monkeypatch.setattr(openvino, "convert_model", no_convert)
    again = Reranker(tiny_bert, normalize="none", dtype="float32", engine="openvino").score(QUERY, DOCS)
    np.testing.assert_allclose(again, first, atol=1e-6)


def test_engine_resolution(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.delenv("RERANK_PLUGINS_ENGINE", raising=False)
    assert resolve_engine("auto", kind="cross-encoder", device=cpu, dtype="bfloat16") == "openvino"
    assert resolve_engine("auto", kind="sequence-classification", device=cpu, dtype="float32") == "openvino"
    assert resolve_engine("auto", kind="llm-yes", device=cpu, dtype="bfloat16") == "torch"
    assert resolve_engine("auto", kind="cross-encoder", device=torch.device("cuda"), dtype="bfloat16") == "torch"
    monkeypatch.setenv("RERANK_PLUGINS_ENGINE", "torch")
    assert resolve_engine("auto", kind="cross-encoder", device=cpu, dtype="float32") == "torch"
    assert resolve_engine("openvino", kind="cross-encoder", device=cpu, dtype="float32") == "openvino"
    with pytest.raises(ValueError, match="supports the cross-encoder and sequence-classification"):
        resolve_engine("openvino", kind="llm-yes", device=cpu, dtype="float32")
    with pytest.raises(ValueError, match="runs on the CPU"):
        resolve_engine("openvino", kind="cross-encoder", device=torch.device("cuda"), dtype="float32")
    with pytest.raises(ValueError, match="needs engine='openvino'"):
        resolve_engine("torch", kind="cross-encoder", device=cpu, dtype="int8")
    monkeypatch.setattr(engines, "openvino_available", lambda: False)
    monkeypatch.delenv("RERANK_PLUGINS_ENGINE")
    assert resolve_engine("auto", kind="cross-encoder", device=cpu, dtype="bfloat16") == "torch"
    with pytest.raises(MissingExtraError, match=r"rerank-plugins\[fast\]"):
        resolve_engine("openvino", kind="cross-encoder", device=cpu, dtype="float32")


def test_int8_is_calibrated_on_the_first_batch_and_cached(tiny_xlmr, cache_dir, monkeypatch):
    pytest.importorskip("nncf", reason="the 'fast' extra (nncf) is not installed")
    from rerank_plugins import clear_model_cache

    docs = DOCS * 6
    ref = np.array(Reranker(tiny_xlmr, normalize="none", dtype="float32", engine="torch").score(QUERY, docs))
    int8 = Reranker(tiny_xlmr, normalize="none", dtype="int8")
    assert int8.engine == "openvino" and int8.dtype == "int8"
    got = np.array(int8.score(QUERY, docs))
    assert np.abs(got - ref).max() < 0.25 * max(np.ptp(ref), 1e-3) + 0.05
    assert np.corrcoef(got, ref)[0, 1] > 0.9
    assert len(list((cache_dir / "openvino").glob("*-int8/model.xml"))) == 1
    clear_model_cache()
    import nncf

    def no_quantize(*args, **kwargs):
        raise AssertionError("quantised again despite the cache")

    monkeypatch.setattr(nncf, "quantize", no_quantize)
    again = np.array(Reranker(tiny_xlmr, normalize="none", dtype="int8").score(QUERY, docs))
    np.testing.assert_allclose(again, got, atol=1e-5)
