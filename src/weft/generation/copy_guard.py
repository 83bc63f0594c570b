"""``max_copy`` while a text is written: watch it grow, hold back what may become a copy.

A streamed text cannot be generated again once it is sent (what ``max_copy`` does to a text
that is not streamed, :func:`weft.generation.samples.bound_copies`), so a streamed text is
bounded as it is written. :class:`CopyGuard` keeps the longest end of the text so far that
occurs verbatim in the training corpus. Only that end can grow into a copy of ``limit``
characters: a longer copy reaching back before it would make a longer end occur in the corpus.
So everything before it is safe to send, and :class:`~weft.generation.generate.TextState`
holds back just that end (as it holds back what may be a stop string). When the end reaches
``limit`` characters, the text ends before the copy's last character: the same cut as
``bound_copies`` makes after its last try, so a streamed text never shows a copy of ``limit``
characters and never shows text it later takes back.

Each character costs at most two binary searches of the suffix array, amortized (it joins the
end once and leaves it once).
"""

from __future__ import annotations

from weft.data.corpus_index import CorpusIndex


class CopyGuard:
    """One text's watch for a span of ``limit`` characters copied from ``index``'s corpus."""

    def __init__(self, index: CorpusIndex, limit: int) -> None:
        self.index = index
        self.limit = limit
        self.end = ""  # the longest end of the text so far found in the corpus (< limit)
        self.cut = False  # the text reached a copy of ``limit`` characters and was cut

    @property
    def held(self) -> int:
        """Characters at the end of the text that may still become part of a copy."""
        return len(self.end)

    def take(self, added: str) -> int | None:
        """Watch ``added`` (the text's next characters). When a copy of ``limit`` characters
        completes in it, the number of its characters to keep (the copy's last one and all
        after it go), else None."""
        for kept, char in enumerate(added):
            end = self.end + char
            while end and self.index.find(end.encode("utf-8", errors="surrogatepass")) < 0:
                end = end[1:]
            if len(end) >= self.limit:
                self.cut = True
                return kept
            self.end = end
        return None
