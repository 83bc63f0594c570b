"""Defaults that depend on --level (config.LEVEL_DEFAULTS): a flag given always wins, and
config.json records the values used."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from weft.api import build_run_config
from weft.cli.main import cli
from weft.config import LEVEL_DEFAULTS, ModelConfig, TrainConfig

WORD = LEVEL_DEFAULTS["word"]


def test_word_level_takes_its_defaults_and_given_values_win() -> None:
    config = build_run_config(["c.txt"], level="word", embedding_dim=None, hidden_size=48)
    assert config.model.embedding_dim == WORD["embedding_dim"]  # None means "not given"
    assert config.model.hidden_size == 48
    assert build_run_config(["c.txt"], level="word", embedding_dim=8).model.embedding_dim == 8
    assert config.data.max_vocab == WORD["max_vocab"]
    char = build_run_config(["c.txt"])
    assert char.model == ModelConfig() and char.train == TrainConfig()


def test_bpe_level_takes_the_wider_embedding_and_dropout() -> None:
    config = build_run_config(["c.txt"], level="bpe")
    bpe = LEVEL_DEFAULTS["bpe"]
    assert (config.model.embedding_dim, config.model.dropout) == (bpe["embedding_dim"],
                                                                  bpe["dropout"])
    assert config.data.max_vocab is None  # the word level's cut is not a BPE setting
    given = build_run_config(["c.txt"], level="bpe", embedding_dim=32, dropout=0.0)
    assert (given.model.embedding_dim, given.model.dropout) == (32, 0.0)


def test_the_cli_records_the_resolved_values(tmp_path: Path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat on the mat .\n" * 60, encoding="utf-8")
    result = CliRunner().invoke(cli, ["train", str(corpus), "--out", str(tmp_path / "run"),
                                      "--level", "word", "--hidden-size", "24",
                                      "--batch-size", "4", "--seq-len", "8", "--max-steps", "2",
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"]["embedding_dim"] == WORD["embedding_dim"]
    assert config["model"]["hidden_size"] == 24 and config["train"]["batch_size"] == 4
    assert config["data"]["max_vocab"] == WORD["max_vocab"]
    assert config["model"]["adaptive_softmax"] == "off"  # a vocabulary of a few words
    help_text = CliRunner().invoke(cli, ["train", "--help"]).output
    assert f"word level: {WORD['embedding_dim']}" in help_text
