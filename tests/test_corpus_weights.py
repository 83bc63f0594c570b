"""Corpus weights (``weft train a.txt:3 b.txt:0.5``): parsed, honoured, resumed, refused."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import weft
from weft.cli.main import cli
from weft.config import DataConfig
from weft.data.pipeline import prepare_corpus
from weft.data.weights import repeat_by_weight, split_weight
from weft.errors import WeftError

from .conftest import TINY, interrupted_at


@pytest.mark.parametrize(("source", "expected"), [
    ("a.txt:3", ("a.txt", 3.0)),
    ("a.txt:0.5", ("a.txt", 0.5)),
    ("books/:2.5", ("books/", 2.5)),
    ("data/*.txt:1e1", ("data/*.txt", 10.0)),
    ("builtin:pydoc-topics", ("builtin:pydoc-topics", 1.0)),
    ("builtin:pydoc-topics:2", ("builtin:pydoc-topics", 2.0)),
    ("a.txt", ("a.txt", 1.0)),
    ("a.txt:abc", ("a.txt:abc", 1.0)),  # not a weight: a file of that name (reported missing)
])
def test_a_weight_is_the_number_after_the_last_colon(source: str,
                                                     expected: tuple[str, float]) -> None:
    assert split_weight(source) == expected


def test_a_file_whose_name_ends_in_colon_digits_is_a_file(tmp_path: Path) -> None:
    odd = tmp_path / "notes:2"
    odd.write_text("x\n", encoding="utf-8")
    assert split_weight(str(odd)) == (str(odd), 1.0)


@pytest.mark.parametrize("weight", ["0", "-1", "nan", "inf", "1e999", "+0.0"])
def test_a_weight_that_is_not_positive_and_finite_is_one_line(weight: str) -> None:
    with pytest.raises(WeftError, match="must be a positive number") as caught:
        split_weight(f"a.txt:{weight}")
    assert "\n" not in str(caught.value)


def test_repeat_by_weight_reads_whole_copies_then_the_first_share() -> None:
    items = np.arange(10)
    assert repeat_by_weight(items, 2.5).tolist() == [*range(10), *range(10), *range(5)]
    assert repeat_by_weight(items, 0.3).tolist() == [0, 1, 2]
    assert repeat_by_weight(["a", "b", "c", "d"], 1.5) == ["a", "b", "c", "d", "a", "b"]


def test_a_stream_reads_each_file_by_its_weight_and_validates_on_the_plain_end(
        tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a" * 999 + "\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("b" * 1999 + "\n", encoding="utf-8")
    data = DataConfig(level="byte", val_fraction=0.1)
    corpus = prepare_corpus(data, [f"{tmp_path / 'a.txt'}:3", f"{tmp_path / 'b.txt'}:0.5"],
                            tmp_path / "run")
    a, b = ord("a"), ord("b")
    # Validation: the last 10% of the 3,000 bytes, each file once (all of it from b.txt).
    assert len(corpus.val_ids) == 300 and set(corpus.val_ids.tolist()) <= {b, ord("\n")}
    # Training: a.txt three times (1,000 bytes each), then half of what b.txt keeps (1,700).
    train = corpus.train_ids.tolist()
    assert train[:3000].count(a) == 2997 and len(train) == 3000 + 850
    assert set(train[3000:]) == {b}
    plain = prepare_corpus(data, [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")],
                           tmp_path / "plain")
    assert plain.fingerprint != corpus.fingerprint  # another mix is other training data
    assert np.array_equal(plain.val_ids, corpus.val_ids)


def test_a_folders_weight_is_each_of_its_files(tmp_path: Path) -> None:
    books = tmp_path / "books"
    books.mkdir()
    for name in ("1.txt", "2.txt"):
        (books / name).write_text(name[0] * 99 + "\n", encoding="utf-8")
    corpus = prepare_corpus(DataConfig(level="byte", val_fraction=0), [f"{books}:2"],
                            tmp_path / "run")
    assert corpus.train_ids.tolist().count(ord("1")) == 198
    assert corpus.train_ids.tolist().count(ord("2")) == 198


def test_records_are_repeated_with_their_labels(tmp_path: Path) -> None:
    rows = [("happy day", "pos"), ("sad day", "neg"), ("fine day", "pos"), ("bad day", "neg")]
    for name, part in (("a.csv", rows[:2]), ("b.csv", rows[2:])):
        with (tmp_path / name).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(part)
    data = DataConfig(level="char", csv_column="text", label_columns=("label",),
                      val_fraction=0.25)
    corpus = prepare_corpus(data, [f"{tmp_path / 'a.csv'}:2", str(tmp_path / "b.csv")],
                            tmp_path / "run")
    assert corpus.train_records == ["happy day", "sad day", "happy day", "sad day", "fine day"]
    assert corpus.val_records == ["bad day"]
    assert corpus.prefixes is not None and len(corpus.prefixes) == 6
    label_of = {row[0]: row[1] for row in rows}
    token = {value: corpus.labels.prefixes(corpus.tokenizer, [(value,)])[0].tolist()
             for value in ("pos", "neg")}
    for record, prefix in zip(corpus.train_records + corpus.val_records, corpus.prefixes,
                              strict=True):
        assert prefix.tolist() == token[label_of[record]]


def test_a_weighted_run_resumes_exactly_and_refuses_another_mix(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("the quick brown fox jumps.\n" * 80, encoding="utf-8")
    (tmp_path / "b.txt").write_text("pack my box with five dozen jugs.\n" * 80,
                                    encoding="utf-8")
    sources = [f"{tmp_path / 'a.txt'}:2.5", str(tmp_path / "b.txt")]
    options = dict(TINY, seed=5)
    weft.train(sources, out=tmp_path / "full", max_steps=30, **options)
    with interrupted_at(15):
        weft.train(sources, out=tmp_path / "part", max_steps=30, **options)
    weft.resume(tmp_path / "part", quiet=True)

    def losses(run: str) -> list[tuple[int, float, float]]:
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [(r["step"], r["train_loss"], r["val_loss"]) for r in map(json.loads, lines)]

    assert losses("part") == losses("full")
    config = json.loads((tmp_path / "part" / "config.json").read_text())
    assert config["corpus"][0].endswith("a.txt:2.5")
    config["corpus"][0] = config["corpus"][0].replace(":2.5", ":3")
    (tmp_path / "part" / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeftError, match="changed since this run started"):
        weft.resume(tmp_path / "part", quiet=True, max_steps=40)


def test_the_cli_takes_weights_and_says_what_is_wrong_in_one_line(tmp_path: Path) -> None:
    corpus = tmp_path / "a.txt"
    corpus.write_text("hello there, general kenobi.\n" * 50, encoding="utf-8")
    runner = CliRunner()
    ok = runner.invoke(cli, ["train", f"{corpus}:2", "--out", str(tmp_path / "run"),
                             "--max-steps", "3", "--batch-size", "4", "--seq-len", "16",
                             "--quiet"])
    assert ok.exit_code == 0, ok.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train_tokens"] > 2500
    for bad, message in ((f"{corpus}:0", "must be a positive number"),
                         (f"{corpus}:2", "--memmap reads each file once")):
        extra = ["--memmap"] if "memmap" in message else []
        result = runner.invoke(cli, ["train", bad, "--out", str(tmp_path / "bad"), *extra])
        assert result.exit_code != 0 and message in result.output
        assert len(result.output.strip().splitlines()) == 1
