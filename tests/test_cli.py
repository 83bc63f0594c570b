from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from weft.api import build_run_config
from weft.cli.main import cli
from weft.config import parse_duration
from weft.errors import WeftError

from .conftest import PANGRAM

SMALL = ["--hidden-size", "16", "--embedding-dim", "8", "--batch-size", "4", "--seq-len",
         "16", "--max-steps", "6", "--eval-every", "3", "--quiet"]


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_train_generate_eval_info_for_each_cell(cell: str, pangram_file: Path,
                                                tmp_path: Path) -> None:
    out = tmp_path / cell
    code, output = run("train", str(pangram_file), "--out", str(out), "--cell", cell, *SMALL)
    assert code == 0, output
    code, output = run("generate", str(out), "--prompt", "The", "--max-new-tokens", "20",
                       "--seed", "1")
    assert code == 0 and output.startswith("The") and len(output.strip()) >= 3
    code, output = run("generate", str(out), "--num-return-sequences", "3", "--format", "jsonl",
                       "--max-new-tokens", "10")
    assert code == 0
    records = [json.loads(line) for line in output.splitlines()]
    assert [r["index"] for r in records] == [0, 1, 2]
    assert all(r["finish_reason"] in {"stop", "length"} and r["tokens"] <= 10 for r in records)
    code, output = run("eval", str(out), str(pangram_file), "--json")
    assert code == 0
    assert set(json.loads(output)) >= {"loss", "bits_per_char", "perplexity", "tokens",
                                       "characters"}
    code, output = run("info", str(out))
    assert code == 0 and cell.upper() in output
    code, output = run("plot", str(out))
    assert code == 0 and (out / "loss.png").exists()


def test_bom_and_crlf_input(tmp_path: Path) -> None:
    corpus = tmp_path / "windows.txt"
    corpus.write_bytes(b"\xef\xbb\xbf" + (PANGRAM.replace("\n", "\r\n") * 30).encode())
    code, output = run("train", str(corpus), "--out", str(tmp_path / "r"), *SMALL)
    assert code == 0, output
    tokenizer = json.loads((tmp_path / "r" / "tokenizer.json").read_text())
    assert "\r" not in tokenizer["chars"] and "\ufeff" not in tokenizer["chars"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe\x00bad", "not valid UTF-8"),
        (b"", "empty"),
        (b"   \n\n", "empty"),
        (b"tiny text\n", "too few"),
    ],
)
def test_bad_corpus_gives_a_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    corpus = tmp_path / "bad.txt"
    corpus.write_bytes(content)
    code, output = run("train", str(corpus), "--out", str(tmp_path / "r"), "--val-fraction",
                       "0", *SMALL)
    assert code == 2
    assert message in output and "Traceback" not in output


def test_missing_file_and_existing_run(pangram_file: Path, tmp_path: Path) -> None:
    code, output = run("train", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "r"))
    assert code == 2 and "not found" in output
    run("train", str(pangram_file), "--out", str(tmp_path / "r"), *SMALL)
    code, output = run("train", str(pangram_file), "--out", str(tmp_path / "r"), *SMALL)
    assert code == 2 and "--resume" in output


def test_bad_generation_options(tiny_run: Path) -> None:
    code, output = run("generate", str(tiny_run), "--top-p", "0")
    assert code == 2 and "--top-p" in output
    code, output = run("generate", str(tiny_run), "--temperature", "-1")
    assert code == 2 and "--temperature" in output


@pytest.mark.parametrize(("flags", "message"), [
    (["--temperature", "nan"], "--temperature must be a finite number"),
    (["--temperature", "inf"], "--temperature must be a finite number"),
    (["--repetition-penalty", "nan"], "--repetition-penalty must be a finite number"),
    (["--top-p", "nan"], "--top-p must be a finite number"),
    (["--stop", ""], "--stop must not be empty"),
    (["--seed", str(2**64)], "--seed must be a 64-bit integer"),
    (["--seed", str(-(2**63) - 1)], "--seed must be a 64-bit integer"),
])
def test_nonsense_generation_values_are_one_line_errors(tiny_run: Path, flags: list[str],
                                                        message: str) -> None:
    code, output = run("generate", str(tiny_run), "--max-new-tokens", "3", *flags)
    assert code == 2 and message in output and "Traceback" not in output


def test_the_widest_seeds_work(tiny_run: Path) -> None:
    for seed in (2**64 - 1, -(2**63)):
        code, output = run("generate", str(tiny_run), "--max-new-tokens", "3", "--seed",
                           str(seed))
        assert code == 0, output


@pytest.mark.parametrize(("flags", "message"), [
    # A negative norm would flip every gradient: the loss climbed (reported).
    (["--grad-clip", "-1"], "--grad-clip must be >= 0"),
    (["--grad-clip", "nan"], "--grad-clip must be a finite number"),
    (["--patience", "-1"], "--patience must be >= 0"),
    (["--warmup-steps", "-3"], "--warmup-steps must be >= 0"),
    (["--weight-decay", "-0.1"], "--weight-decay must be >= 0"),
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--epochs", "nan"], "--epochs must be > 0"),
    (["--seed", str(2**64)], "--seed must be a 64-bit integer"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--level", "word", "--max-vocab", "1"], "--max-vocab must be more than the 1 special"),
])
def test_nonsense_training_values_are_one_line_errors(pangram_file: Path, tmp_path: Path,
                                                      flags: list[str], message: str) -> None:
    code, output = run("train", str(pangram_file), "--out", str(tmp_path / "r"), *SMALL,
                       *flags)
    assert code == 2 and message in output and "Traceback" not in output


def test_a_short_run_logs_the_training_loss_of_its_last_steps(pangram_file: Path,
                                                             tmp_path: Path) -> None:
    code, output = run("train", str(pangram_file), "--out", str(tmp_path / "r"),
                       "--max-steps", "3", "--hidden-size", "16", "--embedding-dim", "8")
    assert code == 0, output
    last = json.loads((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 3 and last["train_loss"] > 0


def test_time_budget_parsing(pangram_file: Path, tmp_path: Path) -> None:
    code, output = run("train", str(pangram_file), "--out", str(tmp_path / "r"),
                       "--time-budget", "ten minutes")
    assert code == 2 and "duration" in output


def test_durations_read_every_unit_and_zero_where_it_means_off() -> None:
    assert parse_duration("500ms") == pytest.approx(0.5)
    assert parse_duration("1h30m") == 5400 and parse_duration("1m30s") == 90
    assert parse_duration("1.5h") == 5400 and parse_duration("90") == 90
    with pytest.raises(WeftError, match="duration"):
        parse_duration("0m")  # a time budget of nothing
    for off in ("0", "0m", "0s", "0ms", "off"):
        config = build_run_config(["x.txt"], checkpoint_every=off)
        assert config.train.checkpoint_every == 0.0
    assert build_run_config(["x.txt"], checkpoint_every="500ms").train.checkpoint_every == 0.5


@pytest.mark.parametrize("command", [["train"], ["tag", "train"]])
def test_seed_help_says_what_is_repeatable(command: list[str]) -> None:
    code, output = run(*command, "--help")
    text = " ".join(output.split())
    assert code == 0 and "repeats exactly; under --time-budget" in text
    assert "Makes a CPU run repeatable" not in text  # true only of step- or epoch-limited runs


def test_train_and_tag_train_take_the_same_training_flags() -> None:
    import click

    from weft.config import TrainConfig

    def flags(command: click.Command) -> dict[str, str | None]:
        return {p.name: p.help for p in command.params
                if isinstance(p, click.Option) and p.name is not None}

    group = cli.commands["tag"]
    assert isinstance(group, click.Group)
    lm, tagger = flags(cli.commands["train"]), flags(group.commands["train"])
    shared = {f.name for f in dataclasses.fields(TrainConfig)} - {"seq_len"}
    assert shared <= lm.keys() and shared <= tagger.keys()
    differ = {name for name in shared if lm[name] != tagger[name]}
    assert differ == {"batch_size", "eval_every"}  # what a step and an evaluation are


def test_eval_takes_threads_and_gives_them_back(tiny_run: Path, pangram_file: Path) -> None:
    import torch

    before = torch.get_num_threads()
    code, output = run("eval", str(tiny_run), str(pangram_file), "--json", "--threads", "1")
    assert code == 0, output
    _, default = run("eval", str(tiny_run), str(pangram_file), "--json")
    assert json.loads(output)["loss"] == pytest.approx(json.loads(default)["loss"], rel=1e-5)
    assert torch.get_num_threads() == before
    code, output = run("eval", str(tiny_run), str(pangram_file), "--threads", "0")
    assert code == 2 and "--threads" in output


def test_info_of_a_run_without_a_validation_set(pangram_file: Path, tmp_path: Path) -> None:
    run("train", str(pangram_file), "--out", str(tmp_path / "r"), "--val-fraction", "0", *SMALL)
    code, output = run("info", str(tmp_path / "r"))
    assert code == 0 and "no validation set" in output and "None" not in output
