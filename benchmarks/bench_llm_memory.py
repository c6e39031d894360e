"""Peak memory of llm-yes scoring: last-position logits vs full logits.

Scores 64 pairs of ~500 tokens with a small Gemma (vocabulary 32k+, random
weights, built in a temporary directory) twice, each in a fresh subprocess:
once as shipped (``logits_to_keep=1``: one vocabulary row per pair) and once
computing the full sequence x vocabulary logits and reading the last row.
Prints the peak resident memory each added over the loaded model, the ratio,
and checks that both give the same scores.

    python benchmarks/bench_llm_memory.py [--pairs 64] [--vocab 32768] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(model: str, mode: str, n_pairs: int, batch_size: int) -> None:
    """Runs in a subprocess: load, warm up, reset the high-water mark, score, report."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "tests"))
    import _tiny

    from rerank_plugins import Reranker

    reranker = Reranker(model, normalize="none", batch_size=batch_size, max_length=1024)
    if mode == "full":
        reranker.backend._keeps_last_only = False  # the only difference: full logits, then [:, -1]
    passage = " ".join(_tiny.ENGLISH * 2)  # ~500 tokens with the prompt
    queries = [f"question {i}: {_tiny.ENGLISH[i % len(_tiny.ENGLISH)]}" for i in range(n_pairs)]
    docs = [f"{i} {passage}" for i in range(n_pairs)]
    reranker.score(queries[0], docs[:1])  # warm-up
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    base = _status_kib("VmRSS")
    lengths, _ = reranker.backend.measure(queries, docs, reranker._options)
    scores = reranker.score_many(queries, [[d] for d in docs], show_progress=False)
    peak = _status_kib("VmHWM")
    print(json.dumps({"mode": mode, "extra_kib": peak - base, "tokens": float(np.mean(lengths)),
                      "scores": [s[0] for s in scores]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.pairs, args.batch_size)
        return

    sys.path.insert(0, str(ROOT / "tests"))
    import _tiny

    with tempfile.TemporaryDirectory() as tmp:
        model = _tiny.build_gemma(Path(tmp) / "gemma", vocab_size=args.vocab, hidden_size=64)
        results = {}
        for mode in ("last", "full"):
            out = subprocess.run(
                [sys.executable, __file__, "--pairs", str(args.pairs), "--batch-size", str(args.batch_size),
                 "--child", str(model), mode],
                capture_output=True, text=True, check=True,
            )
            results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    last, full = results["last"], results["full"]
    diff = max(abs(a - b) for a, b in zip(last["scores"], full["scores"], strict=True))
    print(f"{args.pairs} pairs, ~{last['tokens']:.0f} tokens each, vocabulary {args.vocab}, "
          f"batch size {args.batch_size}")
    print(f"peak extra memory, last-position logits: {last['extra_kib'] / 1024:.1f} MiB")
    print(f"peak extra memory, full logits:          {full['extra_kib'] / 1024:.1f} MiB")
    print(f"ratio full / last: {full['extra_kib'] / max(last['extra_kib'], 1):.1f}x; "
          f"max |score difference| {diff:.2e}")


if __name__ == "__main__":
    main()
