"""Incremental decoding for streaming generation: emit text as tokens arrive.

Decoding token by token and joining the pieces is wrong for two tokenizers: the word level puts
spaces by context (the space before ``,`` depends on the token), and byte-level BPE tokens can
end inside a multi-byte character (decoding such a prefix yields U+FFFD). This decoder decodes
everything since the last *settled* point and emits only the new text, holding back a trailing
U+FFFD until the character completes (or for at most a few tokens, after which it is real).
"""

from __future__ import annotations

from weft.tokenizers.base import Tokenizer

_MAX_HELD = 4  # a UTF-8 character has at most 4 bytes; beyond that U+FFFD is genuine


class IncrementalDecoder:
    """Feed ids one at a time with :meth:`push`; each call returns the text that is now final."""

    def __init__(self, tokenizer: Tokenizer, prefix: list[int] | None = None) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = list(prefix or [])
        # Text already emitted for self.ids (the prefix counts as emitted: it was the prompt).
        self._emitted = tokenizer.decode(self.ids)
        self._held = 0

    def push(self, token_id: int) -> str:
        self.ids.append(int(token_id))
        text = self.tokenizer.decode(self.ids)
        if text.endswith("\ufffd") and self._held < _MAX_HELD:
            self._held += 1
            return ""
        self._held = 0
        if not text.startswith(self._emitted):
            # Only happens if a later token changed earlier text; emit nothing we cannot undo.
            self._emitted = text
            return ""
        new = text[len(self._emitted):]
        self._emitted = text
        return new

    def flush(self) -> str:
        """Whatever is still held back at the end of generation."""
        text = self.tokenizer.decode(self.ids)
        new = text[len(self._emitted):] if text.startswith(self._emitted) else ""
        self._emitted = text
        self._held = 0
        return new
