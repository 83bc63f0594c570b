"""The recurrent language model: embedding (or one-hot) -> LSTM/GRU/RNN stack -> linear output.

Contract the trainer and generator rely on::

    logits, loss, state = model(ids, state=None, targets=None)

``ids`` is ``(batch, time)``; ``state`` is the recurrent state carried between calls (a tensor,
or an ``(h, c)`` pair for LSTM); ``loss`` is the mean cross-entropy over targets that are not
``-100`` (padding), or ``None`` without targets.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from weft.config import ModelConfig

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]
IGNORE_INDEX = -100

_CELLS: dict[str, type[nn.LSTM] | type[nn.GRU] | type[nn.RNN]] = {
    "lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN,
}


class LMOutput(NamedTuple):
    logits: torch.Tensor
    loss: torch.Tensor | None
    state: State


class RNNLanguageModel(nn.Module):
    """A stacked recurrent network predicting the next token at every position."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        config.validate()
        if config.vocab_size < 1:
            raise ValueError("ModelConfig.vocab_size must be set from the tokenizer")
        self.config = config
        input_size = config.embedding_dim or config.vocab_size
        self.embedding: nn.Embedding | None = (
            nn.Embedding(config.vocab_size, config.embedding_dim) if config.embedding_dim else None
        )
        self.rnn = _CELLS[config.cell](
            input_size=input_size,
            hidden_size=config.hidden_size,
            num_layers=config.layers,
            dropout=config.dropout if config.layers > 1 else 0.0,
            batch_first=True,
        )
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)
        if config.tie_weights:
            # Weight tying (Press & Wolf 2016; Inan et al. 2016): the output layer reuses the
            # input embedding, saving parameters and usually improving perplexity.
            assert self.embedding is not None
            self.head.weight = self.embedding.weight
        self._init_weights()

    def _init_weights(self) -> None:
        if isinstance(self.rnn, nn.LSTM):
            # A forget-gate bias of 1 helps gradients flow early in training (Jozefowicz 2015).
            h = self.config.hidden_size
            for name, param in self.rnn.named_parameters():
                if name.startswith("bias_ih"):
                    with torch.no_grad():
                        param[h : 2 * h].fill_(1.0)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        if self.embedding is None:
            return F.one_hot(ids.long(), self.config.vocab_size).to(self.head.weight.dtype)
        return self.embedding(ids.long())

    def forward(
        self,
        ids: torch.Tensor,
        state: State | None = None,
        targets: torch.Tensor | None = None,
    ) -> LMOutput:
        x = self.drop(self.embed(ids))
        out, new_state = self.rnn(x, state)
        logits = self.head(self.drop(out))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.reshape(-1, logits.size(-1)).float(),
                targets.reshape(-1).long(),
                ignore_index=IGNORE_INDEX,
            )
        return LMOutput(logits, loss, new_state)

    def initial_state(self, batch_size: int, device: torch.device | None = None) -> State:
        shape = (self.config.layers, batch_size, self.config.hidden_size)
        device = device or self.head.weight.device
        zeros = torch.zeros(shape, device=device)
        if self.config.cell == "lstm":
            return (zeros, zeros.clone())
        return zeros


def detach_state(state: State) -> State:
    """Cut the graph between truncated-BPTT windows while keeping the values."""
    if isinstance(state, tuple):
        return (state[0].detach(), state[1].detach())
    return state.detach()


def select_state(state: State, index: torch.Tensor) -> State:
    """The state of the batch rows in ``index`` (used to expand or reorder streams)."""
    if isinstance(state, tuple):
        return (state[0][:, index], state[1][:, index])
    return state[:, index]


def state_to_tensors(state: State | None) -> dict[str, torch.Tensor]:
    if state is None:
        return {}
    if isinstance(state, tuple):
        return {"h": state[0].detach().float().cpu(), "c": state[1].detach().float().cpu()}
    return {"h": state.detach().float().cpu()}


def state_from_tensors(tensors: dict[str, torch.Tensor], device: torch.device) -> State | None:
    if "h" not in tensors:
        return None
    if "c" in tensors:
        return (tensors["h"].to(device), tensors["c"].to(device))
    return tensors["h"].to(device)
