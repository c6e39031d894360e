"""``rerank-plugins bulk`` in this process: parity with the Reranker, formats, chunking, errors, atomic output."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import rerank_plugins.bulk as bulk
from rerank_plugins import Reranker
from rerank_plugins.bulk import rerank_file, score_rows
from rerank_plugins.cli import main

ERROR = "rerank-plugins: error: "

ROWS = [
    {"id": "a", "query": "What is the capital of France?", "documents": [
        "Paris is the capital and most populous city of France.", "Water boils at one hundred degrees Celsius.",
        "The quick brown fox jumps over the lazy dog near the river bank."], "lang": "en"},
    {"id": 7, "query": "한국의 수도는?",
     "documents": ["서울은 대한민국의 수도이며 가장 큰 도시이다.", "제주도는 화산섬으로 한라산이 있다."]},
    {"query": "no id and no documents", "documents": []},
    {"id": "d", "query": "photosynthesis", "documents": [
        "Photosynthesis converts light energy into chemical energy in plants. " * 30, "A cross-encoder reads.",
        "Neural networks learn representations.", "The Amazon rainforest covers much of the basin.",
        "Reranking reorders retrieved passages."], "meta": {"source": "x", "n": 3}},
    {"id": "e", "query": "oil crisis 1973",
     "documents": ["The oil crisis of 1973 began when OPEC proclaimed an embargo."]},
]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def reference(reranker: Reranker, rows: list[dict]) -> list[list[float]]:
    """One query at a time through the public ``score``."""
    return [reranker.score(r["query"], r["documents"]) for r in rows]


def assert_scored(out_rows: list[dict], rows: list[dict], ref: list[list[float]], top_n: int | None = None):
    assert len(out_rows) == len(rows)
    for out, row, expected in zip(out_rows, rows, ref, strict=True):
        assert {k: v for k, v in out.items() if k not in ("scores", "ranking")} == row  # every field kept
        assert len(out["scores"]) == len(row["documents"])
        assert out["scores"] == pytest.approx(expected, abs=1e-5)
        order = sorted(range(len(expected)), key=lambda i: -expected[i])
        assert out["ranking"] == order[:top_n]


@pytest.fixture(scope="module")
def reranker(tiny_bert) -> Reranker:
    return Reranker(tiny_bert, device="cpu")


@pytest.fixture()
def cli_args(tiny_bert) -> list[str]:
    return ["--reranker", str(tiny_bert), "--device", "cpu", "--no-progress"]


def test_jsonl_scores_equal_the_reranker_across_chunks(tmp_path, reranker, cli_args, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", ROWS)
    out = tmp_path / "out.jsonl"
    rc = main(["bulk", "--input", str(src), "--output", str(out), "--chunk-rows", "2", *cli_args])
    assert rc == 0, capsys.readouterr().err
    assert_scored(read_jsonl(out), ROWS, reference(reranker, ROWS))
    assert "wrote 5 rows (11 pairs)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]


def test_top_n_cuts_the_ranking_not_the_scores(tmp_path, tiny_bert, cli_args):
    reranker = Reranker(tiny_bert, device="cpu", normalize="softmax")
    src = write_jsonl(tmp_path / "in.jsonl", ROWS)
    out = tmp_path / "out.jsonl"
    assert main(["bulk", "--input", str(src), "--output", str(out), "--top-n", "2", "--normalize", "softmax",
                 *cli_args]) == 0
    out_rows = read_jsonl(out)
    assert_scored(out_rows, ROWS, reference(reranker, ROWS), top_n=2)
    assert [len(r["ranking"]) for r in out_rows] == [2, 2, 0, 2, 1]
    assert sum(out_rows[0]["scores"]) == pytest.approx(1.0, abs=1e-6)  # softmax over the row's documents


def test_parquet_in_and_out_keeps_column_types(tmp_path, reranker):
    rows = [dict(r, id=i, lang="x") for i, r in enumerate(ROWS)]
    for r in rows:
        r.pop("meta", None)
    table = pa.Table.from_pylist(rows).cast(pa.schema([
        ("id", pa.int32()), ("query", pa.string()), ("documents", pa.list_(pa.string())), ("lang", pa.string()),
    ]))
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=2)
    summary = rerank_file(tmp_path / "in.parquet", tmp_path / "out.parquet", reranker, chunk_rows=2)
    assert (summary.rows, summary.pairs) == (5, 11)
    result = pq.read_table(tmp_path / "out.parquet")
    assert result.schema.field("id").type == pa.int32()
    assert result.schema.field("scores").type == pa.list_(pa.float64())
    assert result.schema.field("ranking").type == pa.list_(pa.int64())
    assert_scored(result.to_pylist(), rows, reference(reranker, rows))


def test_jsonl_to_parquet_and_parquet_to_jsonl(tmp_path, reranker):
    ref = reference(reranker, ROWS)
    string_ids = [dict(r, id=str(r["id"])) if "id" in r else r for r in ROWS]
    rerank_file(write_jsonl(tmp_path / "in.jsonl", string_ids), tmp_path / "mid.parquet", reranker, chunk_rows=10)
    mid = pq.read_table(tmp_path / "mid.parquet").to_pylist()
    for row, expected in zip(mid, ref, strict=True):
        assert row["scores"] == pytest.approx(expected, abs=1e-5)
    assert mid[3]["meta"] == {"source": "x", "n": 3}

    rows = [{"id": i, "query": r["query"], "documents": r["documents"]} for i, r in enumerate(ROWS)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    rerank_file(tmp_path / "in.parquet", tmp_path / "out.jsonl", reranker, top_n=1)
    assert_scored(read_jsonl(tmp_path / "out.jsonl"), rows, ref, top_n=1)


def test_jsonl_to_parquet_refuses_rows_without_one_schema(tmp_path, reranker):
    rows = [{"query": "q", "documents": ["a"]}, {"query": "q", "documents": ["b"], "late": 1}]
    with pytest.raises(bulk.DataFormatError, match="field 'late' first appears after the first chunk"):
        rerank_file(write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out.parquet", reranker, chunk_rows=1)
    with pytest.raises(bulk.DataFormatError, match="rows 1 to 5 do not fit one Parquet schema"):
        rerank_file(write_jsonl(tmp_path / "in.jsonl", ROWS), tmp_path / "out.parquet", reranker)  # id: str and int
    assert list(tmp_path.iterdir()) == [tmp_path / "in.jsonl"]


def test_memory_is_bounded_by_the_chunk_and_output_streams(tmp_path, reranker, monkeypatch):
    rows = [{"id": i, "query": f"query {i}", "documents": ["a passage", "another passage"]} for i in range(10)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    seen: list[tuple[int, int]] = []  # (rows in this call, rows already in the temporary output)

    def spy(reranker_, queries, documents, *, top_n=None):
        tmp = [p for p in tmp_path.iterdir() if p.name.startswith(".out.jsonl.")]
        assert len(tmp) == 1 and not out.exists()
        seen.append((len(queries), len(tmp[0].read_text().splitlines())))
        return score_rows(reranker_, queries, documents, top_n=top_n)

    monkeypatch.setattr(bulk, "score_rows", spy)
    rerank_file(src, out, reranker, chunk_rows=3)
    assert seen == [(3, 0), (3, 3), (3, 6), (1, 9)]
    assert [r["id"] for r in read_jsonl(out)] == list(range(10))


def test_interrupted_run_leaves_no_partial_output(tmp_path, cli_args, monkeypatch, capsys):
    rows = [{"id": i, "query": "q", "documents": ["a", "b"]} for i in range(6)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    out.write_text("the previous result\n")
    calls = []

    def interrupted(reranker_, queries, documents, *, top_n=None):
        calls.append(len(queries))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return score_rows(reranker_, queries, documents, top_n=top_n)

    monkeypatch.setattr(bulk, "score_rows", interrupted)
    rc = main(["bulk", "--input", str(src), "--output", str(out), "--chunk-rows", "2", *cli_args])
    assert rc == 130 and calls == [2, 2]
    assert "interrupted" in capsys.readouterr().err
    assert out.read_text() == "the previous result\n"  # untouched, and no half-written twin left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"query": "q", "documents": ["a"]', "in.jsonl, line 3: invalid JSON: Expecting ',' delimiter"),
        ('["q", ["a"]]', "in.jsonl, line 3: expected a JSON object, got a list"),
        ('{"documents": ["a"]}', "in.jsonl, line 3: missing key 'query'"),
        ('{"query": "q"}', "in.jsonl, line 3: missing key 'documents'"),
        ('{"query": 5, "documents": ["a"]}', "in.jsonl, line 3: 'query' must be a string, got a number"),
        ('{"query": "q", "documents": "a"}', "in.jsonl, line 3: 'documents' must be a list of strings, got a string"),
        ('{"query": "q", "documents": ["a", null]}', "in.jsonl, line 3: documents[1] must be a string, got null"),
        ('{"query": "q", "documents": [], "scores": [1]}', "in.jsonl, line 3: the row already has a 'scores' field"),
    ],
)
def test_malformed_row_is_one_error_naming_its_line(tmp_path, cli_args, capsys, line, message):
    src = tmp_path / "in.jsonl"
    src.write_text('{"query": "q", "documents": ["a"]}\n\n' + line + "\n", encoding="utf-8")  # line 2 is blank
    out = tmp_path / "out.jsonl"
    rc = main(["bulk", "--input", str(src), "--output", str(out), *cli_args])
    err = capsys.readouterr().err
    assert rc == 1
    errors = [x for x in err.splitlines() if x.startswith(ERROR)]
    assert len(errors) == 1 and message in errors[0], err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == [src]


def test_malformed_parquet_row_names_the_row(tmp_path, reranker):
    pq.write_table(pa.table({"query": ["q", None], "documents": [["a"], ["b"]]}), tmp_path / "in.parquet")
    with pytest.raises(bulk.DataFormatError, match=r"in.parquet, row 1: 'query' must be a string, got null"):
        rerank_file(tmp_path / "in.parquet", tmp_path / "out.parquet", reranker)
    pq.write_table(pa.table({"question": ["q"], "documents": [["a"]]}), tmp_path / "bad.parquet")
    with pytest.raises(bulk.DataFormatError, match="bad.parquet: missing column 'query'"):
        rerank_file(tmp_path / "bad.parquet", tmp_path / "out.parquet", reranker)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.parquet", "in.parquet"]


def test_bad_arguments(tmp_path, cli_args, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", ROWS[:1])
    cases = [
        (["--input", str(src), "--output", str(tmp_path / "out.csv")], 1, "cannot tell the format from the suffix"),
        (["--input", str(tmp_path / "none.jsonl"), "--output", str(tmp_path / "o.jsonl")], 1, "does not exist"),
        (["--input", str(src), "--output", str(src)], 1, "is the input file"),
        (["--input", str(src), "--output", str(tmp_path / "o.jsonl"), "--concurrency", "2"], 2,
         "--concurrency and --num-gpus apply to --ray runs only"),
        (["--input", str(src), "--output", str(tmp_path / "no-dir" / "o.jsonl")], 2, "does not exist"),
    ]
    for argv, code, message in cases:
        assert main(["bulk", *argv, *cli_args]) == code, argv
        err = capsys.readouterr().err
        assert err.startswith(ERROR) and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]
    with pytest.raises(ValueError, match="chunk_rows must be a positive int"):
        rerank_file(src, tmp_path / "o.jsonl", Reranker.__new__(Reranker), chunk_rows=0)


def test_empty_input_gives_an_empty_output(tmp_path, reranker):
    src = tmp_path / "in.jsonl"
    src.write_text("\n")
    assert rerank_file(src, tmp_path / "out.jsonl", reranker).rows == 0
    assert (tmp_path / "out.jsonl").read_text() == ""
    assert rerank_file(src, tmp_path / "out.parquet", reranker).rows == 0
    assert pq.read_table(tmp_path / "out.parquet").num_rows == 0
