"""Parity of kind="cross-encoder" with sentence_transformers.CrossEncoder.predict."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from sentence_transformers import CrossEncoder

from rerank_plugins import Reranker


@pytest.mark.parametrize("normalize, activation", [("none", torch.nn.Identity()), ("sigmoid", torch.nn.Sigmoid())])
def test_scores_equal_predict(tiny_cross_encoder, mixed_pairs, normalize, activation):
    ce = CrossEncoder(str(tiny_cross_encoder), device="cpu")
    ref = ce.predict(mixed_pairs, activation_fn=activation, batch_size=5)
    reranker = Reranker(tiny_cross_encoder, overflow="truncate", normalize=normalize, batch_size=9)
    assert reranker.kind == "cross-encoder"
    ours = np.array(
        reranker.score_many([q for q, _ in mixed_pairs], [[d] for _, d in mixed_pairs])
    ).ravel()
    assert np.abs(ours - ref).max() <= 1e-5


def test_default_normalization_equals_st_default_for_one_label(tiny_cross_encoder, mixed_pairs):
    """ST applies Sigmoid by default to a one-label head; so does our default."""
    ce = CrossEncoder(str(tiny_cross_encoder), device="cpu")
    assert isinstance(ce.activation_fn, torch.nn.Sigmoid)
    query = mixed_pairs[0][0]
    docs = [d for _, d in mixed_pairs[:25]]
    ref = ce.predict([(query, d) for d in docs])
    np.testing.assert_allclose(Reranker(tiny_cross_encoder, overflow="truncate").score(query, docs), ref, atol=1e-6)


def test_two_label_cross_encoder_uses_positive_column(tiny_bert_2label, mixed_pairs):
    ce = CrossEncoder(str(tiny_bert_2label), device="cpu")
    ref = ce.predict(mixed_pairs[:20], activation_fn=torch.nn.Identity())
    assert ref.shape == (20, 2)
    reranker = Reranker(tiny_bert_2label, overflow="truncate", kind="cross-encoder", normalize="none")
    ours = np.array(reranker.score_many([q for q, _ in mixed_pairs[:20]], [[d] for _, d in mixed_pairs[:20]]))
    np.testing.assert_allclose(ours.ravel(), ref[:, 1], atol=1e-5)


def test_max_length_follows_cross_encoder_and_truncates_like_it(tiny_cross_encoder, mixed_pairs):
    reranker = Reranker(tiny_cross_encoder, overflow="truncate", normalize="none", max_length=24)
    ce = CrossEncoder(str(tiny_cross_encoder), device="cpu", max_length=24)
    ref = ce.predict(mixed_pairs, activation_fn=torch.nn.Identity())
    ours = np.array(reranker.score_many([q for q, _ in mixed_pairs], [[d] for _, d in mixed_pairs])).ravel()
    assert np.abs(ours - ref).max() <= 1e-5


# --------------------------------------------------------------------------- real model


def _squad_questions(articles, n_articles=3, per_article=4, n_paragraphs=8, seed=0):
    """(question, paragraphs, gold index) from a few SQuAD articles."""
    rng = random.Random(seed)
    cases = []
    for article in articles[:n_articles]:
        paragraphs = article["paragraphs"][:n_paragraphs]
        contexts = [p["context"] for p in paragraphs]
        for gold, paragraph in enumerate(paragraphs[:per_article]):
            question = rng.choice(paragraph["qas"])["question"]
            cases.append((question, contexts, gold))
    return cases


@pytest.mark.real
def test_real_ms_marco_ranks_gold_first_and_equals_predict(ms_marco_dir, squad_articles):
    cases = _squad_questions(squad_articles)
    reranker = Reranker(ms_marco_dir, overflow="truncate", normalize="none")
    assert reranker.kind == "cross-encoder"
    ranked = reranker.rerank_many([q for q, _, _ in cases], [c for _, c, _ in cases])
    gold_first = sum(r[0].index == gold for r, (_, _, gold) in zip(ranked, cases, strict=True))
    assert gold_first / len(cases) >= 0.75, f"gold first for {gold_first}/{len(cases)}"

    # Exact parity with CrossEncoder.predict (its config says Identity: raw logits).
    ce = CrossEncoder(str(ms_marco_dir), device="cpu")
    question, contexts, _ = cases[0]
    ref = ce.predict([(question, c) for c in contexts])
    ours = reranker.score(question, contexts)
    assert np.abs(np.array(ours) - ref).max() <= 1e-5
    by_index = {r.index: r.logit for r in ranked[0]}
    np.testing.assert_allclose([by_index[i] for i in range(len(contexts))], ref, atol=1e-5)
