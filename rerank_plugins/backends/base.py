"""The backend contract, model loading, kind detection and the shared-model cache.

A backend is one loaded model of one reranker family. It implements two hooks:
:meth:`Backend.encode` tokenises each (query, document) pair once, split around
the document's tokens, and :meth:`Backend.forward` turns a batch of ready rows
into one raw logit per row. Everything else (truncation, windowing, length
sorting, token-budget batching, memory backoff, order restoration,
normalisation, top-n) lives once in :mod:`rerank_plugins.core`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rerank_plugins.errors import ModelLoadError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("cross-encoder", "sequence-classification", "llm-yes")
DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16", "int8")

DTYPE_ENV = "RERANK_PLUGINS_DTYPE"
# Model types whose learned position table starts after ``padding_idx``.
_OFFSET_POSITION_MODELS = frozenset({"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert"})
# Tokenizers without a configured limit report a huge sentinel for model_max_length.
_UNSET_TOKENIZER_LIMIT = 1_000_000
# The files a Hugging Face tokenizer is built from; a model folder needs some of them.
TOKENIZER_FILES: tuple[str, ...] = (
    "tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "merges.txt",
    "sentencepiece.bpe.model", "spiece.model", "tokenizer.model", "spm.model",
)
# Fewer regular (non-special) tokens than this is no real vocabulary: transformers 5 builds a
# tokenizer of special tokens only from a folder without tokenizer files, and every word is unknown.
_MIN_REAL_VOCABULARY = 100


@dataclass(frozen=True)
class ScoringOptions:
    """Per-call settings a backend reads; the loaded model itself is shared.

    Attributes:
        max_length: truncation length in tokens.
        prompt: instruction for LLM rerankers (``None``: the family default).
        query_prefix: text before the query for LLM rerankers (``None``: default).
        passage_prefix: text before the passage for LLM rerankers (``None``: default).
        template: LLM rerankers: the prompt template (``"auto"`` until the backend's
            :meth:`Backend.resolve_options` settles it; ``None`` for other families).
        instruction: the qwen3 template's instruction (``None``: the card's default).
    """

    max_length: int
    prompt: str | None = None
    query_prefix: str | None = None
    passage_prefix: str | None = None
    template: str | None = None
    instruction: str | None = None


@dataclass(frozen=True, slots=True)
class PairEncoding:
    """One (query, passage) pair, tokenised once and split around the passage's tokens.

    The whole pair is ``head + body + tail``; a truncated or windowed row keeps
    ``head`` and ``tail`` and takes a slice of ``body``.

    Attributes:
        head: ids before the passage (special tokens, the query, any prompt prefix).
        body: the passage's ids.
        tail: ids after the passage (special tokens, any prompt suffix).
        head_types: token type ids of ``head`` (``None`` when the model takes none);
            likewise ``body_types`` and ``tail_types``.
        offsets: ``(start, end)`` character offsets of each ``body`` token in the passage.
        query: ``(start, end)`` positions of the query's tokens inside ``head``.
        budget: the most ``body`` tokens that fit in one row with the full ``head``
            (negative when the head alone overflows).
    """

    head: list[int]
    body: list[int]
    tail: list[int]
    head_types: list[int] | None
    body_types: list[int] | None
    tail_types: list[int] | None
    offsets: list[tuple[int, int]]
    query: tuple[int, int]
    budget: int

    @property
    def fits(self) -> bool:
        return len(self.body) <= self.budget

    def row(self, start: int = 0, end: int | None = None, head_cut: int = 0) -> Row:
        """``head + body[start:end] + tail``, dropping the last ``head_cut`` query tokens."""
        head, head_types = self.head, self.head_types
        if head_cut:
            q0, q1 = self.query
            keep = max(q0, q1 - head_cut)
            head = head[:keep] + head[q1:]
            head_types = None if head_types is None else head_types[:keep] + head_types[q1:]
        ids = head + self.body[start:end] + self.tail
        if head_types is None or self.body_types is None or self.tail_types is None:
            return Row(ids, None)
        return Row(ids, head_types + self.body_types[start:end] + self.tail_types)


@dataclass(frozen=True, slots=True)
class Row:
    """Model input for one pair or window: token ids and (optionally) token type ids."""

    ids: list[int]
    types: list[int] | None


class Backend(ABC):
    """One loaded reranker model.

    A family implements two hooks: :meth:`encode` tokenises each pair once and
    splits it around the passage (so the core can truncate or window it without
    tokenising again), and :meth:`forward` scores ready rows. Families whose
    published code truncates differently from "cut the passage's end" override
    :meth:`truncated_row`.

    Attributes:
        kind: the reranker family this backend implements.
        tokenizer: a Hugging Face tokenizer.
        max_positions: the longest input (in tokens) the model accepts.
        default_max_length: the truncation length used when the caller gives none.
        lock: serialises use of the model and its (not thread-safe) fast tokenizer.
    """

    kind: ClassVar[str]

    def __init__(self, model_id: str, *, device: torch.device, dtype: str) -> None:
        self.model_id = model_id
        self.device = device
        self.dtype = dtype
        self.lock = threading.Lock()
        self.tokenizer: Any = None
        self.max_positions: int | None = None
        self.default_max_length: int | None = None

    def default_max_length_for(self, template: str | None) -> int | None:
        """The truncation length used when the caller gives none (LLM backends: per prompt template)."""
        return self.default_max_length

    def resolve_options(self, options: ScoringOptions) -> ScoringOptions:
        """Check a Reranker's options against this model and settle its family choices.

        Called once when a :class:`~rerank_plugins.Reranker` is built; the result is
        what :meth:`encode` and :meth:`truncated_row` receive. The default keeps the
        options as they are; LLM backends pick the prompt template here.
        """
        return options

    @abstractmethod
    def encode(self, queries: list[str], documents: list[str], options: ScoringOptions) -> list[PairEncoding]:
        """Tokenise each pair once; ``budget`` is computed for ``options.max_length``."""

    def truncated_row(self, pair: PairEncoding, options: ScoringOptions) -> tuple[Row, int]:
        """The published scoring code's input for a pair that does not fit, and how many passage tokens it keeps.

        The default cuts the passage's end.
        """
        keep = max(pair.budget, 0)
        return pair.row(0, keep), keep

    @abstractmethod
    def forward(self, rows: list[Row], options: ScoringOptions) -> torch.Tensor:
        """Return one raw float32 logit per row, as a 1-D CPU tensor.

        Called under ``torch.inference_mode()`` and with :attr:`lock` held.
        """

    def min_max_length(self, options: ScoringOptions) -> int:
        """The smallest ``max_length`` that keeps one token of the query and one of the document.

        A pair encoding adds the tokenizer's special tokens (``[CLS] q [SEP] d [SEP]``: 3 for BERT,
        4 for XLM-RoBERTa); below their count plus two, tokenizers give up truncating.
        """
        return self.tokenizer.num_special_tokens_to_add(pair=True) + 2

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model_id={self.model_id!r}, device={str(self.device)!r}, "
            f"dtype={self.dtype!r}, engine={getattr(self, 'engine', 'torch')!r})"
        )


def split_pair_encodings(batch: Any, max_length: int) -> list[PairEncoding]:
    """Split fast-tokenizer pair encodings (``tokenizer(queries, documents)``) around the passage.

    Uses each encoding's ``sequence_ids``: 0 marks the query's tokens, 1 the
    passage's, ``None`` the special tokens the tokenizer's template adds.
    """
    pairs = []
    for enc in batch.encodings:
        seq = enc.sequence_ids
        ids, types, offsets = enc.ids, enc.type_ids, enc.offsets
        body_pos = [i for i, s in enumerate(seq) if s == 1]
        query_pos = [i for i, s in enumerate(seq) if s == 0]
        # An empty passage has no tokens to slice: the whole pair is its head.
        b0, b1 = (body_pos[0], body_pos[-1] + 1) if body_pos else (len(ids), len(ids))
        q = (query_pos[0], query_pos[-1] + 1) if query_pos else (b0, b0)
        specials = len(ids) - (b1 - b0) - (q[1] - q[0])
        pairs.append(
            PairEncoding(
                head=ids[:b0], body=ids[b0:b1], tail=ids[b1:],
                head_types=types[:b0], body_types=types[b0:b1], tail_types=types[b1:],
                offsets=offsets[b0:b1], query=q,
                budget=max_length - specials - (q[1] - q[0]),
            )
        )
    return pairs


def longest_first(n_query: int, n_passage: int, room: int) -> tuple[int, int]:
    """Tokens kept of each sequence by the tokenizers library's ``longest_first`` truncation.

    ``room`` is ``max_length`` less the special tokens. The same arithmetic as
    ``tokenizers``' ``truncate_encodings``: cut the longer sequence first; when
    both are longer than half, keep half of ``room`` each.
    """
    n1, n2 = n_query, n_passage
    swap = n1 > n2
    if swap:
        n1, n2 = n2, n1
    n2 = n1 if n1 > room else max(n1, room - n1)
    if n1 + n2 > room:
        n1 = room // 2
        n2 = n1 + room % 2
    return (n2, n1) if swap else (n1, n2)


def model_position_limit(config: Any, tokenizer: Any) -> int | None:
    """The longest token sequence the model can embed, from its config and tokenizer."""
    limits: list[int] = []
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        if getattr(config, "model_type", None) in _OFFSET_POSITION_MODELS:
            pad = getattr(config, "pad_token_id", None)
            positions -= (pad if isinstance(pad, int) else 1) + 1
        limits.append(positions)
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_limit, int) and 0 < tok_limit < _UNSET_TOKENIZER_LIMIT:
        limits.append(tok_limit)
    return min(limits) if limits else None


def one_line(error: BaseException) -> str:
    """``"TypeName: first line of the message"``: an error summarised for a one-line report."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def load_error(model_id: str, kind: str, tried: str, error: BaseException) -> ModelLoadError:
    """A one-line, specific load error (the caller raises it ``from None``)."""
    return ModelLoadError(f"could not load {model_id!r} as a {kind} reranker: tried {tried}: {one_line(error)}")


# --------------------------------------------------------------------------- #
# Resolution of model references, devices and dtypes
# --------------------------------------------------------------------------- #


def looks_like_path(model: str) -> bool:
    """True when ``model`` can only be a filesystem path, never a hub name."""
    return (
        model.startswith(("/", ".", "~", "\\"))
        or model.count("/") > 1
        or "\\" in model
        or (len(model) > 1 and model[1] == ":")
    )


def resolve_model_id(model: str | Path) -> str:
    """A canonical string for ``model``: an absolute path for local directories.

    Raises:
        ModelLoadError: ``model`` names a path that does not exist or is not a directory.
    """
    if isinstance(model, Path):
        text = str(model)
    elif isinstance(model, str):
        text = model
    else:
        raise TypeError(f"model must be a str or pathlib.Path, got {type(model).__name__}")
    if not text.strip():
        raise ValueError("model must be a non-empty path or hub name")
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"model path {str(path)!r} is a file; expected a model directory")
        return str(path.resolve())
    if isinstance(model, Path) or looks_like_path(text):
        raise ModelLoadError(f"model directory {str(path)!r} does not exist")
    return text


def resolve_device(device: Any) -> torch.device:
    """The torch device for ``device``; ``"auto"`` picks cuda, then mps, then cpu.

    Checked before any weights load, the same way for every family.

    Raises:
        ValueError: not a device string, or a device this torch build or machine does not have.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    import torch

    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"invalid device {device!r}: {exc}") from None
    _check_device_available(resolved)
    return resolved


def _check_device_available(device: torch.device) -> None:
    import torch

    kind = device.type
    if kind in ("cpu", "meta"):
        return
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        available = mps is not None and mps.is_available()
        count = 1 if available else 0
        reason = "this machine or torch build has no Metal (MPS) support"
    else:
        module = getattr(torch, kind, None)
        available = bool(module is not None and hasattr(module, "is_available") and module.is_available())
        count = module.device_count() if available and hasattr(module, "device_count") else 0
        if kind == "cuda" and not torch.backends.cuda.is_built():
            reason = f"torch {torch.__version__} was built without CUDA"
        else:
            reason = f"torch {torch.__version__} sees no {kind} device"
    if not available:
        raise ValueError(f"device={str(device)!r} is not available: {reason}; use device='cpu' or 'auto'")
    if device.index is not None and device.index >= count:
        raise ValueError(
            f"device={str(device)!r} does not exist: {count} {kind} device(s) visible "
            f"(indices 0 to {count - 1})"
        )


def resolve_dtype(dtype: Any, device: Any = "cpu") -> str:
    """The dtype name to run in: ``"auto"`` (or ``None``) picks by the hardware (:mod:`rerank_plugins.hardware`).

    ``"auto"`` first reads the ``RERANK_PLUGINS_DTYPE`` environment variable, so a
    deployment (or a test suite) can pin the dtype without changing code.

    Accepts the names in :data:`DTYPES`, their short forms (``fp32``, ``bf16``,
    ``fp16``, ``half``) and ``torch.dtype`` objects.
    """
    if dtype is None or dtype == "auto":
        dtype = os.environ.get(DTYPE_ENV, "auto") or "auto"
        if dtype == "auto":
            from rerank_plugins.hardware import auto_dtype_name

            return auto_dtype_name(device)
    if isinstance(dtype, str):
        name = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}.get(dtype, dtype)
    elif type(dtype).__module__ == "torch" and type(dtype).__name__ == "dtype":
        name = str(dtype).removeprefix("torch.")
    else:
        raise TypeError(f"dtype must be a str or torch.dtype, got {type(dtype).__name__}")
    if name not in DTYPES:
        raise ValueError(f"dtype must be 'auto' or one of {', '.join(DTYPES)}; got {dtype!r}")
    return name


# --------------------------------------------------------------------------- #
# Kind detection
# --------------------------------------------------------------------------- #


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _kind_from_config(config: dict[str, Any], st_model_type: str | None) -> str | None:
    if st_model_type == "CrossEncoder":
        return "cross-encoder"
    if "sbert_ce_default_activation_function" in config or "sentence_transformers" in config:
        return "cross-encoder"
    architectures = config.get("architectures") or []
    if any(str(a).endswith("ForCausalLM") for a in architectures):
        return "llm-yes"
    if any(str(a).endswith("ForSequenceClassification") for a in architectures):
        return "sequence-classification"
    return None


def detect_kind(model_id: str) -> str:
    """Decide the reranker family from a model's config and files.

    Rules, first match wins: sentence-transformers cross-encoder files
    (``config_sentence_transformers.json`` with ``model_type: CrossEncoder``,
    or a ``sbert_ce_default_activation_function`` / ``sentence_transformers``
    key in ``config.json``) give ``"cross-encoder"``; a ``*ForCausalLM``
    architecture gives ``"llm-yes"``; ``*ForSequenceClassification`` gives
    ``"sequence-classification"``.

    Raises:
        ModelLoadError: the config cannot be read.
        ValueError: the config matches no family; the message lists the kinds.
    """
    path = Path(model_id)
    if path.is_dir():
        config = _read_json(path / "config.json")
        if not config:
            raise ModelLoadError(
                f"cannot detect the reranker kind of {model_id!r}: no readable config.json in it "
                f"(pass kind= one of {', '.join(KINDS)})"
            )
        st_type = _read_json(path / "config_sentence_transformers.json").get("model_type")
    else:
        try:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(model_id).to_dict()
        except Exception as exc:  # noqa: BLE001 - any hub/config failure becomes one clear error
            raise ModelLoadError(
                f"could not load {model_id!r}: reading its config to detect the reranker kind failed: "
                f"tried AutoConfig.from_pretrained: {one_line(exc)}"
            ) from None
        st_type = None
    kind = _kind_from_config(config, st_type)
    if kind is None:
        archs = config.get("architectures") or "none"
        raise ValueError(
            f"cannot decide the reranker kind of {model_id!r} (architectures: {archs}); "
            f"pass kind= one of: {', '.join(KINDS)}"
        )
    logger.debug("detected kind %r for %s", kind, model_id)
    return kind


# --------------------------------------------------------------------------- #
# Registry and shared-instance cache
# --------------------------------------------------------------------------- #


def _backend_class(kind: str) -> type[Backend]:
    if kind == "cross-encoder":
        from rerank_plugins.backends.cross_encoder import CrossEncoderBackend

        return CrossEncoderBackend
    if kind == "sequence-classification":
        from rerank_plugins.backends.sequence_classification import SequenceClassificationBackend

        return SequenceClassificationBackend
    if kind == "llm-yes":
        from rerank_plugins.backends.llm_yes import LLMYesBackend

        return LLMYesBackend
    raise ValueError(f"kind must be 'auto' or one of: {', '.join(KINDS)}; got {kind!r}")


_CacheKey = tuple[str, str, str, str, str]
_cache: dict[_CacheKey, Backend] = {}
_key_locks: dict[_CacheKey, threading.Lock] = {}
_cache_lock = threading.Lock()


def load_backend(model_id: str, kind: str, device: torch.device, dtype: str, engine: str = "torch") -> Backend:
    """Return the shared backend for (model, kind, device, dtype, engine), loading it once."""
    key = (model_id, kind, str(device), dtype, engine)
    with _cache_lock:
        backend = _cache.get(key)
        if backend is not None:
            return backend
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:  # one thread loads; the others wait for it instead of loading again
        with _cache_lock:
            backend = _cache.get(key)
        if backend is None:
            backend = _backend_class(kind)(model_id, device=device, dtype=dtype, engine=engine)
            with _cache_lock:
                _cache[key] = backend
            logger.info("loaded %r", backend)
    return backend


def clear_model_cache() -> None:
    """Forget every shared model, so the next :class:`~rerank_plugins.Reranker` loads anew."""
    with _cache_lock:
        _cache.clear()
        _key_locks.clear()


def check_tokenizer(model_id: str, kind: str, tokenizer: Any) -> None:
    """Refuse a tokenizer without a real vocabulary (a folder without tokenizer files).

    transformers 5 builds a tokenizer of special tokens only when a folder holds
    just ``config.json`` and weights; every word then becomes ``[UNK]`` and the
    model scores garbage without any error.

    Raises:
        ModelLoadError: naming the folder and the tokenizer files it lacks.
    """
    vocab = tokenizer.get_vocab()
    specials = set(getattr(tokenizer, "all_special_tokens", ()))
    regular = sum(1 for token in vocab if token not in specials)
    if regular >= _MIN_REAL_VOCABULARY:
        return
    path = Path(model_id)
    if path.is_dir():
        present = [name for name in TOKENIZER_FILES if (path / name).exists()]
        if present:
            detail = f"its tokenizer files ({', '.join(present)}) define no real vocabulary"
        else:
            detail = f"the folder has no tokenizer files (none of {', '.join(TOKENIZER_FILES)})"
        fix = "copy the model's tokenizer files into the folder"
    else:
        detail = "the hub repository provides no usable tokenizer files"
        fix = "use a repository or folder with the model's tokenizer"
    raise ModelLoadError(
        f"could not load {model_id!r} as a {kind} reranker: its tokenizer has only {regular} regular "
        f"tokens ({len(vocab)} in all), so every word would be unknown: {detail}; {fix}"
    ) from None


def check_loaded_weights(model_id: str, kind: str, loading_info: dict[str, Any]) -> None:
    """Refuse a model whose checkpoint lacks weights that transformers initialised at random.

    ``loading_info`` is what ``from_pretrained(..., output_loading_info=True)``
    returns; its ``missing_keys`` are the parameters newly initialised, e.g. a
    classification head forced onto a model saved without one.

    Raises:
        ModelLoadError: naming the model, the kind and the missing weights.
    """
    missing = sorted(loading_info.get("missing_keys") or ())
    if not missing:
        return
    shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
    raise ModelLoadError(
        f"could not load {model_id!r} as a {kind} reranker: its checkpoint has no weights for {shown}; "
        f"transformers would initialise them at random and the scores would mean nothing "
        f"(is it a {kind} model? pass the right kind=, or kind='auto')"
    ) from None


def load_pretrained(model_id: str, kind: str, auto_class: Any, **kwargs: Any) -> Any:
    """``auto_class.from_pretrained(model_id, **kwargs)``, refusing randomly initialised weights."""
    model, info = guarded_load(
        model_id, kind, f"{auto_class.__name__}.from_pretrained",
        lambda: auto_class.from_pretrained(model_id, output_loading_info=True, **kwargs),
    )
    check_loaded_weights(model_id, kind, info)
    return model


def guarded_load(model_id: str, kind: str, tried: str, loader: Callable[[], Any]) -> Any:
    """Run ``loader``; turn any failure into a one-line :class:`ModelLoadError`."""
    try:
        return loader()
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - re-raised as a specific, readable error
        raise load_error(model_id, kind, tried, exc) from None
