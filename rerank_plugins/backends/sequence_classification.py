"""``AutoModelForSequenceClassification`` rerankers (bge-reranker-v2-m3, ko-reranker, ...).

Scoring follows the published usage of BAAI/bge-reranker-v2-m3 and
Dongjin-kr/ko-reranker::

    inputs = tokenizer(pairs, padding=True, truncation=True, max_length=512, return_tensors="pt")
    scores = model(**inputs).logits.view(-1)

A two-label head scores with its positive-class logit (column 1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rerank_plugins.backends.base import (
    Backend,
    ScoringOptions,
    check_tokenizer,
    guarded_load,
    load_pretrained,
    model_position_limit,
)

if TYPE_CHECKING:
    import torch

# The truncation length of the published usage examples.
PUBLISHED_MAX_LENGTH = 512


def positive_logit(logits: torch.Tensor) -> torch.Tensor:
    """One float32 logit per row: the only column, or column 1 of a two-label head."""
    column = logits[:, -1] if logits.ndim == 2 else logits.reshape(-1)
    return column.float().cpu()


def check_num_labels(model_id: str, kind: str, num_labels: int) -> None:
    from rerank_plugins.errors import ModelLoadError

    if num_labels not in (1, 2):
        raise ModelLoadError(
            f"{model_id!r} has a {num_labels}-label head; a {kind} reranker needs 1 label "
            "(a relevance logit) or 2 (not relevant, relevant)"
        )


class SequenceClassificationBackend(Backend):
    """Tokenizer pair encoding + ``AutoModelForSequenceClassification`` logits."""

    kind = "sequence-classification"

    def __init__(self, model_id: str, *, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(model_id, device=device, dtype=dtype)
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = guarded_load(
            model_id, self.kind, "AutoTokenizer.from_pretrained",
            lambda: AutoTokenizer.from_pretrained(model_id),
        )
        check_tokenizer(model_id, self.kind, self.tokenizer)
        model = load_pretrained(model_id, self.kind, AutoModelForSequenceClassification, dtype=dtype)
        self.model: Any = model.to(device).eval()
        check_num_labels(model_id, self.kind, self.model.config.num_labels)
        self.max_positions = model_position_limit(self.model.config, self.tokenizer)
        self.default_max_length = min(PUBLISHED_MAX_LENGTH, self.max_positions or PUBLISHED_MAX_LENGTH)

    def score_batch(
        self, queries: list[str], documents: list[str], options: ScoringOptions
    ) -> torch.Tensor:
        inputs = self.tokenizer(
            queries, documents, padding=True, truncation=True,
            max_length=options.max_length, return_tensors="pt",
        ).to(self.device)
        return positive_logit(self.model(**inputs).logits)
