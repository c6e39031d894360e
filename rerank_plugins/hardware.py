"""What the machine at hand can do, detected at run time (never assumed).

The CPU model changes between machines (one has AMX, the next only AVX512-BF16,
an older one neither), so the fast dtype is chosen here, per process, from the
CPU's own flags: bfloat16 is several times faster than float32 where the CPU
has native bf16 instructions, and several times *slower* where it does not.

Example:
    >>> from rerank_plugins.hardware import auto_dtype_name
    >>> auto_dtype_name("cpu") in ("bfloat16", "float32")
    True
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

__all__ = ["BF16_CPU_FLAGS", "auto_dtype_name", "cpu_flags", "cpu_has_native_bf16"]

logger = logging.getLogger(__name__)

# Either gives the CPU native bf16 matrix arithmetic (oneDNN uses them for bf16 matmuls).
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
_TORCH_PROBES = {
    "avx512_bf16": "_is_avx512_bf16_supported",
    "amx_bf16": "_is_amx_tile_supported",
    "avx512_vnni": "_is_avx512_vnni_supported",
}


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags: ``/proc/cpuinfo`` on Linux, else torch's own CPU probes."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("flags"):
                return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    try:
        import torch

        cpu = getattr(torch._C, "_cpu", None)
        return frozenset(
            flag for flag, probe in _TORCH_PROBES.items() if cpu is not None and getattr(cpu, probe, lambda: False)()
        )
    except Exception:  # noqa: BLE001 - detection must never break loading
        return frozenset()


def cpu_has_native_bf16() -> bool:
    """True when the CPU has AVX512-BF16 or AMX-BF16 instructions."""
    return bool(cpu_flags() & BF16_CPU_FLAGS)


def auto_dtype_name(device: Any) -> str:
    """The fastest dtype that keeps the ranking on ``device``: ``"bfloat16"``, ``"float16"`` or ``"float32"``.

    CPU: bfloat16 with native bf16 instructions, else float32. CUDA: bfloat16
    where the GPU supports it, else float16. Anything else: float32.
    """
    kind = getattr(device, "type", str(device))
    if kind == "cpu":
        return "bfloat16" if cpu_has_native_bf16() else "float32"
    if kind == "cuda":
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float32"
