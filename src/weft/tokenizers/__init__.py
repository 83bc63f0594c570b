"""Tokenizers: text to token ids and back, saved inside each run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from weft.errors import WeftError
from weft.io import atomic_write_json, read_json
from weft.tokenizers.base import EncodeReport, Tokenizer, id_dtype
from weft.tokenizers.char import CharTokenizer

__all__ = [
    "CharTokenizer",
    "EncodeReport",
    "Tokenizer",
    "id_dtype",
    "load_tokenizer",
    "save_tokenizer",
    "tokenizer_from_dict",
]


def tokenizer_from_dict(data: dict[str, Any]) -> Tokenizer:
    kind = data.get("type")
    if kind == "char":
        return CharTokenizer.from_dict(data)
    raise WeftError(f"unknown tokenizer type {kind!r} in tokenizer.json")


def save_tokenizer(tokenizer: Tokenizer, path: str | Path) -> None:
    atomic_write_json(path, tokenizer.to_dict())


def load_tokenizer(path: str | Path) -> Tokenizer:
    return tokenizer_from_dict(read_json(path))
