"""build_tokenizer / tokenizer_from_dict across levels, char specials, streaming decode."""

from __future__ import annotations

import random

import pytest

from weft.errors import WeftError
from weft.tokenizers import (
    RECORD_SPECIALS,
    CharTokenizer,
    EncodeReport,
    WordTokenizer,
    build_tokenizer,
    load_tokenizer,
    save_tokenizer,
)
from weft.tokenizers.base import Tokenizer

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
    # Byte-level BPE replaces nothing: it reports what it never saw, kept as bytes.
    reported = report.unseen if level == "bpe" else report.unknown
    assert "ü" in reported or "Zürich" in reported
    assert report.describe(pieces=reported)


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


def _streamed(tok: Tokenizer, ids: list[int], context: list[int] | None = None) -> str:
    stream = tok.stream_decoder(context or [])
    return "".join(stream.push(i) for i in ids) + stream.finish()


def test_streamed_word_text_keeps_closing_quotes() -> None:
    text = 'He said "hello" to me. "Yes," she said.\n'
    tok = build_tokenizer("word", [text])
    ids = tok.encode(text).tolist()
    assert tok.decode(ids) == 'He said "hello" to me. "Yes," she said.\n'
    assert _streamed(tok, ids) == tok.decode(ids)
    # A quote opened in the prompt is closed by the generated text, without a space.
    prompt = tok.encode('He said "hello').tolist()
    assert _streamed(tok, tok.encode('" to me.').tolist(), prompt) == '" to me.'


@pytest.mark.parametrize("level", ["char", "word", "bpe"])
def test_streamed_text_equals_the_full_decode(level: str) -> None:
    text = TEXT + 'Quotes: "a" and \'b\' -- (c) 3.14 Zürich 漢字🙂 "open\n\n'
    tok = build_tokenizer(level, [text], vocab_size=300, specials=RECORD_SPECIALS)
    rng = random.Random(0)
    for _ in range(50):
        ids = [rng.randrange(tok.vocab_size) for _ in range(rng.randrange(1, 40))]
        cut = rng.randrange(len(ids))
        context, generated = ids[:cut], ids[cut:]
        full, before = tok.decode(ids), tok.decode(context)
        if not before.endswith("\ufffd"):  # a real prompt ends on a whole character
            assert _streamed(tok, generated, context) == full[len(before):]
        assert _streamed(tok, ids) == full


def test_streamed_word_after_a_prompt_spaces_the_first_word() -> None:
    tok = build_tokenizer("word", [TEXT])
    prompt = tok.encode("Hello, world.").tolist()
    stream = tok.stream_decoder(prompt)
    hello, bang = tok.id_of("Hello"), tok.id_of("!")
    assert hello is not None and bang is not None
    assert stream.push(hello) == " Hello"
    assert stream.push(bang) == "!"


@pytest.mark.parametrize("level", ["char", "word", "bpe"])
def test_encode_batch_matches_encode(level: str) -> None:
    tok = build_tokenizer(level, [TEXT], vocab_size=280)
    texts = ["Hello, world.", "", "A second\nline!", "Hello Zürich", "   "]
    report_batch, report_one = EncodeReport(), EncodeReport()
    batch = tok.encode_batch(texts, report_batch)  # type: ignore[attr-defined]
    assert [ids.tolist() for ids in batch] == [tok.encode(t, report_one).tolist() for t in texts]
    assert report_batch.unknown == report_one.unknown
    assert tok.encode_batch([]) == []  # type: ignore[attr-defined]
