"""weft: train recurrent text models (LSTM, GRU, RNN) on your own text, then use them.

    import weft
    model = weft.train("input.txt", out="runs/demo", time_budget="2m")
    print(model.generate("ROMEO:", max_new_tokens=200)[0])
    model = weft.load("runs/demo")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from weft.errors import WeftError

__version__ = "0.1.0"
__all__ = ["WeftError", "__version__", "load", "resume", "train"]

if TYPE_CHECKING:
    from weft.api import load, resume, train


def __getattr__(name: str) -> Any:
    # PyTorch loads on first use, not on `import weft`: the CLI starts (and answers --help or
    # Ctrl-C) before the 2-3 s that importing torch takes.
    if name in ("load", "resume", "train"):
        from weft import api

        return getattr(api, name)
    raise AttributeError(f"module 'weft' has no attribute {name!r}")
