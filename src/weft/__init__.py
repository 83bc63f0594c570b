"""weft: train recurrent text models (LSTM, GRU, RNN) on your own text, then use them."""

from __future__ import annotations

__version__ = "0.1.0"
