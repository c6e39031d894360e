"""rerank-plugins bench / rerank_plugins.benchmark: the side-by-side run on a tiny model."""

from __future__ import annotations

import pytest

from rerank_plugins.benchmark import BenchConfig, build_cases, encoder_flops, format_table, peak_gflops, run_benchmark
from rerank_plugins.cli import main


def test_build_cases_puts_the_gold_paragraph_among_the_candidates(tiny_squad):
    import json

    queries, lists, gold = build_cases(tiny_squad, questions=4, paragraphs=3, seed=1)
    assert len(queries) == len(lists) == len(gold) == 4
    data = json.loads(tiny_squad.read_text(encoding="utf-8"))["data"]
    asked = {q["question"]: p["context"] for a in data for p in a["paragraphs"] for q in p["qas"]}
    for q, docs, g in zip(queries, lists, gold, strict=True):
        assert len(docs) == 3 and docs[g] == asked[q]
    with pytest.raises(ValueError, match="more than the"):
        build_cases(tiny_squad, questions=10_000, paragraphs=3)


def test_run_benchmark_compares_configurations_side_by_side(tiny_cross_encoder, tiny_squad):
    configs = [
        BenchConfig("peer float32", True, "float32"),
        BenchConfig("ours float32", False, "float32", "torch"),
        BenchConfig("ours bfloat16", False, "bfloat16", "torch"),
    ]
    results = run_benchmark(tiny_cross_encoder, tiny_squad, questions=3, paragraphs=4, rounds=2, configs=configs)
    by_name = {r.name: r for r in results}
    assert list(by_name) == [c.name for c in configs]
    for r in results:
        assert len(r.pairs_per_s) == 2 and all(v > 0 for v in r.pairs_per_s)
        assert 0 <= r.hit_at_1 <= 1 and 0 < r.mrr_at_10 <= 1 and r.gflops > 0
    assert by_name["peer float32"].ratio_to_peer_default == pytest.approx(1.0)
    # The exact path scores like sentence-transformers: the same logits, so the same ranking.
    assert by_name["ours float32"].max_abs_diff < 1e-4
    assert by_name["peer float32"].max_abs_diff < 1e-4
    assert by_name["ours float32"].hit_at_1 == by_name["peer float32"].hit_at_1
    table = format_table(results)
    assert "CPU flags detected" in table and all(c.name in table for c in configs)


def test_flops_and_peak_are_computed_from_the_model_and_the_cpu():
    class Config:
        hidden_size, intermediate_size, num_hidden_layers = 4, 8, 2

    # per layer and token: 8h^2 + 4hf + 4nh = 128 + 128 + 16n; two layers; n = 3
    assert encoder_flops(Config(), [3]) == 2 * 3 * (128 + 128 + 48)
    peak, how = peak_gflops("float32", cores=2)
    assert peak is None or (peak > 0 and "FLOP/cycle/core" in how)


def test_bench_command(tiny_cross_encoder, tiny_squad, capsys):
    assert main(["bench", "--reranker", str(tiny_cross_encoder), "--data", str(tiny_squad),
                 "--questions", "2", "--paragraphs", "3", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "sentence-transformers float32 (its default)" in out and "rerank_plugins default (auto)" in out
    assert main(["bench", "--reranker", str(tiny_cross_encoder), "--data", "no-such.json"]) == 1
    assert "--data: no such file" in capsys.readouterr().err
