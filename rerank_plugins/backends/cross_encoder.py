"""sentence-transformers ``CrossEncoder`` rerankers (ms-marco-MiniLM, ...).

The model is loaded with ``sentence_transformers.CrossEncoder`` so its saved
configuration (truncation length, modules, dtype handling) is honoured. Scores
equal ``CrossEncoder.predict`` under the same activation: the core applies the
activation chosen by ``normalize`` to the raw logits computed here.

For the common layout, one ``Transformer`` module with a sequence-classification
head, the underlying Hugging Face model is called directly with the
CrossEncoder's tokenizer: the same tensors ``CrossEncoder.predict`` builds,
without its per-batch preprocessing overhead. Any other module stack runs
through ``CrossEncoder.preprocess`` and the module chain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rerank_plugins.backends.base import (
    ScoringOptions,
    check_tokenizer,
    detect_kind,
    guarded_load,
    load_pretrained,
    model_position_limit,
)
from rerank_plugins.backends.sequence_classification import (
    SequenceClassificationBackend,
    check_num_labels,
    positive_logit,
)

if TYPE_CHECKING:
    import torch


class CrossEncoderBackend(SequenceClassificationBackend):
    """A ``sentence_transformers.CrossEncoder`` scored on raw logits."""

    kind = "cross-encoder"

    def __init__(self, model_id: str, *, device: torch.device, dtype: torch.dtype) -> None:
        super(SequenceClassificationBackend, self).__init__(model_id, device=device, dtype=dtype)
        from sentence_transformers import CrossEncoder

        if not _saved_as_cross_encoder(model_id):
            # kind="cross-encoder" forced onto a model not saved as one: CrossEncoder would give a
            # missing head random weights and only log it. Its loader reports nothing, so load
            # the classification model once with transformers' loading info to check.
            from transformers import AutoModelForSequenceClassification

            load_pretrained(model_id, self.kind, AutoModelForSequenceClassification, dtype=dtype)
        self.cross_encoder: Any = guarded_load(
            model_id, self.kind, "sentence_transformers.CrossEncoder",
            lambda: CrossEncoder(model_id, device=str(device), model_kwargs={"dtype": dtype}),
        )
        check_num_labels(model_id, self.kind, self.cross_encoder.num_labels)
        check_tokenizer(model_id, self.kind, self.cross_encoder.tokenizer)
        self.tokenizer = self.cross_encoder.tokenizer
        self.model = self.cross_encoder.model
        self.cross_encoder.eval()
        self.max_positions = model_position_limit(self.model.config, self.tokenizer)
        limits = [
            x for x in (self.cross_encoder.max_seq_length, self.max_positions) if isinstance(x, int)
        ]
        self.default_max_length = min(limits) if limits else None
        first = self.cross_encoder[0]
        self._direct = (
            len(self.cross_encoder) == 1
            and getattr(first, "transformer_task", None) == "sequence-classification"
        )

    def score_batch(
        self, queries: list[str], documents: list[str], options: ScoringOptions
    ) -> torch.Tensor:
        if self._direct:
            return super().score_batch(queries, documents, options)
        from sentence_transformers.util import batch_to_device

        pairs = list(zip(queries, documents, strict=True))
        features = self.cross_encoder.preprocess(pairs, max_length=options.max_length)
        features = batch_to_device(features, self.device)
        return positive_logit(self.cross_encoder(features)["scores"])


def _saved_as_cross_encoder(model_id: str) -> bool:
    """Whether the model's own files mark it as a sentence-transformers CrossEncoder."""
    try:
        return detect_kind(model_id) == "cross-encoder"
    except (OSError, ValueError):
        return False
