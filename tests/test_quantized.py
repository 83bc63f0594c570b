"""Int8 generation (``--quantize int8``): close to float32, and a real speed path, not a copy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

import weft
from weft.cli.main import cli
from weft.config import GenerationConfig, ModelConfig
from weft.errors import WeftError
from weft.generation import generate
from weft.generation import quantized as quantized_module
from weft.generation.quantized import (
    INT8_KERNELS,
    Int8Linear,
    Int8Stepper,
    fbgemm_available,
    quantize_bounded,
)
from weft.generation.stepper import RecurrentStepper
from weft.models.rnn_lm import RNNLanguageModel
from weft.tokenizers import CharTokenizer


@pytest.mark.parametrize(("rows", "columns", "batch"), [(3, 13, 1), (65, 520, 5), (64, 7, 2)])
def test_int8_linear_is_the_float_product_up_to_rounding(rows: int, columns: int,
                                                         batch: int) -> None:
    torch.manual_seed(0)
    weight, bias = torch.randn(rows, columns), torch.randn(rows)
    x = torch.rand(batch, columns) * 2 - 1
    linear = Int8Linear.quantize(weight, bias)
    assert linear.weight.dtype == torch.int8
    exact = F.linear(x, weight, bias)
    # The integer sums are exact; what is left is rounding weights and inputs to 1/127 steps.
    dequantized = linear.weight.t().float() * linear.scale[:, None] * 127
    x_q = quantize_bounded(x)
    torch.testing.assert_close(linear(x_q), F.linear(x_q.float() / 127, dequantized, bias),
                               rtol=1e-5, atol=1e-4)
    bound = (weight.abs().amax(1) / 127 * x.abs().sum(1, keepdim=True)
             + weight.abs().sum(1) / 127).max()
    assert (linear(x_q) - exact).abs().max() <= bound


@pytest.mark.parametrize(("cell", "embedding_dim", "layers", "table"),
                         [("lstm", 8, 2, True), ("gru", 8, 2, True), ("rnn", 8, 3, True),
                          ("lstm", 0, 1, True), ("gru", 0, 3, True), ("lstm", 8, 2, False),
                          ("gru", 8, 1, False)])
@pytest.mark.parametrize("kernel", INT8_KERNELS)
def test_int8_logits_follow_the_module(cell: str, embedding_dim: int, layers: int, table: bool,
                                       kernel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if kernel == "fbgemm" and not fbgemm_available():
        pytest.skip("this PyTorch has no FBGEMM")
    if not table:  # as for a large vocabulary: the embedding is multiplied at each step
        monkeypatch.setattr(quantized_module, "INPUT_TABLE_MAX", 0)
    torch.manual_seed(0)
    model = RNNLanguageModel(ModelConfig(cell=cell, vocab_size=13, hidden_size=48,
                                         embedding_dim=embedding_dim, layers=layers)).eval()
    ids = torch.randint(0, 13, (3, 30))
    with torch.no_grad():
        reference, _, _ = model(ids)
        stepper = Int8Stepper(model, kernel)
        assert (stepper.embedding is None) == (table or embedding_dim == 0)
        state = stepper.from_module_state(model.initial_state(3))
        stepped = []
        for t in range(ids.size(1)):
            logits, state = stepper.step(ids[:, t], state)
            stepped.append(logits)
        h = stepper.to_module_state(state)
    quantized = torch.stack(stepped, dim=1)
    scale = reference.abs().max()
    assert (quantized - reference).abs().max() < 0.05 * scale
    assert not torch.equal(quantized, reference)  # it really is another path
    # The state comes back in nn.LSTM's layout.
    assert (h[0] if isinstance(h, tuple) else h).shape == (layers, 3, 48)


def _trained(text: str) -> tuple[RNNLanguageModel, CharTokenizer, torch.Tensor]:
    torch.manual_seed(0)
    tokenizer = CharTokenizer.train([text])
    model = RNNLanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size, hidden_size=64,
                                         embedding_dim=16, layers=2))
    ids = torch.as_tensor(tokenizer.encode(text)).long()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        starts = torch.randint(0, len(ids) - 33, (16,))
        batch = torch.stack([ids[s : s + 33] for s in starts.tolist()])
        loss = model(batch[:, :-1], targets=batch[:, 1:]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), tokenizer, ids


@torch.no_grad()
def _stepped_loss(stepper: RecurrentStepper | Int8Stepper, model: RNNLanguageModel,
                  ids: torch.Tensor) -> float:
    state = stepper.from_module_state(model.initial_state(1))
    total = 0.0
    for t in range(len(ids) - 1):
        logits, state = stepper.step(ids[t : t + 1], state)
        total += float(F.cross_entropy(logits, ids[t + 1 : t + 2]))
    return total / (len(ids) - 1)


def test_int8_keeps_what_a_trained_model_learned() -> None:
    text = "the quick brown fox jumps over the lazy dog. " * 40
    model, _, ids = _trained(text)
    held_out = ids[:200]
    exact = _stepped_loss(RecurrentStepper(model), model, held_out)
    quantized = _stepped_loss(Int8Stepper(model), model, held_out)
    assert exact < 1.5  # the model learned the sentence (uniform would be ln 29 = 3.4)
    assert abs(quantized - exact) < 0.02 + 0.02 * exact


def test_int8_generation_is_repeatable_and_switchable_from_the_api(tmp_path) -> None:
    text = "abcdefghij klmnop\n" * 200
    corpus = tmp_path / "c.txt"
    corpus.write_text(text)
    run = weft.train(corpus, out=tmp_path / "run", hidden_size=32, embedding_dim=8,
                     seq_len=16, max_steps=30, eval_every=10, threads=1, quiet=True)
    first = run.generate("abc", max_new_tokens=60, seed=4, quantize="int8")
    assert first == run.generate("abc", max_new_tokens=60, seed=4, quantize="int8")
    assert len(first[0]) == 60
    with pytest.raises(WeftError, match="--quantize"):
        run.generate("abc", quantize="int4")
    result = CliRunner().invoke(cli, ["generate", str(tmp_path / "run"), "--prompt", "abc",
                                      "--max-new-tokens", "40", "--seed", "4",
                                      "--quantize", "int8", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("abc") and len(result.output.strip()) == 43


def test_int8_refuses_what_it_cannot_do() -> None:
    model = RNNLanguageModel(ModelConfig(cell="rnn", vocab_size=5, hidden_size=8,
                                         embedding_dim=4))
    model.rnn.nonlinearity = "relu"  # unbounded hidden states: no fixed int8 scale fits
    with pytest.raises(WeftError, match=r"\[-1, 1\]"):
        Int8Stepper(model)


def test_int8_generates_many_streams_at_once() -> None:
    torch.manual_seed(2)
    tokenizer = CharTokenizer.train(["abcdef \n"])
    model = RNNLanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size, hidden_size=16,
                                         embedding_dim=4, layers=2))
    config = GenerationConfig(max_new_tokens=25, seed=1, num_return_sequences=9,
                              quantize="int8")
    texts = generate(model, tokenizer, "ab", config)
    assert len(texts) == 9 and all(len(t) == 25 for t in texts)
    assert len(set(texts)) > 1  # the streams are sampled independently
