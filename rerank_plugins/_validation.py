"""Input checks shared by the core, the framework adapters, the CLI and the data loaders."""

from __future__ import annotations

import copy
import logging
import math
import numbers
import operator
import re
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger("rerank_plugins")

# A lone UTF-16 surrogate: valid in a Python str, but not encodable as UTF-8, so tokenizers fail on it.
_SURROGATE = re.compile("[\ud800-\udfff]")


def find_surrogate(text: str) -> int | None:
    """The position of the first lone surrogate in ``text``, or ``None``.

    Example:
        >>> find_surrogate("ok \\ud800")
        3
    """
    match = _SURROGATE.search(text)
    return None if match is None else match.start()


def surrogate_message(name: str, text: str, pos: int) -> str:
    return (
        f"{name} contains a lone surrogate {text[pos]!r} at character {pos}: not valid Unicode text "
        "(decode bytes with errors='replace', or remove it)"
    )


def check_text(text: Any, name: str) -> str:
    """``text`` if it is a str of valid Unicode; else a TypeError / ValueError naming ``name``."""
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, got {type(text).__name__}")
    pos = find_surrogate(text)
    if pos is not None:
        raise ValueError(surrogate_message(name, text, pos))
    return text


def check_query(query: Any, name: str = "query") -> str:
    return check_text(query, name)


def check_documents(documents: Any, name: str = "documents") -> list[str]:
    """Return ``documents`` as a new list, or raise naming the first bad position."""
    if isinstance(documents, (str, bytes)) or not isinstance(documents, Sequence):
        raise TypeError(
            f"{name} must be a sequence of str (a list or tuple), got {type(documents).__name__}"
        )
    for i, doc in enumerate(documents):
        check_text(doc, f"{name}[{i}]")
    return list(documents)


def check_top_n(top_n: Any) -> int | None:
    """``None`` or an integer >= 1 (numpy integers included) as a Python int."""
    if top_n is None:
        return None
    if isinstance(top_n, bool) or not isinstance(top_n, numbers.Integral):
        raise TypeError(f"top_n must be an int or None, got {type(top_n).__name__}")
    top_n = operator.index(top_n)
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1 or None, got {top_n}")
    return top_n


def check_score_threshold(value: Any, normalize: str | None = None) -> float | None:
    """``None`` or a real number (numpy scalars included) as a Python float; never NaN.

    With ``normalize`` other than ``"none"`` (scores in [0, 1]), a threshold outside
    [0, 1] is refused: it would drop everything or nothing.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"score_threshold must be a number or None, got {type(value).__name__}")
    value = float(value)
    if math.isnan(value):
        raise ValueError("score_threshold must not be NaN")
    if normalize is not None and normalize != "none" and not 0.0 <= value <= 1.0:
        raise ValueError(
            f"score_threshold={value} is outside [0, 1], the range of the reranker's "
            f"{normalize!r} scores; use a value in [0, 1] or a Reranker with normalize='none'"
        )
    return value


def is_blank(text: str) -> bool:
    """True for an empty or whitespace-only text (nothing a reranker can read)."""
    return not text.strip()


def safe_deepcopy(value: Any) -> Any:
    """A deep copy of ``value``; parts that cannot be copied (locks, open files, models) are shared.

    Dicts, lists and tuples are copied container by container, so one uncopyable
    value does not stop the rest from being copied.
    """
    try:
        return copy.deepcopy(value)
    except Exception:  # noqa: BLE001 - any failure to copy falls back to sharing that part
        pass
    if isinstance(value, dict):
        return {k: safe_deepcopy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [safe_deepcopy(v) for v in value]
    if type(value) is tuple:
        return tuple(safe_deepcopy(v) for v in value)
    logger.debug("sharing an uncopyable %s instead of copying it", type(value).__name__)
    return value
