"""Scoring throughput: this package's dtypes and engines against sentence-transformers, side by side.

One process, the same model and pairs for every configuration, alternating the
order each round (see :mod:`rerank_plugins.benchmark`): sentence-transformers'
``CrossEncoder.predict`` in float32 (its default) and bfloat16 (its best
configuration that loads with current releases; its onnx/openvino backends fail
to import with optimum-intel 2.2 + openvino 2026), and this package in exact
float32, torch bfloat16, OpenVINO float32/bfloat16 and the default (auto).
Prints pairs/s per round, the median ratios, hit@1 and MRR@10, the largest
|Δlogit| against float32, the CPU flags detected and GFLOP/s against the peak.

    python benchmarks/bench_scoring.py                  # uses ../shared
    python benchmarks/bench_scoring.py --questions 50 --paragraphs 30 --rounds 3 --model PATH --data squad.json

The same runs as ``rerank-plugins bench --reranker MODEL --data FILE``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rerank_plugins.benchmark import format_table, run_benchmark

SHARED = Path(os.environ.get("RERANK_PLUGINS_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=SHARED / "models" / "ms-marco-MiniLM-L-12-v2")
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "squad-v1.1-dev.json")
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--paragraphs", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    results = run_benchmark(args.model, args.data, questions=args.questions, paragraphs=args.paragraphs,
                            rounds=args.rounds, seed=args.seed, log=print)
    print(format_table(results))


if __name__ == "__main__":
    main()
