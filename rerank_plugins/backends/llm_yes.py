"""LLM yes/no rerankers: a causal LM reads a prompt and its last position is scored.

One backend, several prompt *templates* (:data:`TEMPLATES`), each exact to its
model card:

``"bge-gemma"`` (BAAI/bge-reranker-v2-gemma): ``<bos>A: {query}\\nB: {passage}\\n{prompt}``;
the score is the logit of the token ``Yes``. Inputs follow the card's
``get_inputs`` (which called ``tokenizer.prepare_for_model``, removed in
transformers 5):

* ``query_ids = tokenizer(f"A: {query}", add_special_tokens=False,
  max_length=max_length * 3 // 4, truncation=True)``;
* ``passage_ids = tokenizer(f"B: {passage}", add_special_tokens=False,
  max_length=max_length, truncation=True)``;
* first sequence ``[bos] + query_ids``, second ``sep + passage_ids`` (``sep`` is
  the ids of ``"\\n"``), truncated ``only_second`` so that the pair fits
  ``max_length``; then ``+ sep + prompt_ids``.

FlagEmbedding 1.4.2 truncates long pairs slightly differently (it allows
``max_length + len(sep) + len(prompt)`` tokens before the prompt is appended);
this package follows the model card.

``"qwen3"`` (Qwen/Qwen3-Reranker-0.6B/4B/8B): the card's chat template
``prefix + "<Instruct>: {instruction}\\n<Query>: {query}\\n<Document>: {doc}" + suffix``,
the middle string tokenised as one text and truncated to
``max_length - len(prefix) - len(suffix)`` tokens, so the prefix and the suffix
(the prompt tail the score reads) are never cut. The card's probability is
``log_softmax([logit(no), logit(yes)])[yes].exp()``; the raw score here is the
log-odds ``logit(yes) - logit(no)``, whose sigmoid is exactly that probability.

Every template splits a pair into the ids before the passage (*head*), the
passage ids with character offsets into the passage, and the ids after it
(*tail*); see :class:`PairTokens` and :class:`Template`. Padding, the forward
pass and the last-position logits are shared by all templates: rows are padded
on the left whatever the tokenizer's ``padding_side`` (to a multiple of 8),
with position ids taken from the attention mask, so the last position is the
last real token of every row and only that position's logits are computed
(``logits_to_keep=1``): a batch never materialises sequence x vocabulary logits.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from rerank_plugins.backends.base import (
    Backend,
    PairEncoding,
    Row,
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

TEMPLATES: tuple[str, ...] = ("bge-gemma", "qwen3")
# template="auto": the prompt template a config's model_type implies.
TEMPLATE_BY_MODEL_TYPE: dict[str, str] = {
    "gemma": "bge-gemma",
    "gemma2": "bge-gemma",
    "gemma3": "bge-gemma",
    "gemma3_text": "bge-gemma",
    "qwen3": "qwen3",
}

# bge-reranker-v2-gemma's model card.
DEFAULT_PROMPT = (
    "Given a query A and a passage B, determine whether the passage contains an answer "
    "to the query by providing a prediction of either 'Yes' or 'No'."
)
DEFAULT_QUERY_PREFIX = "A: "
DEFAULT_PASSAGE_PREFIX = "B: "
DEFAULT_MAX_LENGTH = 1024
SEPARATOR = "\n"

# Qwen3-Reranker's model card.
QWEN3_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
QWEN3_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
QWEN3_DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
QWEN3_MAX_LENGTH = 8192

PAD_MULTIPLE = 8


# --------------------------------------------------------------------------- #
# Templates
# --------------------------------------------------------------------------- #


@dataclass(frozen=True, slots=True)
class PairTokens:
    """One (query, passage) pair tokenised once, split around the passage.

    ``head + passage + tail`` is the untruncated model input (only the
    template's query cap is applied to ``head``).

    Attributes:
        head: ids before the passage: bos or system prefix, instruction, query
            (capped as the template's card caps it) and the text that leads
            into the passage.
        passage: the passage's ids. A token that byte-level BPE merged across
            the boundary (e.g. the space of ``"<Document>: "`` with the
            passage's first word) belongs to the passage.
        offsets: for each passage token, its ``(start, end)`` characters in the
            original passage string (a boundary token starts at 0).
        tail: ids after the passage: the prompt the score is read after;
            never truncated.
        fixed: ``head[:fixed]`` is never cut by the card's truncation rule.
        query_truncated: the template's query cap cut the query.
    """

    head: list[int]
    passage: list[int]
    offsets: list[tuple[int, int]]
    tail: list[int]
    fixed: int
    query_truncated: bool


class Template(Protocol):
    """A prompt template of the llm-yes family (one object per tokenizer and prompt options).

    Attributes:
        name: the ``template=`` value that selects it.
        default_max_length: the card's ``max_length``.
    """

    name: ClassVar[str]
    default_max_length: ClassVar[int]
    tail_in_max_length: ClassVar[bool]

    def query_start(self, pair: PairTokens) -> int:
        """Where the query's tokens start in ``head``; a window may cut the query's end back to here."""
        ...

    def encode(self, queries: Sequence[str], documents: Sequence[str], max_length: int) -> list[PairTokens]:
        """Tokenise each pair once, untruncated except for the query cap."""
        ...

    def card_ids(self, pair: PairTokens, max_length: int) -> tuple[list[int], bool]:
        """The model card's exact input ids for ``pair``, and whether anything was cut."""
        ...

    def read_scores(self, last_logits: torch.Tensor) -> torch.Tensor:
        """One float32 score per row from the last position's ``(batch, vocab)`` logits."""
        ...

    def check_max_length(self, max_length: int) -> None:
        """Raise ValueError when ``max_length`` leaves no room for the pair."""
        ...

    def min_max_length(self) -> int:
        """The smallest ``max_length`` this template can score a pair in."""
        ...


def _keep(ids: list[int], n: int, side: str) -> list[int]:
    """The tokenizer's truncation: keep ``n`` ids, cutting on ``side`` ("right" or "left")."""
    if len(ids) <= n:
        return ids
    return ids[len(ids) - n :] if side == "left" else ids[:n]


def _split(
    ids: list[int], offsets: list[tuple[int, int]], boundary: int
) -> tuple[list[int], list[int], list[tuple[int, int]]]:
    """Split a text's tokens where the passage starts (character ``boundary``).

    The passage starts at the first token ending after ``boundary``; its offsets
    are shifted into the passage (a token straddling the boundary starts at 0).
    """
    k = next((i for i, (_, end) in enumerate(offsets) if end > boundary), len(ids))
    shifted = [(max(start - boundary, 0), end - boundary) for start, end in offsets[k:]]
    return ids[:k], ids[k:], shifted


def _single_token(tokenizer: Any, model_id: str, word: str, template: str) -> int:
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ModelLoadError(
            f"the tokenizer of {model_id!r} splits {word!r} into {len(ids)} tokens {ids}; "
            f"the {template} template reads the logit of {word!r}, which must be a single token"
        )
    return ids[0]


class BgeGemmaTemplate:
    """bge-reranker-v2-gemma: ``<bos>A: {query}\\nB: {passage}\\n{prompt}``, score = logit("Yes")."""

    name: ClassVar[str] = "bge-gemma"
    default_max_length: ClassVar[int] = DEFAULT_MAX_LENGTH
    # The card appends the prompt after cutting the pair to max_length.
    tail_in_max_length: ClassVar[bool] = False

    def __init__(
        self, tokenizer: Any, model_id: str, *,
        prompt: str | None = None, query_prefix: str | None = None, passage_prefix: str | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.yes_id = _single_token(tokenizer, model_id, "Yes", self.name)
        self.query_prefix = DEFAULT_QUERY_PREFIX if query_prefix is None else query_prefix
        self.passage_prefix = DEFAULT_PASSAGE_PREFIX if passage_prefix is None else passage_prefix
        self.sep_ids: list[int] = tokenizer(SEPARATOR, add_special_tokens=False)["input_ids"]
        prompt_ids = tokenizer(DEFAULT_PROMPT if prompt is None else prompt, add_special_tokens=False)["input_ids"]
        self.tail: list[int] = self.sep_ids + prompt_ids
        bos = tokenizer.bos_token_id
        self.bos: list[int] = [bos] if bos is not None else []

    def encode(self, queries: Sequence[str], documents: Sequence[str], max_length: int) -> list[PairTokens]:
        tok, side = self.tokenizer, self.tokenizer.truncation_side
        q_all = tok([f"{self.query_prefix}{q}" for q in queries], add_special_tokens=False, verbose=False)
        p_all = tok(
            [f"{self.passage_prefix}{d}" for d in documents],
            add_special_tokens=False, return_offsets_mapping=True, verbose=False,
        )
        cap = max_length * 3 // 4
        pairs = []
        for q_ids, p_ids, p_offsets in zip(
            q_all["input_ids"], p_all["input_ids"], p_all["offset_mapping"], strict=True
        ):
            first = self.bos + _keep(q_ids, cap, side)
            lead, passage, offsets = _split(p_ids, p_offsets, len(self.passage_prefix))
            pairs.append(PairTokens(
                head=first + self.sep_ids + lead, passage=passage, offsets=offsets, tail=self.tail,
                fixed=len(first), query_truncated=len(q_ids) > cap,
            ))
        return pairs

    def card_ids(self, pair: PairTokens, max_length: int) -> tuple[list[int], bool]:
        """``get_inputs``: ``B: {passage}`` cut to ``max_length``, then ``prepare_for_model(only_second)``."""
        first = pair.head[: pair.fixed]
        b_ids = pair.head[pair.fixed + len(self.sep_ids) :] + pair.passage
        second = self.sep_ids + _keep(b_ids, max_length, self.tokenizer.truncation_side)
        excess = len(first) + len(second) - max_length
        # When the passage alone cannot absorb the excess, prepare_for_model logged an error and
        # left the pair untruncated (truncated_row() warns about such pairs).
        if 0 < excess < len(second):
            second = second[excess:] if self.tokenizer.truncation_side == "left" else second[:-excess]
        cut = pair.query_truncated or len(second) < len(self.sep_ids) + len(b_ids)
        return first + second + self.tail, cut

    def read_scores(self, last_logits: torch.Tensor) -> torch.Tensor:
        return last_logits[:, self.yes_id].float()

    def query_start(self, pair: PairTokens) -> int:
        """Where the query's tokens start in ``head`` (they end at ``pair.fixed``)."""
        return len(self.bos)

    def check_max_length(self, max_length: int) -> None:
        return None

    def min_max_length(self) -> int:
        """The smallest ``max_length`` at which a query cut to ``max_length * 3 // 4`` tokens
        still leaves room for ``<bos>``, the separator, the passage prefix and one passage token.

        Below it the model card's truncation cannot fit the pair and leaves it uncut.
        """
        tok = self.tokenizer
        query_min = len(tok(self.query_prefix, add_special_tokens=False)["input_ids"]) + 1
        passage_prefix = tok(self.passage_prefix, add_special_tokens=False)["input_ids"]
        rest = len(self.bos) + len(self.sep_ids) + len(passage_prefix) + 1
        m = query_min + rest
        while m * 3 // 4 < query_min or m - m * 3 // 4 < rest:
            m += 1
        return m


class Qwen3Template:
    """Qwen3-Reranker's chat template; score = logit("yes") - logit("no") (the card's log-odds)."""

    name: ClassVar[str] = "qwen3"
    default_max_length: ClassVar[int] = QWEN3_MAX_LENGTH
    # The card's max_length covers the prefix and the suffix.
    tail_in_max_length: ClassVar[bool] = True

    def __init__(self, tokenizer: Any, model_id: str, *, instruction: str | None = None) -> None:
        self.tokenizer = tokenizer
        self.model_id = model_id
        # The card reads convert_tokens_to_ids("yes"/"no"); both must be whole tokens of the vocabulary.
        self.yes_id = _single_token(tokenizer, model_id, "yes", self.name)
        self.no_id = _single_token(tokenizer, model_id, "no", self.name)
        for word, wid in (("yes", self.yes_id), ("no", self.no_id)):
            if tokenizer.convert_tokens_to_ids(word) != wid:
                raise ModelLoadError(
                    f"the tokenizer of {model_id!r} encodes {word!r} as id {wid} but its vocabulary entry "
                    f"{word!r} is {tokenizer.convert_tokens_to_ids(word)!r}; the qwen3 template needs "
                    f"{word!r} to be one vocabulary token"
                )
        # The card tokenises the middle string with the tokenizer's default special tokens; Qwen's add none.
        probe = "yes no"
        if tokenizer(probe)["input_ids"] != tokenizer(probe, add_special_tokens=False)["input_ids"]:
            raise ModelLoadError(
                f"the tokenizer of {model_id!r} adds special tokens (e.g. bos/eos) to a text; the qwen3 "
                "template expects a Qwen-style tokenizer that adds none"
            )
        self.instruction = QWEN3_DEFAULT_INSTRUCTION if instruction is None else instruction
        self.prefix: list[int] = tokenizer(QWEN3_PREFIX, add_special_tokens=False)["input_ids"]
        self.suffix: list[int] = tokenizer(QWEN3_SUFFIX, add_special_tokens=False)["input_ids"]

    def format(self, query: str, document: str) -> str:
        """The card's ``format_instruction``."""
        return f"<Instruct>: {self.instruction}\n<Query>: {query}\n<Document>: {document}"

    def encode(self, queries: Sequence[str], documents: Sequence[str], max_length: int) -> list[PairTokens]:
        texts = [self.format(q, d) for q, d in zip(queries, documents, strict=True)]
        enc = self.tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        pairs = []
        for text, doc, ids, offsets in zip(texts, documents, enc["input_ids"], enc["offset_mapping"], strict=True):
            lead, passage, shifted = _split(ids, offsets, len(text) - len(doc))
            pairs.append(PairTokens(
                head=self.prefix + lead, passage=passage, offsets=shifted, tail=self.suffix,
                fixed=len(self.prefix), query_truncated=False,
            ))
        return pairs

    def card_ids(self, pair: PairTokens, max_length: int) -> tuple[list[int], bool]:
        """``process_inputs``: the middle text cut to ``max_length - len(prefix) - len(suffix)`` tokens."""
        middle = pair.head[pair.fixed :] + pair.passage
        cap = max_length - len(self.prefix) - len(self.suffix)
        kept = _keep(middle, cap, self.tokenizer.truncation_side)
        return self.prefix + kept + self.suffix, len(kept) < len(middle)

    def read_scores(self, last_logits: torch.Tensor) -> torch.Tensor:
        return last_logits[:, self.yes_id].float() - last_logits[:, self.no_id].float()

    def query_start(self, pair: PairTokens) -> int:
        """An empty query span at the prefix's end: windows never cut into the formatted query."""
        return pair.fixed

    def min_max_length(self) -> int:
        """The system prefix and the prompt suffix, plus one token of the pair."""
        return len(self.prefix) + len(self.suffix) + 1

    def check_max_length(self, max_length: int) -> None:
        fixed = len(self.prefix) + len(self.suffix)
        if max_length <= fixed:
            raise ValueError(
                f"max_length={max_length} leaves no room for the pair: the qwen3 template's system prefix "
                f"and prompt suffix take {fixed} tokens of {self.model_id!r}'s tokenizer"
            )


# --------------------------------------------------------------------------- #
# The backend
# --------------------------------------------------------------------------- #


class LLMYesBackend(Backend):
    """A causal LM scored at the last position after a prompt template (:data:`TEMPLATES`)."""

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
        check_tokenizer(model_id, self.kind, tokenizer)
        if tokenizer.pad_token is None:  # as FlagEmbedding does
            if tokenizer.eos_token is None:
                raise ModelLoadError(f"the tokenizer of {model_id!r} has neither a pad nor an eos token")
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer = tokenizer
        model = load_pretrained(model_id, self.kind, AutoModelForCausalLM, dtype=getattr(torch, dtype))
        self.model: Any = model.to(device).eval()
        self._keeps_last_only = "logits_to_keep" in inspect.signature(self.model.forward).parameters
        self.model_type: str | None = getattr(self.model.config, "model_type", None)
        # The template template="auto" picks; None when the model_type implies none.
        self.auto_template: str | None = TEMPLATE_BY_MODEL_TYPE.get(self.model_type or "")
        self.max_positions = model_position_limit(self.model.config, tokenizer)
        self.default_max_length = self.default_max_length_for("auto")
        self._templates: dict[tuple[str | None, ...], Template] = {}

    def default_max_length_for(self, template: str | None) -> int | None:
        """The card's ``max_length`` of ``template`` ("auto": this model's), within the model's positions."""
        name = self.auto_template if template in (None, "auto") else template
        card = _TEMPLATE_CLASSES[name].default_max_length if name in _TEMPLATE_CLASSES else DEFAULT_MAX_LENGTH
        return min(card, self.max_positions or card)

    # ------------------------------------------------------------------ templates

    def resolve_options(self, options: ScoringOptions) -> ScoringOptions:
        """Settle ``template="auto"`` from the config's ``model_type``; check the template's options.

        Raises:
            ValueError: no template for this model_type, or options that the
                template does not take, or a ``max_length`` too small for it.
            ModelLoadError: the tokenizer lacks the single tokens the template reads.
        """
        name = options.template or "auto"
        if name == "auto":
            if self.auto_template is None:
                raise ValueError(
                    f"cannot choose a prompt template for {self.model_id!r} (model_type "
                    f"{self.model_type!r}); pass template= one of: {', '.join(TEMPLATES)}"
                )
            name = self.auto_template
        elif name not in TEMPLATES:
            raise ValueError(f"template must be 'auto' or one of: {', '.join(TEMPLATES)}; got {name!r}")
        if name != "bge-gemma":
            given = [k for k in ("prompt", "query_prefix", "passage_prefix") if getattr(options, k) is not None]
            if given:
                raise ValueError(
                    f"{', '.join(given)} apply to the bge-gemma template only; the {name} template takes "
                    "instruction= instead"
                )
        if name != "qwen3" and options.instruction is not None:
            raise ValueError(
                f"instruction applies to the qwen3 template only; the {name} template takes prompt=, "
                "query_prefix= and passage_prefix= instead"
            )
        options = dataclasses.replace(options, template=name)
        with self.lock:  # the fast tokenizer is not thread-safe
            template = self.template_for(options)
        template.check_max_length(options.max_length)
        return options

    def template_for(self, options: ScoringOptions) -> Template:
        """The template object for resolved ``options`` (built once per prompt settings)."""
        key = (options.template, options.instruction, options.prompt, options.query_prefix, options.passage_prefix)
        template = self._templates.get(key)
        if template is None:
            if options.template == "qwen3":
                template = Qwen3Template(self.tokenizer, self.model_id, instruction=options.instruction)
            elif options.template == "bge-gemma":
                template = BgeGemmaTemplate(
                    self.tokenizer, self.model_id, prompt=options.prompt,
                    query_prefix=options.query_prefix, passage_prefix=options.passage_prefix,
                )
            else:
                raise ValueError(f"unresolved template {options.template!r}; call resolve_options first")
            self._templates[key] = template
        return template

    def min_max_length(self, options: ScoringOptions) -> int:
        """The template's smallest ``max_length`` that still fits one token of the query and of the passage."""
        return self.template_for(options).min_max_length()

    # ------------------------------------------------------------------ inputs

    def encode(self, queries: list[str], documents: list[str], options: ScoringOptions) -> list[PairEncoding]:
        """The template's tokens, once per pair; ``query`` marks the query's tokens the card may cut."""
        template = self.template_for(options)
        pairs = []
        for p in template.encode(queries, documents, options.max_length):
            room = options.max_length - len(p.head) - (len(p.tail) if template.tail_in_max_length else 0)
            pairs.append(PairEncoding(
                head=p.head, body=p.passage, tail=p.tail, head_types=None, body_types=None, tail_types=None,
                offsets=p.offsets, query=(template.query_start(p), p.fixed), budget=room,
            ))
        return pairs

    def truncated_row(self, pair: PairEncoding, options: ScoringOptions) -> tuple[Row, int]:
        """The model card's own truncation of the pair (the prompt tail is never cut)."""
        template = self.template_for(options)
        tokens = PairTokens(
            head=pair.head, passage=pair.body, offsets=pair.offsets, tail=pair.tail, fixed=pair.query[1],
            query_truncated=False,
        )
        ids, _ = template.card_ids(tokens, options.max_length)
        if len(ids) - len(pair.tail) > options.max_length:
            logger.warning(
                "a pair cannot fit max_length=%d by truncating the passage alone (the query part fills it); "
                "it is left as is, as the model card's prepare_for_model did", options.max_length,
            )
        return Row(ids, None), max(0, len(ids) - len(pair.tail) - len(pair.head))

    # ------------------------------------------------------------------ scoring

    def forward(self, rows: list[Row], options: ScoringOptions) -> torch.Tensor:
        import torch

        template = self.template_for(options)
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
        return template.read_scores(logits[:, -1, :]).cpu()


_TEMPLATE_CLASSES: dict[str, type[BgeGemmaTemplate] | type[Qwen3Template]] = {
    BgeGemmaTemplate.name: BgeGemmaTemplate,
    Qwen3Template.name: Qwen3Template,
}
