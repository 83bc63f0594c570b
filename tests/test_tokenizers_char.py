"""Character tokenizer: ASCII and wide paths, unknowns, specials, save/load."""

from __future__ import annotations

import numpy as np

from weft.tokenizers import CharTokenizer, EncodeReport, tokenizer_from_dict


def test_ascii_and_wide_paths_agree() -> None:
    tok = CharTokenizer.train(["hello world\n", "héllo 漢字 🙂"])
    for text in ["hello\nworld", "héllo 漢字 🙂 hello", ""]:
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        reference = [tok.specials.__len__() + tok.chars.index(c) for c in text]
        assert ids.tolist() == reference


def test_unknown_characters_are_reported_on_both_paths() -> None:
    tok = CharTokenizer.train(["abc é"])
    report = EncodeReport()
    assert tok.encode("abz", report).tolist() == [2, 3, 0]
    assert tok.encode("é漢\U0001f600z", report).tolist()[1:] == [0, 0, 0]
    assert report.unknown == {"z": 2, "漢": 1, "\U0001f600": 1}
    assert tok.decode(tok.encode("a漢")) == "a\ufffd"


def test_specials_and_save_load() -> None:
    tok = CharTokenizer.train(["abc"], ["<unk>", "<bos>", "<eos>", "<pad>"])
    assert (tok.unk_id, tok.bos_id, tok.eos_id, tok.pad_id) == (0, 1, 2, 3)
    again = tokenizer_from_dict(tok.to_dict())
    assert np.array_equal(again.encode("cab"), tok.encode("cab"))
    assert tok.encode("cab").dtype == np.uint8
