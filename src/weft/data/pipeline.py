"""Corpus to token ids: the one path from a run's data settings to what it trains on.

:func:`prepare_corpus` takes the run's settings (its :class:`DataConfig` and corpus sources) and
returns a :class:`PreparedCorpus`: the tokenizer, the training and validation splits, and the
fingerprint a resume is checked against. A corpus is one of three kinds, as the settings say:

- **text** (the default): every source read and cleaned (prepare.py) into one text, encoded
  into one id stream; validation is its last ``--val-fraction``.
- **records** (``--records``, ``--csv-column``): cleaned records with the values of their label
  columns (``--label-column``), each trained as ``<bos> labels... text <eos>``; validation is
  the last records.
- **memmap** (``--memmap``, character level): read and cleaned in chunks, encoded into
  ``tokens.npy`` in the run directory and read back memory-mapped, so memory stays at one
  chunk however large the corpus.

The tokenizer is trained on the corpus, or grown from a base model's (``--init-from``, through
the ``grow`` hook), or, on resume, the run's own once the data is checked to be the same.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from weft.config import DataConfig
from weft.data.corpus import (
    BUILTIN_PREFIX,
    check_corpus_file,
    empty_corpus,
    expand_sources,
    reject_binary,
)
from weft.data.labels import NO_LABELS, LabelSet, load_labels
from weft.data.memmap import encode_to_npy, iter_text_chunks
from weft.data.prepare import clean_like_training, load_labelled_records, load_text_parts
from weft.data.records import split_records
from weft.data.stream import split_tokens
from weft.data.weights import describe_weights, is_weighted, weighted_training_part
from weft.errors import WeftError
from weft.runs import TOKENIZER, TOKENS, check_same_data, fingerprint, read_run_config
from weft.tokenizers import RECORD_SPECIALS, CharTokenizer, Tokenizer, load_tokenizer
from weft.tokenizers import build_tokenizer as train_tokenizer

log = logging.getLogger("weft")

# Far above any real script's character set (CJK text uses some thousands); beyond it the
# output layer alone would take gigabytes: it means binary data or a mix of unrelated files.
MAX_CHAR_VOCAB = 30_000

# (texts, specials) -> a base model's tokenizer grown to cover them (--init-from).
GrowHook = Callable[[Sequence[str], Sequence[str]], Tokenizer]
# How a new tokenizer gets built: here by default; under torchrun, on rank 0 and handed on.
BuildHook = Callable[[Callable[[], Tokenizer]], Tokenizer]


def _build_here(make: Callable[[], Tokenizer]) -> Tokenizer:
    return make()


@dataclass(frozen=True)
class PreparedCorpus:
    """What a language model trains on, with what it takes to check and index it."""

    tokenizer: Tokenizer
    fingerprint: str  # saved in config.json; a resume must see the same
    characters: int  # of cleaned text
    index_chunks: Callable[[], Iterable[str]]  # the cleaned text as the copy index keeps it
    # A stream corpus (text, memmap): one id array, cut in two.
    train_ids: np.ndarray | None = None
    val_ids: np.ndarray | None = None
    # A record corpus: the records, and their label token ids (training records first).
    train_records: list[str] = field(default_factory=list)
    val_records: list[str] = field(default_factory=list)
    labels: LabelSet = NO_LABELS
    prefixes: np.ndarray | None = None

    @property
    def num_records(self) -> int:
        return len(self.train_records) + len(self.val_records)

    @property
    def num_ids(self) -> int:
        return sum(len(ids) for ids in (self.train_ids, self.val_ids) if ids is not None)


def prepare_corpus(
    data: DataConfig,
    sources: Sequence[str],
    run_dir: Path,
    *,
    resume: bool = False,
    grow: GrowHook | None = None,
    build: BuildHook = _build_here,
) -> PreparedCorpus:
    """Read, clean, tokenize and split the corpus ``sources`` as ``data`` says.

    On resume the tokenizer (and ``tokens.npy``, label values) are the run's, after checking
    that the data is the one the run started with.
    """
    if data.memmap:
        return _memmap_corpus(data, sources, run_dir, resume)
    if data.record_mode:
        return _record_corpus(data, sources, run_dir, resume, grow, build)
    parts, weights, notes = load_text_parts(sources, data)
    for note in notes:
        log.info(note)
    text = "".join(parts)
    weighted = is_weighted(sources)
    digest = _fingerprint(text, sources)
    if resume:
        check_same_data(read_run_config(run_dir), digest)
        tokenizer = load_tokenizer(run_dir / TOKENIZER)
    else:
        tokenizer = build(lambda: _new_tokenizer(data, [text], (), grow))
    if not weighted:
        train_ids, val_ids = _split_stream(tokenizer.encode(text), data)
    else:
        # Each file encoded alone, so that its tokens can be repeated by its weight; the
        # validation split is the end of the files each read once (weights.py).
        part_ids = [tokenizer.encode(part) for part in parts]
        train_ids, val_ids = _split_stream(np.concatenate(part_ids), data)
        train_ids = np.concatenate(weighted_training_part(part_ids, weights, len(train_ids)))
        log.info(f"corpus weights: {len(train_ids):,} training tokens a pass")
    return PreparedCorpus(tokenizer, digest, len(text), lambda: [text], train_ids, val_ids)


def _fingerprint(text: str, sources: Sequence[str]) -> str:
    """The corpus's digest; with corpus weights, the mix too (another mix is other data).
    Unweighted corpora keep the digest they always had, so older runs still resume."""
    return fingerprint(text + "\x1d" + describe_weights(sources) if is_weighted(sources)
                       else text)


def _new_tokenizer(data: DataConfig, texts: Sequence[str], specials: Sequence[str],
                   grow: GrowHook | None) -> Tokenizer:
    """Trained on ``texts``, or the base model's grown to cover them. Label tokens are
    special tokens, so growing a base run's vocabulary keeps them."""
    if grow is not None:
        return grow(texts, specials)
    tokenizer = train_tokenizer(
        data.level, texts, max_vocab=data.max_vocab, min_count=data.min_count,
        vocab_size=data.bpe_vocab_size, specials=specials, pretokenized=data.pretokenized,
    )
    if data.level == "char" and tokenizer.vocab_size > MAX_CHAR_VOCAB:
        raise WeftError(
            f"the corpus has {tokenizer.vocab_size:,} distinct characters and specials (at most "
            f"{MAX_CHAR_VOCAB:,} for --level char): is it binary data or encoded text? Pass "
            "plain text files, or use --level bpe"
        )
    return tokenizer


def _split_stream(ids: np.ndarray, data: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    train_ids, val_ids = split_tokens(ids, data.val_fraction)
    if data.val_fraction > 0 and len(val_ids) < 2:
        raise WeftError("the validation split is empty: use more text or a larger --val-fraction")
    return train_ids, val_ids


def _record_corpus(data: DataConfig, sources: Sequence[str], run_dir: Path, resume: bool,
                   grow: GrowHook | None, build: BuildHook) -> PreparedCorpus:
    records, rows, weights, notes = load_labelled_records(sources, data)
    for note in notes:
        log.info(note)
    # Records may hold newlines (CSV), so fingerprint them with an unambiguous separator.
    text = "\x1e".join(records)
    labels = NO_LABELS
    if data.label_columns:
        labels = LabelSet.from_rows(data.label_columns, rows)
        text += "\x1d" + "\x1e".join("\x1f".join(row) for row in rows)
    weighted = is_weighted(sources)
    digest = _fingerprint(text, sources)
    if resume:
        check_same_data(read_run_config(run_dir), digest)
        tokenizer = load_tokenizer(run_dir / TOKENIZER)
        labels = load_labels(run_dir) if data.label_columns else NO_LABELS
    else:
        specials = [*RECORD_SPECIALS, *labels.specials()]
        tokenizer = build(lambda: _new_tokenizer(data, records, specials, grow))
    train_records, val_records = split_records(records, data.val_fraction)
    if data.val_fraction > 0 and not val_records:
        raise WeftError("the validation split is empty: use more records")
    if weighted:
        train_records, rows = _weight_records(records, rows, weights, len(train_records))
        log.info(f"corpus weights: {len(train_records):,} training records a pass")
    return PreparedCorpus(
        tokenizer, digest, sum(len(r) for r in records),
        lambda: (record + "\n" for record in records),
        train_records=train_records, val_records=val_records, labels=labels,
        prefixes=labels.prefixes(tokenizer, rows) if labels.columns else None)


def _weight_records(records: list[str], rows: list[tuple[str, ...]],
                    files: list[tuple[float, int]], n_train: int,
                    ) -> tuple[list[str], list[tuple[str, ...]]]:
    """The training records repeated by their files' weights (``files``: each file's weight
    and number of records, in order), and the label rows of those records followed by the
    validation records' rows (the order ``prefixes`` are read in)."""
    starts = np.cumsum([0] + [count for _, count in files])[:-1]
    indices = [np.arange(start, start + count)
               for start, (_, count) in zip(starts, files, strict=True)]
    kept = weighted_training_part(indices, [weight for weight, _ in files], n_train)
    order = [int(i) for run in kept for i in run]
    labelled = ([rows[i] for i in order] + rows[n_train:]) if rows else rows
    return [records[i] for i in order], labelled


def cleaned_chunks(data: DataConfig, sources: Sequence[str]) -> Iterator[str]:
    """The files' text in chunks, each cleaned as the corpus is (case, Unicode form), each
    file checked as a corpus file is (found, text, not empty) and ending in a newline, as
    the corpus read whole joins them."""
    for source in expand_sources(sources):
        check_corpus_file(source)
        last, has_text = "", False
        for chunk in iter_text_chunks(source):
            if not last:
                reject_binary(chunk, source)
            has_text = has_text or not chunk.isspace()
            last = chunk
            yield clean_like_training(chunk, data)
        if not has_text:
            raise WeftError(empty_corpus(source))
        if not last.endswith("\n"):
            yield "\n"


def _memmap_corpus(data: DataConfig, sources: Sequence[str], run_dir: Path,
                   resume: bool) -> PreparedCorpus:
    """Tokenize a corpus too large for memory into ``tokens.npy``, read back memory-mapped.

    Two passes over the files in chunks: the first learns the characters and fingerprints the
    text, the second writes the ids. Memory stays at one chunk of text and its ids; the
    returned arrays are paged in from disk as training reads them.
    """
    if is_weighted(sources):
        raise WeftError("--memmap reads each file once: corpus weights (FILE:WEIGHT) are not "
                        "supported with it; repeat the files instead, or leave out --memmap")
    if any(source.startswith(BUILTIN_PREFIX) for source in expand_sources(sources)):
        raise WeftError("--memmap reads text files; a built-in corpus fits in memory without it")
    digest = hashlib.sha256()
    characters = 0

    def chunks(first_pass: bool) -> Iterator[str]:
        nonlocal characters
        for chunk in cleaned_chunks(data, sources):
            if first_pass:
                digest.update(chunk.encode("utf-8"))
                characters += len(chunk)
            yield chunk

    if resume:
        for _ in chunks(first_pass=True):
            pass
        check_same_data(read_run_config(run_dir), digest.hexdigest()[:16])
        tokenizer: Tokenizer = load_tokenizer(run_dir / TOKENIZER)
        ids = np.load(run_dir / TOKENS, mmap_mode="c")
    else:
        tokenizer = CharTokenizer.train(chunks(first_pass=True))
        ids = encode_to_npy(chunks(first_pass=False), tokenizer, run_dir / TOKENS)
    train_ids, val_ids = _split_stream(ids, data)
    return PreparedCorpus(tokenizer, digest.hexdigest()[:16], characters,
                          lambda: cleaned_chunks(data, sources), train_ids, val_ids)
