"""Token ids of corpora larger than memory: encode in chunks into a memory-mapped ``.npy``.

:func:`iter_text_chunks` reads a file in blocks of bytes and yields decoded text (BOM dropped,
CRLF -> LF, like :func:`weft.data.corpus.decode_text`) cut after whitespace, so no word-level
token is ever split across chunks. :func:`encode_to_npy` writes each chunk's ids straight after
a ``.npy`` header and returns the file opened with ``np.load(mmap_mode="c")``: the operating
system pages ids in as they are read, and a process's memory stays at one chunk of text and its
ids however large the corpus. Whole-corpus cleaning that needs all the text at once (Gutenberg
stripping) is not applied here; per-chunk cleaning (case, Unicode form) can be passed as
``clean``.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from weft.errors import WeftError
from weft.tokenizers.base import EncodeReport, Tokenizer, id_dtype

CHUNK_BYTES = 1 << 23  # 8 MiB of text per chunk
_PLACEHOLDER_LEN = 10**15  # widest length the header is sized for


def iter_text_chunks(path: str | os.PathLike[str], chunk_bytes: int = CHUNK_BYTES) -> Iterator[str]:
    """Decoded text of ``path`` in pieces of about ``chunk_bytes``, each ending after a space
    or newline (except perhaps the last)."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    pending = ""  # decoded text not yet yielded (line endings not yet normalized)
    with open(path, "rb") as handle:
        while True:
            block = handle.read(chunk_bytes)
            final = not block
            try:
                pending += decoder.decode(block, final=final)
            except UnicodeDecodeError as exc:
                raise WeftError(f"{path} is not valid UTF-8 ({exc.reason}); convert it first, "
                                "for example with iconv") from None
            if final:
                emit, pending = pending, ""
            else:
                # Keep a trailing "\r" back: its "\n" may start the next block.
                limit = len(pending) - pending.endswith("\r")
                cut = max(pending.rfind(" ", 0, limit), pending.rfind("\n", 0, limit)) + 1
                if cut == 0 and limit > 4 * chunk_bytes:
                    cut = limit  # no whitespace for very long: cut anyway to bound memory
                emit, pending = pending[:cut], pending[cut:]
            emit = emit.replace("\r\n", "\n").replace("\r", "\n")
            if emit:
                yield emit
            if final:
                return


def _header(dtype: np.dtype[Any], length: int) -> bytes:
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                 "shape": (length,)})
    return buffer.getvalue()


def encode_to_npy(
    chunks: Iterable[str],
    tokenizer: Tokenizer,
    path: str | os.PathLike[str],
    *,
    clean: Callable[[str], str] | None = None,
    report: EncodeReport | None = None,
) -> np.ndarray:
    """Encode ``chunks`` into the ``.npy`` file ``path``; returns it memory-mapped.

    The header is written first sized for a huge length, the ids are appended chunk by chunk,
    and the header is rewritten with the true length at the end (numpy pads headers to 64
    bytes, so both have the same size).
    """
    target = Path(path)
    dtype = id_dtype(tokenizer.vocab_size)
    placeholder = _header(dtype, _PLACEHOLDER_LEN)
    tmp = target.with_name(f".{target.name}.tmp")
    total = 0
    try:
        with open(tmp, "wb") as handle:
            handle.write(placeholder)
            for chunk in chunks:
                ids = tokenizer.encode(clean(chunk) if clean else chunk, report)
                handle.write(np.ascontiguousarray(ids, dtype=dtype).data)  # no copy
                total += len(ids)
            header = _header(dtype, total)
            if len(header) != len(placeholder):  # cannot happen for lengths below 10**15
                raise RuntimeError("npy header size changed")
            handle.seek(0)
            handle.write(header)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # Copy-on-write rather than read-only: torch.from_numpy wraps it without a copy or a
    # warning, and since nothing writes to it, every page still comes from the file.
    return np.load(target, mmap_mode="c")
