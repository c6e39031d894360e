"""The ``rerank-plugins`` command: eval and score end to end, help, exit codes and error lines."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rerank_plugins import Reranker
from rerank_plugins.cli import DEFAULT_RERANKER, build_parser, main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "data" / "squad_sample.json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ERROR = "rerank-plugins: error: "

pytest.importorskip("faiss", reason="the eval command needs the eval extra")

def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(ERROR)]


def assert_one_error(capsys, rc, expected_rc=1) -> str:
    captured = capsys.readouterr()
    assert rc == expected_rc, captured.err
    errors = error_lines(captured.err)
    assert len(errors) == 1, captured.err
    assert "Traceback" not in captured.err
    assert captured.out == ""
    return errors[0]


@pytest.fixture()
def tiny_args(tiny_bi_encoder, tiny_bert):
    return ["--reranker", str(tiny_bert), "--bi-encoder", str(tiny_bi_encoder), "--device", "cpu", "--no-progress"]


# --------------------------------------------------------------------------- help


def test_help_explains_every_flag(capsys):
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    assert set(subparsers) == {"eval", "score", "serve", "bulk", "train", "bench"}
    for name, sub in subparsers.items():
        assert main([name, "--help"]) == 0
        text = capsys.readouterr().out
        for action in sub._actions:
            assert action.help and action.help.strip(), (name, action.dest)
            for option in action.option_strings:
                assert option in text, (name, option)
    for flag in ("--data", "--format", "--corpus", "--reranker", "--kind", "--bi-encoder", "--retrieve-k",
                 "--rerank-k", "--sweep", "--queries", "--seed", "--batch-size", "--json-out", "--plot",
                 "--embeddings"):
        assert flag in subparsers["eval"].format_help()
    assert main(["--help"]) == 0
    assert "eval" in capsys.readouterr().out


def test_usage_errors_exit_2(capsys):
    assert main([]) == 2
    assert "the following arguments are required: {eval,score,serve,bulk,train,bench}" in capsys.readouterr().err
    assert main(["eval", "--data", "x.json", "--queries", "0"]) == 2
    assert "--queries: expected a positive integer, got 0" in capsys.readouterr().err
    assert main(["eval"]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["eval", "--data", "x.json", "--kind", "magic"]) == 2
    capsys.readouterr()


def test_console_script_is_installed():
    exe = shutil.which("rerank-plugins") or str(Path(sys.executable).parent / "rerank-plugins")
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("rerank-plugins ")


# --------------------------------------------------------------------------- eval


def test_eval_end_to_end_with_tiny_models(tmp_path, tiny_squad, tiny_args, capsys):
    out_json, out_png, cache = tmp_path / "report.json", tmp_path / "hit.png", tmp_path / "emb.npz"
    argv = ["eval", "--data", str(tiny_squad), *tiny_args, "--retrieve-k", "6", "--rerank-k", "3",
            "--queries", "12", "--seed", "7", "--batch-size", "8", "--json-out", str(out_json),
            "--plot", str(out_png), "--embeddings", str(cache)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[1].split() == ["metric", "retrieval", "reranked"]
    assert any(line.startswith("hit@1 ") for line in lines) and any(line.startswith("ms / query") for line in lines)
    assert "12 of 38 questions, 19 documents" in captured.err

    report = json.loads(out_json.read_text(encoding="utf-8"))
    assert list(report) == ["retrieval", "reranked", "timing", "config", "sweep"]
    assert report["sweep"] == [] and report["config"]["sweep"] is None
    assert {"hit@1", "hit@3", "hit@6", "mrr@3", "ndcg@6", "recall@6"} <= set(report["retrieval"])
    assert set(report["reranked"]) == {f"{m}@{k}" for m in ("hit", "mrr", "ndcg", "recall") for k in (1, 3)}
    for line in lines:  # the table shows the report's numbers
        if line.startswith("hit@1 "):
            assert line.split()[1:] == [f"{report['retrieval']['hit@1']:.4f}", f"{report['reranked']['hit@1']:.4f}"]
    timing = report["timing"]
    assert {"load_reranker_s", "load_bi_encoder_s", "embed_corpus_s", "retrieval_s", "rerank_s",
            "retrieval_ms_per_query", "rerank_ms_per_query"} <= set(timing)
    cfg = report["config"]
    assert cfg["queries"] == 12 and cfg["sample"] == {"queries": 12, "seed": 7, "available": 38}
    assert cfg["reranker"]["batch_size"] == 8 and cfg["reranker"]["kind"] == "sequence-classification"
    assert cfg["corpus_embeddings"] == {"path": str(cache), "reused": False}
    assert out_png.read_bytes()[:8] == PNG_MAGIC
    assert cache.exists()

    # Same seed, same sample, same numbers; the saved corpus embeddings are reused.
    assert main(argv) == 0
    capsys.readouterr()
    again = json.loads(out_json.read_text(encoding="utf-8"))
    assert again["config"]["corpus_embeddings"]["reused"] is True
    assert again["retrieval"] == report["retrieval"] and again["reranked"] == report["reranked"]


def test_eval_sweep_table_json_and_both_plots(tmp_path, tiny_squad, tiny_args, capsys):
    out_json, out_png = tmp_path / "report.json", tmp_path / "hit.png"
    argv = ["eval", "--data", str(tiny_squad), *tiny_args, "--sweep", "6", "2", "4", "--rerank-k", "3",
            "--queries", "10", "--seed", "3", "--json-out", str(out_json), "--plot", str(out_png)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    report = json.loads(out_json.read_text(encoding="utf-8"))
    assert list(report) == ["retrieval", "reranked", "timing", "config", "sweep"]
    assert report["config"]["retrieve_k"] == 6 and report["config"]["sweep"] == [2, 4, 6]
    assert report["config"]["rerank_pairs"] == 60  # 10 questions x the largest k, scored once
    sweep = report["sweep"]
    assert [e["retrieve_k"] for e in sweep] == [2, 4, 6] and [e["rerank_pairs"] for e in sweep] == [20, 40, 60]
    assert sweep[-1]["hit@1"] == report["reranked"]["hit@1"]
    assert sweep[-1]["retrieval_recall"] == report["retrieval"]["recall@6"]

    lines = captured.out.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("retrieve_k sweep:")))
    assert lines[header + 1].split() == ["k", "recall@k", "hit@1", "hit@3", "hit@10", "mrr@10", "ndcg@10",
                                         "ms/query"]
    for entry, line in zip(sweep, lines[header + 4 : header + 7], strict=True):  # after the first-stage row
        assert line.split() == [str(entry["retrieve_k"]), f"{entry['retrieval_recall']:.4f}",
                                *(f"{entry[m]:.4f}" for m in ("hit@1", "hit@3", "hit@10", "mrr@10", "ndcg@10")),
                                f"{entry['ms_per_query']:.1f}"]
    best = max(e["mrr@10"] for e in sweep)
    expected_k = min(e["retrieve_k"] for e in sweep if e["mrr@10"] >= best - 0.005)
    assert lines[header + 7].startswith(f"recommended retrieve_k: {expected_k} ")

    sweep_png = tmp_path / "hit_sweep.png"
    for png in (out_png, sweep_png):
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000
    assert f"wrote the quality vs ms per query plot to {sweep_png}" in captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hit.png", "hit_sweep.png", "report.json"]


@pytest.mark.parametrize(("values", "message"), [
    (["5", "5"], "--sweep: sweep values must be distinct; repeated: 5"),
    (["5", "40"], "--sweep: sweep value 40 is larger than the corpus (19 documents); use values up to 19"),
    (["2", "4", "--retrieve-k", "30"], "--retrieve-k (30) must equal the largest --sweep value (4) or be left out"),
    (["2", "4", "--rerank-k", "5"], "--rerank-k (5) must not exceed the largest --sweep value (4)"),
])
def test_bad_sweep_values_exit_2_with_one_line(tiny_squad, tiny_args, capsys, values, message):
    line = assert_one_error(capsys, main(["eval", "--data", str(tiny_squad), *tiny_args, "--sweep", *values]),
                            expected_rc=2)
    assert line == f"{ERROR}{message}"


@pytest.mark.parametrize(("value", "message"), [
    ("0", "expected a positive integer, got 0"),
    ("-3", "expected a positive integer, got -3"),
    ("2.5", "expected a positive integer, got '2.5'"),
    ("ten", "expected a positive integer, got 'ten'"),
])
def test_sweep_values_that_are_not_positive_ints_are_usage_errors(value, message, capsys):
    assert main(["eval", "--data", "x.json", "--sweep", "5", value]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert errors == [f"rerank-plugins eval: error: argument --sweep: {message}"]


def test_eval_jsonl_layout(tmp_path, tiny_jsonl, tiny_args, capsys):
    queries, corpus = tiny_jsonl
    out_json = tmp_path / "r.json"
    rc = main(["eval", "--data", str(queries), "--corpus", str(corpus), "--format", "jsonl", *tiny_args,
               "--retrieve-k", "4", "--rerank-k", "2", "--ks", "1", "2", "--json-out", str(out_json)])
    assert rc == 0, capsys.readouterr().err
    capsys.readouterr()
    report = json.loads(out_json.read_text(encoding="utf-8"))
    assert report["config"]["data"]["format"] == "jsonl" and report["config"]["queries"] == 19
    assert list(report["reranked"]) == ["hit@1", "hit@2", "mrr@1", "mrr@2", "ndcg@1", "ndcg@2",
                                        "recall@1", "recall@2"]


def test_missing_data_file(tmp_path, tiny_args, capsys):
    missing = tmp_path / "nope.json"
    line = assert_one_error(capsys, main(["eval", "--data", str(missing), *tiny_args]))
    assert line == f"{ERROR}data file {str(missing)!r} does not exist"


def test_malformed_json_names_file_and_line(tmp_path, tiny_args, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": [\n  {"paragraphs": [\n    {"context": "x",}\n  ]}\n]}\n', encoding="utf-8")
    line = assert_one_error(capsys, main(["eval", "--data", str(bad), *tiny_args]))
    assert str(bad) in line and "invalid JSON at line 3" in line


def test_squad_missing_key_is_named(tmp_path, tiny_args, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "1"}]}]}]}), encoding="utf-8")
    line = assert_one_error(capsys, main(["eval", "--data", str(bad), *tiny_args]))
    assert line.endswith("data[0].paragraphs[0].qas[0]: missing key 'question'")


def test_malformed_jsonl_names_file_line_and_key(tmp_path, tiny_jsonl, tiny_args, capsys):
    _, corpus = tiny_jsonl
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"query": "a", "positives": ["doc-1"]}\n{"query": "b", "positive": ["doc-1"]}\n',
                       encoding="utf-8")
    line = assert_one_error(capsys, main(["eval", "--data", str(queries), "--corpus", str(corpus), *tiny_args]))
    assert line == f"{ERROR}{queries}, line 2: missing key 'positives'"

    queries.write_text('{"query": "a", "positives": ["doc-1"]\n', encoding="utf-8")
    line = assert_one_error(capsys, main(["eval", "--data", str(queries), "--corpus", str(corpus), *tiny_args]))
    assert f"{queries}, line 1: invalid JSON" in line

    line = assert_one_error(capsys, main(["eval", "--data", str(queries), *tiny_args]))
    assert "--corpus" in line


def test_corpus_with_squad_layout_is_refused(tiny_squad, tiny_jsonl, tiny_args, capsys):
    line = assert_one_error(capsys, main(["eval", "--data", str(tiny_squad), "--corpus", str(tiny_jsonl[1]),
                                          *tiny_args]))
    assert "jsonl format only" in line


def test_unloadable_reranker_fails_before_embedding(tmp_path, tiny_squad, tiny_bi_encoder, capsys):
    base = ["eval", "--data", str(tiny_squad), "--bi-encoder", str(tiny_bi_encoder), "--device", "cpu"]
    missing = tmp_path / "no-model"
    line = assert_one_error(capsys, main([*base, "--reranker", str(missing)]))
    assert line == f"{ERROR}--reranker: model directory {str(missing)!r} does not exist"

    empty = tmp_path / "empty-model"
    empty.mkdir()
    line = assert_one_error(capsys, main([*base, "--reranker", str(empty)]))
    assert str(empty) in line and "config.json" in line

    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"architectures": ["BertForSequenceClassification"],
                                                    "model_type": "bert"}), encoding="utf-8")
    line = assert_one_error(capsys, main([*base, "--reranker", str(broken)]))
    assert str(broken) in line and "could not load" in line


def test_unloadable_bi_encoder(tmp_path, tiny_squad, tiny_bert, capsys):
    missing = tmp_path / "no-bi"
    line = assert_one_error(capsys, main(["eval", "--data", str(tiny_squad), "--reranker", str(tiny_bert),
                                          "--bi-encoder", str(missing), "--device", "cpu"]))
    assert line.startswith(f"{ERROR}--bi-encoder:") and str(missing) in line


def test_bad_k_and_output_paths_exit_2(tmp_path, tiny_squad, tiny_args, capsys):
    line = assert_one_error(capsys, main(["eval", "--data", str(tiny_squad), *tiny_args, "--retrieve-k", "5",
                                          "--rerank-k", "6"]), expected_rc=2)
    assert line == f"{ERROR}--rerank-k (6) must not exceed --retrieve-k (5)"
    out = tmp_path / "no" / "such" / "dir" / "r.json"
    line = assert_one_error(capsys, main(["eval", "--data", str(tiny_squad), *tiny_args, "--json-out", str(out)]),
                            expected_rc=2)
    assert "--json-out" in line and "does not exist" in line


def test_default_hub_reranker_offline_fails_with_one_line(tmp_path):
    """The default reranker is a hub name; without the hub it must fail fast, in one line, exit 1."""
    exe = shutil.which("rerank-plugins") or str(Path(sys.executable).parent / "rerank-plugins")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run([exe, "eval", "--data", str(EXAMPLE), "--queries", "5"], capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 1, proc.stderr
    errors = error_lines(proc.stderr)
    assert len(errors) == 1 and DEFAULT_RERANKER in errors[0] and "local model directory" in errors[0]
    assert "Traceback" not in proc.stderr and "Retrying" not in proc.stderr
    assert proc.stdout == ""


# --------------------------------------------------------------------------- score


def test_score_prints_json_in_input_order(tiny_cross_encoder, capsys):
    passages = ["Paris is the capital and most populous city of France.", "Kimchi is food.", "Water boils."]
    rc = main(["score", "--reranker", str(tiny_cross_encoder), "--device", "cpu", "--query",
               "capital of France?", *passages])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["query"] == "capital of France?" and out["normalize"] == "sigmoid"
    assert [r["index"] for r in out["results"]] == [0, 1, 2]
    assert [r["text"] for r in out["results"]] == passages
    expected = Reranker(tiny_cross_encoder, device="cpu").score("capital of France?", passages)
    assert [r["score"] for r in out["results"]] == pytest.approx(expected, abs=1e-5)

    rc = main(["score", "--reranker", str(tiny_cross_encoder), "--device", "cpu", "--normalize", "none",
               "--top-n", "2", "--query", "capital of France?", *passages])
    assert rc == 0
    top = json.loads(capsys.readouterr().out)["results"]
    assert len(top) == 2 and top[0]["score"] >= top[1]["score"] and top[0]["score"] == top[0]["logit"]
    best = max(range(3), key=lambda i: expected[i])
    assert top[0]["index"] == best


def test_score_reads_passages_from_stdin(tiny_xlmr, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("서울은 대한민국의 수도이다.\n\n김치는 음식이다.\n"))
    rc = main(["score", "--reranker", str(tiny_xlmr), "--device", "cpu", "--sort", "--query", "한국의 수도는?"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "서울은" in out  # UTF-8 kept, not escaped
    results = json.loads(out)["results"]
    assert sorted(r["text"] for r in results) == ["김치는 음식이다.", "서울은 대한민국의 수도이다."]
    assert results[0]["score"] >= results[1]["score"]

    monkeypatch.setattr(sys, "stdin", io.StringIO("\n  \n"))
    line = assert_one_error(capsys, main(["score", "--reranker", str(tiny_xlmr), "--query", "q", "-"]))
    assert "stdin held no non-blank lines" in line


def test_score_errors(tmp_path, capsys, monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stdin", Tty(""))
    line = assert_one_error(capsys, main(["score", "--reranker", str(tmp_path), "--query", "q"]))
    assert "no passages" in line
    line = assert_one_error(capsys, main(["score", "--reranker", str(tmp_path / "x"), "--query", "q", "p"]))
    assert "does not exist" in line


# --------------------------------------------------------------------------- hostile input and outputs


def test_output_flags_naming_one_file_are_refused(tmp_path, tiny_squad, tiny_args, capsys):
    """Before: --json-out X --plot X silently overwrote the report with the PNG after the whole run."""
    same = tmp_path / "out.json"
    line = assert_one_error(capsys, main(["eval", "--data", str(tiny_squad), *tiny_args, "--json-out", str(same),
                                          "--plot", str(same)]), expected_rc=2)
    assert line == f"{ERROR}--json-out and --plot name the same file {str(same)!r}"
    data = tmp_path / "data.json"
    shutil.copy(tiny_squad, data)
    line = assert_one_error(capsys, main(["eval", "--data", str(data), *tiny_args, "--json-out", str(data)]),
                            expected_rc=2)
    assert "--data and --json-out name the same file" in line
    assert not same.exists() and data.read_bytes() == tiny_squad.read_bytes()


@pytest.mark.parametrize("flag", ["--json-out", "--plot", "--embeddings"])
def test_unwritable_outputs_fail_before_the_run(flag, tiny_squad, tiny_args, capsys, monkeypatch):
    """Before: an unwritable target passed the early check and failed after the whole run
    (for --embeddings naming a temporary file the user never gave)."""
    target = Path("/proc") / "rerank-plugins-out.bin"  # /proc takes no new files, even for root
    monkeypatch.setattr("rerank_plugins.evaluation.evaluate", lambda *a, **k: pytest.fail("the run started"))
    line = assert_one_error(capsys, main(["eval", "--data", str(tiny_squad), *tiny_args, flag, str(target)]),
                            expected_rc=2)
    assert line.startswith(f"{ERROR}{flag}: cannot write {target}")
    assert ".tmp" not in line


def test_invalid_utf8_on_stdin_names_the_line(tiny_xlmr, capsys, monkeypatch):
    """Before: bytes decoded with surrogateescape reached the tokenizer: "TextInputSequence must be str"."""
    stdin = io.TextIOWrapper(io.BytesIO(b"first passage\nsecond \xff passage\n"), encoding="utf-8",
                             errors="surrogateescape")
    monkeypatch.setattr(sys, "stdin", stdin)
    line = assert_one_error(capsys, main(["score", "--reranker", str(tiny_xlmr), "--device", "cpu", "--query", "q"]))
    assert line == f"{ERROR}stdin, line 2: not UTF-8 text (byte 0xff at offset 21)"
    monkeypatch.setattr(sys, "stdin", io.StringIO("ok\nbad \udcff\n"))  # a text stream that decoded leniently
    line = assert_one_error(capsys, main(["score", "--reranker", str(tiny_xlmr), "--device", "cpu", "--query", "q"]))
    assert line.startswith(f"{ERROR}stdin, line 2: not UTF-8 text")


def test_undecodable_arguments_name_the_argument(tiny_xlmr, capsys):
    line = assert_one_error(capsys, main(["score", "--reranker", str(tiny_xlmr), "--device", "cpu",
                                          "--query", "q\udcff", "passage"]))
    assert "--query contains a lone surrogate" in line
    line = assert_one_error(capsys, main(["score", "--reranker", str(tiny_xlmr), "--device", "cpu",
                                          "--query", "q", "ok", "b\udcffad"]))
    assert "passage 1 contains a lone surrogate '\\udcff' at character 1" in line


def test_squad_file_with_an_escaped_lone_surrogate_names_file_and_key(tmp_path, tiny_args, capsys):
    """Before: a valid JSON escape "\\ud83d" ended eval inside the tokenizer, naming neither file nor key."""
    data = tmp_path / "squad.json"
    data.write_text('{"data": [{"paragraphs": [{"context": "A paragraph.", "qas": '
                    '[{"id": "q1", "question": "Why \\ud83d?"}]}]}]}', encoding="utf-8")
    line = assert_one_error(capsys, main(["eval", "--data", str(data), *tiny_args]))
    assert line == (f"{ERROR}{data}: data[0].paragraphs[0].qas[0]: key 'question': lone surrogate '\\ud83d' "
                    "at character 4 (not valid Unicode text)")


def test_folder_without_tokenizer_exits_1_in_one_line(tmp_path, tiny_bert, capsys):
    """Before: the command scored with an empty tokenizer and exited 0."""
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_bert / name, tmp_path / name)
    line = assert_one_error(capsys, main(["score", "--reranker", str(tmp_path), "--device", "cpu", "--query", "q",
                                          "passage"]))
    assert str(tmp_path) in line and "no tokenizer files" in line


def test_score_prints_the_best_windows_span_and_takes_overflow(tiny_xlmr, capsys):
    long_passage = "Paris is the capital and most populous city of France. " * 12
    args = ["score", "--reranker", str(tiny_xlmr), "--device", "cpu", "--max-length", "64", "--stride", "16",
            "--query", "capital of France?", long_passage, "Kimchi is food."]
    assert main(args) == 0
    windowed = json.loads(capsys.readouterr().out)["results"]
    assert windowed[0]["windows"] > 1 and windowed[0]["truncated"] is False
    a, b = windowed[0]["span"]
    assert 0 <= a < b <= len(long_passage)
    assert windowed[1]["windows"] == 1 and windowed[1]["span"] == [0, len("Kimchi is food.")]
    assert main([*args, "--overflow", "truncate"]) == 0
    truncated = json.loads(capsys.readouterr().out)["results"]
    assert truncated[0]["windows"] == 1 and truncated[0]["truncated"] is True
    assert main([*args, "--overflow", "cut"]) == 2
    assert "invalid choice: 'cut'" in capsys.readouterr().err


def test_a_pair_that_cannot_fit_in_memory_is_one_line_naming_the_flags(tiny_xlmr, capsys, monkeypatch):
    """Before: "unexpected RuntimeError" from inside the model; now one line naming what to change."""
    from rerank_plugins.backends.sequence_classification import SequenceClassificationBackend

    def no_memory(self, rows, options=None):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 999 bytes")

    monkeypatch.setattr(SequenceClassificationBackend, "forward", no_memory)
    rc = main(["score", "--reranker", str(tiny_xlmr), "--device", "cpu", "--query", "q", "a passage", "another"])
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len([line for line in err if "error:" in line]) == 1
    assert "does not fit in memory even alone" in err[-1] and "--batch-size 1" in err[-1] and "--max-length" in err[-1]
