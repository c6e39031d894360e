"""Parity of kind="sequence-classification" with the published usage code."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rerank_plugins import Reranker


def reference_scores(path, pairs, max_length=512, batch_size=8):
    """The ko-reranker / bge-reranker-v2-m3 model-card loop, in input order, no sorting."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(pairs), batch_size):
            batch = [list(p) for p in pairs[i : i + batch_size]]
            inputs = tokenizer(batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            logits = model(**inputs, return_dict=True).logits
            column = logits.view(-1) if logits.shape[-1] == 1 else logits[:, 1]
            out.extend(column.float().tolist())
    return np.array(out)


@pytest.mark.parametrize("fixture", ["tiny_bert", "tiny_bert_2label", "tiny_xlmr", "tiny_xlmr_2label"])
def test_raw_logits_match_reference_on_mixed_pairs(fixture, request, mixed_pairs):
    path = request.getfixturevalue(fixture)
    reranker = Reranker(path, overflow="truncate", kind="sequence-classification", normalize="none", batch_size=7)
    queries = [q for q, _ in mixed_pairs]
    docs = [d for _, d in mixed_pairs]
    ours = np.array(reranker.score_many(queries, [[d] for d in docs])).ravel()
    ref = reference_scores(path, mixed_pairs)
    assert len(mixed_pairs) >= 50
    assert np.abs(ours - ref).max() <= 1e-5
    # The fixture's logits really differ, so a permutation of them would fail the check above.
    assert np.ptp(ref) > 0.05


def test_order_restored_after_length_sorting(tiny_xlmr, mixed_pairs):
    """One query, documents of very different lengths: scores stay in input order."""
    query = "서울은 대한민국의 수도이다"
    docs = [d for _, d in mixed_pairs]
    reranker = Reranker(tiny_xlmr, overflow="truncate", normalize="none", batch_size=4)
    ours = np.array(reranker.score(query, docs))
    ref = reference_scores(tiny_xlmr, [(query, d) for d in docs])
    assert np.abs(ours - ref).max() <= 1e-5


def test_sigmoid_is_bge_normalize(tiny_xlmr, mixed_pairs):
    pairs = mixed_pairs[:20]
    reranker = Reranker(tiny_xlmr, overflow="truncate", normalize="sigmoid")
    ours = np.array(reranker.score_many([q for q, _ in pairs], [[d] for _, d in pairs])).ravel()
    ref = 1 / (1 + np.exp(-reference_scores(tiny_xlmr, pairs)))
    assert np.abs(ours - ref).max() <= 1e-6
    assert ((ours > 0) & (ours < 1)).all()


def test_two_label_head_scores_with_positive_column(tiny_bert_2label):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_2label)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_2label).eval()
    docs = ["Paris is the capital of France.", "The quick brown fox.", "Water boils at 100 degrees."]
    with torch.no_grad():
        logits = model(**tokenizer(["capital?"] * 3, docs, padding=True, return_tensors="pt")).logits
    assert logits.shape == (3, 2)
    ours = Reranker(tiny_bert_2label, overflow="truncate", normalize="none").score("capital?", docs)
    np.testing.assert_allclose(ours, logits[:, 1].numpy(), atol=1e-5)
    assert not np.allclose(ours, logits[:, 0].numpy(), atol=1e-3)


def test_default_max_length_is_published_512(tiny_xlmr, tiny_bert):
    assert Reranker(tiny_xlmr).max_length == 512  # 514 positions - 2 (XLM-R offset)
    assert Reranker(tiny_bert).max_length == 512
    with pytest.raises(ValueError, match="exceeds the model's limit of 512"):
        Reranker(tiny_xlmr, max_length=513)
