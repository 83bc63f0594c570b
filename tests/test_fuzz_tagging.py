"""Property-based tests for the tagged-sentence readers (CoNLL-U, word/TAG, TSV, Penn trees).

Any text gives sentences or a WeftError naming the file, never another exception; files written
from sentences read back as exactly those sentences. Skipped until the tagging package is
present.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weft.errors import WeftError
from weft.tagging import readers

FUZZ = settings(max_examples=80, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
FILE_TEXT = st.text(st.characters(codec="utf-8"), max_size=200)
# Text shaped like the formats, so the fuzzing gets past the first line.
SHAPED = st.lists(st.sampled_from(["1", "2-3", "4.1", "x", "\t", "_", "NOUN", "#", " ", "\n",
                                   "(", ")", "/", "\\/", "word", "S", ""]),
                  max_size=60).map("".join)
PARSERS = ["parse_conllu", "parse_wordtag", "parse_tsv", "parse_ptb"]


@FUZZ
@given(st.sampled_from(PARSERS), FILE_TEXT | SHAPED)
def test_any_text_gives_sentences_or_a_clear_error(parser: str, text: str) -> None:
    try:
        sentences = getattr(readers, parser)(text, "fuzz.txt")
    except WeftError as exc:
        assert "fuzz.txt" in str(exc) or "--column" in str(exc)
        return
    for sentence in sentences:
        assert len(sentence.words) == len(sentence.tags) > 0
        assert all(sentence.tags)


WORD = st.text(st.characters(codec="utf-8", exclude_characters="\t\n\r"), min_size=1,
               max_size=8)
PLAIN = st.text(st.characters(codec="utf-8", categories=("L", "N", "P", "S"),
                              exclude_characters="()/\\"), min_size=1, max_size=8)
SENTENCES = st.lists(st.lists(st.tuples(PLAIN, PLAIN), min_size=1, max_size=6), min_size=1,
                     max_size=5)


@FUZZ
@given(st.lists(st.lists(st.tuples(WORD, PLAIN.filter(lambda t: t != "_")), min_size=1,
                         max_size=6), min_size=1, max_size=5), st.booleans())
def test_conllu_reads_back_what_was_written(sentences: list[list[tuple[str, str]]],
                                            extras: bool) -> None:
    blocks = []
    for sentence in sentences:
        lines = ["# sent_id = x", "# text = whatever"] if extras else []
        for i, (word, tag) in enumerate(sentence, start=1):
            if extras and i == 1 and len(sentence) > 1:
                lines.append(f"1-2\t{word}{word}\t_\t_\t_\t_\t_\t_\t_\t_")  # multiword token
            lines.append(f"{i}\t{word}\t_\t{tag}\tXPOS\t_\t0\tdep\t_\t_")
            if extras:
                lines.append(f"{i}.1\tghost\t_\tX\t_\t_\t_\t_\t_\t_")  # empty node
        blocks.append("\n".join(lines))
    text = "\n\n".join(blocks) + "\n"
    read = readers.parse_conllu(text, "fuzz.conllu")
    assert [list(zip(s.words, s.tags, strict=True)) for s in read] == sentences


@FUZZ
@given(SENTENCES)
def test_word_tag_and_tsv_read_back_what_was_written(
    sentences: list[list[tuple[str, str]]]
) -> None:
    wordtag = "\n".join(" ".join(f"{w}/{t}" for w, t in s) for s in sentences) + "\n"
    tsv = "\n\n".join("\n".join(f"{w}\t{t}" for w, t in s) for s in sentences) + "\n"
    ptb = "\n".join("(S " + " ".join(f"(NP ({t} {w}))" for w, t in s) + ")"
                    for s in sentences)
    for parser, text in (("parse_wordtag", wordtag), ("parse_tsv", tsv), ("parse_ptb", ptb)):
        read = getattr(readers, parser)(text, "fuzz.txt")
        assert [list(zip(s.words, s.tags, strict=True)) for s in read] == sentences, parser


@FUZZ
@given(st.binary(max_size=300), st.sampled_from([".conllu", ".txt", ".tsv", ".mrg"]))
def test_any_file_in_auto_format(tmp_path_factory: pytest.TempPathFactory, data: bytes,
                                 suffix: str) -> None:
    path: Path = tmp_path_factory.mktemp("tagged") / f"input{suffix}"
    path.write_bytes(data)
    try:
        sentences = readers.read_tagged(path)
    except WeftError:
        return
    assert all(len(s.words) == len(s.tags) > 0 for s in sentences)
