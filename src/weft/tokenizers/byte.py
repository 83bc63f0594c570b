"""Byte-level tokenizer: the 256 UTF-8 bytes, so any text in any script encodes with no unknowns.

Ids: the special tokens given at creation first (``<bos>``/``<eos>``/``<pad>`` for record
training; none for a stream), then the bytes ``0x00..0xFF``, then special tokens added later
(fine-tuning a stream-trained model on records appends ``<bos>``/``<eos>``/``<pad>``), so that
growing the vocabulary never renumbers an id a trained model already uses.

Decoding joins the bytes and decodes them as UTF-8 with U+FFFD for what is not valid UTF-8 (a
model can sample any byte sequence). Streaming: one character may take several tokens; decoding
a partial sequence ends in U+FFFD; :meth:`ByteTokenizer.stream_decoder` instead feeds the bytes
to an incremental UTF-8 decoder, which shows a character once its last byte arrives.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from weft.tokenizers.base import UNK, EncodeReport, SpecialTokenIds, Utf8StreamDecoder, id_dtype

NUM_BYTES = 256


class ByteTokenizer(SpecialTokenIds):
    """One token per UTF-8 byte, plus special tokens before and after the bytes."""

    type_name = "byte"

    def __init__(self, specials: Iterable[str] = (), added_specials: Iterable[str] = ()) -> None:
        # Bytes cover every text: there is no <unk>.
        self.specials: list[str] = [s for s in specials if s != UNK]
        self.added_specials: list[str] = [s for s in added_specials if s != UNK]
        names = self.specials + self.added_specials
        if len(set(names)) != len(names):
            raise ValueError("special tokens must be distinct")
        self._offset = len(self.specials)
        self._special_ids = {name: i for i, name in enumerate(self.specials)}
        after = self._offset + NUM_BYTES
        self._special_ids.update({name: after + i for i, name in enumerate(self.added_specials)})
        self._dtype = id_dtype(self.vocab_size)

    @property
    def vocab_size(self) -> int:
        return len(self.specials) + NUM_BYTES + len(self.added_specials)

    def with_specials(self, names: Sequence[str]) -> ByteTokenizer:
        """A copy with ``names`` appended after every existing id (those it lacks)."""
        missing = [n for n in names if n != UNK and n not in self._special_ids]
        return ByteTokenizer(self.specials, [*self.added_specials, *missing])

    def encode(self, text: str, report: EncodeReport | None = None) -> np.ndarray:
        # Lone surrogates (from JSON "\ud800" or surrogate-escaped arguments) have no UTF-8
        # form: they become U+FFFD's bytes instead of failing.
        data = text.encode("utf-8", errors="replace")
        ids = np.frombuffer(data, dtype=np.uint8)
        if self._offset == 0 and self._dtype == np.uint8:
            return ids.copy()
        return ids.astype(self._dtype) + self._dtype.type(self._offset)

    def encode_batch(
        self, texts: Sequence[str], report: EncodeReport | None = None
    ) -> list[np.ndarray]:
        return [self.encode(text) for text in texts]

    def decode_bytes(self, ids: np.ndarray | list[int]) -> bytes:
        """The raw bytes of ``ids`` (special tokens left out; possibly ending mid-character)."""
        arr = np.asarray(ids, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= self.vocab_size):
            raise ValueError(f"token id out of range for a vocabulary of {self.vocab_size}")
        content = arr[(arr >= self._offset) & (arr < self._offset + NUM_BYTES)] - self._offset
        return content.astype(np.uint8).tobytes()

    def decode(self, ids: np.ndarray | list[int]) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def token_bytes(self, token: int) -> bytes:
        """The byte of one token; none for a special token."""
        byte = token - self._offset
        return bytes((byte,)) if 0 <= byte < NUM_BYTES else b""

    def stream_decoder(self, context: Sequence[int] = ()) -> Utf8StreamDecoder:
        return Utf8StreamDecoder(self.token_bytes, context)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type_name, "specials": self.specials}
        if self.added_specials:
            data["added_specials"] = self.added_specials
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ByteTokenizer:
        return cls(data["specials"], data.get("added_specials", ()))
