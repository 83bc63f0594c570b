"""build_tokenizer / tokenizer_from_dict across levels, char specials, streaming decode."""

from __future__ import annotations

import pytest

from weft.errors import WeftError
from weft.generation.generate import IncrementalDecoder
from weft.tokenizers import (
    RECORD_SPECIALS,
    CharTokenizer,
    EncodeReport,
    WordTokenizer,
    build_tokenizer,
    load_tokenizer,
    save_tokenizer,
)

TEXT = "Hello, world. Hello again!\nA second line.\n"


@pytest.mark.parametrize("level", ["char", "word", "bpe"])
def test_every_level_builds_saves_and_loads(level: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    tok = build_tokenizer(level, [TEXT], vocab_size=280, specials=RECORD_SPECIALS)
    assert tok.bos_id is not None and tok.eos_id is not None and tok.pad_id is not None
    assert len({tok.bos_id, tok.eos_id, tok.pad_id}) == 3
    assert tok.eos_id not in tok.never_generate and tok.pad_id in tok.never_generate
    save_tokenizer(tok, tmp_path / "tokenizer.json")
    again = load_tokenizer(tmp_path / "tokenizer.json")
    assert again.encode(TEXT).tolist() == tok.encode(TEXT).tolist()
    assert again.decode(again.encode(TEXT)) == TEXT


@pytest.mark.parametrize("level", ["char", "word", "bpe"])
def test_unknown_prompt_never_crashes_and_is_reported(level: str) -> None:
    tok = build_tokenizer(level, [TEXT], vocab_size=280)
    report = EncodeReport()
    ids = tok.encode("Hello Zürich", report)
    assert len(ids) > 0
    assert "ü" in report.unknown or "Zürich" in report.unknown
    assert report.describe()


def test_char_specials_come_after_unk() -> None:
    tok = build_tokenizer("char", [TEXT], specials=RECORD_SPECIALS)
    assert isinstance(tok, CharTokenizer)
    assert tok.specials == ["<unk>", "<bos>", "<eos>", "<pad>"]
    assert tok.decode([tok.bos_id, *tok.encode("Hello").tolist(), tok.eos_id]) == "Hello"


def test_word_defaults_and_bad_settings() -> None:
    tok = build_tokenizer("word", [TEXT], min_count=2)
    assert isinstance(tok, WordTokenizer)
    assert tok.words == ["\n", ".", "Hello"]  # all seen twice: alphabetical
    with pytest.raises(WeftError, match="max-vocab"):
        build_tokenizer("word", [TEXT], max_vocab=1)
    with pytest.raises(WeftError, match="level"):
        build_tokenizer("sentencepiece", [TEXT])


def test_incremental_word_decoding_matches_full_decode() -> None:
    tok = build_tokenizer("word", [TEXT])
    ids = tok.encode(TEXT).tolist()
    stream = IncrementalDecoder(tok)
    assert "".join(stream.push(i) for i in ids) == tok.decode(ids)


def test_incremental_decoding_after_a_prompt_spaces_the_first_word() -> None:
    tok = build_tokenizer("word", [TEXT])
    prompt = tok.encode("Hello, world.").tolist()
    stream = IncrementalDecoder(tok, context=prompt)
    assert stream.push(tok.id_of("Hello")) == " Hello"
    assert stream.push(tok.id_of("!")) == "!"


@pytest.mark.parametrize("level", ["char", "word", "bpe"])
def test_encode_batch_matches_encode(level: str) -> None:
    tok = build_tokenizer(level, [TEXT], vocab_size=280)
    texts = ["Hello, world.", "", "A second\nline!", "Hello Zürich", "   "]
    report_batch, report_one = EncodeReport(), EncodeReport()
    batch = tok.encode_batch(texts, report_batch)  # type: ignore[attr-defined]
    assert [ids.tolist() for ids in batch] == [tok.encode(t, report_one).tolist() for t in texts]
    assert report_batch.unknown == report_one.unknown
    assert tok.encode_batch([]) == []  # type: ignore[attr-defined]
