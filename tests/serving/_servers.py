"""Servers for the serving tests: in a thread (uvicorn.Server) or as a ``rerank-plugins serve`` subprocess.

Everything listens on 127.0.0.1 on a free port; every wait is bounded in count and time. A module
of its own (not conftest) so test files import it by a name no other test folder uses.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_healthy(url: str, *, timeout: float = 180.0, proc: subprocess.Popen | None = None,
                 output: Callable[[], str] | None = None) -> list[int]:
    """Poll ``/health`` until 200 (bounded); returns the statuses seen (connection refused: 0)."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = output() if output is not None else (proc.stdout.read() if proc.stdout else "")
            raise AssertionError(f"the server exited with {proc.returncode}: {out[-2000:]}")
        try:
            status = httpx.get(f"{url}/health", timeout=5.0).status_code
        except httpx.TransportError:
            status = 0
        if not seen or seen[-1] != status:
            seen.append(status)
        if status == 200:
            return seen
        time.sleep(0.1)
    raise AssertionError(f"{url}/health was not 200 within {timeout} s (saw {seen})")


@contextlib.contextmanager
def thread_server(app) -> Iterator[str]:
    """Run ``app`` under uvicorn in a thread of this process; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start within 60 s"
    try:
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive(), "uvicorn did not stop within 30 s"


class ServeProcess:
    """``python -m rerank_plugins.cli serve ...`` on a free port."""

    def __init__(self, model: Path | str, *extra: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        cmd = [sys.executable, "-m", "rerank_plugins.cli", "serve", "--model", str(model),
               "--host", HOST, "--port", str(self.port), *extra]
        # One torch thread: on a few shared cores, OpenMP threads spinning against other processes
        # made the tiny model ~10x slower (measured); the server's concurrency is the queue's, not torch's.
        full_env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
                    **(env or {})}
        # A file, not a pipe: nobody reads a pipe while the server runs, and a full one (64 KiB of
        # logs) would block the server mid-request.
        self.log = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=self.log,
                                     stderr=subprocess.STDOUT, text=True)
        self.health_statuses: list[int] = []

    def wait_ready(self, timeout: float = 180.0) -> ServeProcess:
        self.health_statuses = wait_healthy(self.url, timeout=timeout, proc=self.proc, output=self.output)
        return self

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM, then wait (bounded); a server still running then is killed and the test fails."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError(f"the server did not exit within {timeout} s of SIGTERM") from None

    def output(self) -> str:
        """Everything the server printed so far."""
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()
