"""LLM yes-logit rerankers (BAAI/bge-reranker-v2-gemma and kin).

A causal LM reads ``<bos>A: {query}\\nB: {passage}\\n{prompt}`` and the score is
the logit of the token ``Yes`` at the last position. Inputs are built exactly as
the model card's ``get_inputs`` (which called ``tokenizer.prepare_for_model``,
removed in transformers 5):

* ``query_ids = tokenizer(f"A: {query}", add_special_tokens=False,
  max_length=max_length * 3 // 4, truncation=True)``;
* ``passage_ids = tokenizer(f"B: {passage}", add_special_tokens=False,
  max_length=max_length, truncation=True)``;
* first sequence ``[bos] + query_ids``, second ``sep + passage_ids`` (``sep`` is
  the ids of ``"\\n"``), truncated ``only_second`` so that the pair fits
  ``max_length``; then ``+ sep + prompt_ids``; batches are padded to a multiple of 8.

FlagEmbedding 1.4.2 truncates long pairs slightly differently (it allows
``max_length + len(sep) + len(prompt)`` tokens before the prompt is appended);
this package follows the model card.

Rows are padded on the left whatever the tokenizer's ``padding_side``, with
position ids taken from the attention mask, so the last position is the last
real token of every row and only that position's logits are computed
(``logits_to_keep=1``): a batch never materialises sequence x vocabulary logits.
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any

from rerank_plugins.backends.base import (
    Backend,
    PairEncoding,
    Row,
    ScoringOptions,
    guarded_load,
    model_position_limit,
)
from rerank_plugins.errors import ModelLoadError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

DEFAULT_PROMPT = (
    "Given a query A and a passage B, determine whether the passage contains an answer "
    "to the query by providing a prediction of either 'Yes' or 'No'."
)
DEFAULT_QUERY_PREFIX = "A: "
DEFAULT_PASSAGE_PREFIX = "B: "
DEFAULT_MAX_LENGTH = 1024
SEPARATOR = "\n"
PAD_MULTIPLE = 8


class LLMYesBackend(Backend):
    """A causal LM scored by the logit of "Yes" after a fixed prompt."""

    kind = "llm-yes"

    def __init__(self, model_id: str, *, device: torch.device, dtype: str, engine: str = "torch") -> None:
        super().__init__(model_id, device=device, dtype=dtype)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.engine = engine

        tokenizer = guarded_load(
            model_id, self.kind, "AutoTokenizer.from_pretrained",
            lambda: AutoTokenizer.from_pretrained(model_id),
        )
        if tokenizer.pad_token is None:  # as FlagEmbedding does
            if tokenizer.eos_token is None:
                raise ModelLoadError(f"the tokenizer of {model_id!r} has neither a pad nor an eos token")
            tokenizer.pad_token = tokenizer.eos_token
        yes_ids = tokenizer("Yes", add_special_tokens=False)["input_ids"]
        if len(yes_ids) != 1:
            raise ModelLoadError(
                f"the tokenizer of {model_id!r} splits 'Yes' into {len(yes_ids)} tokens {yes_ids}; "
                "an llm-yes reranker needs 'Yes' to be a single token"
            )
        self.yes_id: int = yes_ids[0]
        self.sep_ids: list[int] = tokenizer(SEPARATOR, add_special_tokens=False)["input_ids"]
        self.tokenizer = tokenizer
        model = guarded_load(
            model_id, self.kind, "AutoModelForCausalLM.from_pretrained",
            lambda: AutoModelForCausalLM.from_pretrained(model_id, dtype=getattr(torch, dtype)),
        )
        self.model: Any = model.to(device).eval()
        self._keeps_last_only = "logits_to_keep" in inspect.signature(self.model.forward).parameters
        self.max_positions = model_position_limit(self.model.config, tokenizer)
        self.default_max_length = min(DEFAULT_MAX_LENGTH, self.max_positions or DEFAULT_MAX_LENGTH)
        self._prompt_cache: dict[str, list[int]] = {}

    # ------------------------------------------------------------------ inputs

    def _prompt_ids(self, prompt: str) -> list[int]:
        ids = self._prompt_cache.get(prompt)
        if ids is None:
            ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
            self._prompt_cache[prompt] = ids
        return ids

    def encode(self, queries: list[str], documents: list[str], options: ScoringOptions) -> list[PairEncoding]:
        """The model card's layout, tokenised once: ``[bos] A: q`` + sep + ``B: d`` + sep + prompt.

        The query is capped at 3/4 of ``max_length`` as the card does. The
        passage is tokenised with its prefix (so the pair is token for token
        the card's) and split after the prefix's own tokens.
        """
        max_length = options.max_length
        qp = DEFAULT_QUERY_PREFIX if options.query_prefix is None else options.query_prefix
        pp = DEFAULT_PASSAGE_PREFIX if options.passage_prefix is None else options.passage_prefix
        tok = self.tokenizer
        left = tok.truncation_side == "left"
        cap = max_length * 3 // 4
        unique = list(dict.fromkeys(queries))
        q_ids = dict(zip(unique, tok([qp + q for q in unique], add_special_tokens=False)["input_ids"], strict=True))
        passages = tok([pp + d for d in documents], add_special_tokens=False, return_offsets_mapping=True)
        bos = [] if tok.bos_token_id is None else [tok.bos_token_id]
        tail = self.sep_ids + self._prompt_ids(DEFAULT_PROMPT if options.prompt is None else options.prompt)
        pairs = []
        for query, ids, offsets in zip(queries, passages["input_ids"], passages["offset_mapping"], strict=True):
            qids = q_ids[query]
            qids = (qids[-cap:] if left else qids[:cap]) if cap > 0 else []
            # Tokens wholly inside the prefix stay with the head; one straddling the boundary starts the body.
            n_prefix = next((i for i, (_, end) in enumerate(offsets) if end > len(pp)), len(ids))
            head = bos + qids + self.sep_ids + ids[:n_prefix]
            body_offsets = [(max(a - len(pp), 0), max(b - len(pp), 0)) for a, b in offsets[n_prefix:]]
            pairs.append(
                PairEncoding(
                    head=head, body=ids[n_prefix:], tail=tail, head_types=None, body_types=None, tail_types=None,
                    offsets=body_offsets, query=(len(bos), len(bos) + len(qids)), budget=max_length - len(head),
                )
            )
        return pairs

    def truncated_row(self, pair: PairEncoding) -> tuple[Row, int]:
        """The card's ``prepare_for_model(truncation="only_second")``: cut ``sep + passage`` to fit."""
        max_length = pair.budget + len(pair.head)
        first_len = pair.query[1]
        # The card tokenised the passage with max_length=max_length before pairing.
        second = (pair.head[first_len:] + pair.body)[: len(self.sep_ids) + max_length]
        excess = first_len + len(second) - max_length
        if len(second) <= excess:
            # prepare_for_model logged an error and left the pair untruncated.
            logger.warning(
                "cannot fit the pair in max_length=%d by truncating the passage alone "
                "(query part %d tokens); the pair is left as is", max_length, first_len,
            )
        elif excess > 0:
            second = second[excess:] if self.tokenizer.truncation_side == "left" else second[:-excess]
        kept = max(0, len(second) - (len(pair.head) - first_len))
        return Row(pair.head[:first_len] + second + pair.tail, None), kept

    # ------------------------------------------------------------------ scoring

    def forward(self, rows: list[Row]) -> torch.Tensor:
        import torch

        width = -(-max(len(r.ids) for r in rows) // PAD_MULTIPLE) * PAD_MULTIPLE
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):  # left padding: the last column is every row's last token
            input_ids[i, width - len(row.ids) :] = torch.tensor(row.ids, dtype=torch.long)
            attention_mask[i, width - len(row.ids) :] = 1
        position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
        kwargs = {"logits_to_keep": 1} if self._keeps_last_only else {}
        logits = self.model(
            input_ids=input_ids.to(self.device),
            attention_mask=attention_mask.to(self.device),
            position_ids=position_ids.to(self.device),
            use_cache=False,
            **kwargs,
        ).logits
        return logits[:, -1, self.yes_id].float().cpu()
