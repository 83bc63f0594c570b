"""Chunked reading and encoding of big corpora into a memory-mapped .npy file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from weft.data.memmap import encode_to_npy, iter_text_chunks
from weft.tokenizers import EncodeReport, build_tokenizer


def test_chunks_cut_at_whitespace_and_normalize_newlines(tmp_path: Path) -> None:
    text = "héllo wörld\r\nsecond line é\r\n" * 50
    path = tmp_path / "big.txt"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    chunks = list(iter_text_chunks(path, chunk_bytes=7))
    assert len(chunks) > 10
    assert "".join(chunks) == text.replace("\r\n", "\n")
    assert all(c[-1] in " \n" for c in chunks[:-1])


def test_encode_to_npy_matches_in_memory(tmp_path: Path) -> None:
    text = "It's a test, of the memmap; words and more words.\n" * 200
    path = tmp_path / "corpus.txt"
    path.write_text(text + "zebra\n", encoding="utf-8")
    for level in ("char", "word"):
        tok = build_tokenizer(level, [text])
        report = EncodeReport()
        out = tmp_path / f"{level}.npy"
        ids = encode_to_npy(iter_text_chunks(path, chunk_bytes=64), tok, out, report=report)
        assert isinstance(ids, np.memmap)
        assert np.array_equal(ids, tok.encode(text + "zebra\n"))
        assert report.unknown
        assert np.array_equal(np.load(out), ids)
        assert not list(tmp_path.glob(".*.tmp"))


def test_stream_batches_wrap_the_memmap_without_copying(tmp_path: Path) -> None:
    import warnings

    import torch

    from weft.data.stream import StreamBatches

    text = "hello world\n" * 100
    tok = build_tokenizer("char", [text])
    ids = encode_to_npy([text], tok, tmp_path / "ids.npy")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batches = StreamBatches(ids, 4, 16, torch.device("cpu"), "corpus")
    assert batches.data.data_ptr() == ids.ctypes.data  # the tensor reads the mapped file
    inputs, _ = batches.window(0)
    assert tok.decode(inputs[0].tolist()) == text[:16]
