"""examples/two_stage_eval.py runs against the library (tiny models, the tiny SQuAD-layout set)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "two_stage_eval.py"

pytest.importorskip("faiss", reason="the example needs the eval extra")


def test_example_script_writes_report_and_plot(tiny_squad, tiny_bert, tiny_bi_encoder, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("two_stage_eval", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--data", str(tiny_squad), "--reranker", str(tiny_bert), "--bi-encoder", str(tiny_bi_encoder),
                 "--queries", "6", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "metric" in out and "MRR@10:" in out
    report = json.loads((tmp_path / "two_stage_report.json").read_text(encoding="utf-8"))
    assert list(report) == ["retrieval", "reranked", "timing", "config", "sweep"] and report["sweep"] == []
    assert report["config"]["queries"] == 6
    assert (tmp_path / "two_stage_hit_at_k.png").read_bytes()[:4] == b"\x89PNG"
