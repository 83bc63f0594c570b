from __future__ import annotations

import pytest
import torch

from weft.config import ModelConfig
from weft.errors import WeftError
from weft.models.rnn_lm import RNNLanguageModel


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_shapes_and_loss(cell: str) -> None:
    model = RNNLanguageModel(ModelConfig(cell=cell, vocab_size=20, hidden_size=16,
                                         embedding_dim=8, layers=2, dropout=0.1))
    ids = torch.randint(0, 20, (3, 7))
    logits, loss, state = model(ids, targets=ids)
    assert logits.shape == (3, 7, 20)
    assert loss is not None and loss.ndim == 0
    h = state[0] if isinstance(state, tuple) else state
    assert h.shape == (2, 3, 16)


def test_padding_targets_are_ignored() -> None:
    torch.manual_seed(0)
    model = RNNLanguageModel(ModelConfig(vocab_size=10, hidden_size=8, embedding_dim=4))
    ids = torch.randint(0, 10, (1, 6))
    targets = ids.clone()
    _, short_loss, _ = model(ids[:, :4], targets=targets[:, :4])
    targets[:, 4:] = -100
    _, masked_loss, _ = model(ids, targets=targets)
    torch.testing.assert_close(short_loss, masked_loss)


def test_one_hot_input_and_weight_tying() -> None:
    one_hot = RNNLanguageModel(ModelConfig(vocab_size=12, hidden_size=8, embedding_dim=0))
    assert one_hot.embedding is None
    assert one_hot(torch.randint(0, 12, (2, 3))).logits.shape == (2, 3, 12)
    tied = RNNLanguageModel(ModelConfig(vocab_size=12, hidden_size=8, embedding_dim=8,
                                        tie_weights=True))
    assert tied.embedding is not None and tied.head.weight is tied.embedding.weight


def test_bad_settings_are_clear_errors() -> None:
    with pytest.raises(WeftError, match="tie-weights"):
        RNNLanguageModel(ModelConfig(vocab_size=12, hidden_size=8, embedding_dim=4,
                                     tie_weights=True))
    with pytest.raises(WeftError, match="lstm, gru, rnn"):
        RNNLanguageModel(ModelConfig(cell="transformer", vocab_size=12))
