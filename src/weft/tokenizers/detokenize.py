"""Joining word-level tokens back into text: spaces by punctuation rules, quotes that alternate.

The rules (what normalizes, and how pretokenized corpora display) are described with the
tokenizer, in :mod:`weft.tokenizers.word`. The state follows the whole sequence, so text
streamed token by token equals the full decode.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

NEWLINE = "\n"
NO_SPACE_BEFORE = frozenset(",.;:!?)]}%…”’»") | {"..."}
NO_SPACE_AFTER = frozenset("([{$#@“‘«¿¡")
ATTACH_BOTH = frozenset(["--", "—", "/"])
TOGGLE_QUOTES = frozenset(['"', "'"])
# WikiText's markers for a hyphen, thousands comma or decimal point inside a word.
JOINING_MARKERS = {"@-@": "-", "@,@": ",", "@.@": "."}
CLITIC = re.compile(r"(?:'[a-zA-Z]{1,2}|n't|N'T)")


class Detokenizer:
    """Joins word-level tokens one at a time (the rules: :mod:`weft.tokenizers.word`).

    The text only ever grows, and the state (quotes left open, whether the next token attaches)
    follows the whole sequence, so streamed text equals :func:`detokenize` of all the tokens.
    """

    def __init__(self, pretokenized: bool = False) -> None:
        self.pretokenized = pretokenized
        self.attach = True  # no space before the next token (start of text or line, an opener)
        self.open_quotes: set[str] = set()
        self.previous = ""

    def push(self, token: str) -> str:
        """The text that ``token`` adds: itself, with the space before it if any."""
        if token == NEWLINE:
            if self.previous == NEWLINE:
                self.open_quotes.clear()  # a blank line ends any quote left open
            self.attach, self.previous = True, token
            return token
        if self.pretokenized and token in JOINING_MARKERS:
            self.attach, self.previous = True, token
            return JOINING_MARKERS[token]
        if self.pretokenized and CLITIC.fullmatch(token):
            self.attach, self.previous = False, token
            return token
        if token in TOGGLE_QUOTES:
            if token in self.open_quotes:
                self.open_quotes.discard(token)
                space, attach_next = False, False
            else:
                self.open_quotes.add(token)
                space, attach_next = not self.attach, True
        elif token in ATTACH_BOTH:
            space, attach_next = False, True
        else:
            space = not self.attach and token not in NO_SPACE_BEFORE
            attach_next = token in NO_SPACE_AFTER
        self.attach, self.previous = attach_next, token
        return " " + token if space else token


def detokenize(tokens: Iterable[str], pretokenized: bool = False) -> str:
    """Join word-level tokens into readable text (the rules: :mod:`weft.tokenizers.word`)."""
    joiner = Detokenizer(pretokenized)
    return "".join(map(joiner.push, tokens))
