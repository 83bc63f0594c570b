"""Vocabularies for the tagger: words, characters and tags, saved as JSON (``vocab.json``).

Word embeddings are looked up by a *normalized* form (lowercased, digits folded to ``0``) so
that "The"/"the" and "1984"/"2001" share statistics; the character encoder sees the original
spelling, so case and digits still reach the model.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from weft.errors import WeftError

PAD = "<pad>"
UNK = "<unk>"
PAD_ID = 0
UNK_ID = 1
MAX_WORD_CHARS = 30  # longer words (URLs) keep their start and end; suffixes carry most signal
_DIGITS = re.compile(r"\d")


CASES = 6  # 0 padding, then the classes below


def case_id(word: str) -> int:
    """Capitalization class: 1 no letters, 2 lower, 3 Title, 4 UPPER, 5 mixed.

    Word embeddings are looked up lowercased, so this gives the case back to the sentence
    LSTM directly (the char LSTM has it too, but learns it slower); proper nouns are the most
    frequent confusion otherwise.
    """
    if not any(c.isalpha() for c in word):
        return 1
    if word.islower():
        return 2
    if word.isupper():
        return 4 if len(word) > 1 else 3
    if word[0].isupper() and word[1:].islower():
        return 3
    return 5


def normalize(word: str, lowercase: bool = True) -> str:
    """The key a word's embedding is stored under."""
    word = _DIGITS.sub("0", word)
    return word.lower() if lowercase else word


@dataclass
class Vocab:
    """A list of strings and its inverse; ids 0 and 1 are padding and unknown when ``specials``."""

    itos: list[str]
    specials: bool = True

    def __post_init__(self) -> None:
        self.stoi = {s: i for i, s in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def id(self, item: str) -> int:
        if self.specials:
            return self.stoi.get(item, UNK_ID)
        try:
            return self.stoi[item]
        except KeyError:
            known = ", ".join(self.itos)
            raise WeftError(f"unknown tag {item!r}; the model knows: {known}") from None

    @classmethod
    def build(cls, counts: Counter[str], specials: bool = True) -> Vocab:
        # most frequent first, ties by string, so the order is deterministic
        items = sorted(counts, key=lambda s: (-counts[s], s))
        return cls(([PAD, UNK] if specials else []) + items, specials)


@dataclass
class TaggerVocab:
    """Everything that maps text to ids and back, plus training word counts for word dropout."""

    words: Vocab
    chars: Vocab
    tags: Vocab
    word_counts: list[int]  # training count of each word id (0 for the specials)
    lowercase: bool = True

    @classmethod
    def build(
        cls, sentences: Iterable[tuple[Sequence[str], Sequence[str]]], lowercase: bool = True
    ) -> TaggerVocab:
        words: Counter[str] = Counter()
        chars: Counter[str] = Counter()
        tags: Counter[str] = Counter()
        for sent_words, sent_tags in sentences:
            for word in sent_words:
                words[normalize(word, lowercase)] += 1
                chars.update(word)
            tags.update(sent_tags)
        if not tags:
            raise WeftError("no training words: the training file is empty")
        word_vocab = Vocab.build(words)
        counts = [0, 0] + [words[w] for w in word_vocab.itos[2:]]
        return cls(word_vocab, Vocab.build(chars), Vocab.build(tags, specials=False), counts,
                   lowercase)

    def word_id(self, word: str) -> int:
        return self.words.id(normalize(word, self.lowercase))

    def is_known(self, word: str) -> bool:
        return normalize(word, self.lowercase) in self.words.stoi

    def char_ids(self, word: str) -> list[int]:
        if len(word) > MAX_WORD_CHARS:
            word = word[:10] + word[-(MAX_WORD_CHARS - 10):]
        return [self.chars.id(c) for c in word] or [UNK_ID]

    def char_matrix(self, forms: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded character ids ``(len(forms), longest)`` and the lengths of ``forms``."""
        rows = [self.char_ids(f) for f in forms]
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        matrix = torch.zeros(len(rows), int(lengths.max()) if rows else 1, dtype=torch.long)
        for i, row in enumerate(rows):
            matrix[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return matrix, lengths

    def to_dict(self) -> dict[str, Any]:
        return {
            "lowercase": self.lowercase,
            "tags": self.tags.itos,
            "chars": self.chars.itos,
            "words": self.words.itos,
            "word_counts": self.word_counts,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaggerVocab:
        try:
            return cls(
                words=Vocab(list(data["words"])),
                chars=Vocab(list(data["chars"])),
                tags=Vocab(list(data["tags"]), specials=False),
                word_counts=[int(c) for c in data["word_counts"]],
                lowercase=bool(data.get("lowercase", True)),
            )
        except (KeyError, TypeError) as exc:
            raise WeftError(f"vocab.json is damaged: missing or bad field {exc}") from None
