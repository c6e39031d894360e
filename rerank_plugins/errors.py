"""Exceptions raised by rerank_plugins."""

from __future__ import annotations

__all__ = ["ModelLoadError", "MissingExtraError", "RemoteError"]


class ModelLoadError(OSError):
    """A model could not be found or loaded.

    The message names the model (path or hub name), the reranker kind and the
    loader that was tried, followed by the underlying error in one line.
    """


class RemoteError(OSError):
    """A remote reranker (``kind="remote"``) refused a request or answered something unreadable.

    Attributes:
        status: the HTTP status, or ``None`` when no answer came (connection error, timeout).
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class MissingExtraError(ImportError):
    """An optional dependency is missing; the message names the extra to install."""


def missing_extra(package: str, extra: str, error: ImportError | None = None) -> MissingExtraError:
    """Build the ImportError raised when an optional dependency is absent."""
    detail = f" ({error})" if error is not None else ""
    return MissingExtraError(
        f"{package} is required for this feature but is not installed{detail}. "
        f"Install it with: pip install 'rerank-plugins[{extra}]'"
    )
