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
    PairEncoding,
    Row,
    ScoringOptions,
    check_tokenizer,
    guarded_load,
    load_pretrained,
    longest_first,
    model_position_limit,
    split_pair_encodings,
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


class PairTokenizerMixin:
    """Encoding for models whose input is the tokenizer's own pair template (``[CLS] q [SEP] d [SEP]``)."""

    tokenizer: Any
    model_id: str
    kind: str
    dtype: Any
    device: Any
    runner: Any
    engine: str
    model_input_names: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids")

    def encode(self, queries: list[str], documents: list[str], options: ScoringOptions) -> list[PairEncoding]:
        batch = self.tokenizer(
            queries, documents, add_special_tokens=True, truncation=False,
            return_offsets_mapping=True, verbose=False,
        )
        return split_pair_encodings(batch, options.max_length)

    def truncated_row(self, pair: PairEncoding, options: ScoringOptions) -> tuple[Row, int]:
        """``tokenizer(q, d, truncation=True, max_length=...)``: the published ``longest_first`` cut."""
        q0, q1 = pair.query
        room = pair.budget + (q1 - q0)
        n_query, n_body = longest_first(q1 - q0, len(pair.body), room)
        left = getattr(self.tokenizer, "truncation_side", "right") == "left"
        body = slice(len(pair.body) - n_body, None) if left else slice(0, n_body)
        query = slice(q1 - n_query, q1) if left else slice(q0, q0 + n_query)
        head = pair.head[:q0] + pair.head[query] + pair.head[q1:]
        ids = head + pair.body[body] + pair.tail
        if pair.head_types is None or pair.body_types is None or pair.tail_types is None:
            return Row(ids, None), n_body
        types = pair.head_types[:q0] + pair.head_types[query] + pair.head_types[q1:]
        return Row(ids, types + pair.body_types[body] + pair.tail_types), n_body

    def pad(self, rows: list[Row]) -> dict[str, torch.Tensor]:
        """Right-padded tensors, as ``tokenizer(..., padding=True)`` builds them."""
        import torch

        width = max(len(r.ids) for r in rows)
        pad = self.tokenizer.pad_token_id or 0
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        token_type_ids = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            n = len(row.ids)
            input_ids[i, :n] = torch.tensor(row.ids, dtype=torch.long)
            attention_mask[i, :n] = 1
            if row.types is not None:
                token_type_ids[i, :n] = torch.tensor(row.types, dtype=torch.long)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return {k: v for k, v in inputs.items() if k in self.model_input_names}

    def use_engine(self, engine: str, model: Any) -> None:
        """Run ``model`` (a loaded HF sequence-classification model) on ``engine``."""
        from rerank_plugins.backends.engines import build_runner

        self.model_input_names = model_inputs(model, self.tokenizer)
        self.runner, self.engine = build_runner(
            engine, model=model, model_id=self.model_id, kind=self.kind, dtype=self.dtype,
            device=self.device, example=self.pad([Row([0, 1, 2, 3], [0, 0, 1, 1])] * 2),
        )

    def forward(self, rows: list[Row], options: ScoringOptions | None = None) -> torch.Tensor:
        inputs = {k: v.to(self.device) for k, v in self.pad(rows).items()}
        return positive_logit(self.runner(inputs))


class SequenceClassificationBackend(PairTokenizerMixin, Backend):
    """Tokenizer pair encoding + ``AutoModelForSequenceClassification`` logits."""

    kind = "sequence-classification"

    def __init__(self, model_id: str, *, device: torch.device, dtype: str, engine: str = "torch") -> None:
        super().__init__(model_id, device=device, dtype=dtype)
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = guarded_load(
            model_id, self.kind, "AutoTokenizer.from_pretrained",
            lambda: AutoTokenizer.from_pretrained(model_id),
        )
        check_tokenizer(model_id, self.kind, self.tokenizer)
        model = load_pretrained(
            model_id, self.kind, AutoModelForSequenceClassification, dtype=torch_dtype_for_engine(dtype, engine)
        )
        self.model: Any = model.to(device).eval()
        check_num_labels(model_id, self.kind, self.model.config.num_labels)
        self.max_positions = model_position_limit(self.model.config, self.tokenizer)
        self.default_max_length = min(PUBLISHED_MAX_LENGTH, self.max_positions or PUBLISHED_MAX_LENGTH)
        self.use_engine(engine, self.model)


def model_inputs(model: Any, tokenizer: Any) -> tuple[str, ...]:
    """The inputs this model takes: token type ids only where the tokenizer makes them and the model reads them."""
    import inspect

    names = ["input_ids", "attention_mask"]
    takes_types = "token_type_ids" in inspect.signature(model.forward).parameters
    if takes_types and "token_type_ids" in getattr(tokenizer, "model_input_names", ()):
        names.append("token_type_ids")
    return tuple(names)


def torch_dtype_for_engine(dtype: str, engine: str) -> Any:
    """The torch dtype to load weights in: float32 for exported engines (they pick their own precision)."""
    import torch

    return torch.float32 if engine != "torch" or dtype == "int8" else getattr(torch, dtype)
