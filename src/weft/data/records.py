"""Record training data: one short text per record (a tweet, a joke), batched with padding.

Reading. ``--records lines`` makes every non-empty line a record; ``--csv-column NAME`` makes
every CSV row's NAME field one (the ``csv`` module handles quoted fields, embedded newlines and
doubled quotes; the BOM and CRLF are gone after :func:`weft.data.corpus.decode_text`). Empty
records are skipped and counted.

Batching. :class:`RecordBatches` encodes every record as ``<bos> record <eos>`` into one flat
NumPy array plus offsets: no per-record arrays or tensors are kept. Each epoch shuffles the
records with ``(seed, epoch)``, sorts them by length inside pools of ``50 * batch_size`` so a
batch holds similar lengths (little padding), and shuffles the batches. A batch is
``(inputs, targets)``: ``int64`` tensors of shape ``(batch, longest - 1)`` where targets are the
inputs shifted by one and every padded position holds ``-100``, which cross-entropy ignores.
Each row is a whole record (or piece of one), so the model starts each from a fresh state.

Records longer than ``max_len`` predictions are split into consecutive pieces of ``max_len``
(the default; later pieces start mid-record without ``<bos>``) or truncated (the rest, and its
``<eos>``, is dropped); :attr:`RecordBatches.notes` says how many.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from weft.config import LONG_RECORDS, RECORD_MODES
from weft.errors import WeftError
from weft.tokenizers.base import EncodeReport, Tokenizer

IGNORE_INDEX = -100  # cross-entropy's default ignore_index
_POOL_BATCHES = 50  # batches per length-sorting pool
_ENCODE_GROUP = 4096  # records concatenated at a time while encoding

_FIELD_LIMIT = 2**31 - 1  # a record may be long; the csv module's default limit is 128 KiB


@dataclass
class RecordsRead:
    """Records read from one source and how many were empty."""

    records: list[str]
    empty: int
    labels: list[tuple[str, ...]] = field(default_factory=list)  # per record, with label columns


def read_line_records(text: str) -> RecordsRead:
    """One record per line; surrounding whitespace stripped, blank lines skipped."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line, it does not start a new one
    records = [line.strip() for line in lines]
    kept = [r for r in records if r]
    return RecordsRead(kept, len(records) - len(kept))


def _find_column(header: list[str], column: str, source: str) -> int:
    if column in header:
        return header.index(column)
    folded = [i for i, name in enumerate(header) if name.strip().lower() == column.strip().lower()]
    if len(folded) == 1:
        return folded[0]
    available = ", ".join(repr(name) for name in header) or "(none: the file is empty)"
    raise WeftError(f"{source} has no column {column!r}; available columns: {available}")


@contextmanager
def _long_fields() -> Iterator[None]:
    """Lift the csv module's field size limit while weft reads, then put the caller's back
    (the limit is process-wide: an application embedding weft keeps its own)."""
    previous = csv.field_size_limit(_FIELD_LIMIT)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def read_csv_records(
    text: str, column: str, source: str = "CSV file", label_columns: Sequence[str] = ()
) -> RecordsRead:
    """One record per data row: the field of ``column`` (named in the header row), and the
    fields of ``label_columns`` (stripped; a missing field is the empty value)."""
    with _long_fields():
        return _read_csv_records(text, column, source, label_columns)


def _read_csv_records(text: str, column: str, source: str,
                      label_columns: Sequence[str]) -> RecordsRead:
    delimiter = "\t" if source.lower().endswith(".tsv") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, [])
        index = _find_column(header, column, source)
        label_indices = [_find_column(header, name, source) for name in label_columns]
        records: list[str] = []
        labels: list[tuple[str, ...]] = []
        empty = 0
        for row in reader:
            value = row[index].strip() if index < len(row) else ""
            if value:
                records.append(value)
                if label_indices:
                    labels.append(tuple(row[i].strip() if i < len(row) else ""
                                        for i in label_indices))
            else:
                empty += 1
    except csv.Error as exc:
        raise WeftError(f"{source}: cannot read CSV near line {reader.line_num}: {exc}") from None
    return RecordsRead(records, empty, labels)


def split_records(records: Sequence[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """Training and validation records: validation is the last ``val_fraction`` of them."""
    n = len(records)
    n_val = round(n * val_fraction)
    if val_fraction > 0 and n_val == 0 and n >= 2:
        n_val = 1
    return list(records[: n - n_val]), list(records[n - n_val:])


def record_ids(tokenizer: Tokenizer) -> tuple[int, int, int]:
    """``(bos, eos, pad)`` ids, or a clear error when the tokenizer lacks them."""
    bos, eos, pad = tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id
    if bos is None or eos is None or pad is None:
        raise WeftError(
            "record training needs <bos>, <eos> and <pad> tokens; build the tokenizer with "
            "specials=RECORD_SPECIALS"
        )
    return bos, eos, pad


class RecordBatches:
    """Padded, length-bucketed batches of ``<bos> record <eos>`` sequences."""

    def __init__(
        self,
        flat: np.ndarray,
        offsets: np.ndarray,
        *,
        pad_id: int,
        batch_size: int,
        max_len: int,
        long_records: str = "split",
        seed: int = 0,
        shuffle: bool = True,
        num_chars: int = 0,
    ) -> None:
        """``flat[offsets[i]:offsets[i+1]]`` is record ``i`` with its ``<bos>``/``<eos>``."""
        if batch_size < 1 or max_len < 1:
            raise WeftError("batch size and maximum record length must be >= 1")
        if long_records not in LONG_RECORDS:
            raise WeftError(f"long records: choose one of {', '.join(LONG_RECORDS)}")
        self.flat = flat
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.pad_id = pad_id
        self.batch_size = batch_size
        self.max_len = max_len
        self.long_records = long_records
        self.seed = seed
        self.shuffle = shuffle
        self.num_chars = num_chars  # characters of the records, one per <eos>: for bits/char
        self.notes: list[str] = []
        self._segments()

    @classmethod
    def from_texts(
        cls,
        records: Sequence[str],
        tokenizer: Tokenizer,
        *,
        batch_size: int,
        max_len: int,
        long_records: str = "split",
        seed: int = 0,
        shuffle: bool = True,
        report: EncodeReport | None = None,
        prefixes: np.ndarray | None = None,
    ) -> RecordBatches:
        """Encode ``records`` with ``tokenizer`` (which needs ``<bos>``/``<eos>``/``<pad>``).

        ``prefixes`` (one row of ids per record: its label tokens) go right after ``<bos>``.
        """
        if not records:
            raise WeftError("no records to train on (every record was empty?)")
        bos, eos, pad = record_ids(tokenizer)
        dtype = tokenizer.encode("").dtype
        bos_a, eos_a = np.array([bos], dtype=dtype), np.array([eos], dtype=dtype)
        if prefixes is None:
            prefixes = np.zeros((len(records), 0), dtype=dtype)
        prefixes = prefixes.astype(dtype)
        groups: list[np.ndarray] = []
        lengths = np.empty(len(records), dtype=np.int64)
        batch_encode = getattr(tokenizer, "encode_batch", None)  # optional, much faster
        for first in range(0, len(records), _ENCODE_GROUP):
            group = records[first:first + _ENCODE_GROUP]
            encoded = (batch_encode(group, report) if batch_encode is not None
                       else [tokenizer.encode(text, report) for text in group])
            parts: list[np.ndarray] = []
            for i, ids in enumerate(encoded, start=first):
                parts += [bos_a, prefixes[i], ids, eos_a]
                lengths[i] = len(ids) + 2 + prefixes.shape[1]
            groups.append(np.concatenate(parts))
        flat = np.concatenate(groups)
        offsets = np.zeros(len(records) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        num_chars = sum(len(text) for text in records) + len(records)
        return cls(
            flat,
            offsets,
            pad_id=pad,
            batch_size=batch_size,
            max_len=max_len,
            long_records=long_records,
            seed=seed,
            shuffle=shuffle,
            num_chars=num_chars,
        )

    def _segments(self) -> None:
        """Rows to train on: ``(start, length)`` in ``flat``, at most ``max_len + 1`` tokens."""
        starts = self.offsets[:-1]
        lengths = np.diff(self.offsets)
        predictions = lengths - 1
        long = predictions > self.max_len
        if self.long_records == "split":
            pieces = np.maximum(1, -(-predictions // self.max_len))
            record = np.repeat(np.arange(len(lengths)), pieces)
            k = np.arange(int(pieces.sum())) - np.repeat(np.cumsum(pieces) - pieces, pieces)
            self.seg_start = starts[record] + k * self.max_len
            self.seg_len = np.minimum(self.max_len + 1, lengths[record] - k * self.max_len)
            self.seg_record = record
        else:
            self.seg_record = np.arange(len(lengths))
            self.seg_start = starts.copy()
            self.seg_len = np.minimum(lengths, self.max_len + 1)
        if long.any():
            action = (
                f"split into pieces of {self.max_len} (later pieces start without <bos>)"
                if self.long_records == "split"
                else f"truncated to {self.max_len} (their ends and <eos> are dropped)"
            )
            self.notes.append(
                f"{int(long.sum())} of {len(lengths)} records are longer than {self.max_len} "
                f"tokens (longest {int(predictions.max())}): {action}"
            )

    @property
    def num_records(self) -> int:
        return len(self.offsets) - 1

    @property
    def num_rows(self) -> int:
        return len(self.seg_len)

    @property
    def num_targets(self) -> int:
        """Predicted (non-padding) positions per epoch."""
        return int((self.seg_len - 1).sum())

    def __len__(self) -> int:
        return -(-self.num_rows // self.batch_size)

    def batch_indices(self, epoch: int = 0) -> list[np.ndarray]:
        """Row indices of each batch, in the order the epoch visits them."""
        bs = self.batch_size
        if not self.shuffle:
            order = np.argsort(self.seg_len, kind="stable")
            return [order[i:i + bs] for i in range(0, len(order), bs)]
        rng = np.random.default_rng([self.seed % 2**64, epoch])  # NumPy: no negative seed
        order = rng.permutation(self.num_rows)
        pool = bs * _POOL_BATCHES
        batches: list[np.ndarray] = []
        for p in range(0, len(order), pool):
            chunk = order[p:p + pool]
            chunk = chunk[np.argsort(self.seg_len[chunk], kind="stable")]
            batches += [chunk[i:i + bs] for i in range(0, len(chunk), bs)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def make_batch(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs, targets)`` for the given rows, padded to the longest of them."""
        starts = self.seg_start[rows]
        steps = self.seg_len[rows] - 1
        width = int(steps.max())
        t = np.arange(width)
        positions = starts[:, None] + t[None, :]
        valid = t[None, :] < steps[:, None]
        last = len(self.flat) - 1
        # Widen before np.where: -100 does not fit the compact unsigned id dtype.
        tokens = self.flat[np.minimum(positions, last)].astype(np.int64)
        following = self.flat[np.minimum(positions + 1, last)].astype(np.int64)
        inputs = np.where(valid, tokens, self.pad_id)
        targets = np.where(valid, following, IGNORE_INDEX)
        return torch.from_numpy(inputs), torch.from_numpy(targets)

    def epoch(self, epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for rows in self.batch_indices(epoch):
            yield self.make_batch(rows)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.epoch(0)


def read_records(
    path: str | Path, text: str, *, mode: str | None = None, csv_column: str | None = None,
    label_columns: Sequence[str] = (),
) -> RecordsRead:
    """Records of one source whose decoded ``text`` is given: by line or by CSV column."""
    if csv_column is not None:
        return read_csv_records(text, csv_column, str(path), label_columns)
    if mode == "lines":
        return read_line_records(text)
    raise WeftError(f"unknown --records mode {mode!r}; choose one of: {', '.join(RECORD_MODES)}")
