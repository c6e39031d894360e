"""Fixtures for the evaluation tests: a tiny bi-encoder and tiny retrieval sets written to disk."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import _eval_helpers  # noqa: E402


@pytest.fixture(scope="session")
def tiny_bi_encoder(models_dir, tiny_bert) -> Path:
    """A sentence-transformers bi-encoder with random weights: for mechanics only."""
    path = models_dir / "st-bi"
    if not (path / "modules.json").exists():
        _eval_helpers.build_tiny_bi_encoder(path, tiny_bert)
    return path


@pytest.fixture(scope="session")
def tiny_squad(tmp_path_factory) -> Path:
    """A SQuAD-layout file over the tiny-model sentences (19 paragraphs, 38 questions)."""
    return _eval_helpers.write_tiny_squad(tmp_path_factory.mktemp("tiny-squad"))


@pytest.fixture(scope="session")
def tiny_jsonl(tmp_path_factory) -> tuple[Path, Path]:
    """A JSONL queries file and corpus file over the tiny-model sentences."""
    return _eval_helpers.write_tiny_jsonl(tmp_path_factory.mktemp("tiny-jsonl"))
