"""Corpus loading: the three formats, and an error a user can act on for each broken input."""

from __future__ import annotations

import csv
import json

import pytest

from crossrank.errors import InputError
from crossrank.retrieval import Corpus, load_corpus

RECORDS = [
    {"id": "a", "title": "Bears", "text": "a bear in the woods", "year": 2001},
    {"id": "b", "title": "Boats", "text": "a boat at sea", "year": 1999},
]


def _write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_jsonl_csv_and_parquet_load_the_same_documents(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    jsonl = _write_jsonl(tmp_path / "c.jsonl", RECORDS)
    with (tmp_path / "c.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "title", "text", "year"])
        writer.writeheader()
        writer.writerows(RECORDS)
    pq.write_table(pa.Table.from_pylist(RECORDS), tmp_path / "c.parquet")
    loaded = [load_corpus(p) for p in (jsonl, tmp_path / "c.csv", tmp_path / "c.parquet")]
    for corpus in loaded:
        assert corpus.ids == ["a", "b"]
        assert corpus.texts(["title", "text"]) == ["Bears\na bear in the woods", "Boats\na boat at sea"]
        assert corpus.position("b") == 1


def test_beir_style_underscore_id_is_found(tmp_path):
    corpus = load_corpus(_write_jsonl(tmp_path / "corpus.jsonl", [{"_id": "7", "text": "x"}]))
    assert corpus.ids == ["7"] and corpus.id_field == "_id"


def test_missing_id_names_the_record(tmp_path):
    path = _write_jsonl(tmp_path / "c.jsonl", [{"id": "a", "text": "x"}, {"text": "no id"}])
    with pytest.raises(InputError, match="record 2 has no 'id'"):
        load_corpus(path)


def test_no_id_field_at_all(tmp_path):
    with pytest.raises(InputError, match="no id field"):
        load_corpus(_write_jsonl(tmp_path / "c.jsonl", [{"text": "x"}]))


def test_duplicate_ids_name_both_records(tmp_path):
    path = _write_jsonl(tmp_path / "c.jsonl", [{"id": "a", "text": "x"}, {"id": "b", "text": "y"},
                                               {"id": "a", "text": "z"}])
    with pytest.raises(InputError, match=r"duplicate id 'a' \(records 1 and 3\)"):
        load_corpus(path)


def test_empty_corpus(tmp_path):
    (tmp_path / "c.jsonl").write_text("\n\n")
    with pytest.raises(InputError, match="empty"):
        load_corpus(tmp_path / "c.jsonl")


def test_missing_field_lists_the_fields_there_are():
    corpus = Corpus.from_records(RECORDS)
    with pytest.raises(InputError, match="no field 'body'.*title, text, year"):
        corpus.texts(["title", "body"])


def test_document_without_the_fields_gets_empty_text(caplog):
    corpus = Corpus.from_records([*RECORDS, {"id": "c", "title": "", "text": None}])
    assert corpus.texts(["title", "text"])[2] == ""
    assert "none of the fields" in caplog.text


def test_bad_json_line_and_unknown_extension(tmp_path):
    (tmp_path / "c.jsonl").write_text('{"id": "a"}\n{oops\n')
    with pytest.raises(InputError, match=r"c.jsonl:2 is not valid JSON"):
        load_corpus(tmp_path / "c.jsonl")
    (tmp_path / "c.txt").write_text("x")
    with pytest.raises(InputError, match="cannot tell the format"):
        load_corpus(tmp_path / "c.txt")
    with pytest.raises(InputError, match="does not exist"):
        load_corpus(tmp_path / "nope.jsonl")


def test_invalid_utf8_bytes_are_replaced_not_fatal(tmp_path):
    (tmp_path / "c.jsonl").write_bytes(b'{"id": "a", "text": "bear \xff cub"}\n')
    (tmp_path / "c.csv").write_bytes(b"id,text\na,bear \xff cub\n")
    for name in ("c.jsonl", "c.csv"):
        assert load_corpus(tmp_path / name).text_at(0, ["text"]) == "bear \ufffd cub"


def test_files_that_start_with_a_byte_order_mark(tmp_path):
    """Excel and Windows tools write a UTF-8 BOM: it is not part of the first field's name or the JSON."""
    (tmp_path / "c.csv").write_bytes(b"\xef\xbb\xbfid,title,text\n1,Bears,family movie\n")
    (tmp_path / "c.jsonl").write_bytes(b'\xef\xbb\xbf{"id": "1", "title": "Bears", "text": "family movie"}\n')
    for name in ("c.csv", "c.jsonl"):
        corpus = load_corpus(tmp_path / name)
        assert corpus.ids == ["1"] and corpus.documents[0]["title"] == "Bears"


def test_stray_quotes_never_merge_rows(tmp_path):
    """A text that starts with a quote (MS MARCO's TSVs have them) must not swallow the rows after it."""
    for end in ('4\tfourth "quoted"\n', '4\tfourth quoted"\n', "4\tfourth\n"):  # closed mid-cell, at an end, never
        (tmp_path / "q.tsv").write_text('id\ttext\n1\tplain\n2\t"Hello, he said. A long passage\n3\tthird\n' + end)
        corpus = load_corpus(tmp_path / "q.tsv")
        assert corpus.ids == ["1", "2", "3", "4"], end
        assert [d["text"] for d in corpus.documents][:3] == ["plain", '"Hello, he said. A long passage', "third"]
    # pandas quotes a TSV cell holding a tab, a newline or a quote: read as it wrote them.
    import pandas as pd

    texts = ["one\ttab inside", "two\nlines", 'say "hi"', "plain"]
    pd.DataFrame({"id": ["a", "b", "c", "d"], "text": texts}).to_csv(tmp_path / "p.tsv", sep="\t", index=False)
    assert [d["text"] for d in load_corpus(tmp_path / "p.tsv").documents] == texts
    # A stray opening quote and a closing one in the same column of adjacent rows: valid quoted TSV that
    # joins two documents; one row a line wins.
    (tmp_path / "t.tsv").write_text('id\ttitle\ttext\nd1\t"Hello\tfirst body\nd2\tPan 12"\tsecond body\n'
                                    'd3\tLid\tthird\n')
    corpus = load_corpus(tmp_path / "t.tsv")
    assert corpus.ids == ["d1", "d2", "d3"] and corpus.documents[1]["title"] == 'Pan 12"'
    # A short line (a passage written without its tab) outside any quoted cell does not make it quoted.
    (tmp_path / "s.tsv").write_text('id\ttext\n1\t"Quoted start\n2\tplain\n3\tends with quote"\n4\n5\tlast\n')
    assert load_corpus(tmp_path / "s.tsv").ids == ["1", "2", "3", "4", "5"]
    # ...nor does one inside the stray quote's span; a real multi-line cell followed by a short row reads quoted.
    (tmp_path / "s.tsv").write_text('id\ttext\n1\t"Quoted start\n2\tplain\n3\n4\tends with quote"\n5\tlast\n')
    assert load_corpus(tmp_path / "s.tsv").ids == ["1", "2", "3", "4", "5"]
    (tmp_path / "m.tsv").write_text('id\ttext\na\t"line1\nline2"\nb\n')
    corpus = load_corpus(tmp_path / "m.tsv")
    assert corpus.ids == ["a", "b"] and corpus.documents[0]["text"] == "line1\nline2"

    for body, line in [('id,text\n1,"Bears, a film\n2,second\n3,third\n', 2),           # never closed
                       ('id,text\n0,fine\n1,"Bears, a film\n2,second "quoted" text\n', 3)]:    # closed mid-cell
        (tmp_path / "q.csv").write_text(body)
        with pytest.raises(InputError, match=rf"q.csv:{line}: not valid CSV from this line on"):
            load_corpus(tmp_path / "q.csv")
    (tmp_path / "ok.csv").write_text('id,text\n1,"a text, with a comma\nand a line break"\n2,"say ""hi"""\n')
    assert [d["text"] for d in load_corpus(tmp_path / "ok.csv").documents] == [
        "a text, with a comma\nand a line break", 'say "hi"']


def test_csv_cells_longer_than_pythons_default_limit(tmp_path):
    long = "word " * 40_000  # 200,000 characters: csv's default cell limit is 131,072
    with (tmp_path / "long.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["id", "text"], ["1", long]])
    assert load_corpus(tmp_path / "long.csv").documents[0]["text"] == long
