"""Ranking metrics with binary relevance: pure functions of a ranking and a relevant set.

Every per-query function takes ``ranked`` (document ids, best first), the set
of ``relevant`` ids and a cut-off ``k``, and returns a float in [0, 1]. A
document id repeated in ``ranked`` counts once, at its first position. A query
with no relevant documents scores 0 on every metric. :func:`mean_metrics`
averages over queries.

Example:
    >>> ranked, relevant = ["d3", "d1", "d7"], {"d1"}
    >>> hit_at_k(ranked, relevant, 1), hit_at_k(ranked, relevant, 3)
    (0.0, 1.0)
    >>> mrr_at_k(ranked, relevant, 10)
    0.5
    >>> round(ndcg_at_k(ranked, relevant, 10), 4)
    0.6309
    >>> recall_at_k(["d1", "d2"], {"d1", "d9"}, 2)
    0.5
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "METRICS",
    "PairedDifference",
    "hit_at_k",
    "hit_curve",
    "mean_metrics",
    "mrr_at_k",
    "ndcg_at_k",
    "paired_bootstrap",
    "per_query",
    "recall_at_k",
    "smallest_k_near_best",
]

METRICS: tuple[str, ...] = ("hit", "mrr", "ndcg", "recall")


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    return k


def _relevant_ranks(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> list[int]:
    """0-based ranks (< k) of the relevant documents, first occurrences only."""
    _check_k(k)
    seen: set[Hashable] = set()
    ranks: list[int] = []
    position = 0
    for doc in ranked:
        if position >= k:
            break
        if doc in seen:
            continue
        seen.add(doc)
        if doc in relevant:
            ranks.append(position)
        position += 1
    return ranks


def hit_at_k(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """1.0 when a relevant document is among the first ``k``, else 0.0.

    Example:
        >>> hit_at_k(["a", "b", "c"], {"c"}, 2), hit_at_k(["a", "b", "c"], {"c"}, 3)
        (0.0, 1.0)
    """
    return 1.0 if _relevant_ranks(ranked, relevant, k) else 0.0


def mrr_at_k(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """Reciprocal rank of the first relevant document within the first ``k`` (0.0 if none).

    Example:
        >>> mrr_at_k(["a", "b", "c"], {"c"}, 10)
        0.3333333333333333
    """
    ranks = _relevant_ranks(ranked, relevant, k)
    return 1.0 / (ranks[0] + 1) if ranks else 0.0


def ndcg_at_k(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """Normalised discounted cumulative gain at ``k`` with binary gains.

    ``DCG = sum(1 / log2(rank + 1))`` over relevant documents at 1-based
    ranks ``<= k``; the ideal DCG places ``min(k, len(relevant))`` relevant
    documents first.

    Example:
        >>> round(ndcg_at_k(["a", "b", "c"], {"a", "c"}, 3), 4)  # (1 + 1/2) / (1 + 1/log2(3))
        0.9197
    """
    ranks = _relevant_ranks(ranked, relevant, k)
    if not ranks:
        return 0.0
    dcg = sum(1.0 / math.log2(r + 2) for r in ranks)
    ideal = sum(1.0 / math.log2(r + 2) for r in range(min(k, len(relevant))))
    return dcg / ideal


def recall_at_k(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """Share of the relevant documents found among the first ``k`` (0.0 if none are relevant).

    Example:
        >>> recall_at_k(["a", "b", "c"], {"a", "c", "z"}, 3)
        0.6666666666666666
    """
    if not relevant:
        _check_k(k)
        return 0.0
    return len(_relevant_ranks(ranked, relevant, k)) / len(relevant)


_FUNCTIONS = {"hit": hit_at_k, "mrr": mrr_at_k, "ndcg": ndcg_at_k, "recall": recall_at_k}


def per_query(
    key: str, rankings: Sequence[Sequence[Hashable]], relevants: Sequence[Collection[Hashable]]
) -> list[float]:
    """One metric, named as in :func:`mean_metrics`' keys (``"mrr@10"``), for each query.

    Example:
        >>> per_query("mrr@2", [["a", "b"], ["c", "d"]], [{"b"}, {"z"}])
        [0.5, 0.0]
    """
    name, _, k = key.partition("@")
    if name not in _FUNCTIONS or not k.isdigit():
        raise ValueError(f"unknown metric {key!r}; expected NAME@K with NAME one of {', '.join(METRICS)}")
    if len(rankings) != len(relevants):
        raise ValueError(f"{len(rankings)} rankings but {len(relevants)} relevant sets")
    fn, cutoff = _FUNCTIONS[name], _check_k(int(k))
    return [fn(r, rel, cutoff) for r, rel in zip(rankings, relevants, strict=True)]


def mean_metrics(
    rankings: Sequence[Sequence[Hashable]],
    relevants: Sequence[Collection[Hashable]],
    ks: Iterable[int],
    metrics: Iterable[str] = METRICS,
) -> dict[str, float]:
    """Every metric at every ``k``, averaged over queries.

    Args:
        rankings: one ranked id list per query.
        relevants: one relevant id set per query, parallel to ``rankings``.
        ks: cut-offs (duplicates ignored; sorted).
        metrics: names from :data:`METRICS`.

    Returns:
        ``{"hit@1": ..., "hit@3": ..., "mrr@1": ..., "ndcg@10": ..., "recall@10": ...}``,
        grouped by metric, then by ``k`` ascending. Empty input gives 0.0 everywhere.

    Example:
        >>> mean_metrics([["a", "b"], ["c", "d"]], [{"b"}, {"z"}], ks=[1, 2], metrics=["hit", "mrr"])
        {'hit@1': 0.0, 'hit@2': 0.5, 'mrr@1': 0.0, 'mrr@2': 0.25}
    """
    if len(rankings) != len(relevants):
        raise ValueError(f"{len(rankings)} rankings but {len(relevants)} relevant sets")
    ks = sorted({_check_k(k) for k in ks})
    out: dict[str, float] = {}
    n = len(rankings)
    for name in metrics:
        if name not in _FUNCTIONS:
            raise ValueError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}")
        fn = _FUNCTIONS[name]
        for k in ks:
            total = math.fsum(fn(r, rel, k) for r, rel in zip(rankings, relevants, strict=True))
            out[f"{name}@{k}"] = total / n if n else 0.0
    return out


def hit_curve(
    rankings: Sequence[Sequence[Hashable]], relevants: Sequence[Collection[Hashable]], max_k: int
) -> list[float]:
    """Mean hit@k for k = 1 .. ``max_k`` (element ``i`` is hit@(i + 1)).

    Example:
        >>> hit_curve([["a", "b"], ["c", "d"]], [{"b"}, {"c"}], 2)
        [0.5, 1.0]
    """
    _check_k(max_k)
    if len(rankings) != len(relevants):
        raise ValueError(f"{len(rankings)} rankings but {len(relevants)} relevant sets")
    counts = [0] * max_k
    for ranked, relevant in zip(rankings, relevants, strict=True):
        ranks = _relevant_ranks(ranked, relevant, max_k)
        if ranks:
            for i in range(ranks[0], max_k):
                counts[i] += 1
    n = len(rankings)
    return [c / n if n else 0.0 for c in counts]


def smallest_k_near_best(values: Mapping[int, float], tolerance: float) -> int:
    """The smallest ``k`` whose value is within ``tolerance`` of the best value.

    Used to recommend a ``retrieve_k`` from a sweep: past that ``k``, more
    candidates cost time without a meaningful gain.

    Args:
        values: a quality figure (e.g. MRR@10) per ``k``.
        tolerance: how far under the best still counts as as good (``>= 0``).

    Example:
        >>> smallest_k_near_best({5: 0.90, 10: 0.912, 20: 0.915, 50: 0.914}, 0.005)
        10
    """
    if not values:
        raise ValueError("no values to choose from")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance >= 0:
        raise ValueError(f"tolerance must be a non-negative number, got {tolerance!r}")
    best = max(values.values())
    # A tiny slack so that a value exactly `tolerance` under the best is not lost to rounding.
    return min(k for k, v in values.items() if v >= best - tolerance - 1e-12)


@dataclass(frozen=True, slots=True)
class PairedDifference:
    """How much system B beats system A on the same queries, with a bootstrap interval.

    Attributes:
        mean: the mean per-query difference ``b - a`` (B's mean minus A's mean).
        low, high: the ends of the percentile bootstrap interval of ``mean``.
        confidence: the interval's coverage, e.g. ``0.95``.
        better: queries on which B scores higher than A.
        worse: queries on which B scores lower than A.
        queries: all queries compared.
        resamples: bootstrap resamples drawn.
    """

    mean: float
    low: float
    high: float
    confidence: float
    better: int
    worse: int
    queries: int
    resamples: int

    @property
    def excludes_zero(self) -> bool:
        """True when the interval lies wholly above or wholly below 0."""
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-ready dict."""
        return {name: getattr(self, name) for name in self.__slots__}


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], *, resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> PairedDifference:
    """The mean of ``b - a`` over paired per-query scores, with a percentile bootstrap interval.

    The queries are resampled with replacement, the same queries for both systems,
    so the interval reflects how much the difference depends on which queries were
    asked; with a few hundred queries it is often wider than the spread across
    training seeds.

    Args:
        a, b: one score per query (e.g. reciprocal rank), parallel.
        resamples: bootstrap resamples (deterministic for a given ``seed``).
        confidence: the interval's coverage, in (0, 1).
        seed: the resampling seed.

    Example:
        >>> d = paired_bootstrap([1.0, 0.5, 0.0, 1.0], [1.0, 1.0, 0.5, 1.0])
        >>> d.mean, d.better, d.worse
        (0.25, 2, 0)
    """
    import numpy as np

    if len(a) != len(b):
        raise ValueError(f"{len(a)} scores for A but {len(b)} for B: they must be paired per query")
    if not a:
        raise ValueError("no queries to compare")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise ValueError(f"resamples must be a positive int, got {resamples!r}")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    diff = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    n = len(diff)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for i in range(resamples):  # one resample at a time: memory stays O(queries)
        means[i] = diff[rng.integers(0, n, size=n)].mean()
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return PairedDifference(
        mean=math.fsum(b) / n - math.fsum(a) / n, low=float(low), high=float(high), confidence=float(confidence),
        better=int((diff > 0).sum()), worse=int((diff < 0).sum()), queries=n, resamples=resamples,
    )
