"""Builders for the evaluation tests' tiny assets (fixtures in tests/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import _tiny


def build_tiny_bi_encoder(path: Path, hf_dir: Path) -> Path:
    """A sentence-transformers bi-encoder (tiny BERT + mean pooling) saved to ``path``.

    Random weights: embeddings are meaningless but deterministic; for mechanics only.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    word = Transformer(str(hf_dir), max_seq_length=128)
    pooling = Pooling(word.get_embedding_dimension(), pooling_mode="mean")
    SentenceTransformer(modules=[word, pooling], device="cpu").save(str(path))
    return path


def squad_layout(texts: list[str], questions_per_paragraph: int = 2) -> dict:
    """A SQuAD-layout dict: one article per 4 paragraphs, questions cut from each paragraph."""
    articles = []
    for a in range(0, len(texts), 4):
        paragraphs = []
        for i, text in enumerate(texts[a : a + 4], start=a):
            words = text.split()
            qas = [
                {"id": f"q{i}-{j}", "question": " ".join(words[j : j + 5]) + "?", "answers": [words[-1]]}
                for j in range(questions_per_paragraph)
            ]
            paragraphs.append({"context": text, "qas": qas})
        articles.append({"title": f"article {a // 4}", "paragraphs": paragraphs})
    return {"version": "1.1", "data": articles}


def write_tiny_squad(folder: Path) -> Path:
    """A SQuAD-layout file over the English and Korean tiny-model sentences (19 paragraphs, 38 questions)."""
    path = folder / "tiny_squad.json"
    path.write_text(json.dumps(squad_layout(_tiny.CORPUS), ensure_ascii=False), encoding="utf-8")
    return path


def write_tiny_jsonl(folder: Path) -> tuple[Path, Path]:
    """A JSONL queries file and corpus file over the tiny-model sentences (19 each)."""
    corpus = folder / "corpus.jsonl"
    queries = folder / "queries.jsonl"
    corpus.write_text(
        "".join(json.dumps({"id": f"doc-{i}", "text": t}, ensure_ascii=False) + "\n"
                for i, t in enumerate(_tiny.CORPUS)),
        encoding="utf-8",
    )
    lines = []
    for i, text in enumerate(_tiny.CORPUS):
        positives = [f"doc-{i}"] if i % 3 else [f"doc-{i}", f"doc-{(i + 1) % len(_tiny.CORPUS)}"]
        lines.append(json.dumps({"id": f"Q{i}", "query": " ".join(text.split()[:4]), "positives": positives},
                                ensure_ascii=False))
    queries.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    return queries, corpus
