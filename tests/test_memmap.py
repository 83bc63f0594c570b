"""Chunked reading and encoding of big corpora into a memory-mapped .npy file."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from weft.config import ModelConfig
from weft.data.memmap import encode_to_npy, iter_text_chunks
from weft.data.stream import StreamBatches
from weft.models.rnn_lm import RNNLanguageModel
from weft.tokenizers import EncodeReport, build_tokenizer
from weft.training.evaluate import stream_loss


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


def _peak_bytes(work: Callable[[], object]) -> int:
    """The most memory (NumPy's allocations included) held at once while ``work`` runs."""
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _mapped_ids(path: Path, n: int, dtype: type[np.unsignedinteger], vocab: int) -> np.ndarray:
    ids = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(n,))
    ids[:] = np.arange(n) % vocab
    ids.flush()
    return np.load(path, mmap_mode="c")


def test_stream_batches_read_a_memmap_window_by_window(tmp_path: Path) -> None:
    n = 1 << 20  # 4 MiB of uint32 ids: no copy of them may be made, widened or not
    ids = _mapped_ids(tmp_path / "ids.npy", n, np.uint32, 70_000)
    seen: list[torch.Tensor] = []

    def read() -> None:
        batches = StreamBatches(ids, 4, 16, torch.device("cpu"), "corpus")
        seen.extend(batches.window(i)[0] for i in (0, 1, batches.num_windows - 1))

    assert _peak_bytes(read) < 256 << 10
    column = n // 4
    assert seen[0][1].tolist() == [k % 70_000 for k in range(column, column + 16)]
    assert seen[1][0, 0].item() == 16


def test_evaluation_widens_a_memmap_window_by_window(tmp_path: Path) -> None:
    n = 200_000  # 1.6 MB once widened to int64
    ids = _mapped_ids(tmp_path / "val.npy", n, np.uint16, 50)
    model = RNNLanguageModel(ModelConfig(vocab_size=50, embedding_dim=8, hidden_size=8,
                                         layers=1))
    result: list[tuple[float, int]] = []
    peak = _peak_bytes(lambda: result.append(stream_loss(model, ids, batch_size=32,
                                                         seq_len=256)))
    assert peak < 512 << 10
    in_memory = stream_loss(model, np.array(ids), batch_size=32, seq_len=256)
    assert result[0][1] == in_memory[1] > n - 100
    assert result[0][0] == pytest.approx(in_memory[0])
