"""Span tagging: BIO/BIOES, conlleval's span metrics, the constrained CRF, its NumPy decoding,
and a span tagger end to end (train, save, load, spans with offsets, ``weft tag`` eval/predict).
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest
import torch
from benchmarks.crf_decode import autograd_marginals, loop_decode
from click.testing import CliRunner

from weft.api import train_tagger
from weft.cli.main import cli
from weft.errors import WeftError
from weft.tagging.api import load_tagger
from weft.tagging.crf import CRF
from weft.tagging.readers import read_tagged
from weft.tagging.spans import (
    Span,
    allowed_transitions,
    convert,
    detect_scheme,
    extract_spans,
    span_metrics,
    spans_to_tags,
)

# (gold, predicted) per token; conlleval.pl on this file (token gold guess, blank line between
# sentences) prints: "processed 22 tokens with 7 phrases; found: 9 phrases; correct: 4."
# precision 44.44%, recall 57.14%, FB1 50.00; LOC 0.00/0.00/0.00; ORG 66.67/100.00/80.00;
# PER 66.67/66.67/66.67. The ``I-PER I-PER`` after ``O`` counts as a span, as conlleval has it.
FIXTURE = [
    [("B-PER", "B-PER"), ("I-PER", "I-PER"), ("O", "O"), ("O", "O"), ("B-LOC", "B-LOC"),
     ("I-LOC", "O"), ("I-LOC", "B-LOC"), ("O", "O")],
    [("B-ORG", "B-ORG"), ("I-ORG", "I-ORG"), ("O", "O"), ("B-PER", "I-PER"),
     ("I-PER", "I-PER"), ("O", "O"), ("B-PER", "B-ORG"), ("O", "O"), ("B-ORG", "B-ORG")],
    [("B-LOC", "B-LOC"), ("O", "I-LOC"), ("O", "I-LOC"), ("O", "O"), ("O", "B-PER")],
]


def test_span_metrics_equal_conllevals_figures() -> None:
    gold = [[g for g, _ in s] for s in FIXTURE]
    pred = [[p for _, p in s] for s in FIXTURE]
    m = span_metrics(gold, pred)
    assert (m["gold"], m["predicted"], m["correct"]) == (7, 9, 4)
    assert f"{100 * m['precision']:.2f} {100 * m['recall']:.2f} {100 * m['f1']:.2f}" == \
        "44.44 57.14 50.00"
    printed = {t: f"{100 * r['precision']:.2f} {100 * r['recall']:.2f} {100 * r['f1']:.2f}"
               for t, r in m["per_type"].items()}
    assert printed == {"LOC": "0.00 0.00 0.00", "ORG": "66.67 100.00 80.00",
                       "PER": "66.67 66.67 66.67"}
    # the same spans written in BIOES score the same
    bioes = span_metrics([convert(g, "bioes") for g in gold], [convert(p, "bioes") for p in pred])
    assert bioes == m


def test_bio_bioes_round_trips() -> None:
    bio = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "I-LOC", "O", "B-creative-work"]
    bioes = ["B-PER", "E-PER", "O", "S-LOC", "B-LOC", "I-LOC", "E-LOC", "O", "S-creative-work"]
    assert convert(bio, "bioes") == bioes
    assert convert(bioes, "bio") == bio
    assert extract_spans(bio)[-1] == Span("creative-work", 8, 9)
    assert convert(["O", "I-X", "I-X"], "bio") == ["O", "B-X", "I-X"]  # repaired, same span
    rng = random.Random(0)
    for _ in range(200):
        spans, position = [], 0
        while position < 12:
            position += rng.randint(0, 2)
            size = rng.randint(1, 3)
            if position + size <= 12:
                spans.append(Span(rng.choice("AB"), position, position + size))
            position += size
        for scheme, other in (("bio", "bioes"), ("bioes", "bio")):
            tags = spans_to_tags(spans, 12, scheme)
            assert extract_spans(tags) == spans
            assert convert(convert(tags, other), scheme) == tags
            assert detect_scheme(tags) in (scheme, "bio", None)  # bioes without E/S reads as bio


def test_detect_scheme() -> None:
    assert detect_scheme(["O", "B-PER", "I-PER"]) == "bio"
    assert detect_scheme(["O", "S-PER", "E-PER", "B-PER"]) == "bioes"
    assert detect_scheme(["NOUN", "VERB"]) is None
    assert detect_scheme(["O", "I-PER"]) == "bio"  # IOB1: converted to BIO by its spans
    assert convert(["I-PER", "I-PER", "B-PER", "O"], "bio") == ["B-PER", "I-PER", "B-PER", "O"]
    assert detect_scheme(["O"]) is None
    assert detect_scheme(["O", "B-"]) is None


def _valid(tags: list[str], scheme: str) -> bool:
    return convert(tags, scheme) == tags


@pytest.mark.parametrize("scheme", ["bio", "bioes"])
def test_constrained_crf_never_decodes_an_invalid_sequence(scheme: str) -> None:
    names = ["O"] + [f"{p}-{t}" for t in ("PER", "LOC") for p in "BIES"[: 2 if scheme == "bio"
                                                                       else 4]]
    crf = CRF(len(names))
    crf.constrain(*allowed_transitions(names, scheme))
    generator = torch.Generator().manual_seed(1)
    for _ in range(30):
        with torch.no_grad():
            for p in crf.parameters():  # random weights favour invalid transitions as often
                p.copy_(torch.randn(p.shape, generator=generator) * 5)
        emissions = torch.randn(4, 9, len(names), generator=generator) * 5
        mask = torch.arange(9).unsqueeze(0) < torch.tensor([[9], [1], [5], [2]])
        tags = crf.decode(emissions, mask)
        for row, n in enumerate(mask.sum(1).tolist()):
            assert _valid([names[i] for i in tags[row, :n].tolist()], scheme)
        # no probability on a forbidden tag: I- (or E-) as a sentence's first tag
        probs = crf.marginals(emissions, mask)
        inside = [i for i, n in enumerate(names) if n[0] in "IE"]
        assert float(probs[:, 0, inside].max()) < 1e-6
        assert torch.allclose(probs[mask].sum(1), torch.ones(int(mask.sum())), atol=1e-4)
    # training stays finite on valid gold sequences
    gold = torch.tensor([[names.index(t) for t in convert(["B-PER", "I-PER", "O"], scheme)]])
    loss = crf.neg_log_likelihood(torch.randn(1, 3, len(names)), gold, torch.ones(1, 3).bool())
    assert torch.isfinite(loss)


def test_numpy_viterbi_equals_the_old_loop_and_marginals_the_gradient() -> None:
    generator = torch.Generator().manual_seed(0)
    for num_tags, batch, length in itertools.product((1, 3, 17), (1, 5), (1, 2, 40)):
        crf = CRF(num_tags)
        with torch.no_grad():
            for p in crf.parameters():
                p.copy_(torch.randn(p.shape, generator=generator))
        emissions = torch.randn(batch, length, num_tags, generator=generator)
        lengths = torch.randint(1, length + 1, (batch,), generator=generator)
        lengths[0] = length
        mask = torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)
        assert torch.equal(crf.decode(emissions, mask), loop_decode(crf, emissions, mask))
        assert torch.allclose(crf.marginals(emissions, mask),
                              autograd_marginals(crf, emissions, mask), atol=1e-5)


def test_two_column_files_comments_and_malformed_lines(tmp_path: Path) -> None:
    path = tmp_path / "ner.conll"
    path.write_text("# a comment\n@ada\tO\n#hashtag\tO\nParis\tB-location\n\n"
                    "New York\tB-location\n", encoding="utf-8")
    sentences = read_tagged(path)  # detected as two columns; the hashtag is a word
    assert [s.words for s in sentences] == [("@ada", "#hashtag", "Paris"), ("New York",)]
    (tmp_path / "tags.txt").write_text("# sent_id = 1\nThe/DET dog/NOUN\n#/# 5/CD\n")
    assert [s.words for s in read_tagged(tmp_path / "tags.txt")] == [("The", "dog"),
                                                                        ("#", "5")]
    (tmp_path / "spaces.txt").write_text("EU B-ORG\nrejects O\n\nPeter B-PER\n")
    assert [s.tags for s in read_tagged(tmp_path / "spaces.txt")] == [("B-ORG", "O"),
                                                                        ("B-PER",)]
    bad = tmp_path / "bad.conll"
    bad.write_text("Ada\tB-person\nLovelace\n", encoding="utf-8")
    with pytest.raises(WeftError, match=r"bad\.conll:2: expected word<TAB>tag"):
        read_tagged(bad)


NER = [
    "Ada/B-PER Lovelace/I-PER met/O Charles/B-PER Babbage/I-PER in/O London/B-LOC ./O",
    "Ada/B-PER lives/O in/O Paris/B-LOC ./O",
    "Charles/B-PER visited/O New/B-LOC York/I-LOC ./O",
    "They/O met/O in/O London/B-LOC and/O Paris/B-LOC ./O",
]


def _ner_file(path: Path, lines: list[str]) -> Path:
    """The sentences as a two-column file (WNUT-17's layout), in BIO."""
    blocks = ["\n".join(token.replace("/", "\t") for token in line.split()) for line in lines]
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def span_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ner")
    train = _ner_file(root / "train.conll", NER * 4)
    dev = _ner_file(root / "dev.conll", NER)
    out = root / "run"
    train_tagger(train, out, dev=dev, quiet=True, crf=True, scheme="bioes", word_dim=16,
                 char_dim=8, char_hidden=8, hidden=24, layers=1, batch_size=4, lr=0.03,
                 warmup_steps=5, eval_every=20, max_steps=120, seed=3, dropout=0.0,
                 word_dropout=0.0)
    return out, dev


def test_a_span_tagger_trains_saves_loads_and_finds_spans(span_run: tuple[Path, Path]) -> None:
    out, dev = span_run
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["scheme"] == "bioes"
    assert "E-PER" in json.loads((out / "vocab.json").read_text())["tags"]
    tagger = load_tagger(out)
    assert tagger.scheme == "bioes"
    text = "Yesterday Ada Lovelace met Charles Babbage in London."
    spans = tagger.spans(text)
    for span in spans:
        assert text[span["start"]:span["end"]] == span["text"]
    assert {(s["text"], s["type"]) for s in spans} >= {("Ada Lovelace", "PER"),
                                                      ("London", "LOC")}
    outputs = tagger.tag_sentences([s.words for s in read_tagged(dev)] + [["London"] * 30])
    assert all(_valid(out.tags, "bioes") for out in outputs)  # the CRF's constraints hold
    metrics = tagger.evaluate(read_tagged(dev))
    assert metrics["scheme"] == "bioes"
    assert metrics["spans"]["f1"] > 0.8  # it has seen these sentences
    assert set(metrics["spans"]["per_type"]) == {"LOC", "PER"}


def test_weft_tag_eval_and_predict_report_spans(span_run: tuple[Path, Path]) -> None:
    out, dev = span_run
    runner = CliRunner()
    result = runner.invoke(cli, ["tag", "eval", str(out), str(dev), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["spans"]["gold"] == 9
    result = runner.invoke(cli, ["tag", "eval", str(out), str(dev)])
    assert "spans: 9 gold" in result.output and "overall" in result.output
    text = "Ada met Charles in London.\nNothing here ."
    result = runner.invoke(cli, ["tag", "predict", str(out), "--json"], input=text)
    assert result.exit_code == 0, result.output
    first = json.loads(result.output.splitlines()[0])
    assert first["spans"] and all(text[s["start"]:s["end"]] == s["text"] for s in first["spans"])
    result = runner.invoke(cli, ["tag", "predict", str(out), "--json", "--tokenized"],
                           input="x  Ada Lovelace\n\nLondon")
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert rows[0]["words"] == ["x", "Ada", "Lovelace"]
    for row in rows:
        for s in row["spans"]:
            assert "x  Ada Lovelace\n\nLondon"[s["start"]:s["end"]] == s["text"]


def test_a_30000_token_sentence_decodes_in_seconds() -> None:
    # The per-step PyTorch loop took over a minute for these marginals (benchmarks/crf_decode.py)
    import time

    crf = CRF(17)
    emissions = torch.randn(1, 30_000, 17)
    mask = torch.ones(1, 30_000, dtype=torch.bool)
    start = time.perf_counter()
    tags = crf.decode(emissions, mask)
    probs = crf.marginals(emissions, mask)
    assert time.perf_counter() - start < 20
    assert tags.shape == (1, 30_000) and torch.allclose(probs.sum(2), torch.ones(1, 30_000))


def test_api_tag_returns_a_span_taggers_spans(span_run: tuple[Path, Path]) -> None:
    pytest.importorskip("fastapi")
    from weft.serving.routes import tag_sentences

    text = "Ada met Charles in London."
    sentences = tag_sentences(load_tagger(span_run[0]), text)
    spans = sentences[0].spans or []
    assert spans and all(text[s.start:s.end] == s.text for s in spans)
    assert {s.type for s in spans} <= {"PER", "LOC"}


def test_a_span_scheme_on_plain_tags_is_a_one_line_error(tmp_path: Path) -> None:
    pos = tmp_path / "pos.txt"
    pos.write_text("The/DET dog/NOUN\nA/DET cat/NOUN\n", encoding="utf-8")
    with pytest.raises(WeftError, match=r"--scheme bio needs O and B-/I-/E-/S- tags; the "
                                        r"training data has DET, NOUN"):
        train_tagger(pos, tmp_path / "run", quiet=True, scheme="bio", max_steps=1)


def test_a_span_tagger_resumes_with_its_scheme(span_run: tuple[Path, Path],
                                              tmp_path: Path) -> None:
    import shutil

    from weft.api import resume_tagger

    run = tmp_path / "run"
    shutil.copytree(span_run[0], run)
    before = json.loads((run / "config.json").read_text())["model"]
    tagger = resume_tagger(run, max_steps=130, quiet=True)
    assert tagger.scheme == "bioes"
    assert json.loads((run / "config.json").read_text())["model"] == before
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 130 and "dev_f1" in records[-1]
