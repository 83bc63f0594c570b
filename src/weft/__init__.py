"""weft: train recurrent text models (LSTM, GRU, RNN) on your own text, then use them.

    import weft
    model = weft.train("input.txt", out="runs/demo", time_budget="2m")
    print(model.generate("ROMEO:", max_new_tokens=200)[0])
    model = weft.load("runs/demo")
"""

from __future__ import annotations

__version__ = "0.1.0"

from weft.api import load, resume, train
from weft.errors import WeftError

__all__ = ["WeftError", "__version__", "load", "resume", "train"]
