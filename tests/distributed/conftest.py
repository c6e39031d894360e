"""One local Ray for every test in this folder: 2 CPUs, loopback only, shut down at the end."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def ray_session():
    """``ray.init(num_cpus=2)`` once per test session; every Ray process listens on 127.0.0.1 only."""
    ray = pytest.importorskip("ray", reason="needs the 'ray' extra: pip install 'rerank-plugins[ray]'")
    from ray._private import ray_constants

    # Ray resolves its node address to a reachable interface unless "cluster mode" is off; off, every
    # server (GCS, raylet, workers) binds 127.0.0.1. The variable reaches the processes Ray spawns.
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # A loaded machine starts Ray's Python agents slowly; the raylet's 15 s wait for them would abort it.
    os.environ.setdefault("RAY_agent_register_timeout_ms", "120000")
    # Workers import this checkout's package, whatever is installed.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    if ray.is_initialized():
        ray.shutdown()
    for attempt in range(3):  # on a loaded machine the node can miss Ray's fixed 30 s start-up deadline
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
            break
        except Exception:
            ray.shutdown()
            if attempt == 2:
                raise
    try:
        yield ray
    finally:
        ray.shutdown()
