from __future__ import annotations

import numpy as np
import pytest
import torch

from weft.config import ModelConfig
from weft.data.stream import StreamBatches, split_tokens
from weft.errors import WeftError
from weft.models.rnn_lm import RNNLanguageModel, detach_state


def test_columns_are_contiguous_and_targets_shifted() -> None:
    tokens = np.arange(24, dtype=np.uint8)
    batches = StreamBatches(tokens, batch_size=3, seq_len=4, device=torch.device("cpu"),
                            what="corpus")
    x0, y0 = batches.window(0)
    x1, y1 = batches.window(1)
    assert x0.tolist() == [[0, 1, 2, 3], [8, 9, 10, 11], [16, 17, 18, 19]]
    assert y0.tolist() == [[1, 2, 3, 4], [9, 10, 11, 12], [17, 18, 19, 20]]
    # Window 1 continues each column exactly where window 0 stopped.
    assert x1[:, 0].tolist() == [4, 12, 20]
    assert batches.num_windows == 2
    assert y1[:, -1].tolist() == [7, 15, 23]


def test_every_target_is_seen_once_per_epoch() -> None:
    tokens = np.arange(103, dtype=np.uint16)
    batches = StreamBatches(tokens, batch_size=4, seq_len=7, device=torch.device("cpu"),
                            what="corpus")
    seen = torch.cat([batches.window(i)[1].reshape(-1) for i in range(batches.num_windows)])
    assert sorted(seen.tolist()) == sorted(
        int(t) for col in np.arange(100).reshape(4, 25) for t in col[1:]
    )


def test_too_small_corpus_says_what_to_change() -> None:
    with pytest.raises(WeftError, match="--batch-size"):
        StreamBatches(np.arange(30, dtype=np.uint8), batch_size=4, seq_len=8,
                      device=torch.device("cpu"), what="corpus")


def test_split_takes_validation_from_the_end() -> None:
    train, val = split_tokens(np.arange(100), 0.1)
    assert train.tolist() == list(range(90)) and val.tolist() == list(range(90, 100))


def test_carrying_state_equals_one_long_pass() -> None:
    torch.manual_seed(0)
    model = RNNLanguageModel(ModelConfig(vocab_size=11, hidden_size=8, embedding_dim=4))
    ids = torch.randint(0, 11, (2, 12))
    full, _, _ = model(ids)
    state = None
    pieces = []
    for start in range(0, 12, 4):
        logits, _, state = model(ids[:, start:start + 4], state)
        state = detach_state(state)
        pieces.append(logits)
    torch.testing.assert_close(torch.cat(pieces, dim=1), full)
