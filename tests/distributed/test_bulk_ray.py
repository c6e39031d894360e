"""``rerank-plugins bulk --ray``: the same output as in-process, in input order; a failed run writes nothing.

(The interrupted-run test of the shared atomic output is in tests/test_bulk.py: one Ray job fewer.)
"""

from __future__ import annotations

import json

import pytest

from rerank_plugins.cli import main

pytest.importorskip("ray", reason="needs the 'ray' extra: pip install 'rerank-plugins[ray]'")

import _tiny  # noqa: E402


def rows(n: int) -> list[dict]:
    pairs = _tiny.mixed_pairs(n * 4, seed=9, long_every=11)
    return [{"id": f"r{i}", "query": pairs[4 * i][0], "documents": [p for _, p in pairs[4 * i : 4 * i + i % 4]],
             "extra": {"n": i}} for i in range(n)]


def test_ray_output_equals_the_in_process_output(ray_session, tiny_bert, tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    data = rows(30)
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in data), encoding="utf-8")
    common = ["--input", str(src), "--reranker", str(tiny_bert), "--device", "cpu", "--no-progress",
              "--chunk-rows", "7", "--top-n", "2", "--normalize", "none"]
    assert main(["bulk", *common, "--output", str(tmp_path / "local.jsonl")]) == 0
    assert main(["bulk", *common, "--output", str(tmp_path / "ray.jsonl"), "--ray", "auto",
                 "--concurrency", "2"]) == 0
    assert f"wrote 30 rows ({sum(len(r['documents']) for r in data)} pairs)" in capsys.readouterr().err
    local = [json.loads(x) for x in (tmp_path / "local.jsonl").read_text(encoding="utf-8").splitlines()]
    remote = [json.loads(x) for x in (tmp_path / "ray.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in remote] == [f"r{i}" for i in range(30)]  # input order, each row once
    for a, b in zip(local, remote, strict=True):
        assert {k: v for k, v in a.items() if k != "scores"} == {k: v for k, v in b.items() if k != "scores"}
        assert b["scores"] == pytest.approx(a["scores"], abs=1e-5)
    assert ray_session.is_initialized()  # a Ray the caller started is left running


def test_malformed_row_fails_before_ray_runs(ray_session, tiny_bert, tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text('{"query": "q", "documents": ["a"]}\n{"query": "q", "documents": [1]}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    out.write_text("the previous result\n")
    rc = main(["bulk", "--input", str(src), "--output", str(out), "--reranker", str(tiny_bert),
               "--ray", "auto", "--no-progress"])
    assert rc == 1
    assert "in.jsonl, line 2: documents[0] must be a string, got a number" in capsys.readouterr().err
    assert out.read_text() == "the previous result\n"  # untouched; no temporary twin left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]
