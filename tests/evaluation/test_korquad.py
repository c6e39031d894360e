"""Korean end to end: KorQuAD (SQuAD layout) through the same ``rerank-plugins eval`` command.

No real Korean reranker is available offline, so the reranker is the tiny XLM-RoBERTa
(Unigram tokenizer trained on Korean) and the bi-encoder the tiny BERT one: the
numbers are meaningless, the wiring is what is checked.
"""

from __future__ import annotations

import json

import pytest

from rerank_plugins import Reranker
from rerank_plugins.cli import main
from rerank_plugins.evaluation import BiEncoder, evaluate, load_dataset

pytest.importorskip("faiss", reason="the eval command needs the eval extra")


@pytest.fixture(scope="module")
def ko_cache(tmp_path_factory):
    """Corpus embeddings shared by both tests: the CLI run saves them, the library run reuses them."""
    return tmp_path_factory.mktemp("korquad") / "korquad-tiny.npz"


def test_korquad_through_the_eval_command(korquad_path, tiny_xlmr, tiny_bi_encoder, ko_cache, tmp_path, capsys):
    out_json, out_png = tmp_path / "ko.json", tmp_path / "ko.png"
    rc = main([
        "eval", "--data", str(korquad_path), "--reranker", str(tiny_xlmr), "--bi-encoder", str(tiny_bi_encoder),
        "--queries", "16", "--seed", "1", "--retrieve-k", "8", "--rerank-k", "4", "--device", "cpu",
        "--no-progress", "--json-out", str(out_json), "--plot", str(out_png), "--embeddings", str(ko_cache),
    ])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "16 of 5774 questions, 961 documents" in captured.err
    report = json.loads(out_json.read_text(encoding="utf-8"))
    assert list(report) == ["retrieval", "reranked", "timing", "config", "sweep"]
    cfg = report["config"]
    assert (cfg["queries"], cfg["documents"], cfg["rerank_pairs"]) == (16, 961, 16 * 8)
    assert cfg["reranker"]["kind"] == "sequence-classification"
    assert set(report["reranked"]) == {f"{m}@{k}" for m in ("hit", "mrr", "ndcg", "recall") for k in (1, 3, 4)}
    assert report["timing"]["rerank_s"] > 0
    assert out_png.read_bytes()[:4] == b"\x89PNG"


def test_korquad_outcomes_hold_korean_text(korquad_path, tiny_xlmr, tiny_bi_encoder, ko_cache):
    dataset = load_dataset(korquad_path).sample(4, seed=0)
    report = evaluate(dataset, Reranker(tiny_xlmr, device="cpu"), BiEncoder(tiny_bi_encoder, device="cpu"),
                      retrieve_k=5, rerank_k=5, embeddings_cache=ko_cache, show_progress=False)
    text_of = dict(zip(dataset.doc_ids, dataset.doc_texts, strict=True))
    for outcome in report.outcomes:
        assert any("\uac00" <= ch <= "\ud7a3" for ch in outcome.query)
        assert sorted(outcome.reranked) == sorted(outcome.retrieved)  # rerank_k == retrieve_k: a permutation
        assert all(any("\uac00" <= ch <= "\ud7a3" for ch in text_of[d]) for d in outcome.reranked)
    # rerank_k == retrieve_k: the candidate set is the same, so hit@5 cannot change.
    assert report.reranked["hit@5"] == report.retrieval["hit@5"]
