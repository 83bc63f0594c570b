"""The recurrent language model: embedding (or one-hot) -> LSTM/GRU/RNN stack -> output layer.

Contract the trainer and generator rely on::

    logits, loss, state = model(ids, state=None, targets=None)

``ids`` is ``(batch, time)``; ``state`` is the recurrent state carried between calls (a tensor,
or an ``(h, c)`` pair for LSTM); ``loss`` is the mean cross-entropy over targets that are not
``-100`` (padding), or ``None`` without targets.

The output layer is a linear layer over the whole vocabulary (a full softmax), or, when
``ModelConfig.adaptive_cutoffs`` is set, an adaptive softmax (Grave et al. 2017,
``nn.AdaptiveLogSoftmaxWithLoss``): the frequent tokens (the tokenizers number them first) are
scored at every position, the rarer ones in smaller clusters only where the target is in them.
Its training loss is the exact negative log-likelihood, computed without the full
distribution, so ``logits`` are then None when ``targets`` are given. Without targets, logits
are the exact log-probabilities of every token (``log_prob``): softmax of them is the model's
distribution, so evaluation and sampling need no change and ``bits_per_char`` keeps its meaning.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from weft.config import ModelConfig
from weft.errors import WeftError

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]
IGNORE_INDEX = -100
# Each tail cluster of the adaptive softmax projects the hidden state to 1/4 of the size of the
# one before it (PyTorch's default, and Grave et al.'s): rare tokens get cheaper vectors.
ADAPTIVE_DIV_VALUE = 4.0
# Cluster boundaries: the 2,000 most frequent tokens are scored at every position, then
# clusters up to 10,000 and 50,000 tokens, and the rest.
ADAPTIVE_BOUNDARIES = (2_000, 10_000, 50_000)
# "auto" turns the adaptive softmax on from this vocabulary size, where it was measured to
# give lower held-out loss at equal training time (docs/benchmarks.md, "Word level").
ADAPTIVE_MIN_VOCAB = 5_000

_CELLS: dict[str, type[nn.LSTM] | type[nn.GRU] | type[nn.RNN]] = {
    "lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN,
}


class LMOutput(NamedTuple):
    logits: torch.Tensor | None  # None only for an adaptive softmax given targets
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
        self.head: nn.Linear | None = None
        self.adaptive: nn.AdaptiveLogSoftmaxWithLoss | None = None
        if config.adaptive_cutoffs:
            self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(
                config.hidden_size, config.vocab_size, list(config.adaptive_cutoffs),
                div_value=ADAPTIVE_DIV_VALUE)
        else:
            self.head = nn.Linear(config.hidden_size, config.vocab_size)
        if config.tie_weights:
            # Weight tying (Press & Wolf 2016; Inan et al. 2016): the output layer reuses the
            # input embedding, saving parameters and usually improving perplexity.
            assert self.embedding is not None and self.head is not None
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

    @property
    def device(self) -> torch.device:
        return next(self.rnn.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.rnn.parameters()).dtype

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        if self.embedding is None:
            return F.one_hot(ids.long(), self.config.vocab_size).to(self.dtype)
        return self.embedding(ids.long())

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-token scores ``(..., vocab)`` from the top layer's output: logits of the full
        softmax, or the adaptive softmax's exact log-probabilities."""
        if self.adaptive is not None:
            flat = self.adaptive.log_prob(hidden.reshape(-1, hidden.size(-1)))
            return flat.view(*hidden.shape[:-1], flat.size(-1))
        assert self.head is not None
        return self.head(hidden)

    def output_weight_count(self) -> int:
        """Parameters of the output layer (what one generation step reads besides the cells)."""
        layers = [layer for layer in (self.adaptive, self.head) if layer is not None]
        return sum(p.numel() for layer in layers for p in layer.parameters())

    def forward(
        self,
        ids: torch.Tensor,
        state: State | None = None,
        targets: torch.Tensor | None = None,
    ) -> LMOutput:
        out, new_state = self._top_output(ids, state)
        if self.adaptive is not None and targets is not None:
            return LMOutput(None, self._adaptive_loss(out, targets), new_state)
        logits = self.scores(out)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.reshape(-1, logits.size(-1)).float(),
                targets.reshape(-1).long(),
                ignore_index=IGNORE_INDEX,
            )
        return LMOutput(logits, loss, new_state)

    def target_nats(self, ids: torch.Tensor, targets: torch.Tensor, state: State | None = None
                    ) -> tuple[torch.Tensor, State]:
        """Negative log-likelihood of each target (float32, shaped like ``targets``, 0 where a
        target is padding) and the state after ``ids``: what evaluation sums. Exact either way;
        an adaptive softmax then scores only each target's own clusters, not the whole
        vocabulary (at 30,000 words about 10x less work than :meth:`scores`)."""
        out, new_state = self._top_output(ids, state)
        if self.adaptive is None:
            assert self.head is not None
            logits = self.head(out)
            nats = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)),
                                   targets.reshape(-1).long(), ignore_index=IGNORE_INDEX,
                                   reduction="none")
            return nats.view(targets.shape), new_state
        scored, keep = self._adaptive_targets(out, targets)
        nats = -scored.output.float()
        if keep is not None:  # padding scores 0
            nats = torch.zeros(keep.shape, dtype=nats.dtype, device=nats.device).masked_scatter(
                keep, nats)
        return nats.view(targets.shape), new_state

    def _top_output(self, ids: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        """The top layer's output for ``ids`` (dropout applied in training) and the new state."""
        out, new_state = self.rnn(self.drop(self.embed(ids)), state)
        return self.drop(out), new_state

    def _adaptive_targets(self, out: torch.Tensor, targets: torch.Tensor
                          ) -> tuple[Any, torch.Tensor | None]:
        """The adaptive softmax's result (``output``: log-probabilities; ``loss``: their negated
        mean) for the targets that are not padding, and which those are (None: all)."""
        assert self.adaptive is not None
        flat = out.reshape(-1, out.size(-1))
        flat_targets = targets.reshape(-1).long()
        keep = flat_targets != IGNORE_INDEX
        if bool(keep.all()):
            return self.adaptive(flat, flat_targets), None
        return self.adaptive(flat[keep], flat_targets[keep]), keep

    def _adaptive_loss(self, out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood of the targets that are not padding."""
        # The cluster products may run in bf16 under autocast; the loss is summed in float32.
        return self._adaptive_targets(out, targets)[0].loss.float()

    def initial_state(self, batch_size: int, device: torch.device | None = None) -> State:
        shape = (self.config.layers, batch_size, self.config.hidden_size)
        device = device or self.device
        zeros = torch.zeros(shape, device=device)
        if self.config.cell == "lstm":
            return (zeros, zeros.clone())
        return zeros


def adaptive_cutoffs(vocab_size: int) -> tuple[int, ...]:
    """Cluster boundaries for a vocabulary: :data:`ADAPTIVE_BOUNDARIES` below its size, or for a
    small vocabulary (where the adaptive softmax was forced on) one boundary at a quarter."""
    cutoffs = tuple(c for c in ADAPTIVE_BOUNDARIES if c < vocab_size)
    return cutoffs or (max(1, vocab_size // 4),)


def resolve_output_layer(config: ModelConfig, vocab_size: int, *, fixed: bool) -> ModelConfig:
    """``config`` for a vocabulary of ``vocab_size``, with ``adaptive_softmax`` "on" or "off".

    ``fixed``: the weights exist already (resume, --init-from), so the output layer stays what
    they were trained with (their cutoffs; a vocabulary grown by fine-tuning joins the last
    cluster). Otherwise "auto" picks the adaptive softmax from :data:`ADAPTIVE_MIN_VOCAB` on,
    unless the weights are tied to the embedding.
    """
    cutoffs = config.adaptive_cutoffs
    if not fixed and not cutoffs:
        wanted = config.adaptive_softmax == "on" or (
            config.adaptive_softmax == "auto" and vocab_size >= ADAPTIVE_MIN_VOCAB
            and not config.tie_weights)
        if wanted and vocab_size < 2:
            raise WeftError("--adaptive-softmax on needs a vocabulary of at least 2 tokens")
        cutoffs = adaptive_cutoffs(vocab_size) if wanted else ()
    return dataclasses.replace(config, vocab_size=vocab_size, adaptive_cutoffs=cutoffs,
                               adaptive_softmax="on" if cutoffs else "off")


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
