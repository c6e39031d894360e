"""The public API of the core scorer: results, normalisation, errors, sharing, threads."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import _tiny
import numpy as np
import pytest
import torch

import rerank_plugins
from rerank_plugins import ModelLoadError, Reranker, Result
from rerank_plugins.backends.base import detect_kind, resolve_device, resolve_dtype
from rerank_plugins.core import rank_order, select_results

DOCS = [
    "Paris is the capital and most populous city of France.",
    "서울은 대한민국의 수도이며 가장 큰 도시이다.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "한글은 세종대왕이 창제한 문자 체계이다.",
]
QUERY = "What is the capital of France?"


@pytest.fixture(scope="module")
def reranker(tiny_xlmr):
    return Reranker(tiny_xlmr, normalize="none")


def test_public_api_is_explicit():
    assert set(rerank_plugins.__all__) >= {"Reranker", "Result", "ModelLoadError"}
    for name in rerank_plugins.__all__:
        assert hasattr(rerank_plugins, name)


def test_import_is_light():
    code = (
        "import sys, json, rerank_plugins\n"
        "heavy = ('torch', 'transformers', 'sentence_transformers', 'langchain_core', "
        "'langchain_classic', 'llama_index', 'faiss')\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in heavy})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_result_is_frozen_with_fixed_fields(reranker):
    result = reranker.rerank(QUERY, DOCS)[0]
    assert isinstance(result, Result)
    assert [f.name for f in dataclasses.fields(Result)] == [
        "index", "score", "logit", "text", "windows", "span", "truncated"
    ]
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.score = 1.0  # type: ignore[misc]
    assert type(result.score) is float and type(result.logit) is float and type(result.index) is int


def test_rerank_sorts_by_score_and_maps_back_to_input(reranker):
    scores = reranker.score(QUERY, DOCS)
    ranked = reranker.rerank(QUERY, DOCS)
    assert [r.index for r in ranked] == sorted(range(len(DOCS)), key=lambda i: -scores[i])
    assert [r.text for r in ranked] == [DOCS[r.index] for r in ranked]
    assert [r.score for r in ranked] == sorted(scores, reverse=True)
    assert all(r.score == r.logit for r in ranked)  # normalize="none"


def test_ties_keep_input_order(reranker):
    docs = ["same text", "other text", "same text", "same text"]
    ranked = reranker.rerank(QUERY, docs)
    same = [r.index for r in ranked if r.text == "same text"]
    assert same == [0, 2, 3]


@pytest.mark.parametrize("top_n, expected", [(None, 5), (1, 1), (3, 3), (5, 5), (50, 5)])
def test_top_n(reranker, top_n, expected):
    full = reranker.rerank(QUERY, DOCS)
    ranked = reranker.rerank(QUERY, DOCS, top_n=top_n)
    assert ranked == full[:expected]


@pytest.mark.parametrize("top_n", [0, -1])
def test_top_n_below_one_is_rejected(reranker, top_n):
    with pytest.raises(ValueError, match="top_n must be >= 1"):
        reranker.rerank(QUERY, DOCS, top_n=top_n)


def test_normalizations_share_one_logit(tiny_xlmr):
    raw = Reranker(tiny_xlmr, normalize="none").score(QUERY, DOCS)
    sig = Reranker(tiny_xlmr, normalize="sigmoid").score(QUERY, DOCS)
    soft = Reranker(tiny_xlmr, normalize="softmax").rerank(QUERY, DOCS)
    x = np.array(raw, dtype=np.float64)
    np.testing.assert_allclose(sig, 1 / (1 + np.exp(-x)), atol=1e-6)
    expected = np.exp(x - x.max()) / np.exp(x - x.max()).sum()  # exp_normalize
    np.testing.assert_allclose([r.score for r in sorted(soft, key=lambda r: r.index)], expected, atol=1e-6)
    assert sum(r.score for r in soft) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose([r.logit for r in sorted(soft, key=lambda r: r.index)], raw, atol=1e-6)


def test_default_normalization_is_sigmoid(tiny_xlmr):
    reranker = Reranker(tiny_xlmr)
    assert reranker.normalize == "sigmoid"
    assert all(0 < s < 1 for s in reranker.score(QUERY, DOCS))


def test_score_many_equals_per_query_and_softmax_is_per_list(tiny_xlmr):
    reranker = Reranker(tiny_xlmr, normalize="softmax", batch_size=3)
    queries = [QUERY, "서울은 어디?", "boiling point"]
    lists = [DOCS, DOCS[:2], DOCS[3:]]
    many = reranker.score_many(queries, lists)
    assert [len(s) for s in many] == [5, 2, 2]
    for q, docs, scores in zip(queries, lists, many, strict=True):
        np.testing.assert_allclose(scores, reranker.score(q, docs), atol=1e-6)
        assert sum(scores) == pytest.approx(1.0, abs=1e-6)
    ranked = reranker.rerank_many(queries, lists, top_n=1)
    assert [len(r) for r in ranked] == [1, 1, 1]
    single = reranker.rerank(queries[1], lists[1], top_n=1)[0]
    assert ranked[1][0].index == single.index and ranked[1][0].text == single.text
    assert ranked[1][0].logit == pytest.approx(single.logit, abs=1e-5)


def test_empty_documents_do_not_run_the_model(tiny_xlmr, monkeypatch):
    reranker = Reranker(tiny_xlmr)

    def boom(*args, **kwargs):
        raise AssertionError("the model ran")

    monkeypatch.setattr(reranker.backend, "forward", boom)
    monkeypatch.setattr(reranker.backend, "encode", boom)
    assert reranker.score(QUERY, []) == []
    assert reranker.rerank(QUERY, [], top_n=3) == []
    assert reranker.score_many([QUERY, "q2"], [[], ()]) == [[], []]
    assert reranker.score_many([], []) == []


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda r: r.score(123, DOCS), TypeError, "query must be a str, got int"),
        (lambda r: r.score(None, DOCS), TypeError, "query must be a str, got NoneType"),
        (lambda r: r.score(QUERY, ["ok", "fine", 7]), TypeError, r"documents\[2\] must be a str, got int"),
        (lambda r: r.rerank(QUERY, ["ok", None]), TypeError, r"documents\[1\] must be a str, got NoneType"),
        (lambda r: r.rerank(QUERY, "just one string"), TypeError, "documents must be a sequence of str"),
        (lambda r: r.rerank(QUERY, [b"bytes"]), TypeError, r"documents\[0\] must be a str, got bytes"),
        (lambda r: r.score_many(["a", 5], [["x"], ["y"]]), TypeError, r"queries\[1\] must be a str, got int"),
        (
            lambda r: r.score_many(["a", "b"], [["x"], ["y", 3.5]]),
            TypeError,
            r"documents_per_query\[1\]\[1\] must be a str, got float",
        ),
        (lambda r: r.score_many(["a", "b"], [["x"]]), ValueError, "2 queries but 1 document lists"),
        (lambda r: r.rerank(QUERY, DOCS, top_n=2.5), TypeError, "top_n must be an int or None"),
    ],
)
def test_bad_input_names_type_and_position(reranker, call, error, message):
    with pytest.raises(error, match=message):
        call(reranker)


def test_caller_objects_are_not_mutated(reranker):
    docs = list(DOCS)
    before = copy.deepcopy(docs)
    queries, lists = [QUERY], [docs]
    reranker.rerank(QUERY, docs, top_n=2)
    reranker.score_many(queries, lists)
    assert docs == before and queries == [QUERY] and lists == [before]


def test_truncation_is_counted_and_logged_once_per_call(tiny_xlmr, caplog):
    reranker = Reranker(tiny_xlmr, max_length=40, batch_size=2, overflow="truncate")
    long_docs = [DOCS[0] * 10, "Paris.", DOCS[2] * 10, DOCS[3] * 10]
    with caplog.at_level(logging.WARNING, logger="rerank_plugins"):
        reranker.score(QUERY, long_docs)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["3 of 4 pairs exceed max_length=40 tokens and were truncated (overflow='truncate')"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rerank_plugins"):
        reranker.score(QUERY, ["Paris.", "France."])
    assert not caplog.records


def test_truncated_scores_equal_scores_of_pretruncated_input(tiny_bert):
    """Truncation really happens: scoring a long document equals scoring with max_length cut."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert).eval()
    doc = DOCS[0] * 20
    with torch.no_grad():
        ref = model(**tokenizer(QUERY, doc, truncation=True, max_length=40, return_tensors="pt")).logits
    ours = Reranker(tiny_bert, normalize="none", max_length=40, overflow="truncate").score(QUERY, [doc])
    assert ours[0] == pytest.approx(ref.item(), abs=1e-5)
    longer = Reranker(tiny_bert, normalize="none", max_length=80, overflow="truncate").score(QUERY, [doc])[0]
    assert longer != pytest.approx(
        ours[0], abs=1e-4
    )


def test_same_model_is_loaded_once(tiny_xlmr):
    a = Reranker(tiny_xlmr, normalize="none")
    b = Reranker(str(tiny_xlmr) + "/", normalize="softmax", batch_size=4)
    assert a.backend is b.backend
    c = Reranker(tiny_xlmr, dtype="bfloat16")
    assert c.backend is not a.backend


def test_threads_get_the_same_scores_as_one_thread(tiny_xlmr, mixed_pairs):
    reranker = Reranker(tiny_xlmr, normalize="none", batch_size=4)
    queries = [q for q, _ in mixed_pairs[:8]]
    doc_lists = [[d for _, d in mixed_pairs[i : i + 6]] for i in range(0, 48, 6)]
    expected = [reranker.score(q, docs) for q, docs in zip(queries, doc_lists, strict=True)]
    barrier = threading.Barrier(8)

    def work(i):
        barrier.wait()
        # A new Reranker per thread shares the model (and its tokenizer) with the others.
        return Reranker(tiny_xlmr, normalize="none", batch_size=3).score(queries[i], doc_lists[i])

    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(work, range(8)))
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, atol=1e-5)


async def test_async_rerank_equals_sync(reranker):
    import asyncio

    results = await asyncio.gather(*(reranker.arerank(QUERY, DOCS, top_n=2) for _ in range(4)))
    sync = reranker.rerank(QUERY, DOCS, top_n=2)
    for got in results:
        assert [r.index for r in got] == [r.index for r in sync]
        np.testing.assert_allclose([r.score for r in got], [r.score for r in sync], atol=1e-6)
    np.testing.assert_allclose(await reranker.ascore(QUERY, DOCS), reranker.score(QUERY, DOCS), atol=1e-6)


def test_float16_and_bfloat16_run_close_to_float32(tiny_xlmr):
    ref = np.array(Reranker(tiny_xlmr, normalize="none").score(QUERY, DOCS))
    for dtype in ("bfloat16", torch.float16):
        reranker = Reranker(tiny_xlmr, normalize="none", dtype=dtype)
        assert reranker.dtype == str(dtype).removeprefix("torch.")
        got = np.array(reranker.score(QUERY, DOCS))
        assert np.abs(got - ref).max() < 0.1


# --------------------------------------------------------------------------- kinds and loading


def test_auto_kind_detection(tiny_bert, tiny_cross_encoder, tiny_xlmr):
    assert detect_kind(str(tiny_bert)) == "sequence-classification"
    assert detect_kind(str(tiny_xlmr)) == "sequence-classification"
    assert detect_kind(str(tiny_cross_encoder)) == "cross-encoder"


def test_auto_kind_undecidable_lists_the_kinds(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertModel"], "model_type": "bert"}))
    with pytest.raises(ValueError, match="cross-encoder, sequence-classification, llm-yes"):
        Reranker(tmp_path)


def test_missing_directory_names_the_path(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError, match=f"model directory '{missing}' does not exist"):
        Reranker(str(missing))
    with pytest.raises(ModelLoadError, match="does not exist"):
        Reranker("./models/not-here")


def test_unloadable_directory_names_path_and_loader(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps({"architectures": ["BertForSequenceClassification"], "model_type": "bert"})
    )
    with pytest.raises(ModelLoadError) as info:
        Reranker(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "sequence-classification" in message
    assert ("tried AutoTokenizer.from_pretrained" in message or "tried AutoModelFor" in message
            or "no tokenizer files" in message)
    assert "\n" not in message
    assert info.value.__suppress_context__  # no chained deep traceback


def test_unreachable_hub_name_fails_with_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="could not load 'nobody-org/no-such-reranker'"):
        Reranker("nobody-org/no-such-reranker")


def test_argument_validation(tiny_xlmr, tiny_bert):
    with pytest.raises(ValueError, match="normalize must be one of none, sigmoid, softmax"):
        Reranker(tiny_xlmr, normalize="tanh")
    with pytest.raises(ValueError, match="kind must be 'auto' or one of"):
        Reranker(tiny_xlmr, kind="colbert")
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        Reranker(tiny_xlmr, batch_size=0)
    with pytest.raises(ValueError, match="max_length must be a positive int"):
        Reranker(tiny_xlmr, max_length=0)
    with pytest.raises(ValueError, match="dtype must be 'auto' or one of"):
        Reranker(tiny_xlmr, dtype="int4")
    with pytest.raises(ValueError, match="dtype='int8' needs engine='openvino'"):
        Reranker(tiny_xlmr, dtype="int8", engine="torch")
    with pytest.raises(ValueError, match="engine must be one of"):
        Reranker(tiny_xlmr, engine="tensorrt")
    with pytest.raises(ValueError, match="max_batch_tokens must be a positive int"):
        Reranker(tiny_xlmr, max_batch_tokens=0)
    with pytest.raises(ValueError, match="apply to kind='llm-yes' only"):
        Reranker(tiny_bert, prompt="Is it relevant?")
    with pytest.raises(TypeError, match="model must be a str or pathlib.Path"):
        Reranker(42)


def test_device_and_dtype_resolution():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and torch.backends.mps.is_available():
        expected = "mps"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="invalid device"):
        resolve_device("gpu-please")
    assert resolve_dtype("float32") == "float32"
    assert resolve_dtype("bf16") == "bfloat16"
    assert resolve_dtype(torch.float16) == "float16"
    with pytest.raises(TypeError, match="dtype must be a str or torch.dtype"):
        resolve_dtype(3.5)


def test_repr_names_the_settings(reranker):
    text = repr(reranker)
    assert "kind='sequence-classification'" in text and "normalize='none'" in text and "max_length=512" in text


def test_select_results_threshold_then_top_n():
    results = [Result(3, 0.9, 2.2, "d"), Result(0, 0.5, 0.0, "a"), Result(1, 0.5, 0.0, "b"), Result(2, 0.1, -2.2, "c")]
    assert select_results(results) == results
    assert select_results(results, top_n=2) == results[:2]
    assert select_results(results, score_threshold=0.5) == results[:3]  # inclusive
    assert select_results(results, top_n=1, score_threshold=0.95) == []
    assert select_results(results, top_n=10, score_threshold=0.2) == results[:3]
    assert select_results([Result(0, float("nan"), float("nan"), "x")], score_threshold=0.0) == []


def test_rerank_with_threshold(tiny_xlmr):
    reranker = Reranker(tiny_xlmr)
    full = reranker.rerank(QUERY, DOCS)
    cut = full[2].score
    assert reranker.rerank(QUERY, DOCS, score_threshold=cut) == full[:3]
    assert reranker.rerank(QUERY, DOCS, top_n=2, score_threshold=cut) == full[:2]
    assert reranker.rerank_many([QUERY], [DOCS], score_threshold=cut) == [full[:3]]
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        reranker.rerank(QUERY, DOCS, score_threshold=1.5)
    with pytest.raises(TypeError, match="score_threshold must be a number or None, got str"):
        reranker.rerank(QUERY, DOCS, score_threshold="0.5")
    raw = Reranker(tiny_xlmr, normalize="none")
    assert raw.check_score_threshold(np.float32(-3)) == -3.0


# --------------------------------------------------------------------------- batching by tokens


def test_token_batches_bound_padded_tokens():
    from rerank_plugins.core import token_batches

    lengths = sorted([512, 300, 300, 120, 100, 90, 40, 40, 40, 12], reverse=True)
    batches = token_batches(lengths, max_tokens=600)
    assert batches[0] == (0, 1)  # 512: alone
    covered = [i for a, b in batches for i in range(a, b)]
    assert covered == list(range(len(lengths)))  # every row once, in order
    for a, b in batches:
        assert (b - a) * lengths[a] <= 600 or b - a == 1
    assert token_batches([900], max_tokens=100) == [(0, 1)]  # an over-long row still runs
    assert token_batches([10] * 10, max_tokens=1000, max_rows=4) == [(0, 4), (4, 8), (8, 10)]
    assert token_batches([], max_tokens=10) == []


def test_short_pairs_fill_large_batches(tiny_xlmr, monkeypatch):
    reranker = Reranker(tiny_xlmr, normalize="none", max_batch_tokens=2048, overflow="truncate")
    sizes = []
    forward = reranker.backend.forward

    def spy(rows, options):
        sizes.append((len(rows), max(len(r.ids) for r in rows)))
        return forward(rows, options)

    monkeypatch.setattr(reranker.backend, "forward", spy)
    docs = [f"short passage number {i}" for i in range(200)] + [DOCS[0] * 20]
    reranker.score(QUERY, docs)
    assert sum(n for n, _ in sizes) == len(docs)
    assert sizes[0][0] == 1 or sizes[0][0] * sizes[0][1] <= 2048  # longest first
    assert max(n for n, _ in sizes) > 32  # more pairs than the old fixed batch of 32
    assert all(n * width <= 2048 for n, width in sizes if n > 1)


def test_each_pair_is_tokenised_once(tiny_xlmr, monkeypatch):
    reranker = Reranker(tiny_xlmr, normalize="none")
    calls = []
    tokenizer = reranker.backend.tokenizer
    original = type(tokenizer).__call__

    def counting(self, *args, **kwargs):
        calls.append(len(args[0]) if args and isinstance(args[0], list) else 1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(tokenizer), "__call__", counting)
    docs = [d for _, d in _tiny.mixed_pairs(40)]
    reranker.score(QUERY, docs)
    assert calls == [len(docs)]  # one batched call, each pair once, long pairs included


def test_longest_first_matches_the_tokenizer(tiny_xlmr, tiny_bert):
    import random

    from transformers import AutoTokenizer

    from rerank_plugins.backends.base import ScoringOptions
    from rerank_plugins.backends.sequence_classification import SequenceClassificationBackend

    rng = random.Random(0)
    for path in (tiny_xlmr, tiny_bert):
        tok = AutoTokenizer.from_pretrained(path)
        backend = Reranker(path).backend
        assert isinstance(backend, SequenceClassificationBackend)
        for _ in range(150):
            q = " ".join(rng.choice(_tiny.CORPUS) for _ in range(rng.randint(0, 6)))
            d = " ".join(rng.choice(_tiny.CORPUS) for _ in range(rng.randint(0, 12)))
            max_length = rng.randint(8, 160)
            (pair,) = backend.encode([q], [d], ScoringOptions(max_length=max_length))
            row = pair.row() if pair.fits else backend.truncated_row(pair, ScoringOptions(max_length=max_length))[0]
            # The published code's batch form (a single call with d="" would drop the empty pair).
            ref = tok([q], [d], truncation=True, max_length=max_length)
            assert row.ids == ref["input_ids"][0], (q, d, max_length)
            if "token_type_ids" in ref:
                assert row.types == ref["token_type_ids"][0]


# --------------------------------------------------------------------------- out-of-memory backoff


def _allocator_limit(monkeypatch, backend, max_tokens):
    """Make ``backend.forward`` fail like the CPU allocator above ``max_tokens`` padded tokens."""
    forward = backend.forward
    seen = []

    def limited(rows, options):
        cost = len(rows) * max(len(r.ids) for r in rows)
        seen.append(len(rows))
        if cost > max_tokens:
            raise RuntimeError(
                "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                f"you tried to allocate {cost * 4096} bytes. Error code 12 (Cannot allocate memory)"
            )
        return forward(rows, options)

    monkeypatch.setattr(backend, "forward", limited)
    return seen


def test_out_of_memory_splits_the_batch_and_keeps_the_scores(tiny_xlmr, monkeypatch, caplog):
    docs = [d for _, d in _tiny.mixed_pairs(48)]
    expected = Reranker(tiny_xlmr, normalize="none", overflow="truncate").score(QUERY, docs)
    reranker = Reranker(tiny_xlmr, normalize="none", max_batch_tokens=100_000, overflow="truncate")
    seen = _allocator_limit(monkeypatch, reranker.backend, max_tokens=3000)
    with caplog.at_level(logging.WARNING, logger="rerank_plugins"):
        got = reranker.score(QUERY, docs)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert seen[0] == len(docs) and max(seen[1:]) < len(docs)
    assert any("out of memory" in r.getMessage() and "max_batch_tokens" in r.getMessage() for r in caplog.records)
    # The size that worked is remembered: the next call does not fail first.
    failures_before = len(seen)
    reranker.score(QUERY, docs)
    second = seen[failures_before:]
    assert second[0] < len(docs)
    assert reranker._token_budget < 100_000


def test_out_of_memory_on_one_pair_is_a_clear_error(tiny_xlmr, monkeypatch):
    reranker = Reranker(tiny_xlmr, normalize="none")
    _allocator_limit(monkeypatch, reranker.backend, max_tokens=5)
    with pytest.raises(MemoryError, match=r"does not fit in memory even alone \(batch_size=1\)"):
        reranker.score(QUERY, DOCS)


def test_other_runtime_errors_are_not_retried(tiny_xlmr, monkeypatch):
    reranker = Reranker(tiny_xlmr, normalize="none")
    calls = []

    def broken(rows, options):
        calls.append(len(rows))
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(reranker.backend, "forward", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        reranker.score(QUERY, DOCS)
    assert calls == [len(DOCS)]


# --------------------------------------------------------------------------- long passages: windows (MaxP)

LONG_EN = " ".join(_tiny.ENGLISH) * 6
LONG_KO = " ".join(_tiny.KOREAN) * 12


def hf_windows(path, query, doc, *, max_length, stride):
    """Reference: Hugging Face's own overflow windows, each scored alone by the plain HF model."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    enc = tok(query, doc, truncation="only_second", max_length=max_length, stride=stride,
              return_overflowing_tokens=True, return_offsets_mapping=True)
    logits, spans = [], []
    for w in range(len(enc["input_ids"])):
        feed = {k: torch.tensor([enc[k][w]]) for k in tok.model_input_names if k in enc}
        with torch.no_grad():
            logits.append(model(**feed).logits[0, -1].item())
        seq = enc.sequence_ids(w)
        doc_offsets = [o for o, sid in zip(enc["offset_mapping"][w], seq, strict=True) if sid == 1]
        spans.append((doc_offsets[0][0], doc_offsets[-1][1]))
    return np.array(logits), spans


@pytest.mark.parametrize(("fixture", "doc"), [("tiny_bert", LONG_EN), ("tiny_xlmr", LONG_KO), ("tiny_xlmr", LONG_EN)])
def test_a_long_passage_scores_its_best_window(request, fixture, doc):
    path = request.getfixturevalue(fixture)
    ref, spans = hf_windows(path, QUERY, doc, max_length=64, stride=16)
    assert len(ref) > 3
    (r,) = Reranker(path, normalize="none", max_length=64, stride=16, max_windows=500).rerank(QUERY, [doc])
    assert r.windows == len(ref) and not r.truncated
    assert r.logit == pytest.approx(ref.max(), abs=1e-5)
    assert r.span == spans[int(ref.argmax())]
    assert doc[r.span[0] : r.span[1]].strip()  # the span slices real text of the passage


def test_a_pair_that_fits_is_the_same_under_both_modes(tiny_xlmr):
    window = Reranker(tiny_xlmr, normalize="none", overflow="window").rerank(QUERY, DOCS)
    trunc = Reranker(tiny_xlmr, normalize="none", overflow="truncate").rerank(QUERY, DOCS)
    assert [r.index for r in window] == [r.index for r in trunc]
    np.testing.assert_allclose([r.logit for r in window], [r.logit for r in trunc], atol=1e-6)
    for r in window:
        assert r.windows == 1 and not r.truncated and r.span == (0, len(DOCS[r.index]))


def test_truncate_mode_marks_and_spans_what_it_kept(tiny_bert):
    (r,) = Reranker(tiny_bert, normalize="none", max_length=64, overflow="truncate").rerank(QUERY, [LONG_EN])
    assert r.truncated and r.windows == 1 and r.span[0] == 0 and 0 < r.span[1] < len(LONG_EN) // 4


def test_windows_mixed_into_batches_keep_input_order(tiny_xlmr):
    docs = [LONG_KO, DOCS[0], LONG_EN + " tail", DOCS[1], LONG_EN, DOCS[2] * 3]
    reranker = Reranker(tiny_xlmr, normalize="none", max_length=64, stride=8, max_batch_tokens=300)
    together = reranker.score(QUERY, docs)
    alone = [reranker.score(QUERY, [d])[0] for d in docs]
    np.testing.assert_allclose(together, alone, atol=1e-5)
    many = reranker.rerank_many([QUERY, "서울?"], [docs, docs[::-1]])
    assert sorted(r.index for r in many[0]) == list(range(len(docs)))
    assert {r.index: r.logit for r in many[0]}[0] == pytest.approx(alone[0], abs=1e-5)


def test_more_windows_than_max_windows_truncates_and_warns(tiny_bert, caplog):
    reranker = Reranker(tiny_bert, normalize="none", max_length=64, stride=16, max_windows=2)
    with caplog.at_level(logging.WARNING, logger="rerank_plugins"):
        (r,) = reranker.rerank(QUERY, [LONG_EN])
    assert r.windows == 2 and r.truncated
    assert any("needed more than max_windows=2" in rec.getMessage() for rec in caplog.records)
    ref, _ = hf_windows(tiny_bert, QUERY, LONG_EN, max_length=64, stride=reranker.stride)
    assert r.logit == pytest.approx(ref[:2].max(), abs=1e-5)


def test_window_options_are_validated(tiny_xlmr):
    with pytest.raises(ValueError, match="overflow must be one of window, truncate"):
        Reranker(tiny_xlmr, overflow="drop")
    with pytest.raises(ValueError, match="stride must be an int >= 0"):
        Reranker(tiny_xlmr, stride=-1)
    with pytest.raises(ValueError, match="max_windows must be a positive int"):
        Reranker(tiny_xlmr, max_windows=0)


@pytest.mark.real
def test_real_model_finds_the_answer_deep_in_a_long_passage(ms_marco_dir, squad_articles):
    """The issue's case: an answer far past max_length is lost by truncation, found by windows."""
    reranker = Reranker(ms_marco_dir, normalize="sigmoid")
    candidates = [p for p in squad_articles[0]["paragraphs"][:8]]
    alone = reranker.score_many([p["qas"][0]["question"] for p in candidates], [[p["context"]] for p in candidates])
    best = int(np.argmax([a[0] for a in alone]))
    target, alone_score = candidates[best], alone[best][0]
    assert alone_score > 0.9
    question = target["qas"][0]["question"]
    # Filler from other articles: truncation cannot score the passage on its topic alone.
    filler = " ".join(p["context"] for a in squad_articles[5:8] for p in a["paragraphs"])
    passage = filler[:6000] + " " + target["context"] + " " + filler[6000:9000]
    window = reranker.rerank(question, [passage])[0]
    trunc = Reranker(ms_marco_dir, normalize="sigmoid", overflow="truncate").rerank(question, [passage])[0]
    assert window.windows > 2 and not window.truncated and trunc.truncated
    # The best window also holds ~300 tokens of unrelated filler, which lowers the model's score
    # (0.43 here against > 0.9 alone), but far above what truncation can see.
    assert trunc.score < 0.01 and window.logit > trunc.logit + 4
    answer = target["qas"][0]["answers"][0]
    answer = answer if isinstance(answer, str) else answer["text"]
    assert answer in passage[window.span[0] : window.span[1]]
def test_rank_order_is_stable_with_nan_last_and_matches_rerank(reranker):
    nan = float("nan")
    assert rank_order([0.2, 0.9, nan, 0.9, -1.0]) == [1, 3, 0, 4, 2]
    assert rank_order([]) == []
    docs = ["Paris is the capital of France.", "Kimchi is food.", "Water boils.", "Seoul is a city."]
    scores = reranker.score("capital of France?", docs)
    assert [r.index for r in reranker.rerank("capital of France?", docs)] == rank_order(scores)
    # A prefix ordered by its scores is the rerank of that prefix alone.
    assert [r.index for r in reranker.rerank("capital of France?", docs[:3])] == rank_order(scores[:3])


def test_the_token_budget_defaults_by_device(tiny_xlmr):
    from rerank_plugins.core import CPU_MAX_BATCH_TOKENS

    assert Reranker(tiny_xlmr, device="cpu").max_batch_tokens == CPU_MAX_BATCH_TOKENS == 4096
    assert Reranker(tiny_xlmr, device="cpu", max_batch_tokens=300).max_batch_tokens == 300
    assert Reranker(tiny_xlmr, device="cpu", max_batch_tokens=None).options()["max_batch_tokens"] == 4096
    with pytest.raises(ValueError, match="max_batch_tokens must be a positive int or None"):
        Reranker(tiny_xlmr, max_batch_tokens=-5)
