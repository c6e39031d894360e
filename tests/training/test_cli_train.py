"""``rerank-plugins train``: a Korean KorQuAD-layout run end to end, and bad input as one line."""

from __future__ import annotations

import json

import _tiny
import pytest

from rerank_plugins import Reranker
from rerank_plugins.cli import main

pytest.importorskip("faiss", reason="fine-tuning mines with the eval extra's faiss index")
pytest.importorskip("datasets", reason="fine-tuning needs the train extra")


@pytest.fixture(scope="module")
def korquad_file(tmp_path_factory):
    """KorQuAD layout: Korean paragraphs, answers as {"text", "answer_start"}; 4 articles of 2 paragraphs."""
    articles = []
    for a in range(0, len(_tiny.KOREAN), 2):
        paragraphs = []
        for i, text in enumerate(_tiny.KOREAN[a : a + 2], start=a):
            words = text.split()
            paragraphs.append({"context": text, "qas": [
                {"id": f"{i}-{j}", "question": " ".join(words[j : j + 3]) + "?",
                 "answers": [{"text": words[-1], "answer_start": text.index(words[-1])}]}
                for j in range(2)
            ]})
        articles.append({"title": f"문서 {a // 2}", "paragraphs": paragraphs})
    path = tmp_path_factory.mktemp("korquad") / "korquad_tiny.json"
    path.write_text(json.dumps({"version": "KorQuAD_v1.0_dev", "data": articles}, ensure_ascii=False),
                    encoding="utf-8")
    return path


def test_train_korean_korquad_layout(korquad_file, tiny_xlmr, tiny_bi_encoder, tmp_path, capsys):
    out, report_path = tmp_path / "ko-reranker", tmp_path / "train.json"
    argv = ["train", "--data", str(korquad_file), "--base", str(tiny_xlmr), "--output", str(out),
            "--bi-encoder", str(tiny_bi_encoder), "--negatives", "2", "--mine-k", "5", "--max-steps", "2",
            "--batch-size", "4", "--max-length", "64", "--retrieve-k", "10", "--device", "cpu",
            "--dtype", "float32", "--no-progress", "--json-out", str(report_path)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "retrieval" in captured.out and "trained" in captured.out
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["config"]["base"]["had_head"] is True  # an existing one-logit reranker, trained further
    assert report["config"]["training"]["loss"] == "MultipleNegativesRankingLoss"  # the default
    assert report["config"]["split"]["group_by"] == "group"
    assert report["config"]["eval_queries"] == 4 and report["config"]["train_queries"] == 12
    assert set(report["trained"]) == {"hit@1", "hit@3", "hit@10", "mrr@10", "ndcg@10"}
    # the corpus has 8 documents: @10 covers all of them, so hit@10 is 1 in every column
    assert report["retrieval"]["hit@10"] == report["base"]["hit@10"] == report["trained"]["hit@10"] == 1.0
    assert "문서" in (out / "README.md").read_text(encoding="utf-8") or (out / "split.json").exists()
    split = json.loads((out / "split.json").read_text(encoding="utf-8"))
    assert all(g.startswith("문서") for g in split["train_groups"] + split["eval_groups"])
    assert Reranker(str(out), device="cpu").kind == "cross-encoder"
    # a second run into the same directory is refused before any work
    assert main(argv) == 2
    assert "--output" in capsys.readouterr().err


def test_train_help_lists_the_flags(capsys):
    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--data", "--format", "--corpus", "--base", "--output", "--bi-encoder", "--train-queries",
                 "--eval-queries", "--negatives", "--mine-k", "--epochs", "--batch-size", "--learning-rate",
                 "--seed", "--json-out", "--dtype", "--max-length", "--checkpoint-dir", "--overwrite", "--pos-weight",
                 "--attention-dropout", "--loss"):
        assert flag in text, flag


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("rerank-plugins: error: ")
    return err[0]


def test_bad_input_is_one_line(tmp_path, tiny_squad, tiny_bi_encoder, tiny_jsonl, capsys):
    base = str(tiny_bi_encoder)
    out = str(tmp_path / "out")
    assert main(["train", "--data", str(tmp_path / "missing.json"), "--base", base, "--output", out]) == 1
    assert "does not exist" in _error_line(capsys)
    assert main(["train", "--data", str(tiny_squad), "--base", str(tmp_path / "nope"), "--output", out]) == 1
    assert "model directory" in _error_line(capsys)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", "--data", str(tiny_squad), "--base", str(empty), "--output", out,
                 "--bi-encoder", base]) == 1
    assert "could not load base model" in _error_line(capsys)
    assert main(["train", "--data", str(tiny_jsonl[0]), "--base", base, "--output", out]) == 1
    assert "needs a corpus file" in _error_line(capsys)
    assert main(["train", "--data", str(tiny_squad), "--base", base, "--output", out, "--rerank-k", "5"]) == 2
    assert "at least 10" in _error_line(capsys)
    assert main(["train", "--data", str(tiny_squad), "--base", base, "--output", str(tmp_path / "a" / "b")]) == 2
    assert "does not exist" in _error_line(capsys)
    for flags in (["--eval-fraction", "1"], ["--learning-rate", "0"], ["--dtype", "int8"], ["--epochs", "0"],
                  ["--loss", "hinge"]):
        assert main(["train", "--data", str(tiny_squad), "--base", base, "--output", out, *flags]) == 2
        capsys.readouterr()
    for value in ("0", "-2", "heavy"):
        assert main(["train", "--data", str(tiny_squad), "--base", base, "--output", out, "--pos-weight", value]) == 2
        assert "--pos-weight: expected 'balanced' or a positive number" in capsys.readouterr().err
    for value in ("1", "-0.1", "none"):
        assert main(["train", "--data", str(tiny_squad), "--base", base, "--output", out,
                     "--attention-dropout", value]) == 2
        assert "--attention-dropout: expected 'keep' or a number in [0, 1)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_loss_and_pos_weight_flags_reach_finetune(tmp_path, tiny_squad, monkeypatch):
    import rerank_plugins.training as training

    seen = {}

    def spy(data, **kwargs):
        seen.update(kwargs)
        raise ValueError("stop here")

    monkeypatch.setattr(training, "finetune", spy)
    argv = ["train", "--data", str(tiny_squad), "--base", "b", "--output", str(tmp_path / "out")]
    assert main([*argv, "--loss", "listwise", "--pos-weight", "2"]) == 1  # the spy stops it
    assert seen["loss"] == "listwise" and seen["pos_weight"] == 2.0
    assert main(argv) == 1
    assert seen["loss"] == "listwise" and seen["pos_weight"] == "balanced"


def test_pos_weight_with_the_listwise_loss_is_one_clear_line(tmp_path, tiny_squad, capsys):
    argv = ["train", "--data", str(tiny_squad), "--base", str(tmp_path / "no-such-model"),
            "--output", str(tmp_path / "out"), "--pos-weight", "2"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "pos_weight applies to loss='bce' only; the listwise loss has no positive weight (got pos_weight=2.0)" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()
