"""Character-level tokenizer, vectorized with NumPy.

Ids ``0 .. len(specials)-1`` are special tokens (``<unk>`` first, then e.g. ``<bos>``/``<eos>``/
``<pad>`` for record training); then the characters sorted by code point; then what
fine-tuning added (characters and special tokens, in the order they were added). Encoding
views the text as UTF-32 code points and maps them through a dense lookup table: no Python loop
per character.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from weft.tokenizers.base import UNK, EncodeReport, SpecialTokenIds, id_dtype


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)


def characters_of(texts: Iterable[str]) -> list[str]:
    """The distinct characters of ``texts``."""
    seen: set[int] = set()
    for text in texts:
        seen.update(np.unique(_code_points(text)).tolist())
    return [chr(p) for p in sorted(seen)]


class CharTokenizer(SpecialTokenIds):
    """One token per Unicode code point seen in training, plus special tokens.

    ``added`` entries come after every other id: characters (one code point each) and special
    tokens (longer names) appended when a trained model is fine-tuned on new text, so that no
    id the model already uses is renumbered.
    """

    type_name = "char"

    def __init__(
        self, chars: Iterable[str], specials: Iterable[str] = (UNK,), added: Iterable[str] = ()
    ) -> None:
        self.specials: list[str] = list(specials)
        if UNK not in self.specials:
            self.specials.insert(0, UNK)
        self.chars: list[str] = sorted(set(chars))
        if any(len(c) != 1 for c in self.chars):
            raise ValueError("character vocabulary entries must be single characters")
        self.added: list[str] = list(added)
        self._offset = len(self.specials)
        self._special_ids = {name: i for i, name in enumerate(self.specials)}
        # Every id's entry, in id order; an entry of one character is a character.
        entries = self.specials + self.chars + self.added
        if len(set(entries)) != len(entries):
            raise ValueError("duplicate entry in the character vocabulary")
        char_ids = [i for i, entry in enumerate(entries)
                    if len(entry) == 1 and i >= self._offset]
        self._special_ids.update({entry: i for i, entry in enumerate(entries)
                                  if len(entry) != 1 and i >= self._offset})
        self._points = np.array([ord(entries[i]) for i in char_ids], dtype=np.uint32)
        self._char_ids = np.array(char_ids, dtype=np.int64)
        self._dtype = id_dtype(self.vocab_size)
        # Decoding table: code point per id; specials decode to U+FFFD (unk) or nothing.
        self._decode_points = np.zeros(self.vocab_size, dtype=np.uint32)
        self._decode_points[self._char_ids] = self._points
        self._is_char = np.zeros(self.vocab_size, dtype=bool)
        self._is_char[self._char_ids] = True
        # The text of each id on its own, for streaming one token at a time.
        self.pieces: list[str] = [
            entry if len(entry) == 1 and i >= self._offset else "\ufffd" if entry == UNK else ""
            for i, entry in enumerate(entries)
        ]
        self._ascii_table: np.ndarray | None = None  # built on first use
        self._wide_table: np.ndarray | None = None

    @classmethod
    def train(cls, texts: Iterable[str], specials: Iterable[str] = (UNK,)) -> CharTokenizer:
        return cls(characters_of(texts), specials)

    @property
    def vocab_size(self) -> int:
        return self._offset + len(self.chars) + len(self.added)

    def with_added(self, chars: Iterable[str], specials: Iterable[str] = ()) -> CharTokenizer:
        """A copy with the characters and special tokens it lacks appended after every id."""
        known = set(self.chars) | set(self.added) | set(self._special_ids)
        new = [s for s in specials if s not in known]
        new += sorted(c for c in set(chars) if c not in known)
        return CharTokenizer(self.chars, self.specials, [*self.added, *new])

    def _table(self, size: int) -> np.ndarray:
        """Dense lookup table code point -> id for points below ``size``; unknown -> <unk>."""
        unk = self.unk_id
        assert unk is not None
        table = np.full(size, unk, dtype=self._dtype)
        inside = self._points < size
        table[self._points[inside]] = self._char_ids[inside]
        return table

    def encode(self, text: str, report: EncodeReport | None = None) -> np.ndarray:
        # One gather through a dense table: ASCII text is viewed as bytes (a 256-entry table),
        # anything else as UTF-32 code points (a table up to the largest known code point,
        # plus one slot that every larger, hence unknown, code point is clipped to).
        if text.isascii():
            if self._ascii_table is None:
                self._ascii_table = self._table(256)
            points = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
            ids = self._ascii_table[points]
        else:
            if self._wide_table is None:
                top = int(self._points.max()) + 1 if len(self._points) else 0
                self._wide_table = self._table(top + 1)
            points = _code_points(text)
            ids = self._wide_table[np.minimum(points, len(self._wide_table) - 1)]
        unk = self.unk_id
        if report is not None and ids.size:
            unknown = ids == unk
            if unknown.any():
                missing, counts = np.unique(points[unknown], return_counts=True)
                for point, count in zip(missing.tolist(), counts.tolist(), strict=True):
                    report.unknown[chr(point)] = report.unknown.get(chr(point), 0) + count
        return ids

    def encode_batch(
        self, texts: Sequence[str], report: EncodeReport | None = None
    ) -> list[np.ndarray]:
        """Ids of many short texts (records) in one pass: one token per code point."""
        if not texts:
            return []
        ids = self.encode("".join(texts), report)
        return np.split(ids, np.cumsum([len(t) for t in texts])[:-1])

    def decode(self, ids: np.ndarray | list[int]) -> str:
        arr = np.asarray(ids, dtype=np.int64)
        if arr.size == 0:
            return ""
        if arr.min() < 0 or arr.max() >= self.vocab_size:
            raise ValueError(f"token id out of range for a vocabulary of {self.vocab_size}")
        points = self._decode_points[arr]
        unk = self.unk_id
        keep = self._is_char[arr]
        if unk is not None:
            points = points.copy()
            points[arr == unk] = 0xFFFD
            keep |= arr == unk
        return points[keep].astype("<u4").tobytes().decode("utf-32-le", errors="surrogatepass")

    def stream_decoder(self, context: Sequence[int] = ()) -> CharStreamDecoder:
        return CharStreamDecoder(self.pieces)

    def to_dict(self) -> dict[str, Any]:
        data = {"type": self.type_name, "specials": self.specials, "chars": "".join(self.chars)}
        if self.added:
            data["added"] = self.added
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CharTokenizer:
        return cls(list(data["chars"]), data["specials"], data.get("added", ()))


class CharStreamDecoder:
    """Every character-level token decodes on its own, whatever came before it."""

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces

    def push(self, token: int) -> str:
        return self.pieces[token]

    def peek(self, token: int) -> str:
        return self.pieces[token]

    def finish(self) -> str:
        return ""
