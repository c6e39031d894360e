"""Side-by-side scoring benchmark: this package's dtypes and engines against sentence-transformers.

Every configuration scores the same (question, paragraphs) lists with the same
model in one process, alternating the order each round, so the ratios hold on
whatever machine runs it. For each configuration: pairs/s per round and their
median, the ratio to sentence-transformers' default (float32
``CrossEncoder.predict``) and to its best working configuration, hit@1 and
MRR@10 of the gold paragraph, the largest |Δlogit| against this package's exact
float32 path, and the GFLOP/s achieved against the CPU's peak for that dtype.

Used by ``rerank-plugins bench`` and ``benchmarks/bench_scoring.py``.

Example:
    >>> from rerank_plugins.benchmark import run_benchmark  # doctest: +SKIP
    >>> report = run_benchmark("model-dir", "squad.json", questions=20, rounds=3)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BenchConfig", "BenchResult", "build_cases", "peak_gflops", "run_benchmark"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchConfig:
    """One configuration: ``peer`` is sentence-transformers' CrossEncoder, else this package."""

    name: str
    peer: bool
    dtype: str
    engine: str = "torch"


@dataclass(frozen=True)
class BenchResult:
    name: str
    dtype: str
    pairs_per_s: list[float]
    hit_at_1: float
    mrr_at_10: float
    max_abs_diff: float
    gflops: float
    peak_gflops: float | None
    ratio_to_peer_default: float = 0.0
    ratio_to_peer_best: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.pairs_per_s)


def build_cases(data: str | Path, questions: int, paragraphs: int, seed: int = 0):
    """``questions`` SQuAD-layout questions, each with its gold paragraph among ``paragraphs`` (gold index known)."""
    with Path(data).open(encoding="utf-8") as fh:
        articles = json.load(fh)["data"]
    items = [(p["context"], p["qas"]) for a in articles for p in a["paragraphs"] if p.get("qas")]
    if questions > len(items):
        raise ValueError(f"--questions {questions} is more than the {len(items)} paragraphs with questions")
    rng = random.Random(seed)
    contexts = [c for c, _ in items]
    queries, lists, gold = [], [], []
    for context, qas in rng.sample(items, questions):
        others = rng.sample([c for c in contexts if c != context], paragraphs - 1)
        at = rng.randrange(paragraphs)
        others.insert(at, context)
        queries.append(rng.choice(qas)["question"])
        lists.append(others)
        gold.append(at)
    return queries, lists, gold


def _cpu_mhz() -> float | None:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.lower().startswith("cpu mhz"):
                return float(line.split(":")[1])
    except (OSError, ValueError):
        pass
    return None


def peak_gflops(dtype: str, cores: int | None = None) -> tuple[float | None, str]:
    """The CPU's peak GFLOP/s for ``dtype`` and how it was computed.

    FLOP per cycle per core: AVX-512 float32 FMA 64 (2 units x 16 lanes x 2),
    AVX2 float32 FMA 32; bfloat16 with AMX 1,024 (TMUL), with AVX512-BF16 128
    (``vdpbf16ps``: twice float32); int8 with AMX 2,048, with AVX512-VNNI 256
    (``vpdpbusd``: four int8 multiply-adds per 32-bit lane). Times the clock from ``/proc/cpuinfo`` and
    the cores torch uses.
    """
    from rerank_plugins.hardware import cpu_flags

    flags = cpu_flags()
    mhz = _cpu_mhz()
    if mhz is None:
        return None, "unknown clock"
    import torch

    cores = cores or torch.get_num_threads()
    fp32 = 64 if "avx512f" in flags else 32 if "fma" in flags else 8
    if dtype == "int8":
        per_cycle, how = (2048, "AMX-INT8") if "amx_int8" in flags else (
            (256, "AVX512-VNNI") if "avx512_vnni" in flags else (fp32, "no int8 dot product"))
    elif dtype == "bfloat16":
        per_cycle, how = (1024, "AMX-BF16") if "amx_bf16" in flags else (
            (128, "AVX512-BF16") if "avx512_bf16" in flags else (fp32, "no native bf16"))
    else:
        per_cycle, how = fp32, "AVX-512 FMA" if fp32 == 64 else "FMA"
    return per_cycle * mhz / 1000 * cores, f"{per_cycle} FLOP/cycle/core ({how}) x {mhz:.0f} MHz x {cores} cores"


def encoder_flops(config: Any, token_counts: Sequence[int]) -> float:
    """Forward FLOPs of a BERT-style encoder over sequences of these lengths (2 FLOP per multiply-add).

    Per layer and token: QKV and output projections ``8 h^2``, feed-forward
    ``4 h f``, attention scores and weighted sum ``4 n h`` for a sequence of ``n`` tokens.
    """
    h = config.hidden_size
    f = getattr(config, "intermediate_size", 4 * h)
    layers = config.num_hidden_layers
    return float(sum(layers * n * (8 * h * h + 4 * h * f + 4 * n * h) for n in token_counts))


def _ranks(scores: Sequence[Sequence[float]], gold: Sequence[int]) -> tuple[float, float]:
    hit, mrr = 0.0, 0.0
    for row, g in zip(scores, gold, strict=True):
        rank = 1 + sum(s > row[g] for s in row)
        hit += rank == 1
        mrr += 1.0 / rank if rank <= 10 else 0.0
    return hit / len(gold), mrr / len(gold)


def default_configs() -> list[BenchConfig]:
    from rerank_plugins.backends.engines import openvino_available
    from rerank_plugins.hardware import cpu_has_native_bf16

    configs = [
        BenchConfig("sentence-transformers float32 (its default)", True, "float32"),
        BenchConfig("sentence-transformers bfloat16", True, "bfloat16"),
        BenchConfig("rerank_plugins torch float32 (exact)", False, "float32", "torch"),
        BenchConfig("rerank_plugins torch bfloat16", False, "bfloat16", "torch"),
        BenchConfig("rerank_plugins default (auto)", False, "auto", "auto"),
    ]
    if openvino_available():
        configs.append(BenchConfig("rerank_plugins openvino float32", False, "float32", "openvino"))
        if cpu_has_native_bf16():
            configs.append(BenchConfig("rerank_plugins openvino bfloat16", False, "bfloat16", "openvino"))
        configs.append(BenchConfig("rerank_plugins openvino int8", False, "int8", "openvino"))
    return configs


def run_benchmark(
    model: str | Path,
    data: str | Path,
    *,
    questions: int = 50,
    paragraphs: int = 30,
    rounds: int = 3,
    seed: int = 0,
    configs: Sequence[BenchConfig] | None = None,
    log: Callable[[str], None] = logger.info,
) -> list[BenchResult]:
    """Run every configuration ``rounds`` times, alternating the order; return one result each."""
    import numpy as np
    import torch

    from rerank_plugins import Reranker

    queries, lists, gold = build_cases(data, questions, paragraphs, seed)
    pairs = [(q, d) for q, docs in zip(queries, lists, strict=True) for d in docs]
    configs = list(configs or default_configs())
    # overflow="truncate": the same work as sentence-transformers, which truncates.
    exact = Reranker(model, normalize="none", dtype="float32", engine="torch", device="cpu", overflow="truncate")
    with exact.backend.lock:
        encoded = exact.backend.encode([q for q, _ in pairs], [d for _, d in pairs], exact._options)
    tokens = [
        len(p.row().ids if p.fits else exact.backend.truncated_row(p, exact._options)[0].ids) for p in encoded
    ]
    flops = encoder_flops(exact.backend.model.config, tokens)
    log(f"{len(queries)} questions x {paragraphs} paragraphs = {len(pairs)} pairs, "
        f"{sum(tokens) / len(tokens):.0f} tokens per pair on average; {flops / len(pairs) / 1e9:.2f} GFLOP per pair")

    runners: dict[str, Callable[[], Any]] = {}
    resolved_auto = "float32"
    for cfg in configs:
        if cfg.peer:
            from sentence_transformers import CrossEncoder

            peer = CrossEncoder(str(model), device="cpu", model_kwargs={"dtype": getattr(torch, cfg.dtype)})
            identity = torch.nn.Identity()

            def run(peer: Any = peer, identity: Any = identity) -> Any:
                flat = peer.predict(pairs, batch_size=32, activation_fn=identity, show_progress_bar=False)
                return np.asarray(flat, dtype=np.float32).reshape(len(queries), paragraphs)
        else:
            reranker = Reranker(
                model, normalize="none", dtype=cfg.dtype, engine=cfg.engine, device="cpu", overflow="truncate"
            )
            log(f"{cfg.name}: dtype {reranker.dtype}, engine {reranker.engine}")
            if cfg.dtype == "auto":
                resolved_auto = reranker.dtype

            def run(reranker: Any = reranker) -> Any:
                return np.asarray(reranker.score_many(queries, lists, show_progress=False), dtype=np.float32)
        run()  # warm-up: kernels, allocator, lazy imports, an engine's first compile
        runners[cfg.name] = run

    reference = np.asarray(exact.score_many(queries, lists, show_progress=False), dtype=np.float32)
    speeds: dict[str, list[float]] = {c.name: [] for c in configs}
    last: dict[str, Any] = {}
    for r in range(rounds):
        order = configs if r % 2 == 0 else configs[::-1]
        for cfg in order:
            start = time.perf_counter()
            last[cfg.name] = runners[cfg.name]()
            speeds[cfg.name].append(len(pairs) / (time.perf_counter() - start))
        log(f"round {r + 1}: " + "; ".join(f"{c.name} {speeds[c.name][-1]:.1f}" for c in configs))

    results = []
    for cfg in configs:
        hit, mrr = _ranks(last[cfg.name].tolist(), gold)
        dtype = cfg.dtype if cfg.dtype != "auto" else resolved_auto
        peak, _ = peak_gflops(dtype)
        median = statistics.median(speeds[cfg.name])
        results.append(BenchResult(
            name=cfg.name, dtype=dtype, pairs_per_s=speeds[cfg.name], hit_at_1=hit, mrr_at_10=mrr,
            max_abs_diff=float(np.abs(last[cfg.name] - reference).max()),
            gflops=flops / len(pairs) * median / 1e9, peak_gflops=peak,
        ))
    peer_default = next((r.median for r, c in zip(results, configs, strict=True) if c.peer and c.dtype == "float32"),
                        None)
    peer_best = max((r.median for r, c in zip(results, configs, strict=True) if c.peer), default=None)
    return [
        dataclasses.replace(
            r,
            ratio_to_peer_default=r.median / peer_default if peer_default else float("nan"),
            ratio_to_peer_best=r.median / peer_best if peer_best else float("nan"),
        )
        for r in results
    ]


def format_table(results: Sequence[BenchResult]) -> str:
    """The results as a plain-text table, with the CPU flags and how the peak was computed."""
    from rerank_plugins.hardware import BF16_CPU_FLAGS, cpu_flags

    flags = sorted(cpu_flags() & (BF16_CPU_FLAGS | {"avx512f", "avx512_vnni", "amx_int8", "amx_tile", "avx2"}))
    lines = [
        f"CPU flags detected: {' '.join(flags) or 'none of interest'}; torch threads {os.cpu_count()} cores",
        f"{'configuration':<46} {'pairs/s (median)':>16} {'x ST default':>12} {'x ST best':>10} "
        f"{'hit@1':>6} {'MRR@10':>7} {'max|dlogit|':>11} {'GFLOP/s':>8} {'% peak':>7}",
    ]
    for r in results:
        pct = f"{100 * r.gflops / r.peak_gflops:.1f}" if r.peak_gflops else "-"
        lines.append(
            f"{r.name:<46} {r.median:>16.1f} {r.ratio_to_peer_default:>12.2f} {r.ratio_to_peer_best:>10.2f} "
            f"{r.hit_at_1:>6.3f} {r.mrr_at_10:>7.3f} {r.max_abs_diff:>11.4f} {r.gflops:>8.1f} {pct:>7}"
        )
    for dtype in sorted({r.dtype for r in results}):
        peak, how = peak_gflops(dtype)
        lines.append(f"peak {dtype}: {peak:.0f} GFLOP/s = {how}" if peak else f"peak {dtype}: {how}")
    return "\n".join(lines)
