"""--init-from: a new run starts from a trained model's tokenizer and weights."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import weft
from weft.api import load
from weft.cli.main import cli
from weft.io import load_tensors

from .conftest import PANGRAM, TINY


@pytest.fixture(scope="module")
def stream_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("base")
    (root / "books.txt").write_text(PANGRAM * 80, encoding="utf-8")
    weft.train(root / "books.txt", out=root / "run", max_steps=12, **TINY)
    return root / "run"


def _csv(tmp_path: Path) -> Path:
    path = tmp_path / "notes.csv"
    rows = [f'"Über {i}: the quick fox!"' for i in range(60)]
    path.write_text("text\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_records_on_a_stream_base_keep_every_old_id_and_weight(
        stream_base: Path, tmp_path: Path) -> None:
    base = load(stream_base, device="cpu")
    old = base.tokenizer
    model = weft.train(_csv(tmp_path), out=tmp_path / "ft", init_from=stream_base,
                       csv_column="text", max_steps=1, **TINY)
    assert model is not None
    new = model.tokenizer
    assert new.vocab_size > old.vocab_size
    for ch in set(PANGRAM):
        assert new.encode(ch).tolist() == old.encode(ch).tolist()  # nothing renumbered
    assert new.bos_id >= old.vocab_size and new.eos_id >= old.vocab_size
    assert new.encode("Ü").tolist()[0] >= old.vocab_size  # a new character, added
    assert new.decode(new.encode("Über")) == "Über"
    config = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert config["init_from"]["added_tokens"] == new.vocab_size - old.vocab_size
    assert config["init_from"]["name"] == str(stream_base.resolve())
    assert len(config["init_from"]["sha256"]) == 64


def test_grown_rows_start_at_the_mean_and_old_rows_are_copied(
        stream_base: Path, tmp_path: Path) -> None:
    from weft.models.rnn_lm import RNNLanguageModel
    from weft.training.init_from import load_base, load_base_weights

    base = load_base(stream_base)
    tensors, _ = load_tensors(stream_base / "model.safetensors")
    config = dataclasses.replace(base.config.model, vocab_size=base.tokenizer.vocab_size + 3)
    model = RNNLanguageModel(config)
    load_base_weights(model, base)
    old = base.tokenizer.vocab_size
    for key in ("embedding.weight", "head.weight", "head.bias"):
        grown = model.state_dict()[key]
        assert torch.equal(grown[:old], tensors[key])
        assert torch.allclose(grown[old:], tensors[key].mean(0).expand_as(grown[old:]))
    assert torch.equal(model.state_dict()["rnn.weight_hh_l0"], tensors["rnn.weight_hh_l0"])


def test_records_start_and_end_where_the_base_breaks_lines(stream_base: Path) -> None:
    from weft.models.rnn_lm import RNNLanguageModel
    from weft.tokenizers import BOS, EOS, PAD
    from weft.training.init_from import grow_tokenizer, load_base, load_base_weights

    base = load_base(stream_base)
    tokenizer, _ = grow_tokenizer(base.tokenizer, ["the fox"], specials=[BOS, EOS, PAD])
    model = RNNLanguageModel(dataclasses.replace(base.config.model,
                                                 vocab_size=tokenizer.vocab_size))
    load_base_weights(model, base, tokenizer)
    weights = model.state_dict()
    line = int(base.tokenizer.encode("\n")[0])
    assert torch.equal(weights["embedding.weight"][tokenizer.bos_id],
                       weights["embedding.weight"][line])
    assert torch.equal(weights["head.weight"][tokenizer.eos_id], weights["head.weight"][line])
    assert weights["head.bias"][tokenizer.eos_id] == weights["head.bias"][line]
    # <pad> is never predicted: it keeps the mean.
    mean = weights["head.bias"][:base.tokenizer.vocab_size].mean()
    assert weights["head.bias"][tokenizer.pad_id] == pytest.approx(float(mean), abs=1e-6)


def test_init_from_gives_the_base_model_before_any_step(stream_base: Path,
                                                        tmp_path: Path) -> None:
    corpus = tmp_path / "same.txt"
    corpus.write_text(PANGRAM * 30, encoding="utf-8")
    # lr tiny: one step barely moves the weights, so the new run scores like its base.
    model = weft.train(corpus, out=tmp_path / "ft", init_from=stream_base, max_steps=1,
                       lr=1e-9, warmup_steps=0, **TINY)
    assert model is not None
    base_score = load(stream_base, device="cpu").evaluate(PANGRAM * 5).loss
    assert model.evaluate(PANGRAM * 5).loss == pytest.approx(base_score, rel=1e-3)


@pytest.mark.parametrize("flag", [["--hidden-size", "64"], ["--layers", "2"], ["--cell", "gru"],
                                  ["--level", "word"], ["--embedding-dim", "4"]])
def test_shape_changing_flags_are_refused(flag: list[str], stream_base: Path,
                                          tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["train", str(_csv(tmp_path)), "--csv-column", "text",
                                      "--init-from", str(stream_base), "--out",
                                      str(tmp_path / "x"), *flag])
    assert result.exit_code == 2
    assert flag[0] in result.output and "the base has" in result.output
    assert not (tmp_path / "x").exists()


def test_free_flags_and_fine_tuning_defaults(stream_base: Path, tmp_path: Path) -> None:
    from weft.training.init_from import FINETUNE_DEFAULTS

    runner = CliRunner()
    result = runner.invoke(cli, ["train", str(_csv(tmp_path)), "--csv-column", "text",
                                 "--init-from", str(stream_base), "--out", str(tmp_path / "a"),
                                 "--dropout", "0.2", "--batch-size", "3", "--max-steps", "2",
                                 "--hidden-size", "32", "--quiet"])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["model"]["dropout"] == 0.2 and config["train"]["batch_size"] == 3
    assert config["train"]["lr"] == FINETUNE_DEFAULTS["lr"]
    assert config["train"]["warmup_steps"] == FINETUNE_DEFAULTS["warmup_steps"]
    assert config["model"]["hidden_size"] == 32  # equal to the base's: allowed
    # a fine-tuned run resumes like any run
    result = runner.invoke(cli, ["train", "--resume", str(tmp_path / "a"), "--max-steps", "4",
                                 "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "a" / "config.json").read_text())["init_from"] is not None


@pytest.mark.parametrize("level", ["word", "bpe", "byte"])
def test_each_level_fine_tunes_on_records(level: str, tmp_path: Path) -> None:
    (tmp_path / "books.txt").write_text(PANGRAM * 80, encoding="utf-8")
    base = tmp_path / "base"
    extra = {"bpe_vocab_size": 300} if level == "bpe" else {}
    weft.train(tmp_path / "books.txt", out=base, level=level, max_steps=3, **TINY, **extra)
    model = weft.train(_csv(tmp_path), out=tmp_path / "ft", init_from=base, csv_column="text",
                       max_steps=3, **TINY)
    assert model is not None and model.tokenizer.eos_id is not None
    if level == "word":
        assert model.tokenizer.encode("Über").tolist() != [model.tokenizer.unk_id]
    assert model.generate("", max_new_tokens=10, seed=0)[0] is not None


def test_errors_are_one_line(stream_base: Path, tmp_path: Path, pangram_file: Path) -> None:
    def fails(init_from: str) -> str:
        result = CliRunner().invoke(cli, ["train", str(pangram_file), "--init-from", init_from,
                                          "--out", str(tmp_path / "x")])
        assert result.exit_code == 2, result.output
        assert len(result.output.strip().splitlines()) == 1
        return result.output

    assert "not a run directory" in fails(str(tmp_path / "missing"))
    assert "unknown built-in model 'builtin:klingon'" in fails("builtin:klingon")
    damaged = tmp_path / "damaged"
    shutil.copytree(stream_base, damaged)
    weights = damaged / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    assert "damaged" in fails(str(damaged))
    tagger = tmp_path / "tagger"
    tagger.mkdir()
    (tagger / "config.json").write_text('{"kind": "tagger"}')
    assert "takes a language model" in fails(str(tagger))
