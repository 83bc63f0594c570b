"""Int8 weights for sampling on a CPU (``--quantize int8``): about 4x less to read per token.

At batch 1 a float32 step is bound by reading the weights (13 MB for a 2 x 512 LSTM); with many
streams it is bound by float32 matrix-product throughput. Both improve with int8 where the CPU
has a fast int8 product, and which product is fast depends on the CPU (:data:`INT8_KERNELS`):

- ``int_mm``: ``torch._int_mm`` (oneDNN) on int8 activations. With AVX-512 VNNI or AMX it is
  the fastest (19 us for a 2048 x 1024 product at batch 1); without VNNI oneDNN's signed-int8
  product is slower than float32's (about 1 ms: 97% of an int8 step under AVX2, profiled in
  docs/benchmarks.md).
- ``fbgemm``: FBGEMM's dynamically quantized product (``quantized::linear_dynamic``), written
  for AVX2 servers: it quantizes the activations to unsigned 7-bit (no int16 saturation
  without VNNI), then multiplies. It cannot be traced by ``torch.compile``.

How each product is quantized:
- weights: symmetric, one scale per output row, made from the module's parameters when the
  stepper is built (never saved, so they cannot drift from the trained weights);
- activations (``int_mm``): the hidden states of LSTM, GRU and tanh cells lie in [-1, 1], so
  they are quantized with the fixed scale 1/127 and no per-step search for a range; FBGEMM
  finds each call's range itself, which a row holding -1 and 1 fixes at [-1, 1] (so a row's
  result never depends on the rest of its batch);
- layer 0's input is the embedding (or a one-hot row) and stays float32: its product is a
  row lookup in a table made once (or, for a large vocabulary, a small float product);
- cell arithmetic, the state, an adaptive softmax output layer and the sampling stay float32.

The logits differ slightly from float32 (+0.0001 nats/char of held-out loss for a 2 x 512
LSTM), so ``--quantize none`` gives the reference path's logits exactly;
``weft.generation.plan`` decides when int8 is worth it on this machine.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

from weft.errors import WeftError
from weft.models.rnn_lm import RNNLanguageModel, State

QMAX = 127
INPUT_TABLE_MAX = 8 * 2**20  # floats (32 MB): e.g. 4,096 tokens x 4 gates x 512


INT8_KERNELS = ("int_mm", "fbgemm")


class Int8Product(Protocol):
    """``y = x @ W.T + b`` with int8 ``W``; ``x`` as :meth:`operand` made it."""

    def __call__(self, x: torch.Tensor, /) -> torch.Tensor: ...


@dataclass(frozen=True)
class Int8Linear:
    """``y = x @ W.T + b`` with int8 ``W`` and inputs given as int8 multiples of 1/127."""

    weight: torch.Tensor  # (in, out) int8 in column-major layout: _int_mm's fast case at batch 1
    scale: torch.Tensor  # (out,) float32: row scale / 127, turns int32 sums into float
    bias: torch.Tensor  # (out,) float32

    @classmethod
    def quantize(cls, weight: torch.Tensor, bias: torch.Tensor) -> Int8Linear:
        weight = weight.detach().float()
        row_scale = weight.abs().amax(dim=1).clamp(min=1e-12) / QMAX
        q = torch.round(weight / row_scale[:, None]).clamp(-QMAX, QMAX).to(torch.int8)
        return cls(q.t(), row_scale / QMAX, bias.detach().float().contiguous())

    def __call__(self, x_q: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias, torch._int_mm(x_q, self.weight), self.scale)


def quantize_bounded(h: torch.Tensor) -> torch.Tensor:
    """int8 of a tensor in [-1, 1] at the fixed scale 1/127."""
    return torch.round(h * QMAX).to(torch.int8)


class FbgemmLinear:
    """``y = x @ W.T + b`` through FBGEMM: float ``x``, int8 ``W`` packed once."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        weight = weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12).double() / QMAX
        zero = torch.zeros(weight.size(0), dtype=torch.long)
        with warnings.catch_warnings():  # quantized tensors are deprecated, still in torch 2.13
            warnings.simplefilter("ignore")
            q = torch.quantize_per_channel(weight, scale, zero, 0, torch.qint8)
        previous = torch.backends.quantized.engine
        torch.backends.quantized.engine = "fbgemm"  # the packing decides the kernel
        try:
            self.packed = torch.ops.quantized.linear_prepack(q, bias.detach().float())
        finally:
            torch.backends.quantized.engine = previous
        # FBGEMM quantizes the activations with the range of the whole call, so a row's result
        # would depend on the other rows of a batch (a served request on who else was served).
        # Inputs are hidden states in [-1, 1]: one extra row holding -1 and 1 fixes that range.
        self.range_row = torch.zeros(1, weight.size(1))
        self.range_row[0, :2] = torch.tensor([-1.0, 1.0])[: weight.size(1)]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        framed = torch.cat([x, self.range_row], 0)
        # reduce_range: 7-bit activations, so AVX2's int16 pair sums cannot saturate.
        return torch.ops.quantized.linear_dynamic(framed, self.packed, True)[:-1]


def fbgemm_available() -> bool:
    """Whether this PyTorch has FBGEMM's int8 products (x86 builds do)."""
    return ("fbgemm" in torch.backends.quantized.supported_engines
            and hasattr(torch.ops.quantized, "linear_dynamic"))


def int_mm_available() -> bool:
    try:  # a private PyTorch op: make sure this build has it on the CPU
        torch._int_mm(torch.zeros(1, 8, dtype=torch.int8), torch.zeros(8, 8, dtype=torch.int8))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    return True


@dataclass(frozen=True)
class LayerState:
    """One layer's state: float32 ``h`` (and ``c``), and ``h`` already in the form the products
    read (int8 for ``int_mm``; ``h`` itself for ``fbgemm``): the layer above now, this layer's
    own next step."""

    h: torch.Tensor
    c: torch.Tensor | None
    h_q: torch.Tensor


def _double_candidate_rows(weight: torch.Tensor, hidden: int) -> torch.Tensor:
    """LSTM rows of the candidate gate g, times 2: then one sigmoid serves all four gates,
    as tanh(z) = 2 sigmoid(2z) - 1."""
    weight = weight.clone()
    weight[2 * hidden : 3 * hidden] *= 2
    return weight


class Int8Stepper:
    """Advances a batch of sequences by one token per call, with int8 weight products.

    Used like :class:`~weft.generation.stepper.RecurrentStepper`; its per-layer state is a
    :class:`LayerState`. ``kernel`` is one of :data:`INT8_KERNELS`.
    """

    def __init__(self, model: RNNLanguageModel, kernel: str = "int_mm") -> None:
        if model.device.type != "cpu":
            raise WeftError("--quantize int8 is for generating on a CPU; on a GPU use "
                            "--quantize none")
        self.cell = model.config.cell
        self.kernel = kernel
        rnn = model.rnn
        if kernel == "fbgemm" and not fbgemm_available():
            raise WeftError(f"this PyTorch ({torch.__version__}) has no FBGEMM int8 products; "
                            "use --quantize none")
        if kernel == "int_mm" and not int_mm_available():
            raise WeftError("--quantize int8 needs torch._int_mm on the CPU, which this PyTorch "
                            f"({torch.__version__}) lacks; use --quantize none")
        if kernel not in INT8_KERNELS:
            raise WeftError(f"unknown int8 kernel {kernel!r}; use one of {INT8_KERNELS}")
        self.operand: Callable[[torch.Tensor], torch.Tensor] = (
            quantize_bounded if kernel == "int_mm" else torch.Tensor.contiguous)
        linear: Callable[[torch.Tensor, torch.Tensor], Int8Product] = (
            Int8Linear.quantize if kernel == "int_mm" else FbgemmLinear)
        if getattr(rnn, "nonlinearity", "tanh") != "tanh":
            raise WeftError("--quantize int8 needs hidden states in [-1, 1] (LSTM, GRU, tanh)")
        self.layers = model.config.layers
        hidden = model.config.hidden_size
        # The GRU's new gate needs its input and hidden products apart; the other cells add
        # them, so their layers above the first use one product over [input, hidden].
        self.split = self.cell == "gru"

        def param(name: str, k: int) -> torch.Tensor:
            value = getattr(rnn, f"{name}_l{k}").detach().float()
            if self.cell == "lstm":
                value = _double_candidate_rows(value, hidden)
            return value

        w_ih0, b_ih0, b_hh0 = param("weight_ih", 0), param("bias_ih", 0), param("bias_hh", 0)
        first_bias = b_ih0 if self.split else b_ih0 + b_hh0
        # Layer 0's input product depends on the token alone, so for a vocabulary of modest
        # size it is computed once per token and looked up (a one-hot input's product is a
        # row of W_ih anyway); a large vocabulary multiplies the embedding at each step.
        self.embedding: torch.Tensor | None = None
        if model.embedding is None:
            self.input_table = (w_ih0.t() + first_bias).contiguous()  # (vocab, gates)
        elif model.config.vocab_size * w_ih0.size(0) <= INPUT_TABLE_MAX:
            self.input_table = torch.addmm(first_bias, model.embedding.weight.detach().float(),
                                           w_ih0.t())
        else:
            self.embedding = model.embedding.weight.detach().float()
            self.input_weight = w_ih0.t().contiguous()  # (embedding, gates)
            self.input_bias = first_bias
        self.hidden0 = linear(param("weight_hh", 0),
                              b_hh0 if self.split else torch.zeros_like(b_hh0))
        self.upper: list[tuple[Int8Product, Int8Product | None]] = []
        for k in range(1, self.layers):
            w_ih, w_hh = param("weight_ih", k), param("weight_hh", k)
            b_ih, b_hh = param("bias_ih", k), param("bias_hh", k)
            if self.split:
                self.upper.append((linear(w_ih, b_ih), linear(w_hh, b_hh)))
            else:
                self.upper.append((linear(torch.cat([w_ih, w_hh], 1), b_ih + b_hh), None))
        # An adaptive softmax stays float32: its log-probabilities are a few small products
        # and log-softmaxes (weft.models.rnn_lm), cheap next to a full output layer.
        self.head = linear(model.head.weight, model.head.bias) if model.head is not None else None
        self.scores = model.scores

    def _layer_state(self, h: torch.Tensor, c: torch.Tensor | None) -> LayerState:
        return LayerState(h, c, self.operand(h))

    def from_module_state(self, state: State) -> list[LayerState]:
        """Per-layer state from the ``(layers, batch, hidden)`` state ``nn.LSTM`` returns."""
        if isinstance(state, tuple):
            return [self._layer_state(state[0][k].float(), state[1][k].float())
                    for k in range(self.layers)]
        return [self._layer_state(state[k].float(), None) for k in range(self.layers)]

    def to_module_state(self, layer_states: list[LayerState]) -> State:
        h = torch.stack([s.h for s in layer_states])
        if self.cell == "lstm":
            return h, torch.stack([s.c for s in layer_states if s.c is not None])
        return h

    def _cell(self, gates: torch.Tensor, gates_hidden: torch.Tensor | None,
              state: LayerState) -> LayerState:
        """The cell's arithmetic on its pre-activations (``gates_hidden``: the GRU's)."""
        if self.cell == "lstm":
            assert state.c is not None
            i, f, g2, o = torch.sigmoid(gates).chunk(4, dim=1)
            # c = f c + i tanh(g), with tanh(g) = 2 sigmoid(2g) - 1 and 2g in the weights.
            c = torch.addcmul(f * state.c - i, i, g2, value=2.0)
            return self._layer_state(torch.tanh(c).mul_(o), c)
        if self.cell == "gru":
            assert gates_hidden is not None
            size = state.h.size(1)
            r, z = torch.sigmoid(gates[:, : 2 * size] + gates_hidden[:, : 2 * size]).chunk(2, 1)
            n = torch.tanh(torch.addcmul(gates[:, 2 * size :], r, gates_hidden[:, 2 * size :]))
            return self._layer_state(torch.lerp(n, state.h, z), None)  # (1 - z) n + z h
        return self._layer_state(torch.tanh(gates), None)

    @torch.no_grad()
    def step(
        self, tokens: torch.Tensor, states: list[LayerState]
    ) -> tuple[torch.Tensor, list[LayerState]]:
        """Logits ``(batch, vocab)`` after feeding ``tokens`` ``(batch,)``, and the new state."""
        if self.embedding is not None:
            gates = torch.addmm(self.input_bias, F.embedding(tokens, self.embedding),
                                self.input_weight)
        else:
            gates = F.embedding(tokens, self.input_table)
        recurrent = self.hidden0(states[0].h_q)
        below = (self._cell(gates, recurrent, states[0]) if self.split
                 else self._cell(gates + recurrent, None, states[0]))
        new_states = [below]
        for (product, hidden_product), own in zip(self.upper, states[1:], strict=True):
            if hidden_product is not None:
                below = self._cell(product(below.h_q), hidden_product(own.h_q), own)
            else:
                below = self._cell(product(torch.cat([below.h_q, own.h_q], 1)), None, own)
            new_states.append(below)
        if self.head is None:
            return self.scores(below.h), new_states
        return self.head(below.h_q), new_states
