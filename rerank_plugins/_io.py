"""Atomic file output: every file the package writes goes through :func:`atomic_write`."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

_NEW_FILE_MODE = 0o644


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Write a file through ``write(fh)`` into a temporary file beside ``path``, then rename it.

    Readers see the old file or the new one, never a partial one: on any error
    (a full disk, an exception in ``write``, Ctrl-C) the temporary file is
    removed and ``path`` is left as it was.

    Args:
        path: the file to create or replace.
        write: called with a binary file object open for writing.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OSError: the file cannot be written; the message names ``path`` (never the temporary name).

    Example:
        >>> atomic_write("report.json", lambda fh: fh.write(b"{}"))  # doctest: +SKIP
        PosixPath('report.json')
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode & 0o777 if path.exists() else _NEW_FILE_MODE
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}", str(path)) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}", str(path)) from None
        raise
    return path


def check_writable(path: str | Path) -> None:
    """Fail now, not after a long run, when ``path`` cannot be written.

    Creates and removes a temporary file in ``path``'s directory, the way
    :func:`atomic_write` will.

    Raises:
        OSError: naming ``path``.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}", str(path)) from None
    os.close(fd)
    os.unlink(tmp)
