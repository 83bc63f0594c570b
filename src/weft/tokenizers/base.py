"""The contract every tokenizer keeps: encode to a NumPy id array, decode back, save as JSON.

A tokenizer is saved inside the run directory (``tokenizer.json``) so that generation needs
nothing else; :func:`weft.tokenizers.load_tokenizer` dispatches on the saved ``type``.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass
class EncodeReport:
    """What encoding had to do to input it could not represent exactly."""

    unknown: dict[str, int] = field(default_factory=dict)  # piece replaced by <unk> -> count
    # Byte-level tokenizers (BPE) replace nothing: characters never seen in training are
    # encoded as their bytes, which the model knows little about.
    unseen: dict[str, int] = field(default_factory=dict)

    def describe(self, limit: int = 10, pieces: dict[str, int] | None = None) -> str:
        """The most frequent ``pieces`` (the unknown ones by default), quoted."""
        pieces = self.unknown if pieces is None else pieces
        shown = sorted(pieces.items(), key=lambda kv: -kv[1])[:limit]
        parts = [f"{piece!r} (U+{ord(piece):04X})" if len(piece) == 1 else repr(piece)
                 for piece, _ in shown]
        more = len(pieces) - len(shown)
        return ", ".join(parts) + (f" and {more} more" if more > 0 else "")


UNK, BOS, EOS, PAD = "<unk>", "<bos>", "<eos>", "<pad>"


class SpecialTokenIds:
    """The special-token properties of the protocol, looked up in ``_special_ids``."""

    _special_ids: dict[str, int]

    @property
    def unk_id(self) -> int | None:
        return self._special_ids.get(UNK)

    @property
    def bos_id(self) -> int | None:
        return self._special_ids.get(BOS)

    @property
    def eos_id(self) -> int | None:
        return self._special_ids.get(EOS)

    @property
    def pad_id(self) -> int | None:
        return self._special_ids.get(PAD)

    def special_id(self, name: str) -> int | None:
        """The id of the special token ``name`` (e.g. a label token), if the vocabulary has it."""
        return self._special_ids.get(name)

    @property
    def never_generate(self) -> list[int]:
        """Every special token but end-of-sequence (which ends a record)."""
        return [i for name, i in self._special_ids.items() if name != EOS]


class StreamDecoder(Protocol):
    """Decodes ids one at a time into text deltas whose concatenation is the full decode.

    Started with ``context`` (the prompt's ids), ``"".join(push(i) for i in ids) + finish()``
    equals ``decode(context + ids)`` less ``decode(context)``.
    """

    def push(self, token: int) -> str:
        """The text that ``token`` adds (empty while it is held back)."""
        ...

    def peek(self, token: int) -> str:
        """What :meth:`push` would return for ``token``, leaving the decoder as it was."""
        ...

    def finish(self) -> str:
        """Whatever is still held back, at the end of the sequence."""
        ...


class Utf8StreamDecoder:
    """Streams byte-level ids (BPE, bytes): their bytes through one incremental UTF-8 decoder,
    so a character whose bytes arrive over several tokens appears whole, once complete."""

    def __init__(self, token_bytes: Callable[[int], bytes], context: Sequence[int]) -> None:
        self.token_bytes = token_bytes
        self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        for token in context:
            self.utf8.decode(token_bytes(token))

    def push(self, token: int) -> str:
        return str(self.utf8.decode(self.token_bytes(token)))

    def peek(self, token: int) -> str:
        state = self.utf8.getstate()
        try:
            return self.push(token)
        finally:
            self.utf8.setstate(state)

    def finish(self) -> str:
        return str(self.utf8.decode(b"", final=True))


@runtime_checkable
class Tokenizer(Protocol):
    """Maps text to token ids and back."""

    type_name: str

    @property
    def vocab_size(self) -> int: ...

    @property
    def unk_id(self) -> int | None: ...

    @property
    def bos_id(self) -> int | None: ...

    @property
    def eos_id(self) -> int | None: ...

    @property
    def pad_id(self) -> int | None: ...

    @property
    def never_generate(self) -> list[int]:
        """Ids the sampler must never emit (padding, unknown, begin-of-sequence, labels)."""
        ...

    def special_id(self, name: str) -> int | None: ...

    def encode(self, text: str, report: EncodeReport | None = None) -> np.ndarray:
        """Token ids of ``text`` as a compact unsigned integer array."""
        ...

    def decode(self, ids: np.ndarray | list[int]) -> str: ...

    def stream_decoder(self, context: Sequence[int] = ()) -> StreamDecoder:
        """A decoder for ids generated after ``context``, for streaming."""
        ...

    def to_dict(self) -> dict[str, Any]: ...


def id_dtype(vocab_size: int) -> np.dtype[Any]:
    """The smallest unsigned dtype that holds every id of a vocabulary."""
    if vocab_size <= 1 << 8:
        return np.dtype(np.uint8)
    if vocab_size <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)
