"""Byte-level BPE: round trip, unseen characters as bytes, specials, save/load, streaming."""

from __future__ import annotations

import json

import numpy as np
import pytest

from weft.errors import WeftError
from weft.tokenizers import (
    RECORD_SPECIALS,
    BPETokenizer,
    EncodeReport,
    build_tokenizer,
    tokenizer_from_dict,
)

CORPUS = [
    "The quick brown fox jumps over the lazy dog.\n" * 20,
    "Alice was beginning to get very tired of sitting by her sister on the bank.\n" * 20,
    "Café, naïve, résumé.\n" * 5,
]


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    tok = build_tokenizer("bpe", CORPUS, vocab_size=320, specials=RECORD_SPECIALS)
    assert isinstance(tok, BPETokenizer)
    return tok


def test_vocab_and_specials(bpe: BPETokenizer) -> None:
    assert 256 + 3 < bpe.vocab_size <= 320
    assert (bpe.bos_id, bpe.eos_id, bpe.pad_id, bpe.unk_id) == (0, 1, 2, None)
    assert sorted(bpe.never_generate) == [0, 2]
    # merges learned: a frequent word is shorter than its bytes
    assert len(bpe.encode("the lazy dog")) < len("the lazy dog")


def test_round_trip_any_text(bpe: BPETokenizer) -> None:
    for text in ["The fox.\n\nCafé", "漢字 and emoji 🙂\r\ttabs", "", "   spaces  "]:
        assert bpe.decode(bpe.encode(text)) == text


def test_unseen_characters_are_bytes_and_reported(bpe: BPETokenizer) -> None:
    report = EncodeReport()
    ids = bpe.encode("fox 🙂🙂", report)
    assert report.unseen == {"🙂": 2} and report.unknown == {}  # kept as bytes, not replaced
    assert bpe.decode(ids) == "fox 🙂🙂"
    clean = EncodeReport()
    bpe.encode("Café fox", clean)
    assert clean.unseen == {} and clean.unknown == {}


def test_special_spelling_in_text_is_text(bpe: BPETokenizer) -> None:
    ids = bpe.encode("end <eos> here")
    assert bpe.eos_id not in ids.tolist()
    assert bpe.decode([bpe.bos_id, *ids.tolist(), bpe.eos_id, bpe.pad_id]) == "end <eos> here"


def test_save_load(bpe: BPETokenizer) -> None:
    again = tokenizer_from_dict(json.loads(json.dumps(bpe.to_dict())))
    text = "The lazy fox, naïve 🙂 <bos>"
    assert np.array_equal(again.encode(text), bpe.encode(text))
    assert again.vocab_size == bpe.vocab_size
    report = EncodeReport()
    again.encode("🙂", report)
    assert report.unseen == {"🙂": 1}


def test_partial_characters_stream_cleanly(bpe: BPETokenizer) -> None:
    text = "fox 漢字🙂 dog"
    ids = bpe.encode(text).tolist()
    assert b"".join(bpe.token_bytes(i) for i in ids) == text.encode()
    assert "\ufffd" in bpe.decode(ids[:-4]) or any(
        "\ufffd" in bpe.decode(ids[:k]) for k in range(len(ids))
    )
    stream = bpe.stream_decoder()
    pieces = [stream.push(i) for i in ids]
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == text and stream.finish() == ""


def test_too_small_vocab_is_a_clear_error() -> None:
    with pytest.raises(WeftError, match="vocab-size"):
        build_tokenizer("bpe", CORPUS, vocab_size=100)


def test_long_text_encodes_in_pieces(bpe: BPETokenizer) -> None:
    text = "The quick brown fox.\nAlice was tired.\n" * 400  # > one 4096-character piece
    ids = bpe.encode(text)
    assert bpe.decode(ids) == text
    assert np.array_equal(ids, np.concatenate([bpe.encode(line + "\n")
                                               for line in text.splitlines()]))


def test_a_prompt_with_unseen_characters_says_they_are_kept(
        bpe: BPETokenizer, caplog: pytest.LogCaptureFixture) -> None:
    from weft.generation.generate import encode_prompt

    with caplog.at_level("WARNING", logger="weft"):
        ids = encode_prompt(bpe, "fox 🙂")
    assert bpe.decode(ids) == "fox 🙂"
    assert "kept, as their bytes" in caplog.text and "<unk>" not in caplog.text
