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
    sentences: list[list[str]] = []
    current: list[str] = []
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
        current.append(token)
        if token in _SENTENCE_END or (len(token) > 1 and set(token) <= {"!", "?"}):
            ended = True
    if current:
        sentences.append(current)
    return sentences


def tokenize_sentences(text: str) -> list[list[str]]:
    """Raw text to sentences of tokens; each line break also ends a sentence."""
    out: list[list[str]] = []
    for line in text.split("\n"):
        out.extend(split_sentences(line))
    return out
