"""The copy meter's index: the training text and its suffix array, memory-mapped from the run.

Training writes ``copy-index/`` into the run directory: ``text.bin`` (the cleaned corpus as
UTF-8; records joined by newlines), ``suffixes.npy`` (the start of every suffix of that text in
sorted order, built by libdivsufsort through ``pydivsufsort``; 4 bytes per byte of text below
2 GiB) and ``blocks.npy`` (characters before each 64 KiB block, to turn a byte offset into a
character offset without reading the text). Nothing is loaded: both large files are
memory-mapped, and a lookup reads only the pages its binary search touches.

:meth:`CorpusIndex.longest_copy` finds the longest span of a text that occurs verbatim in the
corpus: it tries windows one character longer than the best so far, moving on when one does
not occur, so a text of ``m`` characters takes at most ``2m`` binary searches of the suffix
array (each ``log2(corpus bytes)`` comparisons of short byte strings).
"""

from __future__ import annotations

import functools
import mmap
import shutil
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from weft.errors import WeftError
from weft.io import atomic_write
from weft.runs import COPY_INDEX

TEXT, SUFFIXES, BLOCKS = "text.bin", "suffixes.npy", "blocks.npy"
BLOCK_BITS = 16  # 64 KiB blocks for byte -> character offsets
# Building holds the text and its suffix array in memory (5 bytes per byte of text, 9 above
# 2 GiB): past this a corpus gets no index, and its runs report the meter unavailable.
MAX_INDEX_BYTES = 2 << 30
# A --memmap run promises memory that does not grow with the corpus: its index is built only
# up to this size (at most ~320 MB while building), so a larger streamed corpus gets none.
MEMMAP_INDEX_BYTES = 64 << 20


@dataclass(frozen=True)
class Copy:
    """The longest span of a generated text found verbatim in the training corpus."""

    chars: int  # its length in characters (0: not even one character is in the corpus)
    offset: int  # where it starts in the corpus text, in characters (-1 when chars is 0)
    text: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class IndexStats:
    text_bytes: int
    index_bytes: int  # the three files together
    seconds: float


def build_index(run_dir: str | Path, chunks: Iterable[str],
                max_bytes: int = MAX_INDEX_BYTES) -> IndexStats | None:
    """Write ``copy-index/`` for the corpus given as text ``chunks`` (joined as they are); None
    (and no index) for a corpus over ``max_bytes`` of UTF-8."""
    from pydivsufsort import divsufsort

    start = time.perf_counter()
    folder = Path(run_dir) / COPY_INDEX
    folder.mkdir(exist_ok=True)

    def write_text(handle: IO[bytes]) -> None:
        for chunk in chunks:
            handle.write(chunk.encode("utf-8", errors="surrogatepass"))

    atomic_write(folder / TEXT, write_text)
    if (folder / TEXT).stat().st_size > max_bytes:
        shutil.rmtree(folder)
        return None
    text = np.fromfile(folder / TEXT, dtype=np.uint8)  # divsufsort needs it writable
    suffixes = divsufsort(text) if len(text) else np.zeros(0, dtype=np.int32)
    atomic_write(folder / BLOCKS, lambda handle: np.save(handle, _block_chars(text)))
    atomic_write(folder / SUFFIXES, lambda handle: np.save(handle, suffixes))  # written last
    index_bytes = sum((folder / name).stat().st_size for name in (TEXT, SUFFIXES, BLOCKS))
    return IndexStats(len(text), index_bytes, time.perf_counter() - start)


def _block_chars(text: np.ndarray) -> np.ndarray:
    """Characters before each 64 KiB block of UTF-8 ``text`` (counted 64 MiB at a time)."""
    block = 1 << BLOCK_BITS
    counts = [np.zeros(1, dtype=np.int64)]
    step = block << 10
    for begin in range(0, len(text), step):
        piece = text[begin:begin + step]
        leads = ((piece & 0xC0) != 0x80).view(np.uint8)  # bytes that start a character
        padded = np.zeros(-(-len(leads) // block) * block, dtype=np.uint8)
        padded[:len(leads)] = leads
        counts.append(padded.reshape(-1, block).sum(axis=1, dtype=np.int64))
    return np.cumsum(np.concatenate(counts))


def has_index(run_dir: str | Path) -> bool:
    return (Path(run_dir) / COPY_INDEX / SUFFIXES).is_file()


UNAVAILABLE = ("the copy meter is unavailable: this run has no copy index (a built-in model "
               "ships without its training text; a run trained before weft kept one builds it "
               "when resumed)")


class CorpusIndex:
    """Read-only, memory-mapped view of a run's ``copy-index/``.

    It pickles as its run directory: unpickled (in the serving batch's process, with the copy
    guards of a streamed request), it is opened there, once per process and run.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        folder = self.run_dir / COPY_INDEX
        if not has_index(run_dir):
            raise WeftError(UNAVAILABLE)
        try:
            self.suffixes = np.load(folder / SUFFIXES, mmap_mode="r")
            self.blocks = np.load(folder / BLOCKS)
            self.size = (folder / TEXT).stat().st_size
            if len(self.suffixes) != self.size:
                raise ValueError("the suffix array does not match the text")
            self._file = open(folder / TEXT, "rb")  # noqa: SIM115 - kept open for the mmap
            self._text = (mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
                          if self.size else b"")
        except (OSError, ValueError) as exc:
            raise WeftError(f"{folder} is damaged ({exc}); the copy meter cannot use it") \
                from None
        # memoryview indexing gives Python ints without NumPy's per-element overhead.
        self._sa = np.ascontiguousarray(self.suffixes).data if self.size else None

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return _opened, (str(self.run_dir),)

    def close(self) -> None:
        if isinstance(self._text, mmap.mmap):
            self._text.close()
        self._file.close()

    def find(self, needle: bytes) -> int:
        """Byte offset of one occurrence of ``needle`` in the corpus, or -1."""
        sa, text, width = self._sa, self._text, len(needle)
        if sa is None:
            return -1
        lo, hi = 0, self.size
        while lo < hi:
            mid = (lo + hi) // 2
            at = sa[mid]
            if text[at:at + width] < needle:
                lo = mid + 1
            else:
                hi = mid
        if lo < self.size and text[sa[lo]:sa[lo] + width] == needle:
            return int(sa[lo])
        return -1

    def longest_copy(self, text: str) -> Copy:
        """The longest span of ``text`` that occurs verbatim in the corpus."""
        data, starts = _char_starts(text)
        best, best_at, best_pos = 0, 0, -1
        i = 0
        while i + best < len(text):
            pos = self.find(data[starts[i]:starts[i + best + 1]])
            if pos >= 0:
                best, best_at, best_pos = best + 1, i, pos
            else:
                i += 1
        return Copy(best, self.char_offset(best_pos) if best else -1,
                    text[best_at:best_at + best])

    def first_copy_end(self, text: str, limit: int) -> int | None:
        """The end (in characters) of the earliest span of ``limit`` characters of ``text``
        that is in the corpus, or None: ``text[:end - 1]`` holds no such span."""
        data, starts = _char_starts(text)
        for i in range(len(text) - limit + 1):
            if self.find(data[starts[i]:starts[i + limit]]) >= 0:
                return i + limit
        return None

    def char_offset(self, byte_offset: int) -> int:
        block = byte_offset >> BLOCK_BITS
        begin = block << BLOCK_BITS
        piece = np.frombuffer(self._text[begin:byte_offset], dtype=np.uint8)
        return int(self.blocks[block]) + int(((piece & 0xC0) != 0x80).sum())


def _char_starts(text: str) -> tuple[bytes, list[int]]:
    """UTF-8 bytes of ``text`` and the byte offset of each character, plus the end."""
    data = text.encode("utf-8", errors="surrogatepass")
    codes = np.frombuffer(data, dtype=np.uint8)
    starts = np.flatnonzero((codes & 0xC0) != 0x80).tolist()
    return data, [*starts, len(data)]


def open_index(run_dir: str | Path) -> CorpusIndex | None:
    """The run's index, or None when it has none (runs trained before the copy meter)."""
    return CorpusIndex(run_dir) if has_index(run_dir) else None


@functools.lru_cache(maxsize=8)
def _opened(run_dir: str) -> CorpusIndex:
    """The index of ``run_dir``, opened once per process (what an unpickled index is)."""
    return CorpusIndex(run_dir)
