"""Fixtures for the serving tests; the server helpers live in ``_servers``."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="fastapi (the 'serve' extra) is not installed")
pytest.importorskip("uvicorn", reason="uvicorn (the 'serve' extra) is not installed")
pytest.importorskip("httpx", reason="httpx (the 'serve' extra) is not installed")

from _servers import ServeProcess  # noqa: E402


@pytest.fixture
def serve_process():
    """A factory of ``rerank-plugins serve`` subprocesses, all stopped after the test."""
    started: list[ServeProcess] = []

    def start(model, *extra: str, env: dict[str, str] | None = None) -> ServeProcess:
        proc = ServeProcess(model, *extra, env=env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.close()
