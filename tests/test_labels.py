"""Label columns: control tokens learned per CSV label value, chosen at generation, scored by
`weft eval` as a classifier."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import weft
from weft.cli.main import cli
from weft.config import GenerationConfig
from weft.data.labels import LabelSet, label_token, load_labels
from weft.errors import WeftError
from weft.generation.chat import ChatSession
from weft.generation.generate import prime_rows
from weft.tokenizers import RECORD_SPECIALS, build_tokenizer, load_tokenizer, save_tokenizer

# The sentiment decides the first words, the topic the last one: both are obvious from the text.
TEXTS = {"pos": "I love this so much", "neg": "I hate it a lot"}
ANIMALS = {"a": "cats", "b": "dogs"}


def labelled_csv(path: Path, rows: int = 240, seed: int = 0) -> Path:
    rng = random.Random(seed)
    lines = ["id,text,label,topic"]
    for i in range(rows):
        label, topic = rng.choice(["pos", "neg", "pos"]), rng.choice(["a", "b"])
        lines.append(f'{i},"{TEXTS[label]} {ANIMALS[topic]}",{label},{topic}')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("labels")
    data = labelled_csv(root / "train.csv")
    out = root / "run"
    weft.train(data, out=out, csv_column="text", label_columns=["label", "topic"],
               hidden_size=64, embedding_dim=16, batch_size=16, max_steps=260, eval_every=130,
               lr=1e-2, threads=1, quiet=True)
    return out, data


def test_label_tokens_round_trip_through_save_and_load(tmp_path: Path) -> None:
    labels = LabelSet.from_rows(["label"], [("4",), ("0",), ("4",), ("2",)])
    assert labels.columns[0].counts == {"4": 2, "0": 1, "2": 1}  # most frequent first
    for level in ("char", "word", "bpe"):
        tokenizer = build_tokenizer(level, ["some text <label=4> here"],
                                    specials=[*RECORD_SPECIALS, *labels.specials()],
                                    **({"vocab_size": 300} if level == "bpe" else {}))
        save_tokenizer(tokenizer, tmp_path / f"{level}.json")
        loaded = load_tokenizer(tmp_path / f"{level}.json")
        ids = labels.ids(loaded, {"label": "4"})
        assert ids == labels.ids(tokenizer, {"label": "4"})
        assert loaded.special_id(label_token("label", "4")) == ids[0]
        assert ids[0] in loaded.never_generate
        # The spelling in text stays text: it never encodes to the label token.
        assert ids[0] not in loaded.encode("<label=4>").tolist()
        assert loaded.decode([ids[0]]) == ""


def test_run_keeps_labels_and_info_lists_them(labelled: tuple[Path, Path]) -> None:
    run, _ = labelled
    labels = load_labels(run)
    assert labels.names == ["label", "topic"]
    assert sum(labels.column("label").counts.values()) == 240
    result = CliRunner().invoke(cli, ["info", str(run)])
    assert result.exit_code == 0, result.output
    assert "label column label: pos: " in result.output
    assert "label column topic: " in result.output


def test_generation_under_a_label_starts_from_it(labelled: tuple[Path, Path]) -> None:
    run, _ = labelled
    model = weft.load(run, device="cpu")
    prime = prime_rows(model.tokenizer, "", [model.labels.ids(model.tokenizer,
                                                               {"label": "neg", "topic": "b"})], 1)
    assert prime.tolist() == [[model.tokenizer.bos_id,
                               model.tokenizer.special_id("<label=neg>"),
                               model.tokenizer.special_id("<topic=b>")]]
    for label, start in TEXTS.items():
        texts = model.generate(labels={"label": label}, temperature=0, max_new_tokens=12,
                               num_return_sequences=2)
        assert all(t.startswith(start[:12]) for t in texts), texts
    samples = model.samples(labels={"topic": "b"}, num_return_sequences=6, seed=3,
                            max_new_tokens=30)
    assert all(s.labels["topic"] == "b" and s.labels["label"] in TEXTS for s in samples)


def test_chat_under_a_label_starts_from_it(labelled: tuple[Path, Path]) -> None:
    run, _ = labelled
    model = weft.load(run, device="cpu")
    session = ChatSession(model, GenerationConfig(temperature=0, max_new_tokens=12),
                          {"label": "neg"})
    assert session.labels["label"] == "neg" and session.labels["topic"] in ANIMALS
    assert session.turn("").reply.startswith(TEXTS["neg"][:12])


def test_unlabelled_generation_draws_labels_as_the_data_had_them(
        labelled: tuple[Path, Path]) -> None:
    run, _ = labelled
    drawn = load_labels(run).sample({}, 3000, seed=0)
    share = sum(d["label"] == "pos" for d in drawn) / len(drawn)
    counts = load_labels(run).column("label").counts
    assert share == pytest.approx(counts["pos"] / sum(counts.values()), abs=0.03)
    assert load_labels(run).sample({}, 5, seed=1) == load_labels(run).sample({}, 5, seed=1)


def test_unknown_labels_are_one_line_errors(labelled: tuple[Path, Path]) -> None:
    run, _ = labelled
    runner = CliRunner()
    result = runner.invoke(cli, ["generate", str(run), "--label", "label=meh"])
    assert result.exit_code == 2
    assert "label column 'label' has no value 'meh'; its values: 'pos', 'neg'" in result.output
    result = runner.invoke(cli, ["generate", str(run), "--label", "mood=pos"])
    assert result.exit_code == 2
    assert "unknown label column 'mood'; label columns: label, topic" in result.output
    result = runner.invoke(cli, ["generate", str(run), "--label", "nolabel"])
    assert result.exit_code == 2 and "COLUMN=VALUE" in result.output
    with pytest.raises(WeftError, match="no value 'x'"):
        weft.load(run, device="cpu").generate(labels={"topic": "x"})


def test_eval_classifies_an_obvious_labelled_set(labelled: tuple[Path, Path],
                                                 tmp_path: Path) -> None:
    run, _ = labelled
    test = labelled_csv(tmp_path / "test.csv", rows=60, seed=9)
    result = weft.load(run, device="cpu").evaluate(test)
    by_column = {entry["column"]: entry for entry in result.labels}
    assert by_column["label"]["accuracy"] >= 0.95
    assert by_column["label"]["majority"] == "pos"
    assert by_column["label"]["records"] == 60
    assert 0.4 < by_column["label"]["baseline"] < 0.9
    cli_result = CliRunner().invoke(cli, ["eval", str(run), str(test)])
    assert cli_result.exit_code == 0, cli_result.output
    assert "label label: accuracy" in cli_result.output
    assert "majority class 'pos'" in cli_result.output


def test_generate_jsonl_reports_labels(labelled: tuple[Path, Path]) -> None:
    run, _ = labelled
    result = CliRunner().invoke(cli, ["generate", str(run), "--label", "label=neg",
                                      "--format", "jsonl", "--num-return-sequences", "2",
                                      "--max-new-tokens", "10", "--seed", "1"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["labels"]["label"] for r in rows] == ["neg", "neg"]
    assert all(r["labels"]["topic"] in ANIMALS for r in rows)


@pytest.mark.parametrize(("level", "cell"), [("word", "gru"), ("bpe", "rnn"), ("char", "lstm")])
def test_labels_work_for_every_level_and_cell_and_survive_resume(
        tmp_path: Path, level: str, cell: str) -> None:
    data = labelled_csv(tmp_path / "d.csv", rows=60)
    out = tmp_path / "run"
    extra = {"bpe_vocab_size": 300} if level == "bpe" else {}
    weft.train(data, out=out, csv_column="text", label_columns=["label"], level=level,
               cell=cell, hidden_size=16, embedding_dim=8, batch_size=8, max_steps=4,
               eval_every=2, threads=1, quiet=True, **extra)
    model = weft.resume(out, max_steps=8, quiet=True)
    assert model is not None and model.labels.names == ["label"]
    samples = model.samples(labels={"label": "neg"}, max_new_tokens=5, seed=0)
    assert samples[0].labels == {"label": "neg"}
    assert len(model.evaluate(data).labels) == 1


def test_label_column_needs_csv_records(tmp_path: Path) -> None:
    text = tmp_path / "t.txt"
    text.write_text("hello\n" * 20)
    result = CliRunner().invoke(cli, ["train", str(text), "--records", "lines",
                                      "--label-column", "x", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "needs --csv-column" in result.output
    tokenizer = build_tokenizer("char", ["ab"], specials=RECORD_SPECIALS)
    assert np.array_equal(prime_rows(tokenizer, "", None, 3), [[tokenizer.bos_id]])


def test_http_generate_takes_and_reports_labels(labelled: tuple[Path, Path],
                                                tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from weft.serving import create_app

    run, _ = labelled
    served = tmp_path / "served"
    shutil.copytree(run, served / "labelled")
    with TestClient(create_app(served)) as client:
        models = client.get("/api/models").json()["models"]
        assert [c["name"] for c in models[0]["labels"]] == ["label", "topic"]
        body = {"model": "labelled", "labels": {"label": "neg"}, "max_new_tokens": 12,
                "temperature": 0, "num_return_sequences": 2}
        data = client.post("/api/generate", json=body).json()
        assert [entry["label"] for entry in data["labels"]] == ["neg", "neg"]
        assert all(text.startswith(TEXTS["neg"][:12]) for text in data["texts"])
        bad = client.post("/api/generate", json={**body, "labels": {"label": "meh"}})
        assert bad.status_code == 400 and "its values: 'pos', 'neg'" in bad.json()["detail"]
        # The OpenAI-compatible completions take labels as an extra body field.
        openai = client.post("/v1/completions", json={
            "model": "labelled", "prompt": "", "max_tokens": 12, "temperature": 0, "n": 2,
            "labels": {"label": "pos"}}).json()
        assert [c["labels"]["label"] for c in openai["choices"]] == ["pos", "pos"]
        assert all(c["text"].startswith(TEXTS["pos"][:12]) for c in openai["choices"])


def test_labels_survive_init_from_with_a_new_value(labelled: tuple[Path, Path],
                                                   tmp_path: Path) -> None:
    run, data = labelled
    extra = tmp_path / "more.csv"
    lines = data.read_text(encoding="utf-8").splitlines()
    extra.write_text("\n".join([*lines[:40], '999,"meh whatever cats",meh,a']) + "\n",
                     encoding="utf-8")
    base = weft.load(run, device="cpu")
    tuned = weft.train(extra, out=tmp_path / "tuned", init_from=run, csv_column="text",
                       label_columns=["label", "topic"], batch_size=8, max_steps=3,
                       eval_every=3, threads=1, quiet=True)
    assert tuned is not None
    assert tuned.labels.column("label").values == ["pos", "neg", "meh"]
    for token in ("<label=pos>", "<label=neg>", "<topic=a>", "<topic=b>"):
        assert tuned.tokenizer.special_id(token) == base.tokenizer.special_id(token)
    assert tuned.tokenizer.special_id("<label=meh>") is not None
    assert tuned.samples(labels={"label": "meh"}, max_new_tokens=5, seed=0)[0].labels[
        "label"] == "meh"


def test_negative_seeds_draw_labels_and_shuffle_records(labelled: tuple[Path, Path],
                                                        tmp_path: Path) -> None:
    # PyTorch takes any 64-bit seed; NumPy (labels drawn, records shuffled) no negative one.
    run, data = labelled
    model = weft.load(run, device="cpu")
    assert len(model.samples(seed=-5, max_new_tokens=4, num_return_sequences=2)) == 2
    weft.train(data, out=tmp_path / "r", csv_column="text", hidden_size=16, embedding_dim=8,
               max_steps=2, seed=-3, threads=1, quiet=True)


def test_a_label_column_given_twice_is_refused() -> None:
    from weft.data.labels import parse_label_options

    assert parse_label_options(["label=4", "topic=a=b"]) == {"label": "4", "topic": "a=b"}
    with pytest.raises(WeftError, match="--label label given twice"):
        parse_label_options(["label=4", "label=0"])
