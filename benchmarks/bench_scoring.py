"""Throughput of Reranker vs sentence-transformers CrossEncoder.predict, side by side.

Both score the same pairs with the same model in one process: >= 50 SQuAD
questions x 30 paragraphs of mixed length (the gold paragraph and 29 others),
alternating which runs first in each round. Prints pairs/s per round, the
median ratio (ours / CrossEncoder.predict) and the largest score difference.

    python benchmarks/bench_scoring.py                  # uses ../shared
    python benchmarks/bench_scoring.py --questions 50 --rounds 3 --model PATH --data squad.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import CrossEncoder

from rerank_plugins import Reranker

SHARED = Path(__file__).resolve().parents[2] / "shared"


def build_cases(data: Path, n_questions: int, n_paragraphs: int, seed: int):
    with data.open(encoding="utf-8") as fh:
        articles = json.load(fh)["data"]
    paragraphs = [(p["context"], p["qas"]) for a in articles for p in a["paragraphs"]]
    rng = random.Random(seed)
    contexts = [c for c, _ in paragraphs]
    queries, lists = [], []
    for gold, qas in rng.sample(paragraphs, n_questions):
        others = rng.sample([c for c in contexts if c != gold], n_paragraphs - 1)
        docs = [*others]
        docs.insert(rng.randrange(n_paragraphs), gold)
        queries.append(rng.choice(qas)["question"])
        lists.append(docs)
    return queries, lists


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=SHARED / "models" / "ms-marco-MiniLM-L-12-v2")
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "squad-v1.1-dev.json")
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--paragraphs", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    queries, lists = build_cases(args.data, args.questions, args.paragraphs, args.seed)
    pairs = [(q, d) for q, docs in zip(queries, lists, strict=True) for d in docs]
    lengths = [len(d) for _, d in pairs]
    print(f"model {args.model.name}; {len(queries)} questions x {args.paragraphs} paragraphs = {len(pairs)} pairs; "
          f"passage chars min/median/max {min(lengths)}/{int(statistics.median(lengths))}/{max(lengths)}; "
          f"torch threads {torch.get_num_threads()}; batch size {args.batch_size}")

    ours = Reranker(args.model, kind="cross-encoder", normalize="none", batch_size=args.batch_size, device="cpu")
    peer = CrossEncoder(str(args.model), device="cpu")
    identity = torch.nn.Identity()

    def run_ours():
        return np.array(ours.score_many(queries, lists, show_progress=False), dtype=np.float32).ravel()

    def run_peer():
        return peer.predict(pairs, batch_size=args.batch_size, activation_fn=identity, show_progress_bar=False)

    # Warm-up on a few pairs each (allocator, kernels, lazy imports).
    ours.score(queries[0], lists[0][:8])
    peer.predict(pairs[:8], activation_fn=identity)

    ratios, max_diff = [], 0.0
    for r in range(args.rounds):
        order = [("ours", run_ours), ("predict", run_peer)]
        if r % 2:
            order.reverse()
        timings, scores = {}, {}
        for name, fn in order:
            start = time.perf_counter()
            scores[name] = fn()
            timings[name] = time.perf_counter() - start
        max_diff = max(max_diff, float(np.abs(scores["ours"] - scores["predict"]).max()))
        ratio = timings["predict"] / timings["ours"]
        ratios.append(ratio)
        print(f"round {r + 1}: rerank_plugins {len(pairs) / timings['ours']:.1f} pairs/s | "
              f"CrossEncoder.predict {len(pairs) / timings['predict']:.1f} pairs/s | ratio {ratio:.3f}x")
    print(f"median speed ratio (rerank_plugins / CrossEncoder.predict): {statistics.median(ratios):.3f}x "
          f"over {args.rounds} rounds; max |score difference| {max_diff:.2e}")


if __name__ == "__main__":
    main()
