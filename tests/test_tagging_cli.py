"""``weft tag`` end to end on tiny data: train, eval, predict, load, resume and user errors."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

import weft
from weft.cli.main import cli
from weft.errors import WeftError
from weft.tagging.api import Tagger, load_tagger

TRAIN = [
    "The/DET dog/NOUN barks/VERB ./PUNCT",
    "A/DET cat/NOUN sleeps/VERB ./PUNCT",
    "The/DET old/ADJ man/NOUN sleeps/VERB ./PUNCT",
    "Dogs/NOUN bark/VERB loudly/ADV !/PUNCT",
    "The/DET cat/NOUN sees/VERB a/DET dog/NOUN ./PUNCT",
    "I/PRON see/VERB the/DET big/ADJ dog/NOUN ./PUNCT",
] * 3
TINY_FLAGS = ["--word-dim", "16", "--char-dim", "8", "--char-hidden", "8", "--hidden", "24",
              "--layers", "1", "--batch-size", "4", "--lr", "0.02", "--warmup-steps", "5",
              "--eval-every", "10", "--quiet", "--seed", "3", "--dropout", "0.1"]


def _invoke(*args: str, input: str | bytes | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), input=input)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def tagged_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tagdata")
    train = root / "train.txt"
    train.write_text("\n".join(TRAIN) + "\n", encoding="utf-8")
    dev = root / "dev.tsv"
    dev.write_text("A\tDET\ndog\tNOUN\nsleeps\tVERB\n.\tPUNCT\n\n"
                   "The\tDET\nzebra\tNOUN\nbarks\tVERB\n!\tPUNCT\n", encoding="utf-8")
    return {"train": train, "dev": dev, "root": root}


@pytest.fixture(scope="module")
def run(tagged_files: dict[str, Path]) -> Path:
    out = tagged_files["root"] / "run"
    code, output = _invoke("tag", "train", str(tagged_files["train"]), "--dev",
                           str(tagged_files["dev"]), "--out", str(out), "--max-steps", "60",
                           *TINY_FLAGS)
    assert code == 0, output
    return out


def test_train_writes_a_complete_run(run: Path) -> None:
    config = json.loads((run / "config.json").read_text())
    assert config["kind"] == "tagger"
    assert config["data"]["format"] == "auto" and config["model"]["hidden"] == 24
    assert {"vocab.json", "model.safetensors", "last.safetensors", "metrics.jsonl"} <= {
        p.name for p in run.iterdir()}
    assert not list(run.glob("*.pkl")) and not list(run.glob("*.pt"))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records and "dev_accuracy" in records[-1]


def test_eval_json_and_text(run: Path, tagged_files: dict[str, Path]) -> None:
    code, output = _invoke("tag", "eval", str(run), str(tagged_files["dev"]), "--json")
    assert code == 0, output
    metrics = json.loads(output)
    assert metrics["tokens"] == 8 and metrics["accuracy"] >= 0.75
    assert metrics["unseen_tokens"] == 1  # zebra
    assert set(metrics["per_tag"]) >= {"DET", "NOUN", "VERB", "PUNCT"}
    # The speed is the tokens tagged over the time the tagging took, both reported.
    assert 0 < metrics["seconds"] < 60
    assert metrics["tokens_per_second"] == pytest.approx(metrics["tokens"] / metrics["seconds"])
    code, output = _invoke("tag", "eval", str(run), str(tagged_files["dev"]))
    assert code == 0 and "accuracy" in output and "unseen words" in output


def test_predict_raw_tokenized_and_json(run: Path, tmp_path: Path) -> None:
    code, output = _invoke("tag", "predict", str(run), input="The dog barks. A cat sleeps.\n")
    assert code == 0, output
    lines = output.strip().split("\n")
    assert lines == ["The/DET dog/NOUN barks/VERB ./PUNCT", "A/DET cat/NOUN sleeps/VERB ./PUNCT"]
    source = tmp_path / "in.txt"
    source.write_text("the cat sees a dog\n\nI see\n", encoding="utf-8")
    code, output = _invoke("tag", "predict", str(run), str(source), "--tokenized", "--json")
    assert code == 0, output
    rows = [json.loads(line) for line in output.strip().split("\n")]
    assert [r["words"] for r in rows] == [["the", "cat", "sees", "a", "dog"], ["I", "see"]]
    probs = rows[0]["probabilities"][1]
    assert max(probs, key=probs.get) == rows[0]["tags"][1] == "NOUN"
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-3)


def test_save_load_gives_identical_predictions(run: Path) -> None:
    sentences = [["The", "old", "dog", "sleeps", "."], ["Cats", "see", "zebras", "!"], []]
    first = Tagger(run).tag_sentences(sentences, probabilities=True)
    second = weft.load(run, device="cpu").tag_sentences(sentences, probabilities=True)
    assert [o.to_dict() for o in first] == [o.to_dict() for o in second]
    assert first[2].words == [] and first[2].tags == []
    pairs = load_tagger(run).tag("The dog barks.")
    assert pairs == [("The", "DET"), ("dog", "NOUN"), ("barks", "VERB"), (".", "PUNCT")]
    assert load_tagger(run).tag(["a", "cat"])[1] == ("cat", "NOUN")


def test_crf_run_and_dev_fraction(tagged_files: dict[str, Path]) -> None:
    out = tagged_files["root"] / "crf"
    code, output = _invoke("tag", "train", str(tagged_files["train"]), "--out", str(out),
                           "--dev-fraction", "0.2", "--crf", "--max-steps", "40", *TINY_FLAGS)
    assert code == 0, output
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["crf"] and config["sizes"]["dev_sentences"] == 4
    tagged = load_tagger(out).tag_sentences([["The", "dog", "barks", "."]], probabilities=True)
    assert tagged[0].tags == ["DET", "NOUN", "VERB", "PUNCT"]
    assert tagged[0].probabilities is not None
    assert sum(tagged[0].probabilities[0].values()) == pytest.approx(1.0, abs=1e-3)
    code, output = _invoke("tag", "train", "--out", str(out), str(tagged_files["train"]),
                           "--resume", "--max-steps", "50", "--quiet")
    assert code == 0, output
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 50
    code, output = _invoke("tag", "train", "--out", str(out), "--resume", "--lr", "0.1")
    assert code == 2 and "cannot change: --lr" in output


def test_treebank_zip_with_map_and_slices(tmp_path: Path) -> None:
    treebank = tmp_path / "treebank.zip"
    trees = "".join(f"( (S (NP (DT The) (NN dog{i % 3})) (VP (VBZ barks) (NP (-NONE- *))) "
                    "(. .)) )\n" for i in range(20))
    with zipfile.ZipFile(treebank, "w") as archive:
        archive.writestr("treebank/combined/wsj_0001.mrg", trees)
    tag_map = tmp_path / "map.txt"
    tag_map.write_text("DT\tDET\nNN\tNOUN\nVBZ\tVERB\n.\t.\n", encoding="utf-8")
    out = tmp_path / "ptb"
    code, output = _invoke("tag", "train", str(treebank), "--tagset-map", str(tag_map),
                           "--sentences", ":0.9", "--no-traces", "--out", str(out),
                           "--max-steps", "40", *TINY_FLAGS)
    assert code == 0, output
    code, output = _invoke("tag", "eval", str(out), str(treebank), "--sentences", "0.9:",
                           "--json")
    assert code == 0, output
    metrics = json.loads(output)
    assert metrics["sentences"] == 2 and metrics["tokens"] == 8  # traces dropped as in training
    assert set(metrics["per_tag"]) <= {"DET", "NOUN", "VERB", "."}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tag", "train", "missing.conllu", "--out", "{tmp}/r"], "file not found"),
        (["tag", "train", "{tmp}/empty.tsv", "--out", "{tmp}/r", "--format", "tsv"],
         "no tagged sentences"),
        (["tag", "train", "{tmp}/bad.txt", "--out", "{tmp}/r"], "bad.txt:2: token"),
        (["tag", "train", "{tmp}/prose.txt", "--out", "{tmp}/r"], "cannot tell the format"),
        (["tag", "eval", "{tmp}/nothing", "{tmp}/bad.txt"], "not a run directory"),
        (["tag", "predict", "{tmp}", "-"], "has no config.json"),
        (["tag", "train", "{tmp}/good.txt", "--out", "{tmp}/r", "--grad-clip", "-1"],
         "--grad-clip must be >= 0"),
        (["tag", "train", "{tmp}/good.txt", "--out", "{tmp}/r", "--patience", "-1"],
         "--patience must be >= 0"),
        (["tag", "train", "{tmp}/good.txt", "--out", "{tmp}/r", "--batch-size", "0"],
         "--batch-size must be >= 1"),
    ],
)
def test_user_errors_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "empty.tsv").write_text("\n", encoding="utf-8")
    (tmp_path / "bad.txt").write_text("The/DT dog/NN\nthe dog\n", encoding="utf-8")
    (tmp_path / "prose.txt").write_text("just words\n", encoding="utf-8")
    (tmp_path / "good.txt").write_text("\n".join(TRAIN) + "\n", encoding="utf-8")
    code, output = _invoke(*[a.replace("{tmp}", str(tmp_path)) for a in args], input="")
    assert code == 2
    assert message in output and "Traceback" not in output


@pytest.mark.parametrize("command", [
    ["generate", "{run}"], ["eval", "{run}", "{train}"], ["chat", "{run}"],
])
def test_language_model_commands_refuse_a_tagger_run(run: Path, tagged_files: dict[str, Path],
                                                     command: list[str]) -> None:
    args = [a.format(run=run, train=tagged_files["train"]) for a in command]
    code, output = _invoke(*args, input="hi\n")
    assert code == 2 and "is a tagger run, not a language model" in output
    assert "weft tag predict" in output
    code, output = _invoke("train", "--resume", str(run))
    assert code == 2 and f"weft tag train --resume {run}" in output


def test_info_describes_a_tagger_run(run: Path) -> None:
    code, output = _invoke("info", str(run))
    assert code == 0, output
    assert "tagger, 1 x" in output and "best dev accuracy" in output
    assert "tags: " in output and "NOUN" in output and "model.safetensors" in output
    code, output = _invoke("info", str(run), "--json")
    details = json.loads(output)
    assert details["kind"] == "tagger" and "NOUN" in details["tags"]
    assert 0 < details["best_dev_accuracy"] <= 1 and details["parameters"] > 0


def test_resume_takes_the_run_as_printed_and_nothing_it_would_ignore(
        tagged_files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import interrupted_at

    out = tmp_path / "run"
    monkeypatch.chdir(tagged_files["root"])  # relative paths, kept whole in config.json
    with interrupted_at(20):
        code, output = _invoke("tag", "train", "train.txt", "--dev", "dev.tsv", "--out",
                               str(out), "--max-steps", "60", *TINY_FLAGS)
    # Interrupted is not finished: 130, and the command to continue, as `weft train` does.
    assert code == 130 and f"Continue with: weft tag train --resume {out}" in output
    data = json.loads((out / "config.json").read_text())["data"]
    assert data["train"] == str(tagged_files["train"]) and data["dev"] == str(tagged_files["dev"])
    monkeypatch.chdir(tmp_path)
    code, output = _invoke("tag", "train", "--resume", str(out), "--max-steps", "30", "--quiet")
    assert code == 0, output
    for args, message in [
        (["other.txt", "--resume", str(out)], "--resume reads it from there"),
        (["--resume", str(out), "--dev", str(tagged_files["train"])], "cannot change: --dev"),
        (["--resume", str(out), "--out", str(tmp_path / "b")], "name two runs"),
        ([], "needs TRAIN_FILE and --out"),
    ]:
        code, output = _invoke("tag", "train", *args, "--max-steps", "40")
        assert code == 2 and message in output, output


def test_tag_odd_inputs_are_one_line(run: Path, tagged_files: dict[str, Path]) -> None:
    import os
    import subprocess
    import sys

    closed = subprocess.run([sys.executable, "-m", "weft", "tag", "predict", str(run)],
                            preexec_fn=lambda: os.close(0), capture_output=True, text=True,
                            timeout=120)
    assert closed.returncode == 2 and "standard input is closed" in closed.stderr + closed.stdout
    code, output = _invoke("tag", "eval", str(run), str(tagged_files["dev"]),
                           "--top-confusions", "-1")
    assert code == 2 and "--top-confusions" in output
    tagger = load_tagger(run)
    words = (s for s in [["The", "dog", "barks", "."]])  # a generator is read once
    assert tagger.tag_sentences(words)[0].tags == ["DET", "NOUN", "VERB", "PUNCT"]
    with pytest.raises(WeftError, match="lists of words"):
        tagger.tag_sentences(["The dog barks ."])


def test_eval_warns_about_gold_tags_the_model_cannot_predict(
        run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from weft.tagging.readers import TaggedSentence

    tagger = load_tagger(run)
    with caplog.at_level("WARNING", logger="weft"):
        tagger.evaluate([TaggedSentence(("The", "dog"), ("DT", "NN"))])
    assert "not in the model's tag set" in caplog.text and "DT, NN" in caplog.text
    with pytest.raises(WeftError, match="nothing to evaluate"):
        tagger.evaluate([])


def test_non_utf8_standard_input_says_how_to_convert_it(run: Path) -> None:
    code, output = _invoke("tag", "predict", str(run), input="caf\xe9\n".encode("latin-1"))
    assert code == 2 and "pipe it through `iconv -f latin1 -t utf-8`" in output
