"""Property-based tests for the word and BPE tokenizers and the record (lines, CSV) readers.

Arbitrary input gives a correct result or a clear WeftError: never a crash, never silent loss.
"""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from weft.data.records import RecordBatches, read_csv_records, read_line_records
from weft.errors import WeftError
from weft.tokenizers import RECORD_SPECIALS, BPETokenizer, WordTokenizer, tokenizer_from_dict

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
ANY_TEXT = st.text(st.characters(codec=None, categories=None), max_size=120)
# What a decoded file can hold: any code point but lone surrogates (not valid UTF-8).
FILE_TEXT = st.text(st.characters(codec="utf-8"), max_size=120)


@FUZZ
@given(ANY_TEXT, ANY_TEXT)
def test_word_tokenizer_never_crashes_and_ids_are_in_range(train: str, text: str) -> None:
    tokenizer = WordTokenizer.train([train], max_vocab=50)
    ids = tokenizer.encode(text)
    assert ids.dtype.kind == "u" and (ids < tokenizer.vocab_size).all()
    assert isinstance(tokenizer.decode(ids), str)
    again = tokenizer_from_dict(tokenizer.to_dict())
    assert again.encode(text).tolist() == ids.tolist()


@FUZZ
@given(FILE_TEXT)
def test_word_tokenizer_keeps_every_word_it_knows(text: str) -> None:
    tokenizer = WordTokenizer.train([text])
    ids = tokenizer.encode(text)
    assert tokenizer.unk_id not in ids.tolist()  # trained on it: nothing is unknown


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    text = "The quick brown fox jumps over the lazy dog. Ünïcödé, 日本語, emoji 🦊.\n" * 20
    return BPETokenizer.train([text], vocab_size=300, specials=RECORD_SPECIALS)


@FUZZ
@given(FILE_TEXT)
def test_byte_level_bpe_round_trips_any_text(bpe: BPETokenizer, text: str) -> None:
    ids = bpe.encode(text)
    assert (ids < bpe.vocab_size).all()
    assert bpe.decode(ids) == text


@FUZZ
@given(ANY_TEXT)
@example("\ud800")  # found by this test: the Rust tokenizer raised TypeError
def test_bpe_with_lone_surrogates_is_an_answer_or_a_clear_error(bpe: BPETokenizer,
                                                                 text: str) -> None:
    # Such strings reach weft only through prompts (surrogate-escaped command-line bytes).
    try:
        ids = bpe.encode(text)
    except WeftError:
        return
    assert (ids < bpe.vocab_size).all()


@FUZZ
@given(FILE_TEXT)
def test_line_records_are_the_stripped_non_empty_lines(text: str) -> None:
    read = read_line_records(text)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    assert read.records == [line.strip() for line in lines if line.strip()]
    assert read.empty + len(read.records) == len(lines)


@FUZZ
@given(st.lists(st.lists(FILE_TEXT.filter(lambda t: "\x00" not in t), min_size=2, max_size=2),
                max_size=8), st.sampled_from([(csv.QUOTE_MINIMAL, "\r\n"), (csv.QUOTE_ALL, "\n")]))
def test_csv_fields_come_back_exactly(rows: list[list[str]], style: tuple[int, str]) -> None:
    # Fields are quoted as RFC 4180 asks. (Python's writer with lineterminator="\n" leaves a
    # lone CR inside a field unquoted; every CSV reader, Python's included, takes that CR for
    # a line break, so such files cannot be read back as written.)
    quoting, newline = style
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=newline, quoting=quoting)
    writer.writerow(["id", "text"])
    writer.writerows(rows)
    # decode_text turns CRLF (and lone CR) into LF before the reader sees the file.
    data = buffer.getvalue().replace("\r\n", "\n").replace("\r", "\n")
    read = read_csv_records(data, "text", "fuzz.csv")
    expected = [row[1].replace("\r\n", "\n").replace("\r", "\n").strip() for row in rows]
    assert read.records == [value for value in expected if value]
    assert read.empty == sum(1 for value in expected if not value)


@FUZZ
@given(FILE_TEXT, st.sampled_from(["text", "Text", "missing", ""]))
def test_any_text_as_csv_is_records_or_a_clear_error(text: str, column: str) -> None:
    try:
        read = read_csv_records(text, column, "fuzz.csv")
    except WeftError as exc:
        assert "fuzz.csv" in str(exc)
        return
    assert all(record and record == record.strip() for record in read.records)


@FUZZ
@given(st.lists(FILE_TEXT.filter(str.strip), min_size=1, max_size=12),
       st.integers(1, 5), st.integers(2, 12))
def test_record_batches_cover_every_record_once_per_epoch(records: list[str], batch_size: int,
                                                          max_len: int) -> None:
    tokenizer = WordTokenizer.train(records, specials=("<unk>", *RECORD_SPECIALS))
    try:
        batches = RecordBatches.from_texts(records, tokenizer, batch_size=batch_size,
                                           max_len=max_len, seed=0)
    except WeftError:
        return  # e.g. a record that tokenizes to nothing
    rows = np.concatenate(batches.batch_indices(0))
    assert sorted(rows.tolist()) == list(range(batches.num_rows))
    for index in batches.batch_indices(1):
        inputs, targets = batches.make_batch(index)
        assert inputs.shape == targets.shape and inputs.shape[0] == len(index)
        assert inputs.shape[1] <= max_len
