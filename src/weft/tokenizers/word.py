"""Word-level tokenizer: words, punctuation and newlines as tokens, rule-based detokenization.

Splitting. A token is a newline, a URL, a number with inner ``.``/``,``/``:`` (``3.14``,
``1,000``), an abbreviation of single letters and dots (``U.S.``, ``e.g.``), a word of
letters/digits with inner apostrophes or hyphens (``don't``, ``well-known``, ``o'clock``), a run
of dots or dashes (``...``, ``--``) or any other single symbol. Horizontal whitespace is not a
token: it is put back on decoding by punctuation rules.

Speed. Encoding never runs the regex over the whole corpus: the text is cut at whitespace with
``str.split`` (C speed), each distinct chunk is tokenized once and cached as a run of ids, and a
chunk's ids are looked up with one dict access; the runs are then expanded with NumPy. Whole
corpora encode at tens of MB/s on one core.

What normalizes (so a round trip is exact for ordinary prose, but not always):

* runs of spaces/tabs collapse to one space or none, following the punctuation rules below;
  indentation and trailing spaces vanish; every newline is kept;
* no space before ``, . ; : ! ? ) ] } %`` and closing quotes, none after ``( [ { $ # @`` and
  opening quotes, none around ``--``, ``—`` and ``/``;
* straight quotes ``"`` and ``'`` alternate open/close (reset at a blank line), so a possessive
  ``dogs'`` standing alone is taken for a quote;
* words outside the vocabulary become ``<unk>`` (decoded as the text ``<unk>``).

Pretokenized corpora (``--pretokenized``: Penn Treebank, WikiText) are split at whitespace
only, every newline kept; the corpus's own ``<unk>`` is the unknown token (not a word, and not
reported as unknown), and for display WikiText's ``@-@``, ``@,@`` and ``@.@`` join their
neighbours as ``-``, ``,`` and ``.`` while clitics (``'s``, ``n't``) attach to the word before.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from weft.tokenizers.base import UNK, EncodeReport, SpecialTokenIds, id_dtype
from weft.tokenizers.detokenize import NEWLINE, Detokenizer, detokenize

TOKEN_PATTERN = re.compile(
    r"\n"
    r"|(?:https?://|www\.)\S+"
    r"|\d+(?:[.,:]\d+)+"
    r"|(?:[^\W\d_]\.){2,}"
    r"|[^\W_]+(?:['’\-][^\W_]+)*"
    r"|\.{2,}|-{2,}"
    r"|[^\w\s]|_"
)

# Stands for "\n" while a text is cut with str.split (which would drop it). A private-use
# character; texts that contain it take the slower regex-only path.
_SENTINEL = "\ue000"
_PIECE_CHARS = 1 << 22  # encode long texts in pieces of ~4M characters to bound memory
_CACHE_LIMIT = 1 << 20  # distinct chunks kept in the chunk -> ids cache

PRETOKENIZED_PATTERN = re.compile(r"\n|[^\s]+")


def split_words(text: str) -> list[str]:
    """The word-level tokens of ``text`` (reference implementation; encoding is faster)."""
    return TOKEN_PATTERN.findall(text)


def _pieces(text: str) -> Iterator[str]:
    """Cut a long text at whitespace into pieces of about ``_PIECE_CHARS`` characters."""
    start, n = 0, len(text)
    while start < n:
        end = start + _PIECE_CHARS
        if end < n:
            cut = max(text.rfind(" ", start, end), text.rfind("\n", start, end))
            end = cut + 1 if cut > start else end
        yield text[start:end]
        start = end


def _chunks(piece: str) -> list[str] | None:
    """Whitespace-separated chunks, newlines as the sentinel chunk; None when the text itself
    contains the sentinel character (the caller then tokenizes with the regex alone)."""
    if _SENTINEL in piece:
        return None
    return piece.replace("\n", " " + _SENTINEL + " ").split()


def _chunk_tokens(chunk: str) -> list[str]:
    return [NEWLINE] if chunk == _SENTINEL else TOKEN_PATTERN.findall(chunk)


def _chunk_as_token(chunk: str) -> list[str]:
    """A chunk of pretokenized text: one token."""
    return [NEWLINE] if chunk == _SENTINEL else [chunk]


def count_words(texts: Iterable[str], pretokenized: bool = False) -> Counter[str]:
    """Token frequencies over ``texts``, tokenizing each distinct chunk once and weighting it."""
    pattern = PRETOKENIZED_PATTERN if pretokenized else TOKEN_PATTERN
    chunk_tokens = _chunk_as_token if pretokenized else _chunk_tokens
    chunk_counts: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for text in texts:
        for piece in _pieces(text):
            chunks = _chunks(piece)
            if chunks is None:
                counts.update(pattern.findall(piece))
            else:
                chunk_counts.update(chunks)
    for chunk, count in chunk_counts.items():
        for token in chunk_tokens(chunk):
            counts[token] += count
    return counts


class WordStreamDecoder:
    """Streams a word tokenizer's ids: one :class:`Detokenizer` carried over the sequence."""

    def __init__(self, tokenizer: WordTokenizer, context: Sequence[int]) -> None:
        self.tokenizer = tokenizer
        self.joiner = Detokenizer(tokenizer.pretokenized)
        for token in tokenizer.visible_tokens(context):
            self.joiner.push(token)

    def push(self, token: int) -> str:
        return "".join(map(self.joiner.push, self.tokenizer.visible_tokens([token])))

    def peek(self, token: int) -> str:
        joiner = self.joiner
        saved = (joiner.attach, set(joiner.open_quotes), joiner.previous)
        try:
            return self.push(token)
        finally:
            joiner.attach, joiner.open_quotes, joiner.previous = saved

    def finish(self) -> str:
        return ""


class WordTokenizer(SpecialTokenIds):
    """Words, punctuation and newlines seen in training, bounded by ``max_vocab``/``min_count``."""

    type_name = "word"

    def __init__(
        self,
        words: Sequence[str],
        specials: Iterable[str] = (UNK,),
        added: Sequence[str] = (),
        added_specials: Iterable[str] = (),
        *,
        pretokenized: bool = False,
    ) -> None:
        """``added`` entries (words, and the special tokens named in ``added_specials``) come
        after every other id: fine-tuning appends them, never renumbering a known id.
        ``pretokenized``: split at whitespace only (see the module docstring)."""
        self.pretokenized = pretokenized
        self._pattern = PRETOKENIZED_PATTERN if pretokenized else TOKEN_PATTERN
        self._chunk_tokens = _chunk_as_token if pretokenized else _chunk_tokens
        self.specials: list[str] = list(specials)
        if UNK not in self.specials:
            self.specials.insert(0, UNK)
        self.words: list[str] = list(words)
        self.added: list[str] = list(added)
        self.added_specials: list[str] = [s for s in added_specials if s in self.added]
        self.tokens: list[str] = self.specials + self.words + self.added
        self._special_ids = {name: i for i, name in enumerate(self.specials)}
        self._index: dict[str, int] = {}
        for i, word in enumerate(self.tokens[len(self.specials):], start=len(self.specials)):
            if word in self._special_ids or (word in self._index):
                raise ValueError(f"duplicate word {word!r} in vocabulary")
            if word in self.added_specials:
                self._special_ids[word] = i
            else:
                self._index[word] = i
        self._dtype = id_dtype(self.vocab_size)
        # One tokenizer serves concurrent requests (server workers, the event loop): the cache
        # is grown, reset and read under this lock.
        self._cache_lock = threading.Lock()
        self._reset_cache()

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (to the serving batch's process) without its lock and cache."""
        cache = {"_cache_lock", "_cache", "_slots", "_used", "_flat", "_start", "_len",
                 "_has_unk"}
        return {k: v for k, v in self.__dict__.items() if k not in cache}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._cache_lock = threading.Lock()
        self._reset_cache()

    def with_added(self, words: Iterable[str], specials: Iterable[str] = ()) -> WordTokenizer:
        """A copy with the words and special tokens it lacks appended after every id."""
        new_specials = [s for s in specials if s not in self._special_ids]
        new_words = [w for w in dict.fromkeys(words)
                     if w not in self._index and w not in self._special_ids]
        return WordTokenizer(self.words, self.specials,
                             [*self.added, *new_specials, *new_words],
                             [*self.added_specials, *new_specials],
                             pretokenized=self.pretokenized)

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        *,
        max_vocab: int | None = None,
        min_count: int = 1,
        specials: Iterable[str] = (UNK,),
        pretokenized: bool = False,
    ) -> WordTokenizer:
        """Keep the most frequent tokens (ties broken alphabetically, so training is
        deterministic); ``max_vocab`` counts the special tokens too."""
        specials = list(specials)
        if UNK not in specials:
            specials.insert(0, UNK)
        counts = count_words(texts, pretokenized)
        ranked = sorted(  # a pretokenized corpus spells its unknown words <unk>: not a word
            (item for item in counts.items() if item[1] >= min_count and item[0] not in specials),
            key=lambda item: (-item[1], item[0]),
        )
        if max_vocab is not None:
            ranked = ranked[: max(0, max_vocab - len(specials))]
        return cls([word for word, _ in ranked], specials, pretokenized=pretokenized)

    # -- protocol properties -------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def id_of(self, token: str) -> int | None:
        """The id of one word-level token, or None when it is not in the vocabulary."""
        return self._index.get(token)

    # -- encoding ------------------------------------------------------------------------------

    def _reset_cache(self) -> None:
        # chunk -> slot; a slot's ids are flat[start[slot] : start[slot] + length[slot]].
        # The arrays grow by doubling, so adding a chunk never copies the whole cache.
        self._cache: dict[str, int] = {}
        self._slots = 0
        self._used = 0
        self._flat = np.empty(1024, dtype=self._dtype)
        self._start = np.empty(256, dtype=np.int64)
        self._len = np.empty(256, dtype=np.int64)
        self._has_unk = np.empty(256, dtype=bool)

    def _add_chunk(self, chunk: str) -> int:
        unk = self._special_ids[UNK]
        ids = [self._index.get(token, unk) for token in self._chunk_tokens(chunk)]
        slot = self._slots
        if slot == len(self._start):
            self._start = np.resize(self._start, 2 * slot)
            self._len = np.resize(self._len, 2 * slot)
            self._has_unk = np.resize(self._has_unk, 2 * slot)
        while self._used + len(ids) > len(self._flat):
            self._flat = np.resize(self._flat, 2 * len(self._flat))
        self._flat[self._used : self._used + len(ids)] = ids
        self._start[slot] = self._used
        self._len[slot] = len(ids)
        self._has_unk[slot] = unk in ids
        self._cache[chunk] = slot
        self._slots += 1
        self._used += len(ids)
        return slot

    def _encode_chunks(
        self, chunks: list[str], report: EncodeReport | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Ids of ``chunks`` (from :func:`_chunks`) and the number of ids of each chunk."""
        with self._cache_lock:
            return self._encode_chunks_locked(chunks, report)

    def _encode_chunks_locked(
        self, chunks: list[str], report: EncodeReport | None
    ) -> tuple[np.ndarray, np.ndarray]:
        if self._slots > _CACHE_LIMIT:
            self._reset_cache()
        slots = np.fromiter(
            map(self._cache.get, chunks, itertools.repeat(-1)), dtype=np.int64, count=len(chunks)
        )
        for i in np.flatnonzero(slots < 0).tolist():
            chunk = chunks[i]
            slot = self._cache.get(chunk)
            slots[i] = self._add_chunk(chunk) if slot is None else slot
        flat, start, length, has_unk = self._flat, self._start, self._len, self._has_unk
        if report is not None:
            for i in np.flatnonzero(has_unk[slots]).tolist():
                for token in self._chunk_tokens(chunks[i]):
                    if token not in self._index and token != UNK:
                        report.unknown[token] = report.unknown.get(token, 0) + 1
        lengths = length[slots]
        starts = start[slots]
        if lengths.size and lengths.min() == 1 and lengths.max() == 1:
            return flat[starts], lengths
        total = int(lengths.sum())
        # Position k of the output reads flat[start of its chunk + k - output offset of chunk].
        offsets = np.cumsum(lengths) - lengths
        index = np.repeat(starts - offsets, lengths) + np.arange(total, dtype=np.int64)
        return flat[index], lengths

    def _encode_piece(self, piece: str, report: EncodeReport | None) -> np.ndarray:
        chunks = _chunks(piece)
        if chunks is None:  # rare: the text holds the sentinel character; no cache, no speed
            return self._encode_tokens(self._pattern.findall(piece), report)
        return self._encode_chunks(chunks, report)[0]

    def encode_batch(
        self, texts: Sequence[str], report: EncodeReport | None = None
    ) -> list[np.ndarray]:
        """Ids of many short texts (records) in one pass: much faster than one call each."""
        if not texts:
            return []
        chunks: list[str] = []
        counts = np.zeros(len(texts), dtype=np.int64)
        for i, text in enumerate(texts):
            text_chunks = _chunks(text)
            if text_chunks is None or len(text) > _PIECE_CHARS:
                return [self.encode(t, report) for t in texts]
            chunks.extend(text_chunks)
            counts[i] = len(text_chunks)
        ids, lengths = self._encode_chunks(chunks, report)
        token_ends = np.concatenate([[0], np.cumsum(lengths)])[np.cumsum(counts)]
        return np.split(ids, token_ends[:-1])

    def _encode_tokens(self, tokens: list[str], report: EncodeReport | None) -> np.ndarray:
        unk = self._special_ids[UNK]
        ids = [self._index.get(token, unk) for token in tokens]
        if report is not None:
            for token in tokens:
                if token not in self._index and token != UNK:
                    report.unknown[token] = report.unknown.get(token, 0) + 1
        return np.asarray(ids, dtype=self._dtype)

    def encode(self, text: str, report: EncodeReport | None = None) -> np.ndarray:
        parts = [self._encode_piece(piece, report) for piece in _pieces(text)]
        if not parts:
            return np.zeros(0, dtype=self._dtype)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    # -- decoding ------------------------------------------------------------------------------

    def visible_tokens(self, ids: np.ndarray | Sequence[int]) -> list[str]:
        """The tokens that ``ids`` spell as text: special tokens other than ``<unk>`` are not."""
        arr = np.asarray(ids, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= self.vocab_size):
            raise ValueError(f"token id out of range for a vocabulary of {self.vocab_size}")
        unk = self.unk_id
        skip = set(self._special_ids.values()) - {unk}
        return [self.tokens[i] for i in arr.tolist() if i not in skip]

    def decode(self, ids: np.ndarray | list[int]) -> str:
        return detokenize(self.visible_tokens(ids), self.pretokenized)

    def stream_decoder(self, context: Sequence[int] = ()) -> WordStreamDecoder:
        return WordStreamDecoder(self, context)

    # -- saving --------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type_name, "specials": self.specials,
                                "words": self.words}
        if self.added:
            data |= {"added": self.added, "added_specials": self.added_specials}
        if self.pretokenized:
            data["pretokenized"] = True
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WordTokenizer:
        return cls(list(data["words"]), data["specials"], data.get("added", ()),
                   data.get("added_specials", ()),
                   pretokenized=bool(data.get("pretokenized", False)))
