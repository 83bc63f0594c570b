"""One-token steps through a trained recurrent language model, without re-entering ``nn.LSTM``.

Calling ``nn.LSTM`` for a single token pays the module's per-call overhead (argument checks,
weight flattening, layout changes) on every step, which dominates at batch 1. The stepper calls
the fused ATen cell (``torch.lstm_cell`` / ``gru_cell`` / ``rnn_tanh_cell``: both matrix
products and the gate arithmetic in one op) once per layer, on the module's own parameters: no
copy of the weights is made, so it can never drift from the trained model.

The state is a list with one entry per layer (``(h, c)`` for LSTM, ``h`` otherwise), each
``(batch, hidden)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from weft.models.rnn_lm import RNNLanguageModel, State

LayerState = Any  # torch.Tensor, or (h, c) for LSTM
_CELL_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "lstm": torch.lstm_cell,
    "gru": torch.gru_cell,
}


class RecurrentStepper:
    """Advances a batch of sequences by one token per call."""

    def __init__(self, model: RNNLanguageModel) -> None:
        self.model = model
        rnn = model.rnn
        self.cell = model.config.cell
        if self.cell == "rnn":
            relu = getattr(rnn, "nonlinearity", "tanh") == "relu"
            self.cell_fn: Callable[..., Any] = torch.rnn_relu_cell if relu else torch.rnn_tanh_cell
        else:
            self.cell_fn = _CELL_FUNCTIONS[self.cell]
        self.layers = [
            (getattr(rnn, f"weight_ih_l{k}"), getattr(rnn, f"weight_hh_l{k}"),
             getattr(rnn, f"bias_ih_l{k}"), getattr(rnn, f"bias_hh_l{k}"))
            for k in range(model.config.layers)
        ]

    def from_module_state(self, state: State) -> list[LayerState]:
        """Per-layer state from the ``(layers, batch, hidden)`` state ``nn.LSTM`` returns."""
        if isinstance(state, tuple):
            return [(state[0][k], state[1][k]) for k in range(len(self.layers))]
        return [state[k] for k in range(len(self.layers))]

    def to_module_state(self, layer_states: list[LayerState]) -> State:
        if self.cell == "lstm":
            return (torch.stack([h for h, _ in layer_states]),
                    torch.stack([c for _, c in layer_states]))
        return torch.stack(layer_states)

    @torch.no_grad()
    def step(
        self, tokens: torch.Tensor, states: list[LayerState]
    ) -> tuple[torch.Tensor, list[LayerState]]:
        """Logits ``(batch, vocab)`` after feeding ``tokens`` ``(batch,)``, and the new state."""
        model = self.model
        if model.embedding is not None:
            x = F.embedding(tokens, model.embedding.weight)
        else:
            x = F.one_hot(tokens, model.config.vocab_size).to(model.dtype)
        new_states: list[LayerState] = []
        for (w_ih, w_hh, b_ih, b_hh), state in zip(self.layers, states, strict=True):
            out = self.cell_fn(x, state, w_ih, w_hh, b_ih, b_hh)
            new_states.append(out)
            x = out[0] if self.cell == "lstm" else out
        if model.head is None:  # an adaptive softmax: its exact log-probabilities
            return model.scores(x), new_states
        return F.linear(x, model.head.weight, model.head.bias), new_states
