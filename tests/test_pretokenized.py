"""--pretokenized: corpora already tokenized (Penn Treebank, WikiText) split at whitespace only,
their <unk> is weft's unknown token, and WikiText's @-@ @,@ @.@ are joined back for display."""

from __future__ import annotations

import json
import random
from pathlib import Path

from click.testing import CliRunner

from weft.cli.main import cli
from weft.tokenizers import EncodeReport, build_tokenizer, tokenizer_from_dict

WIKI = (' = Homarus = \n The lobster , known as the <unk> lobster , is 1 @,@ 000 km long , '
        '2 @.@ 5 m wide and well @-@ known . It \'s " red " ; he did n\'t ( see ) .\n')


def test_whitespace_split_unknown_token_and_display() -> None:
    tokenizer = build_tokenizer("word", [WIKI], pretokenized=True)
    assert "<unk>" not in tokenizer.words and "@-@" in tokenizer.words
    report = EncodeReport()
    ids = tokenizer.encode("The <unk> lobster is well @-@ known , It 's 2 @.@ 5 m .\n", report)
    assert ids.tolist()[1] == tokenizer.unk_id
    assert report.unknown == {}  # the corpus's own <unk> is not an unknown word
    assert tokenizer.decode(ids) == "The <unk> lobster is well-known, It's 2.5 m.\n"
    assert tokenizer.decode(tokenizer.encode("he did n't see 1 @,@ 000")) == "he didn't see 1,000"
    again = tokenizer_from_dict(json.loads(json.dumps(tokenizer.to_dict())))
    assert again.encode(WIKI).tolist() == tokenizer.encode(WIKI).tolist()
    assert again.decode(ids) == tokenizer.decode(ids)
    # Without the flag the same text is cut by weft's own rules: <unk> is three tokens.
    plain = build_tokenizer("word", [WIKI])
    assert len(plain.encode("<unk>")) == 3


def test_streaming_equals_the_full_decode() -> None:
    tokenizer = build_tokenizer("word", [WIKI + ' \' quoted \' \n\n " open \n'],
                                pretokenized=True)
    rng = random.Random(0)
    for _ in range(500):
        ids = [rng.randrange(tokenizer.vocab_size) for _ in range(rng.randrange(1, 14))]
        cut = rng.randrange(len(ids))
        decoder = tokenizer.stream_decoder(ids[:cut])
        streamed = "".join(decoder.push(i) for i in ids[cut:]) + decoder.finish()
        assert tokenizer.decode(ids[:cut]) + streamed == tokenizer.decode(ids)


def test_the_flag_trains_and_is_refused_off_the_word_level(tmp_path: Path) -> None:
    corpus = tmp_path / "wiki.txt"
    corpus.write_text(WIKI * 30, encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(cli, ["train", str(corpus), "--out", str(tmp_path / "run"),
                                 "--level", "word", "--pretokenized", "--hidden-size", "16",
                                 "--embedding-dim", "8", "--batch-size", "4", "--seq-len", "8",
                                 "--max-steps", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"]["pretokenized"]
    assert json.loads((tmp_path / "run" / "tokenizer.json").read_text())["pretokenized"]
    result = runner.invoke(cli, ["train", str(corpus), "--out", str(tmp_path / "char"),
                                 "--pretokenized"])
    assert result.exit_code == 2 and "--pretokenized apply to --level word" in result.output
