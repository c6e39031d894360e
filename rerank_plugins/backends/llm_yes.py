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
    ScoringOptions,
    check_tokenizer,
    guarded_load,
    load_pretrained,
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

    def __init__(self, model_id: str, *, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(model_id, device=device, dtype=dtype)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = guarded_load(
            model_id, self.kind, "AutoTokenizer.from_pretrained",
            lambda: AutoTokenizer.from_pretrained(model_id),
        )
        check_tokenizer(model_id, self.kind, tokenizer)
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
        model = load_pretrained(model_id, self.kind, AutoModelForCausalLM, dtype=dtype)
        self.model: Any = model.to(device).eval()
        self._keeps_last_only = "logits_to_keep" in inspect.signature(self.model.forward).parameters
        self.max_positions = model_position_limit(self.model.config, tokenizer)
        self.default_max_length = min(DEFAULT_MAX_LENGTH, self.max_positions or DEFAULT_MAX_LENGTH)
        self._prompt_cache: dict[str, list[int]] = {}

    def min_max_length(self, options: ScoringOptions) -> int:
        """The smallest ``max_length`` at which a query cut to ``max_length * 3 // 4`` tokens
        still leaves room for ``<bos>``, the separator, the passage prefix and one passage token.

        Below it the model card's truncation cannot fit the pair and leaves it uncut.
        """
        qp, pp = self._texts([""], [""], options)
        query_min = len(self.tokenizer(qp[0], add_special_tokens=False)["input_ids"]) + 1
        rest = (0 if self.tokenizer.bos_token_id is None else 1) + len(self.sep_ids)
        rest += len(self.tokenizer(pp[0], add_special_tokens=False)["input_ids"]) + 1
        m = query_min + rest
        while m * 3 // 4 < query_min or m - m * 3 // 4 < rest:
            m += 1
        return m

    # ------------------------------------------------------------------ inputs

    def _prompt_ids(self, prompt: str) -> list[int]:
        ids = self._prompt_cache.get(prompt)
        if ids is None:
            ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
            self._prompt_cache[prompt] = ids
        return ids

    @staticmethod
    def _texts(
        queries: list[str], documents: list[str], options: ScoringOptions
    ) -> tuple[list[str], list[str]]:
        qp = DEFAULT_QUERY_PREFIX if options.query_prefix is None else options.query_prefix
        pp = DEFAULT_PASSAGE_PREFIX if options.passage_prefix is None else options.passage_prefix
        return [f"{qp}{q}" for q in queries], [f"{pp}{d}" for d in documents]

    def _first(self, query_ids: list[int]) -> list[int]:
        bos = self.tokenizer.bos_token_id
        return ([bos] if bos is not None else []) + query_ids

    def build_input_ids(
        self, queries: list[str], documents: list[str], options: ScoringOptions
    ) -> list[list[int]]:
        """The model card's ``get_inputs`` ids for each pair, unpadded."""
        max_length = options.max_length
        q_texts, p_texts = self._texts(queries, documents, options)
        tok = self.tokenizer
        q_ids = tok(q_texts, add_special_tokens=False, max_length=max_length * 3 // 4, truncation=True)
        p_ids = tok(p_texts, add_special_tokens=False, max_length=max_length, truncation=True)
        tail = self.sep_ids + self._prompt_ids(DEFAULT_PROMPT if options.prompt is None else options.prompt)
        rows = []
        for query_ids, passage_ids in zip(q_ids["input_ids"], p_ids["input_ids"], strict=True):
            first = self._first(query_ids)
            second = self._truncate_only_second(len(first), self.sep_ids + passage_ids, max_length)
            rows.append(first + second + tail)
        return rows

    def _truncate_only_second(self, first_len: int, second: list[int], max_length: int) -> list[int]:
        """``prepare_for_model(truncation="only_second")``: cut the second sequence to fit."""
        excess = first_len + len(second) - max_length
        if excess <= 0:
            return second
        if len(second) <= excess:
            # prepare_for_model logged an error and left the pair untruncated.
            logger.warning(
                "cannot fit the pair in max_length=%d by truncating the passage alone "
                "(query part %d tokens); the pair is left as is", max_length, first_len,
            )
            return second
        return second[excess:] if self.tokenizer.truncation_side == "left" else second[:-excess]

    def measure(
        self, queries: list[str], documents: list[str], options: ScoringOptions
    ) -> tuple[list[int], list[bool]]:
        max_length = options.max_length
        q_texts, p_texts = self._texts(queries, documents, options)
        tok = self.tokenizer
        q_full = [len(x) for x in tok(q_texts, add_special_tokens=False, verbose=False)["input_ids"]]
        p_full = [len(x) for x in tok(p_texts, add_special_tokens=False, verbose=False)["input_ids"]]
        q_cap = max_length * 3 // 4
        bos = 0 if tok.bos_token_id is None else 1
        tail = len(self.sep_ids) + len(
            self._prompt_ids(DEFAULT_PROMPT if options.prompt is None else options.prompt)
        )
        lengths, truncated = [], []
        for q, p in zip(q_full, p_full, strict=True):
            pair = bos + min(q, q_cap) + len(self.sep_ids) + min(p, max_length)
            lengths.append(min(pair, max_length) + tail)
            truncated.append(q > q_cap or p > max_length or pair > max_length)
        return lengths, truncated

    # ------------------------------------------------------------------ scoring

    def score_batch(
        self, queries: list[str], documents: list[str], options: ScoringOptions
    ) -> torch.Tensor:
        import torch

        rows = self.build_input_ids(queries, documents, options)
        width = -(-max(len(r) for r in rows) // PAD_MULTIPLE) * PAD_MULTIPLE
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):  # left padding: the last column is every row's last token
            input_ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            attention_mask[i, width - len(row) :] = 1
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
