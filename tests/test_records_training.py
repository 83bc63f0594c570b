"""End to end through the CLI: record training (CSV, lines) and word/BPE stream training."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from weft.api import load
from weft.cli.main import cli

TINY = ["--hidden-size", "16", "--embedding-dim", "8", "--batch-size", "4", "--max-steps", "4",
        "--eval-every", "2", "--threads", "1", "--quiet"]


def _train(tmp_path: Path, *args: str) -> Path:
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", *args, "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    return out


def test_csv_records_train_and_generate(tmp_path: Path) -> None:
    csv_path = tmp_path / "jokes.csv"
    rows = [f'{i},"Knock knock. Who\'s there? Joke {i}, ""quoted"""' for i in range(40)]
    csv_path.write_text("\ufeffID,Joke\r\n" + "\r\n".join(rows) + "\r\n5,\r\n", encoding="utf-8")
    run = _train(tmp_path, str(csv_path), "--csv-column", "Joke", "--level", "word")
    model = load(run, device="cpu")
    assert model.config.data.csv_column == "Joke"
    assert model.tokenizer.bos_id is not None and model.tokenizer.type_name == "word"
    texts = model.generate("Knock knock.", max_new_tokens=20, seed=1, num_return_sequences=2)
    assert len(texts) == 2 and all("<pad>" not in t and "<bos>" not in t for t in texts)
    # eval reads the CSV the way training did: 40 records, each scored up to its <eos>
    result = model.evaluate(csv_path)
    assert result.characters == sum(len(f"Knock knock. Who's there? Joke {i}, \"quoted\"") + 1
                                    for i in range(40))
    assert result.bits_per_char > 0


def test_line_records_with_bpe_and_cleaning(tmp_path: Path) -> None:
    lines = tmp_path / "tweets.txt"
    lines.write_text("\n".join(f"Tweet number {i} ÉTÉ" for i in range(30)) + "\n\n\n")
    run = _train(tmp_path, str(lines), "--records", "lines", "--level", "bpe",
                 "--vocab-size", "300", "--lowercase", "--normalize", "NFKC")
    model = load(run, device="cpu")
    assert model.tokenizer.type_name == "bpe"
    assert model.prepare_prompt("ÉTÉ") == "été"
    result = model.evaluate("tweet number 3 été\n")
    assert result.bits_per_char > 0


def test_missing_csv_column_is_one_clear_line(tmp_path: Path) -> None:
    csv_path = tmp_path / "data.csv"
    csv_path.write_text("a,b\n1,2\n")
    result = CliRunner().invoke(
        cli, ["train", str(csv_path), "--csv-column", "text", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "no column 'text'; available columns: 'a', 'b'" in result.output


@pytest.mark.parametrize("level", ["word", "bpe"])
def test_stream_training_at_other_levels(tmp_path: Path, level: str) -> None:
    book = tmp_path / "book.txt"
    body = "It was the best of times, it was the worst of times.\n" * 40
    book.write_text("*** START OF THE PROJECT GUTENBERG EBOOK X ***\n" + body
                    + "*** END OF THE PROJECT GUTENBERG EBOOK X ***\nLicense text\n")
    extra = ["--vocab-size", "280"] if level == "bpe" else ["--max-vocab", "50"]
    run = _train(tmp_path, str(book), "--level", level, "--strip-gutenberg", *extra)
    model = load(run, device="cpu")
    tok = model.tokenizer  # the footer's "License" never reached the tokenizer
    if level == "word":
        assert tok.id_of("License") is None and tok.id_of("times") is not None
    else:
        assert "L" not in tok.alphabet
    assert model.generate("It was", max_new_tokens=5, seed=0)[0] is not None
