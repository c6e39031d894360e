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
    Backend,
    check_tokenizer,
    detect_kind,
    guarded_load,
    load_pretrained,
    model_position_limit,
)
from rerank_plugins.backends.sequence_classification import (
    PairTokenizerMixin,
    check_num_labels,
    model_inputs,
    torch_dtype_for_engine,
)

if TYPE_CHECKING:
    import torch


class CrossEncoderBackend(PairTokenizerMixin, Backend):
    """A ``sentence_transformers.CrossEncoder`` scored on raw logits."""

    kind = "cross-encoder"

    def __init__(self, model_id: str, *, device: torch.device, dtype: str, engine: str = "torch") -> None:
        super().__init__(model_id, device=device, dtype=dtype)
        from sentence_transformers import CrossEncoder

        if not _saved_as_cross_encoder(model_id):
            # kind="cross-encoder" forced onto a model not saved as one: CrossEncoder would give a
            # missing head random weights and only log it. Its loader reports nothing, so load
            # the classification model once with transformers' loading info to check.
            from transformers import AutoModelForSequenceClassification

            load_pretrained(
                model_id, self.kind, AutoModelForSequenceClassification, dtype=torch_dtype_for_engine(dtype, engine)
            )
        self.cross_encoder: Any = guarded_load(
            model_id, self.kind, "sentence_transformers.CrossEncoder",
            lambda: CrossEncoder(
                model_id, device=str(device), model_kwargs={"dtype": torch_dtype_for_engine(dtype, engine)}
            ),
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
        direct = (
            len(self.cross_encoder) == 1
            and getattr(first, "transformer_task", None) == "sequence-classification"
        )
        if direct:
            self.use_engine(engine, self.model)
        else:
            if engine != "torch":
                raise ValueError(
                    f"engine={engine!r} runs CrossEncoders made of one sequence-classification module; "
                    f"{model_id!r} has another module stack: use engine='torch'"
                )
            self.model_input_names = model_inputs(self.model, self.tokenizer)
            self.engine = "torch"
            self.runner = lambda inputs: self.cross_encoder(inputs)["scores"]


def _saved_as_cross_encoder(model_id: str) -> bool:
    """Whether the model's own files mark it as a sentence-transformers CrossEncoder."""
    try:
        return detect_kind(model_id) == "cross-encoder"
    except (OSError, ValueError):
        return False
