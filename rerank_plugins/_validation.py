"""Input checks shared by the core and the framework adapters."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any


def check_query(query: Any, name: str = "query") -> str:
    if not isinstance(query, str):
        raise TypeError(f"{name} must be a str, got {type(query).__name__}")
    return query


def check_documents(documents: Any, name: str = "documents") -> list[str]:
    """Return ``documents`` as a new list, or raise naming the first bad position."""
    if isinstance(documents, (str, bytes)) or not isinstance(documents, Sequence):
        raise TypeError(
            f"{name} must be a sequence of str (a list or tuple), got {type(documents).__name__}"
        )
    for i, doc in enumerate(documents):
        if not isinstance(doc, str):
            raise TypeError(f"{name}[{i}] must be a str, got {type(doc).__name__}")
    return list(documents)


def check_top_n(top_n: Any) -> int | None:
    if top_n is None:
        return None
    if isinstance(top_n, bool) or not isinstance(top_n, int):
        raise TypeError(f"top_n must be an int or None, got {type(top_n).__name__}")
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1 or None, got {top_n}")
    return top_n


def check_score_threshold(value: Any) -> float | None:
    """``None`` or a real number (numpy scalars included) as a Python float; never NaN."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"score_threshold must be a number or None, got {type(value).__name__}")
    value = float(value)
    if math.isnan(value):
        raise ValueError("score_threshold must not be NaN")
    return value
