from __future__ import annotations

import pytest
import torch

from weft.config import GenerationConfig, ModelConfig
from weft.generation import generate
from weft.generation.stepper import RecurrentStepper
from weft.models.rnn_lm import RNNLanguageModel
from weft.tokenizers import CharTokenizer


@pytest.mark.parametrize(("cell", "embedding_dim"), [("lstm", 8), ("gru", 8), ("rnn", 8),
                                                      ("lstm", 0)])
def test_stepper_gives_the_same_logits_as_the_module(cell: str, embedding_dim: int) -> None:
    torch.manual_seed(0)
    model = RNNLanguageModel(ModelConfig(cell=cell, vocab_size=13, hidden_size=16,
                                         embedding_dim=embedding_dim, layers=2)).eval()
    ids = torch.randint(0, 13, (3, 9))
    with torch.no_grad():
        reference, _, _ = model(ids)
        stepper = RecurrentStepper(model)
        state = stepper.from_module_state(model.initial_state(3))
        stepped = []
        for t in range(ids.size(1)):
            logits, state = stepper.step(ids[:, t], state)
            stepped.append(logits)
    torch.testing.assert_close(torch.stack(stepped, dim=1), reference, rtol=1e-5, atol=1e-5)


def test_stepper_follows_the_trained_weights_without_copying() -> None:
    torch.manual_seed(0)
    model = RNNLanguageModel(ModelConfig(vocab_size=5, hidden_size=4, embedding_dim=3)).eval()
    stepper = RecurrentStepper(model)
    ids = torch.tensor([1, 2])

    def first_step() -> torch.Tensor:
        state = stepper.from_module_state(model.initial_state(2))
        return stepper.step(ids, state)[0]

    before = first_step()
    with torch.no_grad():
        model.rnn.weight_ih_l0.add_(0.5)  # training more changes what the stepper computes
        after = first_step()
        reference = model(ids[:, None]).logits[:, -1]
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, reference, rtol=1e-5, atol=1e-6)


def test_fast_and_reference_generation_sample_the_same_text() -> None:
    torch.manual_seed(1)
    text = "abcdefghij klmnop\n" * 3
    tokenizer = CharTokenizer.train([text])
    model = RNNLanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size, hidden_size=24,
                                         embedding_dim=8, layers=2))
    config = GenerationConfig(max_new_tokens=80, temperature=1.0, top_p=0.95, seed=3,
                              num_return_sequences=4, repetition_penalty=1.2)
    fast = generate(model, tokenizer, "abc", config)
    reference = generate(model, tokenizer, "abc", config, reference=True)
    assert fast == reference
    assert all(len(t) == 80 for t in fast)
