"""The byte level: any text round-trips, records add specials after the bytes, streaming never
shows half a character, and bits/char stay per character."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import weft
from weft.cli.main import cli
from weft.tokenizers import ByteTokenizer, build_tokenizer, tokenizer_from_dict

from .conftest import TINY


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_text_round_trips(text: str) -> None:
    tokenizer = build_tokenizer("byte", [])
    ids = tokenizer.encode(text)
    expected = text.encode("utf-8", errors="replace").decode("utf-8")  # lone surrogates: '?'
    assert tokenizer.decode(ids) == expected
    assert ids.dtype == np.uint8 and len(ids) == len(text.encode("utf-8", errors="replace"))


def test_record_specials_come_first_or_after_the_bytes() -> None:
    fresh = build_tokenizer("byte", [], specials=("<bos>", "<eos>", "<pad>"))
    assert (fresh.bos_id, fresh.eos_id, fresh.pad_id, fresh.vocab_size) == (0, 1, 2, 259)
    assert fresh.decode([0, *fresh.encode("añ"), 1]) == "añ"
    grown = ByteTokenizer().with_specials(["<bos>", "<eos>", "<pad>"])
    assert (grown.bos_id, grown.eos_id, grown.pad_id) == (256, 257, 258)
    assert list(grown.encode("A")) == [65]  # no byte is renumbered
    assert tokenizer_from_dict(grown.to_dict()).to_dict() == grown.to_dict()
    assert grown.never_generate == [256, 258]


def test_streaming_holds_back_a_split_character() -> None:
    tokenizer = ByteTokenizer()
    text = "a€b🎉"
    decoder = tokenizer.stream_decoder()
    deltas = [decoder.push(int(i)) for i in tokenizer.encode(text)]
    assert "".join(deltas) + decoder.finish() == text
    assert all("\ufffd" not in d for d in deltas)
    assert deltas[1:4] == ["", "", "€"]  # three bytes, one character when the last arrives


def test_invalid_utf8_in_a_corpus_is_a_clear_error(tmp_path: Path) -> None:
    corpus = tmp_path / "latin1.txt"
    corpus.write_bytes("caf\xe9 au lait\n".encode("latin-1") * 50)
    result = CliRunner().invoke(cli, ["train", str(corpus), "--out", str(tmp_path / "r"),
                                      "--level", "byte", "--max-steps", "2"])
    assert result.exit_code == 2
    assert "not valid UTF-8" in result.output and "iconv" in result.output


def test_byte_model_trains_generates_and_scores_per_character(tmp_path: Path) -> None:
    corpus = tmp_path / "multi.txt"
    corpus.write_text("Ελληνικά και English, 日本語も。\n" * 60, encoding="utf-8")
    model = weft.train(corpus, out=tmp_path / "run", level="byte", max_steps=20, **TINY)
    assert model is not None and model.tokenizer.type_name == "byte"
    text = model.generate("日本", max_new_tokens=40, seed=0)[0]
    text.encode("utf-8")  # whole characters only (a lone surrogate would fail here)
    held_out = "Ελληνικά και English.\n" * 5
    result = model.evaluate(held_out)
    assert result.characters == len(held_out) - 1  # every character but the first one's
    assert result.tokens == len(held_out.encode("utf-8")) - 1
    # bits/char divides the same total by characters, not by the (more numerous) bytes
    assert result.bits_per_char > result.loss / np.log(2)


def test_peek_shows_what_push_would_and_changes_nothing() -> None:
    tokenizer = ByteTokenizer()
    ids = tokenizer.encode("a€b").tolist()  # € is 3 bytes: 2 held back, the 3rd shows it
    decoder = tokenizer.stream_decoder()
    for token in ids:
        peeked = [decoder.peek(token), decoder.peek(token)]
        assert peeked == [decoder.push(token)] * 2
    assert decoder.finish() == ""
