"""Character tokenizer: exact round trip, ASCII and wide paths, unknowns, specials, save/load,
id widths."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from weft.tokenizers import CharTokenizer, EncodeReport, load_tokenizer, save_tokenizer


def test_round_trip_is_exact() -> None:
    text = "Hello, wörld!\n\tünïcode ☃ 𝄞 and emoji 🙂 — done.\n"
    tok = CharTokenizer.train([text])
    ids = tok.encode(text)
    assert ids.dtype == np.uint8
    assert tok.decode(ids) == text
    assert len(ids) == len(text)


def test_ascii_and_wide_paths_agree() -> None:
    tok = CharTokenizer.train(["hello world\n", "héllo 漢字 🙂"])
    for text in ["hello\nworld", "héllo 漢字 🙂 hello", ""]:
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        reference = [len(tok.specials) + tok.chars.index(c) for c in text]
        assert ids.tolist() == reference


def test_unknown_characters_map_to_unk_and_are_reported_on_both_paths() -> None:
    tok = CharTokenizer.train(["abc é"])
    report = EncodeReport()
    assert tok.encode("abz", report).tolist() == [2, 3, tok.unk_id]  # ASCII path
    assert tok.encode("é漢\U0001f600z", report).tolist()[1:] == [tok.unk_id] * 3  # wide path
    assert report.unknown == {"z": 2, "漢": 1, "\U0001f600": 1}
    assert "U+6F22" in report.describe()
    assert tok.decode(tok.encode("a漢")) == "a\ufffd"


def test_specials_save_and_load(tmp_path: Path) -> None:
    text = "some text, with Ümlauts\n"
    tok = CharTokenizer.train([text], ["<unk>", "<bos>", "<eos>", "<pad>"])
    assert (tok.unk_id, tok.bos_id, tok.eos_id, tok.pad_id) == (0, 1, 2, 3)
    assert set(tok.never_generate) == {tok.unk_id, tok.bos_id, tok.pad_id}
    save_tokenizer(tok, tmp_path / "tokenizer.json")
    loaded = load_tokenizer(tmp_path / "tokenizer.json")
    assert loaded.encode(text).tolist() == tok.encode(text).tolist()
    assert loaded.vocab_size == tok.vocab_size
    assert (loaded.bos_id, loaded.eos_id) == (1, 2)


def test_large_vocabulary_uses_wider_ids() -> None:
    chars = "".join(chr(0x4E00 + i) for i in range(300))
    tok = CharTokenizer.train([chars])
    ids = tok.encode(chars)
    assert ids.dtype == np.uint16
    assert tok.decode(ids) == chars
