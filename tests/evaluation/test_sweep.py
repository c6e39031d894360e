"""The retrieve_k sweep: derived points equal independent runs, one scoring pass, report, plot, bad values."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from rerank_plugins import Reranker
from rerank_plugins.evaluation import (
    REPORT_KEYS,
    SWEEP_METRICS,
    BiEncoder,
    DenseIndex,
    check_sweep,
    evaluate,
    load_dataset,
    plot_sweep,
    sweep_plot_path,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SWEEP = (2, 5, 10, 16)
N_QUERIES = 20  # of tiny_squad's 38 (19 paragraphs, 2 questions each): enough, and quick


@pytest.fixture(scope="module")
def dataset(tiny_squad):
    return load_dataset(tiny_squad).sample(N_QUERIES, seed=1)


@pytest.fixture(scope="module")
def encoder(tiny_bi_encoder):
    return BiEncoder(tiny_bi_encoder, device="cpu")


@pytest.fixture(scope="module")
def index(encoder, dataset):
    return DenseIndex.from_corpus(encoder, dataset.doc_ids, dataset.doc_texts)


@pytest.fixture(scope="module")
def reranker(tiny_bert):
    return Reranker(tiny_bert, device="cpu", batch_size=16)


class CountingReranker:
    """Forwards ``score_many`` to a real Reranker and records every (query, passage) pair it is given."""

    def __init__(self, inner: Reranker):
        self.inner = inner
        self.model_id = inner.model_id
        self.calls = 0
        self.pairs: Counter[tuple[str, str]] = Counter()

    def score_many(self, queries, documents_per_query, *, show_progress=None):
        self.calls += 1
        for query, docs in zip(queries, documents_per_query, strict=True):
            self.pairs.update((query, d) for d in docs)
        return self.inner.score_many(queries, documents_per_query, show_progress=show_progress)

    def __getattr__(self, name):
        if name in ("score", "rerank", "rerank_many", "ascore", "arerank"):  # a second scoring door
            raise AssertionError(f"the evaluation called reranker.{name}")
        return getattr(self.inner, name)  # settings for the report's config


class OracleReranker:
    """Scores 1 for a query's gold passage, 0 otherwise."""

    model_id = "oracle"

    def __init__(self, dataset):
        text_of = dict(zip(dataset.doc_ids, dataset.doc_texts, strict=True))
        self.gold = {q.text: {text_of[p] for p in q.positives} for q in dataset.queries}

    def score_many(self, queries, documents_per_query, *, show_progress=None):
        return [[1.0 if d in self.gold[q] else 0.0 for d in docs]
                for q, docs in zip(queries, documents_per_query, strict=True)]


def test_each_swept_k_equals_an_independent_run_with_that_retrieve_k(dataset, encoder, index, reranker):
    swept = evaluate(dataset, reranker, encoder, sweep=[16, 2, 10, 5], rerank_k=10, ks=(1, 3, 10), index=index)
    assert [p.retrieve_k for p in swept.sweep] == list(SWEEP)  # sorted, whatever the order given
    assert swept.config["retrieve_k"] == 16 and swept.config["sweep"] == list(SWEEP)
    for point in swept.sweep:
        k = point.retrieve_k
        alone = evaluate(dataset, reranker, encoder, retrieve_k=k, rerank_k=min(10, k), ks=(1, 3, 10), index=index)
        # Below k = 10 the reranked list has k documents, so @10 is @k (and @3 is @k below 3).
        assert point.metrics == {
            "hit@1": alone.reranked["hit@1"],
            "hit@3": alone.reranked[f"hit@{min(3, k)}"],
            "hit@10": alone.reranked[f"hit@{min(10, k)}"],
            "mrr@10": alone.reranked[f"mrr@{min(10, k)}"],
            "ndcg@10": alone.reranked[f"ndcg@{min(10, k)}"],
        }, k
        assert point.retrieval_recall == alone.retrieval[f"recall@{k}"]
        assert point.rerank_pairs == alone.config["rerank_pairs"] == N_QUERIES * k
        if k == 16:  # the largest k is also the run's own report
            assert (swept.retrieval, swept.reranked) == (alone.retrieval, alone.reranked)
            assert [o.reranked for o in swept.outcomes] == [o.reranked for o in alone.outcomes]
    # Not a vacuous comparison: the candidates and the quality change with k.
    recalls = [p.retrieval_recall for p in swept.sweep]
    assert recalls == sorted(recalls) and recalls[0] < recalls[-1]
    assert len({p.metrics["mrr@10"] for p in swept.sweep}) > 1


def test_the_sweep_scores_each_pair_exactly_once(dataset, encoder, index, reranker, monkeypatch):
    batches: list[int] = []
    model_pairs: Counter[tuple[str, str]] = Counter()
    encode, forward = reranker.backend.encode, reranker.backend.forward

    def counting_encode(queries, documents, options):
        model_pairs.update(zip(queries, documents, strict=True))
        return encode(queries, documents, options)

    def counting_forward(rows, options):
        batches.append(len(rows))
        return forward(rows, options)

    monkeypatch.setattr(reranker.backend, "encode", counting_encode)
    monkeypatch.setattr(reranker.backend, "forward", counting_forward)
    counting = CountingReranker(reranker)
    report = evaluate(dataset, counting, encoder, sweep=SWEEP, rerank_k=10, index=index)

    assert counting.calls == 1
    assert sum(counting.pairs.values()) == N_QUERIES * 16 == report.config["rerank_pairs"] == 320
    assert sum(model_pairs.values()) == sum(batches) == 320  # the model saw each pair once: no second pass
    assert model_pairs == counting.pairs
    expected = Counter((o.query, text) for o in report.outcomes
                       for text in (dict(zip(dataset.doc_ids, dataset.doc_texts, strict=True))[d]
                                    for d in o.retrieved))
    assert counting.pairs == expected

    # The cost of each k: first stage + the one pass's measured time per pair x pairs per query.
    t = report.timing
    per_pair_ms = 1000.0 * t["rerank_s"] / 320
    for p in report.sweep:
        assert p.rerank_ms_per_query == pytest.approx(per_pair_ms * p.retrieve_k)
        assert p.ms_per_query == pytest.approx(t["retrieval_ms_per_query"] + per_pair_ms * p.retrieve_k)
    assert report.sweep[-1].ms_per_query == pytest.approx(t["total_ms_per_query"])


def test_sweep_report_table_recommendation_and_plot(dataset, encoder, index, tmp_path):
    report = evaluate(dataset, OracleReranker(dataset), encoder, sweep=(1, 3, 5, 8, 12, 19), rerank_k=5,
                      index=index)
    # An oracle puts the gold passage first whenever it was retrieved: quality = the first stage's recall@k.
    for p in report.sweep:
        assert p.metrics["hit@1"] == p.metrics["mrr@10"] == p.metrics["ndcg@10"] == p.retrieval_recall
    assert report.sweep[-1].retrieval_recall == 1.0  # k = 19 is the whole corpus
    recall = {p.retrieve_k: p.retrieval_recall for p in report.sweep}
    expected_k = min(k for k, r in recall.items() if r >= 1.0 - 0.005)
    assert report.recommended_k() == expected_k
    assert report.recommended_k(tolerance=1.0) == 1

    out = report.to_dict()
    assert tuple(out) == REPORT_KEYS
    assert [e["retrieve_k"] for e in out["sweep"]] == [1, 3, 5, 8, 12, 19]
    assert list(out["sweep"][0]) == ["retrieve_k", *SWEEP_METRICS, "retrieval_recall", "rerank_pairs",
                                     "rerank_ms_per_query", "ms_per_query"]
    path = report.write_json(tmp_path / "report.json")
    assert json.loads(path.read_text(encoding="utf-8"))["sweep"] == out["sweep"]

    lines = report.format_sweep_table().splitlines()
    assert lines[1].split() == ["k", "recall@k", *SWEEP_METRICS, "ms/query"]
    rows = {line.split()[0]: line.split() for line in lines[3:-1]}
    assert list(rows) == ["-", "1", "3", "5", "8", "12", "19"]
    assert rows["12"][1:] == [f"{recall[12]:.4f}"] * 6 + [f"{report.sweep[4].ms_per_query:.1f}"]
    assert rows["-"][2] == f"{report.retrieval['hit@1']:.4f}"
    assert lines[-1].startswith(f"recommended retrieve_k: {expected_k} (the smallest k within 0.005 MRR@10")

    png = plot_sweep(report, sweep_plot_path(tmp_path / "hit.png"))
    assert png == tmp_path / "hit_sweep.png"
    data = png.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5000
    import matplotlib.image

    assert matplotlib.image.imread(png).shape == (540, 840, 4)  # 7 x 4.5 in at 120 dpi
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hit_sweep.png", "report.json"]  # no temp files left

    plain = evaluate(dataset, OracleReranker(dataset), encoder, retrieve_k=5, rerank_k=5, index=index)
    assert plain.format_sweep_table() == "" and plain.recommendation() == ""
    with pytest.raises(ValueError, match="no sweep to plot"):
        plot_sweep(plain, tmp_path / "none.png")


class Untouchable:
    """A reranker or bi-encoder that must not be used: bad settings are caught before any work."""

    model_id = "untouchable"

    def __getattr__(self, name):
        raise AssertionError(f"used {name} before the settings were checked")


@pytest.mark.parametrize(("sweep", "error", "message"), [
    ([5, 0], ValueError, r"sweep\[1\] must be a positive int, got 0"),
    ([-3], ValueError, r"sweep\[0\] must be a positive int, got -3"),
    ([5, 10, 5, 10], ValueError, "sweep values must be distinct; repeated: 5, 10"),
    ([5, 20], ValueError, r"sweep value 20 is larger than the corpus \(19 documents\); use values up to 19"),
    ([5, 10.0], TypeError, r"sweep\[1\] must be an int, got float \(10.0\)"),
    ([5, "10"], TypeError, r"sweep\[1\] must be an int, got str \('10'\)"),
    ([True], TypeError, r"sweep\[0\] must be an int, got bool"),
    ([], ValueError, "sweep must hold at least one retrieve_k value"),
    ("5 10", TypeError, "sweep must be a sequence of ints, got str"),
    (5, TypeError, "sweep must be a sequence of ints, got int"),
])
def test_bad_sweep_values_are_clear_errors(dataset, sweep, error, message):
    with pytest.raises(error, match=message):
        evaluate(dataset, Untouchable(), Untouchable(), sweep=sweep)


def test_sweep_conflicts_with_other_settings(dataset):
    with pytest.raises(ValueError, match=r"retrieve_k \(30\) must equal the largest sweep value \(10\)"):
        evaluate(dataset, Untouchable(), Untouchable(), sweep=[5, 10], retrieve_k=30)
    with pytest.raises(ValueError, match=r"rerank_k \(10\) must not exceed retrieve_k \(5\)"):
        evaluate(dataset, Untouchable(), Untouchable(), sweep=[2, 5])
    assert check_sweep((30, 5, 10)) == (5, 10, 30)
    assert check_sweep(range(1, 4), n_docs=3) == (1, 2, 3)
