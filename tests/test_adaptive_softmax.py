"""The adaptive softmax output layer: exact log-probabilities for evaluation and sampling, a
training loss equal to their cross-entropy, every generation path, --init-from growth."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import weft
from weft.cli.main import cli
from weft.config import GenerationConfig, ModelConfig
from weft.errors import WeftError
from weft.generation import generate
from weft.generation.batch import BatchedGenerator
from weft.generation.quantized import Int8Stepper, fbgemm_available, int_mm_available
from weft.generation.stepper import RecurrentStepper
from weft.io import load_tensors
from weft.models.rnn_lm import (
    ADAPTIVE_MIN_VOCAB,
    RNNLanguageModel,
    adaptive_cutoffs,
    resolve_output_layer,
)
from weft.training.evaluate import stream_loss

from .test_batch import submit

WORDS = "the cat sat on a mat and a dog ran far away from home while birds sang"
SMALL = dict(hidden_size=32, embedding_dim=16, batch_size=4, seq_len=16, eval_every=10,
             quiet=True)


def _model(**fields: object) -> RNNLanguageModel:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=50, hidden_size=16, embedding_dim=8,
                         adaptive_cutoffs=(10, 30), **fields)  # type: ignore[arg-type]
    return RNNLanguageModel(config).eval()


def test_logits_are_exact_log_probabilities_and_the_loss_their_cross_entropy() -> None:
    model = _model(layers=2)
    ids = torch.randint(0, 50, (3, 9))
    logits, _, _ = model(ids)
    assert logits.shape == (3, 9, 50)
    torch.testing.assert_close(torch.logsumexp(logits, -1), torch.zeros(3, 9), atol=1e-5,
                               rtol=0)
    targets = ids[:, 1:].clone()
    none, loss, _ = model(ids[:, :-1], targets=targets)
    assert none is None  # training never builds the full distribution
    expected = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 50),
                                                 targets.reshape(-1))
    torch.testing.assert_close(loss, expected)
    targets[0, 3:] = -100  # padding is left out, as with the full softmax
    _, masked, _ = model(ids[:, :-1], targets=targets)
    keep = targets.reshape(-1) != -100
    expected = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 50)[keep],
                                                 targets.reshape(-1)[keep])
    torch.testing.assert_close(masked, expected)


@pytest.mark.parametrize("cutoffs", [(10, 30), ()])
def test_evaluation_scores_only_the_targets_and_matches_the_full_distribution(
        cutoffs: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = RNNLanguageModel(ModelConfig(vocab_size=50, hidden_size=16, embedding_dim=8,
                                         adaptive_cutoffs=cutoffs)).eval()
    ids = torch.randint(0, 50, (3, 9))
    targets = ids[:, 1:].clone()
    targets[1, 4:] = -100  # padding scores 0
    logits, _, state = model(ids[:, :-1])
    full = -torch.log_softmax(logits, -1).gather(-1, targets.clamp(min=0)[..., None])[..., 0]
    full[targets == -100] = 0.0
    nats, nats_state = model.target_nats(ids[:, :-1], targets)
    torch.testing.assert_close(nats, full)
    torch.testing.assert_close(nats_state, state)
    # Evaluation never builds the full distribution (with 30,000 words, 10x the work).
    def full_distribution(hidden: torch.Tensor) -> torch.Tensor:
        raise AssertionError("target_nats built the full distribution")
    model.scores = full_distribution  # type: ignore[method-assign]
    torch.testing.assert_close(model.target_nats(ids[:, :-1], targets)[0], full)
    stream = ids.reshape(-1).numpy()
    nats_sum, count = stream_loss(model, stream, batch_size=3, seq_len=4)
    assert count == len(stream) - 1 and nats_sum > 0


def test_steppers_give_the_module_log_probabilities() -> None:
    model = _model(cell="gru", layers=2)
    ids = torch.randint(0, 50, (2, 1))
    expected, _, _ = model(ids)
    stepper = RecurrentStepper(model)
    got, _ = stepper.step(ids[:, 0], stepper.from_module_state(model.initial_state(2)))
    torch.testing.assert_close(got, expected[:, 0])
    if int_mm_available() or fbgemm_available():
        int8 = Int8Stepper(model, "int_mm" if int_mm_available() else "fbgemm")
        approx, _ = int8.step(ids[:, 0], int8.from_module_state(model.initial_state(2)))
        assert int8.head is None  # the output layer stays float32
        torch.testing.assert_close(approx, expected[:, 0], atol=0.05, rtol=0)


def test_auto_chooses_by_vocabulary_and_fixed_weights_keep_theirs() -> None:
    config = ModelConfig()
    small = resolve_output_layer(config, ADAPTIVE_MIN_VOCAB - 1, fixed=False)
    assert (small.adaptive_softmax, small.adaptive_cutoffs) == ("off", ())
    large = resolve_output_layer(config, 30_000, fixed=False)
    assert large.adaptive_softmax == "on" and large.adaptive_cutoffs == (2_000, 10_000)
    tied = dataclasses.replace(config, embedding_dim=320, tie_weights=True)
    assert resolve_output_layer(tied, 30_000, fixed=False).adaptive_softmax == "off"
    forced = dataclasses.replace(config, adaptive_softmax="on")
    assert resolve_output_layer(forced, 40, fixed=False).adaptive_cutoffs == (10,)
    grown = resolve_output_layer(large, 30_500, fixed=True)
    assert grown.adaptive_cutoffs == (2_000, 10_000) and grown.vocab_size == 30_500
    old_run = resolve_output_layer(config, 30_000, fixed=True)  # before adaptive existed
    assert old_run.adaptive_softmax == "off"
    assert adaptive_cutoffs(60_000) == (2_000, 10_000, 50_000)
    with pytest.raises(WeftError, match="tie-weights"):
        dataclasses.replace(tied, adaptive_softmax="on").validate()


@pytest.fixture(scope="module")
def adaptive_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("adaptive")
    (root / "words.txt").write_text((WORDS + " .\n") * 120, encoding="utf-8")
    weft.train(root / "words.txt", out=root / "run", level="word", adaptive_softmax="on",
               max_steps=20, **SMALL)
    return root / "run"


def test_a_run_records_the_layer_evaluates_and_generates_on_every_path(
        adaptive_run: Path) -> None:
    saved = json.loads((adaptive_run / "config.json").read_text())["model"]
    model = weft.load(adaptive_run, device="cpu")
    assert saved["adaptive_softmax"] == "on"
    assert saved["adaptive_cutoffs"] == [model.tokenizer.vocab_size // 4]
    result = model.evaluate((WORDS + " .\n") * 4)
    assert 0 < result.bits_per_char < 5
    settings = GenerationConfig(max_new_tokens=12, seed=3, quantize="none")
    reference = generate(model.module, model.tokenizer, "the", settings, reference=True)
    assert generate(model.module, model.tokenizer, "the", settings) == reference
    assert model.generate("the", max_new_tokens=12, seed=3, quantize="none") == reference
    batch = BatchedGenerator(model.module, model.tokenizer, quantize="none")
    try:
        _, waiter = submit(batch, "the", max_new_tokens=12, seed=3)
        assert waiter.texts() == reference
    finally:
        batch.close()
    if int_mm_available() or fbgemm_available():
        assert len(model.generate("the", max_new_tokens=12, seed=3, quantize="int8")) == 1
    info = CliRunner().invoke(cli, ["info", str(adaptive_run)])
    assert info.exit_code == 0 and "adaptive softmax (clusters from" in info.output


def test_init_from_grows_the_last_cluster(adaptive_run: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "more.txt"
    corpus.write_text((WORDS + " zebra quokka .\n") * 40, encoding="utf-8")
    model = weft.train(corpus, out=tmp_path / "ft", init_from=adaptive_run, max_steps=1,
                       lr=1e-9, warmup_steps=0, **SMALL)
    assert model is not None
    old, _ = load_tensors(adaptive_run / "model.safetensors")
    new = model.module.state_dict()
    last = "adaptive.tail.0.1.weight"
    rows = old[last].size(0)
    assert new[last].size(0) == rows + 2
    torch.testing.assert_close(new[last][:rows], old[last], atol=1e-6, rtol=0)
    assert model.tokenizer.decode(model.tokenizer.encode("zebra")) == "zebra"
    base_cutoffs = json.loads((adaptive_run / "config.json").read_text())["model"][
        "adaptive_cutoffs"]
    assert json.loads((tmp_path / "ft" / "config.json").read_text())["model"][
        "adaptive_cutoffs"] == base_cutoffs


def test_the_flag_is_refused_with_tied_weights_and_against_the_base(
        adaptive_run: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text((WORDS + "\n") * 20, encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(cli, ["train", str(corpus), "--out", str(tmp_path / "a"),
                                 "--adaptive-softmax", "on", "--tie-weights",
                                 "--embedding-dim", "320"])
    assert result.exit_code == 2 and "--tie-weights" in result.output
    result = runner.invoke(cli, ["train", str(corpus), "--out", str(tmp_path / "b"),
                                 "--init-from", str(adaptive_run), "--adaptive-softmax", "off"])
    assert result.exit_code == 2 and "--adaptive-softmax off (the base has on)" in result.output
