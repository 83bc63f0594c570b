"""Byte-level BPE subword tokenizer, trained on the corpus with Hugging Face ``tokenizers``.

Byte-level means the base alphabet is the 256 bytes, so no input is ever unknown: a character
never seen in training is spelled as its UTF-8 bytes. Such characters are still recorded in the
:class:`EncodeReport` (the tokenizer remembers the characters it was trained on) so callers can
warn that the model has never seen them.

The trained Hugging Face tokenizer is embedded, as its own JSON object, under ``"hf"`` in the
run's ``tokenizer.json``; nothing else is needed to load it.

Special tokens (``<bos>``, ``<eos>``, ``<pad>`` for records) take the first ids. Their literal
spelling in input text is encoded as ordinary text, never as the special token, so a record
that happens to contain ``<eos>`` cannot end itself.

Streaming: one token may hold part of a character's bytes, and decoding such a partial sequence
yields U+FFFD. :class:`~weft.tokenizers.base.Utf8StreamDecoder` feeds each token's bytes
through an incremental UTF-8 decoder, which holds back a partial character until its next
bytes come (and replaces bytes that can never form one, as the full decode does).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from weft.errors import WeftError
from weft.tokenizers.base import (
    UNK,
    EncodeReport,
    SpecialTokenIds,
    Utf8StreamDecoder,
    id_dtype,
)
from weft.tokenizers.char import _code_points

_BYTE_ALPHABET = pre_tokenizers.ByteLevel.alphabet()
_ENCODE_PIECE = 1 << 12  # characters per piece when encoding long texts
# Lone surrogates (from surrogate-escaped command-line bytes or JSON "\ud800") have no UTF-8
# bytes, and the Rust tokenizer raises TypeError on them: they are encoded as U+FFFD instead.
_SURROGATE = re.compile("[\ud800-\udfff]")
# ByteLevel maps each byte to a printable character; this is the inverse, for streaming.
_BYTE_OF_CHAR: dict[str, int] = {}


def _byte_table() -> dict[str, int]:
    if not _BYTE_OF_CHAR:
        # GPT-2's table: printable Latin-1 bytes map to themselves, the rest to 256 + n.
        printable = (
            list(range(ord("!"), ord("~") + 1))
            + list(range(ord("¡"), ord("¬") + 1))
            + list(range(ord("®"), ord("ÿ") + 1))
        )
        extra = 0
        for byte in range(256):
            if byte in printable:
                _BYTE_OF_CHAR[chr(byte)] = byte
            else:
                _BYTE_OF_CHAR[chr(256 + extra)] = byte
                extra += 1
    return _BYTE_OF_CHAR


def _batches(texts: Iterable[str], size: int = 1 << 16) -> Iterator[str]:
    """Feed the trainer pieces of ~64K characters cut at newlines (it parallelizes over them)."""
    for text in texts:
        start = 0
        while start < len(text):
            end = text.find("\n", start + size)
            end = len(text) if end < 0 else end + 1
            yield text[start:end]
            start = end


class BPETokenizer(SpecialTokenIds):
    """Subword tokenizer: byte-level BPE with ``vocab_size`` entries including special tokens."""

    type_name = "bpe"

    def __init__(self, hf: HFTokenizer, specials: Iterable[str], alphabet: str) -> None:
        self.hf = hf
        # Literal "<eos>" in text is text, not the special token.
        self.hf.encode_special_tokens = True
        self.specials: list[str] = list(specials)
        self.alphabet = "".join(sorted(set(alphabet)))
        self._alphabet_points = _code_points(self.alphabet)
        self._special_ids: dict[str, int] = {}
        for name in self.specials:
            token_id = hf.token_to_id(name)
            if token_id is None:
                raise ValueError(f"special token {name!r} missing from the BPE vocabulary")
            self._special_ids[name] = token_id
        self._dtype = id_dtype(self.vocab_size)

    @classmethod
    def train(
        cls, texts: Iterable[str], *, vocab_size: int, specials: Iterable[str] = ()
    ) -> BPETokenizer:
        specials = [s for s in specials if s != UNK]  # bytes cover everything: no <unk>
        minimum = len(_BYTE_ALPHABET) + len(specials)
        if vocab_size < minimum:
            raise WeftError(
                f"--vocab-size {vocab_size} is too small for byte-level BPE: the 256 bytes and "
                f"{len(specials)} special tokens already take {minimum}"
            )
        texts = list(texts)
        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=specials,
            initial_alphabet=_BYTE_ALPHABET,
            show_progress=False,
        )
        hf.train_from_iterator(_batches(texts), trainer=trainer)
        alphabet: set[int] = set()
        for text in texts:
            alphabet.update(np.unique(_code_points(text)).tolist())
        return cls(hf, specials, "".join(chr(p) for p in alphabet))

    @property
    def vocab_size(self) -> int:
        return int(self.hf.get_vocab_size(with_added_tokens=True))

    def with_specials(self, names: Sequence[str]) -> BPETokenizer:
        """A copy with the special tokens it lacks appended after every id (bytes cover any
        text, so fine-tuning never needs new subwords)."""
        missing = [n for n in names if n != UNK and n not in self._special_ids]
        hf = HFTokenizer.from_str(self.hf.to_str())
        hf.add_special_tokens(missing)
        return BPETokenizer(hf, [*self.specials, *missing], self.alphabet)

    def encode(self, text: str, report: EncodeReport | None = None) -> np.ndarray:
        if report is not None and text:
            self._report_unseen(text, report)
        text = _SURROGATE.sub("\ufffd", text)
        if len(text) <= _ENCODE_PIECE:
            ids = self.hf.encode(text, add_special_tokens=False).ids
            return np.asarray(ids, dtype=self._dtype)
        # Long texts: newline-cut pieces encode twice as fast even on one thread (and in
        # parallel on several); a piece boundary can only change how indentation after a
        # newline is grouped.
        pieces = list(_batches([text], _ENCODE_PIECE))
        parts = self.hf.encode_batch(pieces, add_special_tokens=False)
        return np.concatenate([np.asarray(p.ids, dtype=self._dtype) for p in parts])

    def encode_batch(
        self, texts: Sequence[str], report: EncodeReport | None = None
    ) -> list[np.ndarray]:
        """Ids of many short texts (records) in one call (parallel on the Rust side)."""
        if report is not None:
            self._report_unseen("".join(texts), report)
        encodings = self.hf.encode_batch([_SURROGATE.sub("\ufffd", t) for t in texts],
                                         add_special_tokens=False)
        return [np.asarray(e.ids, dtype=self._dtype) for e in encodings]

    def _report_unseen(self, text: str, report: EncodeReport) -> None:
        points, counts = np.unique(_code_points(text), return_counts=True)
        unseen = ~np.isin(points, self._alphabet_points)
        for point, count in zip(points[unseen].tolist(), counts[unseen].tolist(), strict=True):
            report.unseen[chr(point)] = report.unseen.get(chr(point), 0) + count

    def _content_ids(self, ids: np.ndarray | list[int]) -> list[int]:
        arr = np.asarray(ids, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= self.vocab_size):
            raise ValueError(f"token id out of range for a vocabulary of {self.vocab_size}")
        specials = set(self._special_ids.values())
        return [i for i in arr.tolist() if i not in specials]

    def decode(self, ids: np.ndarray | list[int]) -> str:
        """Text of ``ids``; special tokens decode to nothing, a partial character to U+FFFD."""
        return str(self.hf.decode(self._content_ids(ids), skip_special_tokens=True))

    def token_bytes(self, token: int) -> bytes:
        """The raw bytes of one token (part of a character, possibly); none for a special."""
        if token in self._special_ids.values():
            return b""
        table = _byte_table()
        return bytes(table[c] for c in self.hf.id_to_token(token) or "")

    def stream_decoder(self, context: Sequence[int] = ()) -> Utf8StreamDecoder:
        return Utf8StreamDecoder(self.token_bytes, context)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type_name,
            "specials": self.specials,
            "alphabet": self.alphabet,
            "hf": json.loads(self.hf.to_str()),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BPETokenizer:
        hf = HFTokenizer.from_str(json.dumps(data["hf"]))
        return cls(hf, data["specials"], data.get("alphabet", ""))
