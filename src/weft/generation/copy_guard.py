"""``max_copy`` while a text is written: no token that would complete a copy is kept.

A streamed text cannot be generated again once it is sent (what ``max_copy`` does to a text
that is not streamed, :func:`weft.generation.samples.bound_copies`), so a streamed text is
bounded as it is written. :class:`CopyGuard` keeps the longest end of the text so far that
occurs verbatim in the training corpus: only that end can grow into a copy of ``limit``
characters (a longer copy reaching back before it would make a longer end occur in the
corpus). Before a sampled token is kept, :func:`redraw` asks whether its text would make that
end ``limit`` characters long; if so the token is drawn again from the same distribution
without it, as many times as :data:`MAX_REDRAWS` allows, so the text goes on past the place
where the model would have copied. Only when every draw would copy (the model sees nothing else
to write there) does the text end, before the copy's last character: the same cut as
``bound_copies`` makes after its last try. Nothing sent is ever taken back, so nothing is held
back from the stream.

Each character costs a few binary searches of the suffix array, amortized (it joins the end
once and leaves it once; a token is looked at before it is kept and as it is kept).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from weft.data.corpus_index import CorpusIndex

# Draws of one token before the text is cut instead. Each redraw removes the token that would
# have copied, so this many failures means the model puts its mass on copies there.
MAX_REDRAWS = 16


class CopyGuard:
    """One text's watch for a span of ``limit`` characters copied from ``index``'s corpus."""

    def __init__(self, index: CorpusIndex, limit: int) -> None:
        self.index = index
        self.limit = limit
        self.end = ""  # the longest end of the text so far found in the corpus (< limit)
        self.cut = False  # the text reached a copy of ``limit`` characters and was cut
        # The last scan (end, added) -> (kept, new end): a token is looked at before it is
        # kept (completes) and again as it is kept (take); the second costs no search.
        self._scanned: tuple[str, str, int | None, str] | None = None

    def completes(self, added: str) -> bool:
        """Whether ``added`` after the text so far would complete a copy (nothing changes)."""
        return self._scan(added)[0] is not None

    def take(self, added: str) -> int | None:
        """Watch ``added`` (the text's next characters). When a copy of ``limit`` characters
        completes in it, the number of its characters to keep (the copy's last one and all
        after it go), else None."""
        kept, end = self._scan(added)
        if kept is not None:
            self.cut = True
            return kept
        self.end = end
        return None

    def _scan(self, added: str) -> tuple[int | None, str]:
        if self._scanned is not None and self._scanned[:2] == (self.end, added):
            return self._scanned[2:]
        found = self._search(added)
        self._scanned = (self.end, added, *found)
        return found

    def _search(self, added: str) -> tuple[int | None, str]:
        end = self.end
        for kept, char in enumerate(added):
            end += char
            while end and self.index.find(end.encode("utf-8", errors="surrogatepass")) < 0:
                end = end[1:]
            if len(end) >= self.limit:
                return kept, end
        return None, end


def redraw(token: int, logits: torch.Tensor, copies: Callable[[int], bool],
           draw: Callable[[torch.Tensor], int], banned: torch.Tensor | None) -> int:
    """``token``, or when it ``copies`` (would complete a copy), a token drawn again
    (``draw``) from ``logits`` (one row, ``(1, vocab)``) without it, up to
    :data:`MAX_REDRAWS` times: the first that does not copy, else the last drawn (the guard
    then ends the text before it). ``banned`` tokens count as gone already."""
    if not copies(token):
        return token
    masked = logits.detach().float().clone()
    for _ in range(MAX_REDRAWS):
        masked[0, token] = float("-inf")
        left = torch.isfinite(masked[0])
        if banned is not None:
            left &= ~banned
        if not bool(left.any()):
            break
        token = draw(masked)
        if not copies(token):
            return token
    return token
