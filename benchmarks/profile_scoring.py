"""Where the default configuration's time goes: tokenising, padding, the engine, and inside the engine.

Scores SQuAD questions x paragraphs with ``Reranker()`` defaults (``overflow="truncate"``
so the work equals sentence-transformers'), wrapping the backend's ``encode``,
``pad`` and ``runner`` to time each stage, then re-runs the same padded batches
through an OpenVINO model compiled with performance counters and sums the
per-operation times by operation type (MatMul, Softmax, ...).

    python benchmarks/profile_scoring.py                 # uses ../shared
    python benchmarks/profile_scoring.py --questions 20 --model PATH --data squad.json
"""

from __future__ import annotations

import argparse
import collections
import os
import time
from pathlib import Path

from rerank_plugins import Reranker
from rerank_plugins.benchmark import build_cases

SHARED = Path(os.environ.get("RERANK_PLUGINS_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=SHARED / "models" / "ms-marco-MiniLM-L-12-v2")
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "squad-v1.1-dev.json")
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--paragraphs", type=int, default=30)
    args = parser.parse_args()

    queries, lists, _ = build_cases(args.data, args.questions, args.paragraphs, 0)
    pairs = sum(len(d) for d in lists)
    reranker = Reranker(args.model, normalize="none", overflow="truncate")
    backend = reranker.backend
    print(f"default configuration: dtype {reranker.dtype}, engine {reranker.engine}, "
          f"max_batch_tokens {reranker.max_batch_tokens}; {pairs} pairs")
    reranker.score_many(queries[:2], lists[:2], show_progress=False)  # warm-up

    spent: collections.Counter[str] = collections.Counter()
    batches: list[dict] = []

    def timed(name, fn, keep=None):
        def wrapper(*a, **k):
            start = time.perf_counter()
            out = fn(*a, **k)
            spent[name] += time.perf_counter() - start
            if keep is not None:
                keep.append(out)
            return out
        return wrapper

    backend.encode = timed("tokenise (encode)", backend.encode)
    backend.pad = timed("pad to tensors", backend.pad, batches)
    backend.runner = timed("engine forward", backend.runner)
    start = time.perf_counter()
    reranker.score_many(queries, lists, show_progress=False)
    total = time.perf_counter() - start
    spent["everything else (sorting, windows bookkeeping, results)"] = total - sum(spent.values())
    print(f"\nwall {total:.2f} s = {pairs / total:.1f} pairs/s; {len(batches)} batches")
    for name, seconds in spent.most_common():
        print(f"  {name:<58} {seconds:7.2f} s  {100 * seconds / total:5.1f}%")

    if reranker.engine != "openvino":
        return
    import openvino as ov

    from rerank_plugins.backends.engines import cache_root, model_fingerprint

    folder = next(p for p in (cache_root() / "openvino").glob(f"{model_fingerprint(reranker.model_id)}-ov*")
                  if not p.name.endswith("-int8"))
    precision = {"bfloat16": "bf16"}.get(reranker.dtype, "f32")
    core = ov.Core()
    compiled = core.compile_model(core.read_model(folder / "model.xml"), "CPU",
                                  {"INFERENCE_PRECISION_HINT": precision, "PERF_COUNT": True})
    request = compiled.create_infer_request()
    names = [p.get_any_name() for p in compiled.inputs]
    by_type: collections.Counter[str] = collections.Counter()
    for batch in batches:
        request.infer({n: batch[n].numpy() for n in names})
        for info in request.profiling_info:
            by_type[info.node_type] += info.real_time.total_seconds()
    busy = sum(by_type.values())
    print(f"\ninside OpenVINO ({precision}, one stream, performance counters): {busy:.2f} s of operations")
    for node_type, seconds in by_type.most_common(12):
        print(f"  {node_type:<28} {seconds:7.2f} s  {100 * seconds / busy:5.1f}%")


if __name__ == "__main__":
    main()
