"""Word-level tokenizer: splitting, detokenization, vocabulary bounds, unknowns, save/load."""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weft.tokenizers import EncodeReport, WordTokenizer, tokenizer_from_dict
from weft.tokenizers import word as word_module
from weft.tokenizers.word import detokenize, split_words

PROSE = (
    "Don't panic, she said. \"It's fine!\" (Really.) The U.S. price is $3.14 -- or 1,000\n"
    "well-known words... 'Hello,' said Alice; 'how are you?'\n"
    "\n"
    "Visit https://example.com/x?y=1 now, @bob #tag 50% off/on.\n"
)


def test_split_keeps_contractions_numbers_and_newlines() -> None:
    tokens = split_words(PROSE)
    for expected in ["Don't", "It's", "3.14", "1,000", "well-known", "U.S.", "...", "--", "\n"]:
        assert expected in tokens
    assert tokens.count("\n") == PROSE.count("\n")
    assert "https://example.com/x?y=1" in tokens


def test_round_trip_of_ordinary_prose_is_exact() -> None:
    tok = WordTokenizer.train([PROSE])
    assert tok.decode(tok.encode(PROSE)) == PROSE.replace(" -- ", "--")  # dashes attach


def test_detokenize_rules() -> None:
    assert detokenize(["Hello", ",", "world", "!"]) == "Hello, world!"
    assert detokenize(["(", "a", ")", "b", "."]) == "(a) b."
    assert detokenize(['"', "Hi", "!", '"', "he", "said"]) == '"Hi!" he said'
    assert detokenize(["“", "Hi", "”", "he", "said"]) == "“Hi” he said"
    assert detokenize(["one", "\n", "two"]) == "one\ntwo"
    # a blank line closes a quote that was left open
    assert detokenize(["'", "a", "\n", "\n", "'", "b", "'"]) == "'a\n\n'b'"


def test_whitespace_normalizes() -> None:
    tok = WordTokenizer.train(["a  b\t c   \n   d ,e"])
    assert tok.decode(tok.encode("a  b\t c   \n   d ,e")) == "a b c\nd, e"


def test_vocabulary_bounds_and_unknowns() -> None:
    text = "the cat the dog the cat a bird\n"
    tok = WordTokenizer.train([text], max_vocab=4)  # <unk> + 3 words
    assert tok.vocab_size == 4
    assert tok.words == ["the", "cat", "\n"]  # ties broken alphabetically: "\n" < "a" < ...
    report = EncodeReport()
    ids = tok.encode("the zebra and the cat", report)
    assert ids.tolist() == [tok.id_of("the"), 0, 0, tok.id_of("the"), tok.id_of("cat")]
    assert report.unknown == {"zebra": 1, "and": 1}
    assert tok.decode(ids) == "the <unk> <unk> the cat"
    assert WordTokenizer.train([text], min_count=2).words == ["the", "cat"]


def test_specials_and_never_generate() -> None:
    tok = WordTokenizer.train(["a b"], specials=["<unk>", "<bos>", "<eos>", "<pad>"])
    assert (tok.unk_id, tok.bos_id, tok.eos_id, tok.pad_id) == (0, 1, 2, 3)
    assert sorted(tok.never_generate) == [0, 1, 3]
    # special names in text are text, never the special token
    assert tok.encode("<eos>").tolist() == [0, 0, 0]
    assert tok.decode([1, tok.id_of("a"), 2, 3]) == "a"


def test_save_load_identical_encode() -> None:
    tok = WordTokenizer.train([PROSE], specials=["<unk>", "<bos>", "<eos>", "<pad>"])
    again = tokenizer_from_dict(json.loads(json.dumps(tok.to_dict())))
    assert isinstance(again, WordTokenizer)
    assert np.array_equal(again.encode(PROSE + " unseen"), tok.encode(PROSE + " unseen"))


def test_long_text_in_pieces_matches_regex(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(word_module, "_PIECE_CHARS", 37)
    monkeypatch.setattr(word_module, "_CACHE_LIMIT", 5)
    text = PROSE * 20
    tok = WordTokenizer.train([PROSE])
    ids = tok.encode(text)
    expected = [tok.id_of(t) for t in split_words(text)]
    assert ids.tolist() == expected


def test_sentinel_character_in_text_is_not_a_newline() -> None:
    text = "a\ue000b\nc"
    tok = WordTokenizer.train([text])
    assert tok.decode(tok.encode(text)) == "a \ue000 b\nc"
    assert "\ue000" in tok.words and tok.words.count("\n") == 1


def test_compact_dtype_and_empty_input() -> None:
    tok = WordTokenizer.train([PROSE])
    assert tok.encode(PROSE).dtype == np.uint8
    assert tok.encode("").size == 0
    assert tok.decode([]) == ""
    with pytest.raises(ValueError):
        tok.decode([tok.vocab_size])


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab ,.'\"\n-?x1")), max_size=40))
def test_fast_encode_matches_reference_split(text: str) -> None:
    tok = WordTokenizer.train(["a b , . ' \" \n - ? x 1 ab"])
    unk = tok.unk_id
    expected = [tok.id_of(t) if tok.id_of(t) is not None else unk for t in split_words(text)]
    assert tok.encode(text).tolist() == expected


_WORDS = st.sampled_from(["the", "Alice", "don't", "it's", "well-known", "3.14", "rabbit", "I"])


@st.composite
def _prose(draw: st.DrawFn) -> str:
    """Ordinary prose: words separated by single spaces, commas after words, sentence ends,
    parentheses and double-quoted phrases, lines separated by newlines."""
    lines = []
    for _ in range(draw(st.integers(1, 3))):
        sentences = []
        for _ in range(draw(st.integers(1, 3))):
            words = draw(st.lists(_WORDS, min_size=1, max_size=6))
            words = [w + "," if draw(st.booleans()) and i < len(words) - 1 else w
                     for i, w in enumerate(words)]
            sentence = " ".join(words) + draw(st.sampled_from([".", "!", "?", "..."]))
            wrap = draw(st.sampled_from(["", '"', "()"]))
            sentence = wrap[0] + sentence + wrap[-1] if wrap else sentence
            sentences.append(sentence)
        lines.append(" ".join(sentences))
    return "\n".join(lines)


@settings(max_examples=80, deadline=None)
@given(_prose())
def test_round_trip_of_generated_prose_is_exact(text: str) -> None:
    tok = WordTokenizer.train([text])
    assert tok.decode(tok.encode(text)) == text


def test_concurrent_encodes_share_the_cache_safely() -> None:
    # The server encodes prompts from many threads with one tokenizer; every new chunk grows
    # the shared cache. Switching threads as often as possible makes a race show at once.
    words = [f"w{i}" for i in range(3000)]
    texts = [" ".join(f"{w}{j}" for w in words[k::8]) for k in range(8) for j in "ab"]
    trained = WordTokenizer.train(texts)
    expected = [trained.encode(text).tolist() for text in texts]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(5):
            shared = WordTokenizer(trained.words, trained.specials)  # an empty cache
            with ThreadPoolExecutor(max_workers=8) as pool:
                got = [ids.tolist() for ids in pool.map(shared.encode, texts)]
            assert got == expected
    finally:
        sys.setswitchinterval(interval)


def test_peek_shows_what_push_would_and_changes_nothing() -> None:
    tokenizer = WordTokenizer.train(['he said " yes , " and left .'] * 3)
    ids = tokenizer.encode('he said " yes , " and left .').tolist()
    decoder, pushed = tokenizer.stream_decoder(), []
    for token in ids:
        peeked = [decoder.peek(token), decoder.peek(token)]  # opening a quote changes state
        pushed.append(decoder.push(token))
        assert peeked == [pushed[-1]] * 2
    assert "".join(pushed) == tokenizer.decode(ids)
