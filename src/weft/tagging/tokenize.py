"""A regex tokenizer and sentence splitter for raw English text, close to treebank conventions.

Kept together: URLs, e-mail addresses, numbers (``3.14``, ``1,000``), abbreviations with dots
(``U.S.``, ``Mr.``), hyphenated and apostrophe words (``well-known``, ``o'clock``).
Split off: punctuation and the clitics ``n't 's 're 've 'll 'd 'm`` (``don't`` -> ``do n't``).
A sentence ends after ``.``, ``!`` or ``?`` tokens (and closing quotes or brackets after them).
"""

from __future__ import annotations

import re

_ABBREVIATIONS = (
    "mr|mrs|ms|dr|prof|sr|jr|st|vs|etc|inc|ltd|co|corp|jan|feb|mar|apr|jun|jul|aug|sep|sept"
    "|oct|nov|dec|no|vol|fig|e\\.g|i\\.e|mt|gen|gov|sen|rep|rev|ft|lt|col|capt"
)
_TOKEN = re.compile(
    r"""
    (?:https?://|www\.)\S+?(?=[.,;:!?)\]"']*(?:\s|$))     # URL, without trailing punctuation
  | [\w.+-]+@[\w-]+(?:\.[\w-]+)+                          # e-mail
  | \d+(?:[.,:/]\d+)*                                      # numbers, times, dates
  | (?:[A-Za-z]\.){2,}                                     # U.S. e.g.
  | (?i:(?:""" + _ABBREVIATIONS + r""")\.)(?!\w)          # Mr. Inc.
  | (?i:n't)(?!\w)                                         # clitics split off their host
  | '(?i:s|re|ve|ll|d|m)(?!\w)
  | \w+(?=(?i:n't)(?!\w))                                  # do|n't, ca|n't
  | \w+(?:-\w+|['’](?!(?i:s|re|ve|ll|d|m)(?!\w))\w+)*      # words, well-known, o'clock
  | \.\.\.|--|``|''|[!?]+                                  # multi-character punctuation
  | \S                                                     # any other single character
    """,
    re.VERBOSE,
)
_WORD = re.compile(r"\S+")
_SENTENCE_END = {".", "!", "?", "...", "!!", "??", "?!", "!?"}
_CLOSERS = {'"', "'", "''", ")", "]", "}", "’", "”"}


def tokenize(text: str) -> list[str]:
    """Split raw text into tokens."""
    return _TOKEN.findall(text)


def split_sentences(text: str) -> list[list[str]]:
    """Tokens of ``text`` grouped into sentences after end punctuation.

    A quote or bracket directly after the end (no space between) still belongs to the
    sentence: ``"Fine." He left.`` -> ``" Fine . "`` and ``He left .``.
    """
    return [[token for token, _, _ in sentence] for sentence in _split_with_offsets(text)]


Token = tuple[str, int, int]  # the token, its start and end character offsets


def _split_with_offsets(text: str, base: int = 0) -> list[list[Token]]:
    """:func:`split_sentences` with each token's offsets in ``text`` (plus ``base``)."""
    sentences: list[list[Token]] = []
    current: list[Token] = []
    ended = False
    previous_end = -1
    for match in _TOKEN.finditer(text):
        token = match.group()
        attached = match.start() == previous_end
        previous_end = match.end()
        if ended and not (attached and token in _CLOSERS):
            sentences.append(current)
            current = []
            ended = False
        current.append((token, base + match.start(), base + match.end()))
        if token in _SENTENCE_END or (len(token) > 1 and set(token) <= {"!", "?"}):
            ended = True
    if current:
        sentences.append(current)
    return sentences


def tokenize_sentences(text: str) -> list[list[str]]:
    """Raw text to sentences of tokens; each line break also ends a sentence."""
    return [[token for token, _, _ in s] for s in tokenize_with_offsets(text)]


def tokenize_with_offsets(text: str) -> list[list[Token]]:
    """:func:`tokenize_sentences` with each token's character offsets in ``text``."""
    out: list[list[Token]] = []
    base = 0
    for line in text.split("\n"):
        out.extend(_split_with_offsets(line, base))
        base += len(line) + 1
    return out


def join_with_offsets(words: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Pre-tokenized words as one text, joined by single spaces, and their offsets in it."""
    offsets = []
    position = 0
    for word in words:
        offsets.append((position, position + len(word)))
        position += len(word) + 1
    return " ".join(words), offsets


def split_tokenized(text: str) -> list[list[Token]]:
    """Pre-tokenized text, one sentence a line and tokens separated by whitespace, with each
    token's offsets in ``text``; blank lines hold no sentence."""
    out: list[list[Token]] = []
    base = 0
    for line in text.split("\n"):
        tokens = [(m.group(), base + m.start(), base + m.end()) for m in _WORD.finditer(line)]
        if tokens:
            out.append(tokens)
        base += len(line) + 1
    return out
