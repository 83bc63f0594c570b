"""Cutting a token stream into parallel columns for truncated backpropagation through time.

The token array is split into ``batch_size`` contiguous columns, each read in windows of
``seq_len`` tokens; window ``i`` of every column continues exactly where window ``i-1`` ended,
so the recurrent state can be carried over (and detached) between windows::

    stream: a b c d e f g h i j k l m n o p q r s t u v w x     (batch_size = 3)

    column 0: a b c d e f g h  ->  windows [a b c d] [e f g h]   (seq_len = 4)
    column 1: i j k l m n o p
    column 2: q r s t u v w x

Targets are the inputs shifted by one token within each column. Under ``torchrun`` the columns
are laid out for the whole (global) batch and each rank keeps its own contiguous share of them,
so N ranks see exactly the columns that one process with the global batch would.
"""

from __future__ import annotations

import numpy as np
import torch

from weft.errors import WeftError


class StreamBatches:
    """Windows over a token stream laid out as ``batch_size`` columns, kept on one device."""

    def __init__(
        self, tokens: np.ndarray, batch_size: int, seq_len: int, device: torch.device, what: str,
        *, rank: int = 0, world_size: int = 1,
    ) -> None:
        columns_len = len(tokens) // batch_size
        needed = batch_size * (seq_len + 1)
        if len(tokens) < needed:
            raise WeftError(
                f"the {what} has {len(tokens):,} tokens, too few for --batch-size {batch_size} "
                f"x --seq-len {seq_len} (needs at least {needed:,}); use a smaller "
                "--batch-size or --seq-len, or more text"
            )
        if batch_size % world_size:
            raise WeftError(f"the global batch of {batch_size} columns does not split evenly "
                            f"over {world_size} processes; use a number of processes that "
                            f"divides {batch_size}")
        share = batch_size // world_size
        self.batch_size = share
        self.seq_len = seq_len
        array = tokens[: columns_len * batch_size].reshape(batch_size, columns_len)
        array = array[rank * share : (rank + 1) * share]
        self.device = device
        self.columns_len = columns_len
        self.num_windows = (columns_len - 1 + self.seq_len - 1) // self.seq_len
        # A memory-mapped corpus may be larger than memory (and than the device): its windows
        # are read from the map when used. Otherwise the compact ids sit on the device and each
        # window is widened only when used.
        self.mapped: np.ndarray | None = None
        self.data: torch.Tensor | None = None
        if isinstance(tokens, np.memmap):
            self.mapped = array
        else:
            compact = array.astype(np.int32) if array.dtype == np.uint32 else array
            self.data = torch.from_numpy(np.ascontiguousarray(compact)).to(device)

    def window(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets of window ``index`` (the last window may be shorter)."""
        start = index * self.seq_len
        end = min(start + self.seq_len, self.columns_len - 1)
        if self.mapped is not None:
            block = torch.from_numpy(self.mapped[:, start : end + 1].astype(np.int64))
            block = block.to(self.device)
            return block[:, :-1], block[:, 1:]
        assert self.data is not None
        return self.data[:, start:end].long(), self.data[:, start + 1 : end + 1].long()


def split_tokens(tokens: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Train on the start of the stream, validate on the last ``val_fraction`` of it."""
    n_val = int(len(tokens) * val_fraction)
    if n_val == 0:
        return tokens, tokens[:0]
    return tokens[:-n_val], tokens[-n_val:]
