"""Session-scoped fixtures: each tiny model is built once; ../shared assets are optional."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

# Tests never reach a model hub: fail fast instead of waiting on network timeouts.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Parity tests compare with float32 references: "auto" resolves to the exact path
# here. Tests of the automatic choice unset these (see tests/test_hardware.py).
os.environ["RERANK_PLUGINS_DTYPE"] = "float32"
os.environ["RERANK_PLUGINS_ENGINE"] = "torch"

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent / "evaluation"))

import _eval_helpers  # noqa: E402
import _tiny  # noqa: E402

SHARED = Path(os.environ.get("RERANK_PLUGINS_SHARED", Path(__file__).resolve().parents[2] / "shared"))
MS_MARCO = SHARED / "models" / "ms-marco-MiniLM-L-12-v2"
SQUAD = SHARED / "data" / "squad-v1.1-dev.json"
KORQUAD = SHARED / "data" / "KorQuAD_v1.0_dev.json"


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny-models")


@pytest.fixture(scope="session")
def tiny_bert(models_dir) -> Path:
    """A plain HF BertForSequenceClassification (1 label): kind auto -> sequence-classification."""
    return _tiny.build_bert(models_dir / "bert-1", num_labels=1)


@pytest.fixture(scope="session")
def tiny_bert_2label(models_dir) -> Path:
    return _tiny.build_bert(models_dir / "bert-2", num_labels=2, seed=3)


@pytest.fixture(scope="session")
def tiny_cross_encoder(models_dir, tiny_bert) -> Path:
    """The tiny BERT saved by sentence-transformers: kind auto -> cross-encoder."""
    return _tiny.build_st_cross_encoder(models_dir / "st-ce", tiny_bert)


@pytest.fixture(scope="session")
def tiny_xlmr(models_dir) -> Path:
    """An XLM-RoBERTa reranker with a Unigram tokenizer trained on Korean and English."""
    return _tiny.build_xlmr(models_dir / "xlmr-1", num_labels=1)


@pytest.fixture(scope="session")
def tiny_xlmr_2label(models_dir) -> Path:
    return _tiny.build_xlmr(models_dir / "xlmr-2", num_labels=2, seed=4)


@pytest.fixture(scope="session")
def mixed_pairs() -> list[tuple[str, str]]:
    return _tiny.mixed_pairs(60)


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: real-model checks need ../shared (see ../shared/README.md)")
    return path


@pytest.fixture(scope="session")
def ms_marco_dir() -> Path:
    return _require(MS_MARCO)


@pytest.fixture(scope="session")
def squad_articles() -> list[dict]:
    with _require(SQUAD).open(encoding="utf-8") as fh:
        return json.load(fh)["data"]


@pytest.fixture(scope="session")
def korquad_path() -> Path:
    return _require(KORQUAD)


@pytest.fixture(scope="session")
def tiny_gemma(models_dir) -> Path:
    """A 2-layer Gemma causal LM whose BPE tokenizer pads on the left (as Gemma's does)."""
    return _tiny.build_gemma(models_dir / "gemma-left", padding_side="left")


@pytest.fixture(scope="session")
def tiny_gemma_right(models_dir) -> Path:
    """The same weights and vocabulary as ``tiny_gemma``, with a right-padding tokenizer."""
    return _tiny.build_gemma(models_dir / "gemma-right", padding_side="right")


@pytest.fixture(scope="session")
def tiny_gemma_no_pad(models_dir) -> Path:
    """The same weights, with a tokenizer that has no pad token."""
    return _tiny.build_gemma(models_dir / "gemma-no-pad", pad=False)


@pytest.fixture(scope="session")
def tiny_bi_encoder(models_dir, tiny_bert) -> Path:
    """A sentence-transformers bi-encoder (tiny BERT + mean pooling), random weights: for mechanics only."""
    return _eval_helpers.build_tiny_bi_encoder(models_dir / "st-bi", tiny_bert)


@pytest.fixture(scope="session")
def tiny_squad(tmp_path_factory) -> Path:
    """A SQuAD-layout file over the tiny-model sentences (19 paragraphs, 38 questions)."""
    return _eval_helpers.write_tiny_squad(tmp_path_factory.mktemp("tiny-squad"))


@pytest.fixture(scope="session")
def tiny_jsonl(tmp_path_factory) -> tuple[Path, Path]:
    """A JSONL queries file and corpus file over the tiny-model sentences."""
    return _eval_helpers.write_tiny_jsonl(tmp_path_factory.mktemp("tiny-jsonl"))


@pytest.fixture(scope="session")
def tiny_qwen3(models_dir) -> Path:
    """A 2-layer Qwen3ForCausalLM with a Qwen-style byte-level BPE tokenizer (chat special tokens, "yes"/"no")."""
    return _tiny.build_qwen3(models_dir / "qwen3")
