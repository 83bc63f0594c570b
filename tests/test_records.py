"""Record readers (lines, CSV) and padded record batches."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from tests.shared_data import shared_file
from weft.data.corpus import read_text
from weft.data.records import (
    IGNORE_INDEX,
    RecordBatches,
    read_csv_records,
    read_line_records,
    read_records,
    split_records,
)
from weft.errors import WeftError
from weft.tokenizers import RECORD_SPECIALS, build_tokenizer


def test_line_records_skip_blank_lines() -> None:
    read = read_line_records("first tweet\n\n  second  \n   \nthird")
    assert read.records == ["first tweet", "second", "third"]
    assert read.empty == 2


def test_csv_quoted_fields_embedded_newlines_and_empties() -> None:
    text = (
        'ID,Joke,Extra\n'
        '1,"Hello, world",x\n'
        '2,"She said ""hi""\nthen left",y\n'
        '3,,z\n'
        '4,"   ",z\n'
        '5\n'
        '6,plain,w\n'
    )
    read = read_csv_records(text, "Joke")
    assert read.records == ["Hello, world", 'She said "hi"\nthen left', "plain"]
    assert read.empty == 3
    assert read_csv_records(text, "joke").records == read.records  # case-insensitive fallback


def test_csv_missing_column_lists_available() -> None:
    with pytest.raises(WeftError, match=r"no column 'Text'.*'ID', 'Joke'"):
        read_csv_records("ID,Joke\n1,a\n", "Text", "jokes.csv")
    with pytest.raises(WeftError, match="none: the file is empty"):
        read_csv_records("", "Joke")


def test_csv_very_long_field() -> None:
    long = "word " * 60_000  # beyond the csv module's default 128 KiB field limit
    read = read_csv_records(f'a,b\n1,"{long}"\n', "b")
    assert read.records == [long.strip()]


def test_jokes_csv_with_crlf() -> None:
    text = read_text(shared_file("jokes/reddit-cleanjokes.csv"))
    read = read_records("reddit-cleanjokes.csv", text, csv_column="Joke")
    assert len(read.records) > 1500
    assert read.records[0].startswith("What did the bartender say")
    assert all("\r" not in r for r in read.records)


def test_unknown_mode_and_split() -> None:
    with pytest.raises(WeftError, match="records mode"):
        read_records("x", "a\n", mode="paragraphs")
    train, val = split_records([str(i) for i in range(10)], 0.2)
    assert train == [str(i) for i in range(8)] and val == ["8", "9"]
    assert split_records(["a", "b"], 0.1) == (["a"], ["b"])
    assert split_records(["a", "b"], 0.0) == (["a", "b"], [])


@pytest.fixture()
def tokenizer():  # type: ignore[no-untyped-def]
    return build_tokenizer("char", ["abcdefghij xyz"], specials=RECORD_SPECIALS)


def test_batches_pad_exactly_and_shift_targets(tokenizer) -> None:  # type: ignore[no-untyped-def]
    records = ["ab", "abcdef", "x", "abc"]
    batches = RecordBatches.from_texts(
        records, tokenizer, batch_size=4, max_len=100, shuffle=False
    )
    (inputs, targets), = list(batches)
    assert inputs.dtype == torch.int64 and targets.dtype == torch.int64
    assert inputs.shape == targets.shape == (4, 7)  # longest: <bos> abcdef (7 inputs)
    bos, eos, pad = tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id
    seen = set()
    for row_in, row_tgt in zip(inputs.tolist(), targets.tolist(), strict=True):
        n = sum(1 for t in row_tgt if t != IGNORE_INDEX)
        assert row_in[0] == bos and row_tgt[n - 1] == eos
        assert row_tgt[n:] == [IGNORE_INDEX] * (7 - n)  # masked exactly at the pads
        assert row_in[n:] == [pad] * (7 - n)
        assert row_in[1:n] == row_tgt[: n - 1]  # targets are inputs shifted by one
        seen.add(tokenizer.decode(row_in[1:n]))
    assert seen == set(records)
    assert batches.num_targets == sum(len(r) + 1 for r in records)
    assert batches.num_chars == sum(len(r) + 1 for r in records)


def test_shuffle_is_deterministic_and_buckets_lengths(tokenizer) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    records = ["a" * int(n) for n in rng.integers(1, 60, size=300)]
    make = lambda seed: RecordBatches.from_texts(  # noqa: E731
        records, tokenizer, batch_size=8, max_len=100, seed=seed
    )
    a, b = make(1), make(1)
    order = [r.tolist() for r in a.batch_indices(3)]
    assert order == [r.tolist() for r in b.batch_indices(3)]
    assert order != [r.tolist() for r in a.batch_indices(4)]
    assert order != [r.tolist() for r in make(2).batch_indices(3)]
    assert len(order) == len(a) == 38
    assert sorted(i for r in order for i in r) == list(range(300))
    # sorting inside pools keeps padding small
    padded = sum(int(a.make_batch(r)[1].numel()) for r in a.batch_indices(0))
    assert padded < 1.15 * a.num_targets


def test_long_records_split_or_truncate(tokenizer) -> None:  # type: ignore[no-untyped-def]
    record = "abcdefghij" * 3  # 30 chars: 31 predictions with <eos>
    split = RecordBatches.from_texts([record, "ab"], tokenizer, batch_size=8, max_len=8)
    assert split.num_rows == 4 + 1
    assert split.num_targets == 31 + 3  # every token predicted exactly once
    assert "1 of 2 records are longer than 8" in split.notes[0] and "split" in split.notes[0]
    _, targets = split.make_batch(np.arange(split.num_rows))
    rebuilt = [t for row in targets.tolist() for t in row if t != IGNORE_INDEX]
    assert tokenizer.decode(rebuilt) == record + "ab"
    cut = RecordBatches.from_texts(
        [record], tokenizer, batch_size=8, max_len=8, long_records="truncate"
    )
    assert cut.num_rows == 1 and cut.num_targets == 8 and "truncated" in cut.notes[0]


def test_record_batches_need_special_tokens() -> None:
    plain = build_tokenizer("char", ["abc"])
    with pytest.raises(WeftError, match="<bos>"):
        RecordBatches.from_texts(["abc"], plain, batch_size=2, max_len=8)
    with pytest.raises(WeftError, match="no records"):
        RecordBatches.from_texts([], plain, batch_size=2, max_len=8)


def test_word_level_records(tokenizer) -> None:  # type: ignore[no-untyped-def]
    words = build_tokenizer("word", ["Knock knock. Who's there?"], specials=RECORD_SPECIALS)
    batches = RecordBatches.from_texts(
        ["Knock knock.", "Who's there?"], words, batch_size=2, max_len=16, shuffle=False
    )
    inputs, targets = batches.make_batch(np.arange(2))
    assert inputs.shape == (2, 4)
    assert (targets == IGNORE_INDEX).sum().item() == 0


def test_a_padded_batch_scores_each_record_as_if_alone(tokenizer) -> None:  # type: ignore[no-untyped-def]
    from weft.config import ModelConfig
    from weft.models.rnn_lm import RNNLanguageModel

    torch.manual_seed(0)
    model = RNNLanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size, hidden_size=12,
                                         embedding_dim=6, layers=2)).eval()
    records = ["ab", "abcdef j", "x", "abc xyz"]
    batch = RecordBatches.from_texts(records, tokenizer, batch_size=4, max_len=100,
                                     shuffle=False)
    (inputs, targets), = list(batch)
    with torch.no_grad():
        batched = model(inputs, targets=targets).loss
        total, count = 0.0, 0
        for record in records:
            (alone_in, alone_tgt), = list(RecordBatches.from_texts(
                [record], tokenizer, batch_size=1, max_len=100, shuffle=False))
            loss = model(alone_in, targets=alone_tgt).loss
            total += float(loss) * alone_tgt.numel()
            count += alone_tgt.numel()
    # Padding changes nothing: the batch's mean is the token-weighted mean of the records'.
    assert float(batched) == pytest.approx(total / count, rel=1e-5)


def test_csv_reading_leaves_the_process_field_limit_alone() -> None:
    previous = csv.field_size_limit(1000)  # an embedding application's own limit
    try:
        text = "id,text\n1,\"" + "y" * 5000 + "\"\n"
        assert read_csv_records(text, "text").records == ["y" * 5000]
        assert csv.field_size_limit() == 1000
    finally:
        csv.field_size_limit(previous)
