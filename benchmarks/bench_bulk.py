"""Bulk reranking throughput: in this process vs Ray Data with 1 and 2 actors, side by side.

Rows are SQuAD v1.1 dev questions, each with 30 paragraphs of its own article (its
gold paragraph among them): the shape of a "rerank the top 30" bulk job. Each
configuration scores the same rows:

* ``in-process``: :func:`rerank_plugins.bulk.rerank_file` (the ``bulk`` command
  without ``--ray``), model loaded beforehand, torch on all of this machine's cores;
* ``ray-N``: :func:`rerank_plugins.distributed.rerank_dataset` on N actors of
  ``--actor-cpus`` CPUs each, on a local Ray started here.

For Ray the wall time includes starting the actors and loading the model in
each; the *steady* rate counts only the rows that arrive after the first batch,
over the time they took, which is what a long job sees. The per-actor steady
rate (pairs/s) is what the README's sizing table is computed from.

Usage:
    python benchmarks/bench_bulk.py --data ../shared/data/squad-v1.1-dev.json \\
        --model ../shared/models/ms-marco-MiniLM-L-12-v2 --rows 2000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path


def build_rows(data: Path, n_rows: int, n_docs: int, seed: int) -> list[dict]:
    articles = json.loads(data.read_text(encoding="utf-8"))["data"]
    candidates = []
    for a, article in enumerate(articles):
        paragraphs = [p["context"] for p in article["paragraphs"]]
        if len(paragraphs) < n_docs:
            continue
        for p, paragraph in enumerate(article["paragraphs"]):
            for qa in paragraph["qas"]:
                candidates.append((a, p, qa["id"], qa["question"]))
    rng = random.Random(seed)
    rows = []
    for a, p, qid, question in rng.sample(candidates, n_rows):
        paragraphs = [x["context"] for x in articles[a]["paragraphs"]]
        others = rng.sample([i for i in range(len(paragraphs)) if i != p], n_docs - 1)
        picked = others + [p]
        rng.shuffle(picked)
        rows.append({"id": qid, "query": question, "documents": [paragraphs[i] for i in picked],
                     "gold": picked.index(p)})
    return rows


def run_in_process(rows_path: Path, out_dir: Path, args: argparse.Namespace) -> dict:
    import torch

    from rerank_plugins import Reranker
    from rerank_plugins.bulk import rerank_file

    start = time.perf_counter()
    reranker = Reranker(args.model, device="cpu", dtype=args.dtype, batch_size=args.batch_size)
    load_s = time.perf_counter() - start
    summary = rerank_file(rows_path, out_dir / "in-process.jsonl", reranker, chunk_rows=args.chunk_rows,
                          show_progress=False)
    return {"config": "in-process", "threads": torch.get_num_threads(), "load_s": load_s,
            "wall_s": summary.seconds, "rows": summary.rows, "pairs": summary.pairs,
            "rows_per_s": summary.rows_per_s, "pairs_per_s": summary.pairs_per_s,
            "steady_rows_per_s": summary.rows_per_s, "steady_pairs_per_s": summary.pairs_per_s,
            "output": str(summary.output)}


def run_ray(rows: list[dict], actors: int, args: argparse.Namespace) -> dict:
    import ray

    from rerank_plugins.distributed import rerank_dataset

    ds = ray.data.from_items(rows)
    out = rerank_dataset(ds, args.model, concurrency=actors, batch_size=args.ray_batch_rows,
                         num_cpus=args.actor_cpus, device="cpu", dtype=args.dtype,
                         reranker_batch_size=args.batch_size)
    start = time.perf_counter()
    first_at, first_rows, first_pairs, n_rows, n_pairs, scores = None, 0, 0, 0, 0, {}
    for batch in out.iter_batches(batch_format="pyarrow", batch_size=None):
        ids = batch.column("id").to_pylist()
        got = batch.column("scores").to_pylist()
        n_rows += len(ids)
        n_pairs += sum(map(len, got))
        scores.update(zip(ids, got, strict=True))
        if first_at is None:
            first_at, first_rows, first_pairs = time.perf_counter(), n_rows, n_pairs
    end = time.perf_counter()
    steady_s = end - first_at if first_at is not None else float("nan")
    return {"config": f"ray-{actors}", "actors": actors, "actor_cpus": args.actor_cpus, "wall_s": end - start,
            "first_batch_s": first_at - start, "rows": n_rows, "pairs": n_pairs,
            "rows_per_s": n_rows / (end - start), "pairs_per_s": n_pairs / (end - start),
            "steady_rows_per_s": (n_rows - first_rows) / steady_s if steady_s > 0 else float("nan"),
            "steady_pairs_per_s": (n_pairs - first_pairs) / steady_s if steady_s > 0 else float("nan"),
            "steady_pairs_per_s_per_actor": (n_pairs - first_pairs) / steady_s / actors if steady_s > 0 else None,
            "scores": scores}


def actor_threads(num_cpus: float) -> int:
    import ray

    @ray.remote(num_cpus=num_cpus)
    def threads() -> int:
        import torch

        return torch.get_num_threads()

    return ray.get(threads.remote())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="SQuAD v1.1 dev JSON")
    parser.add_argument("--model", required=True, help="the reranker (a local directory)")
    parser.add_argument("--rows", type=int, default=2000, help="rows (queries) per configuration (default: 2000)")
    parser.add_argument("--docs", type=int, default=30, help="paragraphs per row (default: 30)")
    parser.add_argument("--dtype", default="auto", help="reranker dtype (default: auto, as Reranker)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="pairs per forward pass (default: no cap, the Reranker's token budget)")
    parser.add_argument("--chunk-rows", type=int, default=64, help="in-process rows per chunk (default: 64)")
    parser.add_argument("--ray-batch-rows", type=int, default=4, help="rows per Ray actor call (default: 4)")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2], help="Ray actor counts (default: 1 2)")
    parser.add_argument("--actor-cpus", type=float, default=1, help="CPUs per Ray actor (default: 1)")
    parser.add_argument("--skip-in-process", action="store_true",
                        help="run only the Ray configurations (no score comparison, ratios against the first)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out", type=Path, default=None, help="write all figures as JSON")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    rows = build_rows(args.data, args.rows, args.docs, args.seed)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        rows_path = tmp_dir / "rows.jsonl"
        rows_path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        print(f"{len(rows)} rows x {args.docs} paragraphs = {len(rows) * args.docs} pairs per configuration; "
              f"dtype {args.dtype}; {os.cpu_count()} CPUs", flush=True)
        local_scores = {}
        if not args.skip_in_process:
            local = run_in_process(rows_path, tmp_dir, args)
            with open(local.pop("output"), encoding="utf-8") as fh:
                for line in fh:
                    row = json.loads(line)
                    local_scores[row["id"]] = row["scores"]
            results.append(local)
            print(json.dumps(local), flush=True)

        import ray

        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        try:
            ray.data.DataContext.get_current().enable_progress_bars = False
            print(f"torch threads in a {args.actor_cpus}-CPU Ray actor: {actor_threads(args.actor_cpus)}", flush=True)
            for actors in args.actors:
                result = run_ray(rows, actors, args)
                scores = result.pop("scores")
                if local_scores:
                    result["max_abs_diff_vs_in_process"] = max(
                        (abs(a - b) for i, s in scores.items() for a, b in zip(s, local_scores[i], strict=True)),
                        default=0.0,
                    )
                results.append(result)
                print(json.dumps(result), flush=True)
        finally:
            ray.shutdown()

    print()
    first = "in-process" if not args.skip_in_process else results[0]["config"]
    print(f"| configuration | rows | wall s | rows/s | pairs/s | steady pairs/s | vs {first} (rows/s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    base = results[0]["rows_per_s"]
    for r in results:
        print(f"| {r['config']} | {r['rows']} | {r['wall_s']:.1f} | {r['rows_per_s']:.3f} | {r['pairs_per_s']:.1f} | "
              f"{r['steady_pairs_per_s']:.1f} | {r['rows_per_s'] / base:.2f}x |")
    per_actor = [r["steady_pairs_per_s_per_actor"] for r in results if r.get("steady_pairs_per_s_per_actor")]
    if per_actor:
        rate = statistics.median(per_actor)
        print(f"\nsteady pairs/s per CPU actor (median over Ray configurations): {rate:.1f}")
        for pairs in (10**6, 10**8):
            print(f"  {pairs:.0e} pairs: {pairs / rate / 3600:,.1f} actor-hours")
    if args.json_out is not None:
        args.json_out.write_text(json.dumps({"rows": len(rows), "docs": args.docs, "dtype": args.dtype,
                                             "results": results}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
