"""Tokenizers: text to token ids and back, saved inside each run directory."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from weft.config import LEVELS
from weft.errors import WeftError
from weft.io import atomic_write_json, read_json
from weft.tokenizers.base import BOS, EOS, PAD, UNK, EncodeReport, Tokenizer, id_dtype
from weft.tokenizers.bpe import BPETokenizer
from weft.tokenizers.byte import ByteTokenizer
from weft.tokenizers.char import CharTokenizer
from weft.tokenizers.word import WordTokenizer

__all__ = [
    "BOS",
    "EOS",
    "LEVELS",
    "PAD",
    "RECORD_SPECIALS",
    "UNK",
    "BPETokenizer",
    "ByteTokenizer",
    "CharTokenizer",
    "EncodeReport",
    "Tokenizer",
    "WordTokenizer",
    "build_tokenizer",
    "id_dtype",
    "load_tokenizer",
    "save_tokenizer",
    "tokenizer_from_dict",
]

RECORD_SPECIALS = (BOS, EOS, PAD)  # what record training needs besides <unk>

DEFAULT_MAX_VOCAB = 30_000
DEFAULT_BPE_VOCAB = 2_000


def tokenizer_from_dict(data: dict[str, Any]) -> Tokenizer:
    kind = data.get("type")
    if kind == "char":
        return CharTokenizer.from_dict(data)
    if kind == "word":
        return WordTokenizer.from_dict(data)
    if kind == "bpe":
        return BPETokenizer.from_dict(data)
    if kind == "byte":
        return ByteTokenizer.from_dict(data)
    raise WeftError(f"unknown tokenizer type {kind!r} in tokenizer.json")


def build_tokenizer(
    level: str,
    texts: Iterable[str],
    *,
    max_vocab: int | None = None,
    min_count: int = 1,
    vocab_size: int | None = None,
    specials: Sequence[str] = (),
    pretokenized: bool = False,
) -> Tokenizer:
    """Train a tokenizer of ``level`` on ``texts``.

    ``specials`` are extra special tokens (e.g. :data:`RECORD_SPECIALS`); char and word levels
    always have ``<unk>`` first, byte and byte-level BPE never need one. ``max_vocab``/``min_count``
    bound the word level (``max_vocab`` includes the specials), ``vocab_size`` is the BPE size.
    ``pretokenized``: word level, split at whitespace only (PTB and WikiText style corpora).
    """
    unk_first = [UNK, *(s for s in specials if s != UNK)]
    if level == "char":
        return CharTokenizer.train(texts, unk_first)
    if level == "word":
        if max_vocab is not None and max_vocab <= len(unk_first):
            raise WeftError(f"--max-vocab must be more than the {len(unk_first)} special tokens")
        if min_count < 1:
            raise WeftError("--min-count must be >= 1")
        return WordTokenizer.train(
            texts,
            max_vocab=DEFAULT_MAX_VOCAB if max_vocab is None else max_vocab,
            min_count=min_count,
            specials=unk_first,
            pretokenized=pretokenized,
        )
    if level == "bpe":
        size = DEFAULT_BPE_VOCAB if vocab_size is None else vocab_size
        return BPETokenizer.train(texts, vocab_size=size, specials=specials)
    if level == "byte":
        return ByteTokenizer(specials)
    raise WeftError(f"unknown --level {level!r}; choose one of: {', '.join(LEVELS)}")


def save_tokenizer(tokenizer: Tokenizer, path: str | Path) -> None:
    atomic_write_json(path, tokenizer.to_dict())


def load_tokenizer(path: str | Path) -> Tokenizer:
    data = read_json(path)
    try:
        return tokenizer_from_dict(data)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise WeftError(f"{path} is damaged: not a tokenizer weft can read ({exc!r})") from None
