"""dtype="auto": chosen from the CPU's own flags, detected at run time (faked here)."""

from __future__ import annotations

import pytest
import torch

from rerank_plugins import Reranker, hardware
from rerank_plugins.backends.base import resolve_dtype


@pytest.fixture
def no_env_pin(monkeypatch):
    """The suite pins dtype/engine for parity (conftest); these tests exercise the automatic choice."""
    monkeypatch.delenv("RERANK_PLUGINS_DTYPE", raising=False)
    monkeypatch.delenv("RERANK_PLUGINS_ENGINE", raising=False)


def fake_flags(monkeypatch, flags):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset(flags))


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"avx2", "avx512f", "avx512_bf16", "avx512_vnni"}, "bfloat16"),  # AMD EPYC (Zen 4) style
        ({"avx2", "avx512f", "amx_bf16", "amx_tile"}, "bfloat16"),  # Intel with AMX
        ({"avx2", "avx512f", "avx512_vnni"}, "float32"),  # no native bf16: bf16 would be slower
        ({"sse4_2"}, "float32"),
        (set(), "float32"),
    ],
)
def test_auto_dtype_follows_the_cpu_flags(monkeypatch, no_env_pin, flags, expected):
    fake_flags(monkeypatch, flags)
    assert hardware.auto_dtype_name(torch.device("cpu")) == expected
    assert resolve_dtype("auto", torch.device("cpu")) == expected
    assert resolve_dtype(None, torch.device("cpu")) == expected


def test_auto_dtype_on_cuda_asks_the_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert hardware.auto_dtype_name(torch.device("cuda")) == "float16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert hardware.auto_dtype_name(torch.device("cuda")) == "bfloat16"
    assert hardware.auto_dtype_name("mps") == "float32"


def test_the_environment_pins_auto(monkeypatch, no_env_pin):
    fake_flags(monkeypatch, {"avx512_bf16"})
    monkeypatch.setenv("RERANK_PLUGINS_DTYPE", "float32")
    assert resolve_dtype("auto", torch.device("cpu")) == "float32"
    assert resolve_dtype("bfloat16", torch.device("cpu")) == "bfloat16"  # an explicit dtype wins
    monkeypatch.setenv("RERANK_PLUGINS_DTYPE", "int3")
    with pytest.raises(ValueError, match="dtype must be 'auto' or one of"):
        resolve_dtype("auto", torch.device("cpu"))


def test_real_cpu_flags_are_read():
    flags = hardware.cpu_flags()
    assert isinstance(flags, frozenset)
    assert hardware.cpu_has_native_bf16() == bool(flags & hardware.BF16_CPU_FLAGS)


def test_reranker_reports_its_automatic_dtype(monkeypatch, no_env_pin, tiny_xlmr, caplog):
    fake_flags(monkeypatch, {"avx512_bf16"})
    with caplog.at_level("INFO", logger="rerank_plugins"):
        reranker = Reranker(tiny_xlmr, engine="torch")
    assert reranker.dtype == "bfloat16" and reranker.backend.model.dtype == torch.bfloat16
    assert any("runs in bfloat16" in r.getMessage() for r in caplog.records)
    fake_flags(monkeypatch, {"avx2"})
    assert Reranker(tiny_xlmr, engine="torch").dtype == "float32"
