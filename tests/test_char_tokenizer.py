from __future__ import annotations

import numpy as np

from weft.tokenizers import CharTokenizer, EncodeReport, load_tokenizer, save_tokenizer


def test_round_trip_is_exact() -> None:
    text = "Hello, wörld!\n\tünïcode ☃ 𝄞 and emoji 🙂 — done.\n"
    tok = CharTokenizer.train([text])
    ids = tok.encode(text)
    assert ids.dtype == np.uint8
    assert tok.decode(ids) == text
    assert len(ids) == len(text)


def test_unknown_characters_map_to_unk_and_are_reported() -> None:
    tok = CharTokenizer.train(["abc"])
    report = EncodeReport()
    ids = tok.encode("abzzé", report)
    assert ids.tolist()[:2] == tok.encode("ab").tolist()
    assert ids.tolist()[2:] == [tok.unk_id] * 3
    assert report.unknown == {"z": 2, "é": 1}
    assert "U+00E9" in report.describe()
    assert tok.decode(ids) == "ab\ufffd\ufffd\ufffd"


def test_save_and_load_give_the_same_ids(tmp_path) -> None:
    text = "some text, with Ümlauts\n"
    tok = CharTokenizer.train([text], specials=["<unk>", "<bos>", "<eos>"])
    save_tokenizer(tok, tmp_path / "tokenizer.json")
    loaded = load_tokenizer(tmp_path / "tokenizer.json")
    assert loaded.encode(text).tolist() == tok.encode(text).tolist()
    assert loaded.vocab_size == tok.vocab_size
    assert (loaded.bos_id, loaded.eos_id) == (1, 2)


def test_specials_are_never_generated_except_eos() -> None:
    tok = CharTokenizer.train(["xy"], specials=["<unk>", "<bos>", "<eos>", "<pad>"])
    assert set(tok.never_generate) == {tok.unk_id, tok.bos_id, tok.pad_id}


def test_large_vocabulary_uses_wider_ids() -> None:
    chars = "".join(chr(0x4E00 + i) for i in range(300))
    tok = CharTokenizer.train([chars])
    ids = tok.encode(chars)
    assert ids.dtype == np.uint16
    assert tok.decode(ids) == chars
