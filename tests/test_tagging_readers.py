"""Readers, format detection, tag maps, fraction slices and the raw-text tokenizer."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from weft.errors import WeftError
from weft.tagging.readers import (
    ReadOptions,
    detect_format,
    load_tag_map,
    parse_conllu,
    parse_ptb,
    parse_tsv,
    parse_wordtag,
    read_tagged,
    slice_fraction,
)
from weft.tagging.tokenize import tokenize, tokenize_sentences

CONLLU = """\
# sent_id = 1
# text = I don't know.
1\tI\tI\tPRON\tPRP\t_\t3\tnsubj\t_\t_
2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_
2\tdo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_
3\tn't\tnot\tPART\tRB\t_\t0\troot\t_\t_
4\tknow\tknow\tVERB\tVB\t_\t3\tobj\t_\tSpaceAfter=No
4.1\tknew\tknow\tVERB\tVBD\t_\t_\t_\t3:conj\tCopyOf=4
5\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_

1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_
"""

PTB = """
( (S
    (NP-SBJ (NNP Pierre) (NNP Vinken) )
    (VP (MD will)
      (NP (-NONE- *T*-1) ))
    (. .) ))
( (S (NP (PRP It)) (VP (VBZ is) (ADJP (-LRB- -LRB-) (JJ odd) (-RRB- -RRB-))) (. .)))
"""


def test_conllu_skips_multiword_tokens_empty_nodes_and_comments() -> None:
    sentences = parse_conllu(CONLLU, "x.conllu")
    assert [s.words for s in sentences] == [("I", "do", "n't", "know", "."), ("Hi",)]
    assert sentences[0].tags == ("PRON", "AUX", "PART", "VERB", "PUNCT")
    assert parse_conllu(CONLLU, "x.conllu", "xpos")[0].tags == ("PRP", "VBP", "RB", "VB", ".")


def test_conllu_without_final_blank_line_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "a.conllu"
    path.write_bytes(CONLLU.rstrip("\n").replace("\n", "\r\n").encode())
    assert len(read_tagged(path)) == 2


def test_conllu_malformed_line_names_file_and_line() -> None:
    bad = "1\tI\tI\tPRON\tPRP\t_\t0\troot\t_\t_\n2\tam\tbe\tAUX\n"
    with pytest.raises(WeftError, match=r"x\.conllu:2: .*10 tab-separated"):
        parse_conllu(bad, "x.conllu")
    missing = "1\tI\tI\t_\tPRP\t_\t0\troot\t_\t_\n"
    with pytest.raises(WeftError, match=r"x\.conllu:1: .*no UPOS"):
        parse_conllu(missing, "x.conllu")


def test_wordtag_splits_on_last_slash_and_unescapes() -> None:
    sentences = parse_wordtag("The/DT 1/2/CD and\\/or/CC ./.\n\nHi/UH\n", "w.txt")
    assert sentences[0].words == ("The", "1/2", "and/or", ".")
    assert sentences[0].tags == ("DT", "CD", "CC", ".")
    assert sentences[1].words == ("Hi",)
    with pytest.raises(WeftError, match=r"w\.txt:2: token 'dog'"):
        parse_wordtag("The/DT\nthe/DT dog\n", "w.txt")
    with pytest.raises(WeftError, match="not word/TAG"):
        parse_wordtag("dog/\n", "w.txt")


def test_tsv_blank_lines_separate_sentences() -> None:
    sentences = parse_tsv("The\tDET\ndog\tNOUN\n\n\n\nHi\tINTJ\n", "t.tsv")
    assert [s.words for s in sentences] == [("The", "dog"), ("Hi",)]
    assert sentences[0].tags == ("DET", "NOUN")
    with pytest.raises(WeftError, match=r"t\.tsv:2: expected word<TAB>tag"):
        parse_tsv("The\tDET\ndog big NOUN\n", "t.tsv")
    # two columns separated by a space (CoNLL-2003's layout) read as the tab-separated do
    assert parse_tsv("New B-LOC\nYork I-LOC\n", "t.txt")[0].tags == ("B-LOC", "I-LOC")


def test_ptb_trees_leaves_and_sentence_ends() -> None:
    sentences = parse_ptb(PTB, "wsj.mrg")
    assert sentences[0].words == ("Pierre", "Vinken", "will", "*T*-1", ".")
    assert sentences[0].tags == ("NNP", "NNP", "MD", "-NONE-", ".")
    assert sentences[1].words == ("It", "is", "-LRB-", "odd", "-RRB-", ".")
    with pytest.raises(WeftError, match="missing a closing"):
        parse_ptb("( (S (NN dog) )", "bad.mrg")


def _treebank_zip(tmp_path: Path) -> Path:
    path = tmp_path / "treebank.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("treebank/combined/README", "not a tree")
        archive.writestr("treebank/combined/wsj_0002.mrg", "( (S (NN second) (. .)) )")
        archive.writestr("treebank/combined/wsj_0001.mrg", PTB)
        archive.writestr("treebank/parsed/wsj_0001.prd", "( (S (NN ignored)) )")
    return path


def _map_zip(tmp_path: Path) -> Path:
    path = tmp_path / "universal_tagset.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("universal_tagset/en-ptb.map",
                         "NNP\tNOUN\nNN\tNOUN\nMD\tVERB\n.\t.\nPRP\tPRON\nVBZ\tVERB\nJJ\tADJ\n")
        archive.writestr("universal_tagset/de-negra.map", "NN\tNOUN\n")
    return path


def test_ptb_zip_in_file_order_with_map_and_traces(tmp_path: Path) -> None:
    treebank, tag_map = _treebank_zip(tmp_path), _map_zip(tmp_path)
    assert detect_format(treebank) == "ptb"
    plain = read_tagged(treebank)
    assert len(plain) == 3 and plain[2].words == ("second", ".")  # wsj_0001 before wsj_0002
    mapped = read_tagged(treebank, ReadOptions(tagset_map=str(tag_map)))
    assert mapped[0].tags == ("NOUN", "NOUN", "VERB", "X", ".")  # -NONE- is unmapped: X
    assert mapped[1].tags == ("PRON", "VERB", "X", "ADJ", "X", ".")
    no_traces = read_tagged(treebank, ReadOptions(tagset_map=str(tag_map), keep_traces=False))
    assert no_traces[0].words == ("Pierre", "Vinken", "will", ".")


def test_tag_map_from_file_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "my.map"
    path.write_text("NN\tNOUN\n\nVB VERB\n", encoding="utf-8")
    assert load_tag_map(str(path)) == {"NN": "NOUN", "VB": "VERB"}
    assert load_tag_map(f"{_map_zip(tmp_path)}:universal_tagset/de-negra.map") == {"NN": "NOUN"}
    with pytest.raises(WeftError, match="not found"):
        load_tag_map(str(tmp_path / "none.map"))
    path.write_text("NN NOUN extra\n", encoding="utf-8")
    with pytest.raises(WeftError, match=r"my\.map:1"):
        load_tag_map(str(path))


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("a.txt", "# c\n1\tI\tI\tPRON\tPRP\t_\t0\troot\t_\t_\n", "conllu"),
        ("a.txt", "The/DT dog/NN\n", "wordtag"),
        ("a.txt", "The\tDT\n", "tsv"),
        ("a.txt", "( (S (NN x)) )\n", "ptb"),
        ("a.conllu", "anything\n", "conllu"),
    ],
)
def test_detect_format(tmp_path: Path, name: str, text: str, expected: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    assert detect_format(path) == expected


def test_read_errors(tmp_path: Path) -> None:
    with pytest.raises(WeftError, match="file not found"):
        read_tagged(tmp_path / "missing.conllu")
    empty = tmp_path / "empty.tsv"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(WeftError, match="no tagged sentences"):
        read_tagged(empty, ReadOptions(format="tsv"))
    prose = tmp_path / "prose.txt"
    prose.write_text("Just some words here\n", encoding="utf-8")
    with pytest.raises(WeftError, match="cannot tell the format"):
        read_tagged(prose)
    with pytest.raises(WeftError, match="unknown format"):
        read_tagged(prose, ReadOptions(format="xml"))


def test_fraction_slices() -> None:
    items = list(range(10))
    assert slice_fraction(items, ":0.9") == items[:9]  # type: ignore[arg-type]
    assert slice_fraction(items, "0.9:") == [9]  # type: ignore[arg-type]
    assert slice_fraction(items, "0.2:0.4") == [2, 3]  # type: ignore[arg-type]
    for bad in ("0.5", "a:b", "0.8:0.2", ":1.5"):
        with pytest.raises(WeftError):
            slice_fraction(items, bad)  # type: ignore[arg-type]


def test_tokenizer() -> None:
    assert tokenize("I don't think Mr. Smith's U.S. trip cost $1,000.50.") == [
        "I", "do", "n't", "think", "Mr.", "Smith", "'s", "U.S.", "trip", "cost", "$",
        "1,000.50", ".",
    ]
    assert tokenize("well-known o'clock, see https://x.org/a?b=1.") == [
        "well-known", "o'clock", ",", "see", "https://x.org/a?b=1", ".",
    ]
    assert tokenize_sentences('He left. "Fine." She said so?! Yes\nnew line') == [
        ["He", "left", "."], ['"', "Fine", ".", '"'], ["She", "said", "so", "?!"], ["Yes"],
        ["new", "line"],
    ]
    assert tokenize_sentences("") == []


def test_a_tag_map_applies_to_every_format(tmp_path: Path) -> None:
    tag_map = tmp_path / "my.map"
    tag_map.write_text("DT\tDET\nNN\tNOUN\n", encoding="utf-8")
    wordtag = tmp_path / "w.txt"
    wordtag.write_text("The/DT dog/NN barks/VBZ\n", encoding="utf-8")
    sentences = read_tagged(wordtag, ReadOptions(tagset_map=str(tag_map)))
    assert sentences[0].tags == ("DET", "NOUN", "X")  # unlisted tags become X, as for ptb
