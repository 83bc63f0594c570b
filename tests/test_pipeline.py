"""Corpus to token ids is one entry (data/pipeline.py): the tokenizer, the splits and the
fingerprint of each kind of corpus (text, records with labels, memory-mapped)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from weft.config import DataConfig
from weft.data.pipeline import prepare_corpus
from weft.errors import WeftError
from weft.runs import CONFIG, FINGERPRINT, TOKENIZER, TOKENS, fingerprint
from weft.tokenizers import Tokenizer, build_tokenizer, save_tokenizer

TEXT = "The quick brown fox jumps over the lazy dog.\n" * 30


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT.replace("\n", "\r\n"), encoding="utf-8")  # cleaned to LF
    return path


def test_a_text_corpus_is_one_stream_cut_for_validation(text_file: Path, tmp_path: Path) -> None:
    corpus = prepare_corpus(DataConfig(val_fraction=0.2), [str(text_file)], tmp_path)
    assert corpus.train_ids is not None and corpus.val_ids is not None
    assert corpus.tokenizer.decode(np.concatenate([corpus.train_ids, corpus.val_ids])) == TEXT
    assert len(corpus.val_ids) == int(len(TEXT) * 0.2)
    assert corpus.fingerprint == fingerprint(TEXT) and corpus.characters == len(TEXT)
    assert "".join(corpus.index_chunks()) == TEXT


def test_the_memmapped_corpus_holds_the_same_ids(text_file: Path, tmp_path: Path) -> None:
    in_memory = prepare_corpus(DataConfig(), [str(text_file)], tmp_path)
    mapped = prepare_corpus(DataConfig(memmap=True), [str(text_file)], tmp_path)
    assert mapped.train_ids is not None and mapped.val_ids is not None
    assert isinstance(mapped.train_ids.base, np.memmap) and (tmp_path / TOKENS).is_file()
    ids = np.concatenate([mapped.train_ids, mapped.val_ids])
    assert mapped.tokenizer.decode(ids) == TEXT and mapped.num_ids == in_memory.num_ids
    assert mapped.characters == len(TEXT) and "".join(mapped.index_chunks()) == TEXT


def test_records_with_labels_carry_their_label_tokens(tmp_path: Path) -> None:
    path = tmp_path / "jokes.csv"
    rows = [("why did the chicken", "a"), ("knock knock", "b"), ("a pun", "a")] * 4
    path.write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows),
                    encoding="utf-8")
    data = DataConfig(csv_column="text", label_columns=("label",), val_fraction=0.25)
    corpus = prepare_corpus(data, [str(path)], tmp_path)
    assert corpus.train_records + corpus.val_records == [t for t, _ in rows]
    assert len(corpus.val_records) == 3 and corpus.labels.columns[0].counts == {"a": 8, "b": 4}
    assert corpus.prefixes is not None and len(corpus.prefixes) == len(rows)
    assert corpus.tokenizer.bos_id is not None
    tokenizer = corpus.tokenizer
    assert corpus.prefixes[:2].tolist() == [[tokenizer.special_id("<label=a>")],
                                             [tokenizer.special_id("<label=b>")]]


def test_the_hooks_grow_and_build_the_tokenizer(text_file: Path, tmp_path: Path) -> None:
    seen: list[tuple[int, tuple[str, ...]]] = []
    built: list[int] = []

    def grow(texts: Sequence[str], specials: Sequence[str]) -> Tokenizer:
        seen.append((len(texts), tuple(specials)))
        return build_tokenizer("char", texts, specials=specials)

    def build(make: object) -> Tokenizer:
        built.append(1)
        return make()  # type: ignore[operator,no-any-return]

    prepare_corpus(DataConfig(records="lines"), [str(text_file)], tmp_path, grow=grow,
                   build=build)
    assert seen == [(30, ("<bos>", "<eos>", "<pad>"))] and built == [1]


def test_resume_takes_the_runs_tokenizer_after_checking_the_data(text_file: Path,
                                                                  tmp_path: Path) -> None:
    own = build_tokenizer("char", [TEXT + "xyz"])
    save_tokenizer(own, tmp_path / TOKENIZER)
    (tmp_path / CONFIG).write_text(json.dumps({FINGERPRINT: fingerprint(TEXT)}))
    corpus = prepare_corpus(DataConfig(), [str(text_file)], tmp_path, resume=True)
    assert corpus.tokenizer.vocab_size == own.vocab_size
    text_file.write_text(TEXT + "more", encoding="utf-8")
    with pytest.raises(WeftError, match="has changed since this run started"):
        prepare_corpus(DataConfig(), [str(text_file)], tmp_path, resume=True)
