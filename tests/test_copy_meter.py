"""The copy meter: a suffix-array index of the training text, the longest copied span of a
generated text, and --max-copy."""

from __future__ import annotations

import json
import logging
import random
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import weft
from weft.cli.main import cli
from weft.config import GenerationConfig
from weft.data.corpus_index import CorpusIndex, build_index, open_index
from weft.errors import WeftError
from weft.generation.chat import ChatSession
from weft.generation.samples import MAX_COPY_TRIES
from weft.runs import COPY_INDEX


def naive_longest(corpus: str, text: str) -> int:
    best = 0
    for i in range(len(text)):
        for j in range(i + best + 1, len(text) + 1):
            if text[i:j] not in corpus:
                break
            best = j - i
    return best


def test_a_planted_span_is_found_exactly(tmp_path: Path) -> None:
    rng = random.Random(0)
    # Over 64 KiB of text with multi-byte characters before the plant, so the character offset
    # crosses blocks and differs from the byte offset.
    before = "".join(rng.choice("abcdéfgh✓") for _ in range(100_000))
    planted = "The Quick Brown Fox Jumps Over The Lazy Dog, Twice."
    corpus = before + planted + "".join(rng.choice("abcdefgh") for _ in range(5_000))
    stats = build_index(tmp_path, [corpus[:70_000], corpus[70_000:]])
    assert stats is not None and stats.text_bytes == len(corpus.encode("utf-8"))
    index = CorpusIndex(tmp_path)
    span = planted[4:44]
    copy = index.longest_copy("0123" + span + "98765")
    assert (copy.chars, copy.text) == (len(span), span)
    assert copy.offset == len(before) + 4
    assert corpus[copy.offset:copy.offset + copy.chars] == span
    assert index.longest_copy("0123").chars == 0 and index.longest_copy("").chars == 0
    assert index.first_copy_end("0123" + span, 10) == 4 + 10


def test_longest_copy_agrees_with_brute_force(tmp_path: Path) -> None:
    rng = random.Random(1)
    corpus = "".join(rng.choice("abc\n") for _ in range(3_000))
    build_index(tmp_path, [corpus])
    index = CorpusIndex(tmp_path)
    for _ in range(60):
        text = "".join(rng.choice("abcd") for _ in range(rng.randrange(0, 40)))
        copy = index.longest_copy(text)
        assert copy.chars == naive_longest(corpus, text), text
        assert copy.text in corpus and copy.text in text


def test_an_empty_corpus_copies_nothing_and_a_huge_one_gets_no_index(tmp_path: Path) -> None:
    build_index(tmp_path, [])
    assert CorpusIndex(tmp_path).longest_copy("abc").chars == 0
    (tmp_path / "big").mkdir()
    assert build_index(tmp_path / "big", ["abc" * 10], max_bytes=29) is None
    assert open_index(tmp_path / "big") is None


def test_training_builds_the_index_and_jsonl_reports_copies(tiny_run: Path) -> None:
    assert (tiny_run / COPY_INDEX / "suffixes.npy").is_file()
    result = CliRunner().invoke(cli, ["generate", str(tiny_run), "--format", "jsonl",
                                      "--max-new-tokens", "60", "--seed", "2",
                                      "--num-return-sequences", "2"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    corpus = (tiny_run / COPY_INDEX / "text.bin").read_text(encoding="utf-8")
    for row in rows:
        copy = row["longest_copy"]
        assert copy["chars"] == naive_longest(corpus, row["text"]) > 0
        assert corpus[copy["offset"]:copy["offset"] + copy["chars"]] == copy["text"]


def test_max_copy_never_returns_a_text_over_the_limit(copier: Path) -> None:
    model = weft.load(copier, device="cpu")
    index = model.copy_index
    assert index is not None
    free = model.samples(max_new_tokens=60, num_return_sequences=4, seed=0)
    assert all(s.longest_copy is not None and s.longest_copy.chars >= 12 for s in free)
    for limit in (12, 3):
        samples = model.samples(max_copy=limit, max_new_tokens=60, num_return_sequences=4,
                                seed=0)
        assert all(s.longest_copy is not None and s.longest_copy.chars < limit
                   for s in samples)
        assert all(s.longest_copy == index.longest_copy(s.text) for s in samples)
        assert any(s.tries > 1 or s.cut for s in samples)
    assert any(s.cut and s.tries == MAX_COPY_TRIES for s in samples)  # 3 is too strict
    # A cut text ended at the limit, as a streamed one does.
    assert all(s.text.finish_reason == "stop" for s in samples if s.cut)
    result = CliRunner().invoke(cli, ["generate", str(copier), "--max-copy", "12",
                                      "--max-new-tokens", "60", "--seed", "0"])
    assert result.exit_code == 0, result.output
    assert index.longest_copy(result.output.splitlines()[-1]).chars < 12


def test_runs_without_an_index_say_the_meter_is_unavailable(
        tiny_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    old = tmp_path / "old"
    shutil.copytree(tiny_run, old)
    shutil.rmtree(old / COPY_INDEX)
    runner = CliRunner()
    weft_log = logging.getLogger("weft")  # the CLI's logger does not propagate to caplog's
    weft_log.addHandler(caplog.handler)
    try:
        result = runner.invoke(cli, ["generate", str(old), "--format", "jsonl",
                                     "--max-new-tokens", "10", "--seed", "1"])
    finally:
        weft_log.removeHandler(caplog.handler)
    assert result.exit_code == 0, result.output
    assert "copy meter is unavailable" in caplog.text
    assert json.loads(result.output.splitlines()[-1])["longest_copy"] is None
    assert "copy meter: unavailable" in runner.invoke(cli, ["info", str(old)]).output
    assert "copy meter: an index of " in runner.invoke(cli, ["info", str(tiny_run)]).output
    result = runner.invoke(cli, ["generate", str(old), "--max-copy", "5"])
    assert result.exit_code == 2 and "copy meter is unavailable" in result.output
    with pytest.raises(WeftError, match="unavailable"):
        weft.load(old, device="cpu").samples(max_copy=5)


def test_training_without_pydivsufsort_warns_and_resume_builds_the_index(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat on the mat. " * 80 + "\n", encoding="utf-8")
    out = tmp_path / "run"
    tiny = {"hidden_size": 16, "embedding_dim": 8, "batch_size": 4, "seq_len": 16,
            "eval_every": 3, "threads": 1, "quiet": True}
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "pydivsufsort", None)  # its import now raises ImportError
        weft_log = logging.getLogger("weft")
        weft_log.addHandler(caplog.handler)
        try:
            model = weft.train(corpus, out=out, max_steps=3, **tiny)
        finally:
            weft_log.removeHandler(caplog.handler)
    assert "pydivsufsort is not installed" in caplog.text
    assert model.copy_index is None and not (out / COPY_INDEX).exists()
    resumed = weft.resume(out, max_steps=5, quiet=True)
    assert resumed is not None and resumed.copy_index is not None


@pytest.mark.parametrize(("level", "cell"), [("word", "gru"), ("bpe", "rnn")])
def test_every_level_and_cell_and_resume_rebuilds_a_missing_index(
        tmp_path: Path, level: str, cell: str) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat on the mat. " * 80 + "\n", encoding="utf-8")
    out = tmp_path / "run"
    extra = {"bpe_vocab_size": 300} if level == "bpe" else {}
    weft.train(corpus, out=out, level=level, cell=cell, hidden_size=16, embedding_dim=8,
               batch_size=4, seq_len=16, max_steps=3, eval_every=3, threads=1, quiet=True,
               **extra)
    shutil.rmtree(out / COPY_INDEX)  # as a run trained before the copy meter
    model = weft.resume(out, max_steps=5, quiet=True)
    assert model is not None and model.copy_index is not None
    sample = model.samples(max_new_tokens=20, seed=0)[0]
    assert sample.longest_copy is not None
    assert sample.longest_copy.chars == naive_longest(corpus.read_text(), sample.text)
    # Chat works at this level too: a turn, its copy meter, and undo.
    session = ChatSession(model, GenerationConfig(max_new_tokens=8, seed=0))
    turn = session.turn("the cat")
    meter = session.copy_meter()
    assert meter is not None and meter[0].chars == naive_longest(corpus.read_text(), turn.reply)
    assert session.undo() is turn and session.transcript() == ""


def test_http_reports_copies_and_bounds_them(copier: Path, tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from weft.serving import create_app

    shutil.copytree(copier, tmp_path / "served" / "copier")
    index = weft.load(copier, device="cpu").copy_index
    assert index is not None
    body = {"model": "copier", "max_new_tokens": 40, "seed": 0, "num_return_sequences": 2}
    with TestClient(create_app(tmp_path / "served")) as client:
        plain = client.post("/api/generate", json=body).json()
        assert plain["longest_copy"] == []  # not asked for
        measured = client.post("/api/generate", json={**body, "copy_meter": True}).json()
        for text, copy in zip(measured["texts"], measured["longest_copy"], strict=True):
            assert copy == index.longest_copy(text).to_dict()
        bounded = client.post("/api/generate", json={**body, "max_copy": 10}).json()
        assert all(copy["chars"] < 10 for copy in bounded["longest_copy"])
        assert len(bounded["tries"]) == len(bounded["cut"]) == 2
        openai = client.post("/v1/completions", json={
            "model": "copier", "prompt": "", "max_tokens": 30, "n": 2, "seed": 0,
            "copy_meter": True}).json()
        for choice in openai["choices"]:
            assert choice["longest_copy"] == index.longest_copy(choice["text"]).to_dict()
