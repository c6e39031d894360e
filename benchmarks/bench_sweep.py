"""Wall time of a retrieve_k sweep against running its largest k alone, side by side.

Both evaluate the same questions with the same models in one process, over one
corpus index built once: ``evaluate(..., sweep=[5, 10, 20, 30, 50])`` and
``evaluate(..., retrieve_k=50)``. Rounds alternate which runs first
(sweep/alone, then alone/sweep, ...). Prints each run's wall time, the medians
and their ratio (target: <= 1.1), checks that the sweep's largest k reports the
same metrics as the run alone, and prints the sweep table with the recommended k.
Both runs score the same pairs once, so the time outside the scoring pass (printed
too) is where a sweep could cost more; on a shared machine the scoring time itself
varies from run to run, and that noise dominates the wall-time ratio.

    python benchmarks/bench_sweep.py                                   # ../shared, 200 questions, dtype auto
    python benchmarks/bench_sweep.py --queries 50 --rounds 1 --dtype float32 --model PATH --data squad.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from rerank_plugins import Reranker
from rerank_plugins.evaluation import BiEncoder, DenseIndex, evaluate, load_dataset

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=SHARED / "models" / "ms-marco-MiniLM-L-12-v2")
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "squad-v1.1-dev.json")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sweep", type=int, nargs="+", default=[5, 10, 20, 30, 50])
    parser.add_argument("--rerank-k", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2, help="each round runs both once (default: 2)")
    parser.add_argument("--dtype", default="auto", help="reranker dtype (default: auto, as Reranker)")
    parser.add_argument("--batch-size", type=int, default=None, help="pairs per batch (default: the token budget)")
    parser.add_argument("--embeddings", type=Path, default=None,
                        help="a .npz to save/reuse the corpus embeddings (default: embed in memory)")
    args = parser.parse_args()

    dataset = load_dataset(args.data).sample(args.queries, seed=args.seed)
    reranker = Reranker(args.model, device="cpu", dtype=args.dtype, batch_size=args.batch_size)
    bi_encoder = BiEncoder(device="cpu")
    index = DenseIndex.from_corpus(bi_encoder, dataset.doc_ids, dataset.doc_texts, cache=args.embeddings)
    largest = max(args.sweep)
    print(f"{len(dataset.queries)} questions, {len(dataset.doc_ids)} documents (corpus embedded in "
          f"{index.embed_seconds:.1f} s{', reused' if index.reused else ''}); reranker {args.model.name} "
          f"{reranker.dtype} on {reranker.engine}; sweep {sorted(args.sweep)} vs retrieve_k={largest} alone, "
          f"{args.rounds} round(s)",
          flush=True)
    reranker.score("warm-up", ["one short passage", "and another one"])  # first-call costs out of the timing

    runs = {
        "sweep": lambda: evaluate(dataset, reranker, bi_encoder, sweep=args.sweep, rerank_k=args.rerank_k,
                                  index=index, show_progress=False),
        "alone": lambda: evaluate(dataset, reranker, bi_encoder, retrieve_k=largest, rerank_k=args.rerank_k,
                                  index=index, show_progress=False),
    }
    seconds: dict[str, list[float]] = {"sweep": [], "alone": []}
    outside: dict[str, list[float]] = {"sweep": [], "alone": []}  # wall time minus the scoring pass
    reports = {}
    for r in range(args.rounds):
        for name in ("sweep", "alone") if r % 2 == 0 else ("alone", "sweep"):
            start = time.perf_counter()
            reports[name] = runs[name]()
            seconds[name].append(time.perf_counter() - start)
            t = reports[name].timing
            outside[name].append(seconds[name][-1] - t["rerank_s"])
            print(f"round {r + 1} {name}: {seconds[name][-1]:.1f} s wall (reranking {t['rerank_s']:.1f} s, "
                  f"{t['rerank_pairs_per_s']:.1f} pairs/s; everything else {outside[name][-1]:.2f} s)", flush=True)
        ratio = statistics.median(seconds["sweep"]) / statistics.median(seconds["alone"])
        print(f"after round {r + 1}: median sweep / alone wall time = {ratio:.3f}", flush=True)

    sweep, alone = reports["sweep"], reports["alone"]
    med_s, med_a = statistics.median(seconds["sweep"]), statistics.median(seconds["alone"])
    print(f"\nmedian wall time: sweep {med_s:.1f} s, alone {med_a:.1f} s; ratio {med_s / med_a:.3f} "
          f"(target <= 1.1)")
    print(f"median time outside the scoring pass (retrieval, metrics, the sweep's derivation): sweep "
          f"{statistics.median(outside['sweep']):.2f} s, alone {statistics.median(outside['alone']):.2f} s; both "
          f"score the same {alone.config['rerank_pairs']} pairs once")
    same = (sweep.retrieval, sweep.reranked) == (alone.retrieval, alone.reranked)
    print(f"sweep's retrieve_k={largest} metrics identical to the run alone: {same}")
    print()
    print(sweep.format_table())
    print()
    print(sweep.format_sweep_table())


if __name__ == "__main__":
    main()
