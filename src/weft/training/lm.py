"""Training a language model end to end: corpus -> tokenizer -> model -> run directory.

Under ``torchrun`` every rank reads the corpus and builds the same model; rank 0 alone builds the
tokenizer (and hands it to the others), checks and writes the run directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from weft import __version__
from weft.config import GenerationConfig, RunConfig
from weft.data.corpus import BUILTIN_PREFIX, expand_sources
from weft.data.corpus_index import MAX_INDEX_BYTES, build_index, has_index
from weft.data.labels import NO_LABELS, LabelSet, load_labels, save_labels
from weft.data.memmap import encode_to_npy, iter_text_chunks
from weft.data.prepare import clean_like_training, load_labelled_records, load_text
from weft.data.records import split_records
from weft.data.stream import split_tokens
from weft.device import resolve_device, set_threads, training_precision
from weft.errors import WeftError
from weft.io import atomic_write_json
from weft.language_model import LanguageModel
from weft.models.rnn_lm import RNNLanguageModel
from weft.runs import (
    CONFIG,
    FINGERPRINT,
    TOKENIZER,
    TOKENS,
    WEIGHTS,
    check_same_data,
    fingerprint,
    read_run_config,
    save_generation_defaults,
    save_weights,
)
from weft.tokenizers import (
    RECORD_SPECIALS,
    CharTokenizer,
    Tokenizer,
    load_tokenizer,
    save_tokenizer,
    tokenizer_from_dict,
)
from weft.tokenizers import build_tokenizer as train_tokenizer
from weft.training import distributed
from weft.training.checkpoint import check_resumable
from weft.training.init_from import BaseRun, describe_growth, grow_tokenizer, load_base_weights
from weft.training.records_task import RecordLMTask
from weft.training.safeguards import check_free_space, check_output_dir, exclusive
from weft.training.stream_task import StreamLMTask
from weft.training.trainer import Trainer, TrainResult

log = logging.getLogger("weft")


def prepare_text(config: RunConfig) -> str:
    text, notes = load_text(list(config.corpus), config.data)
    for note in notes:
        log.info(note)
    return text


# Far above any real script's character set (CJK text uses some thousands); beyond it the
# output layer alone would take gigabytes: it means binary data or a mix of unrelated files.
MAX_CHAR_VOCAB = 30_000


def build_tokenizer(config: RunConfig, texts: list[str], base: BaseRun | None = None,
                    labels: LabelSet = NO_LABELS) -> Tokenizer:
    """The run's tokenizer: trained on ``texts``, or the base run's grown to cover them; label
    tokens are special tokens, so growing a base run's vocabulary keeps them."""
    data = config.data
    specials = [*RECORD_SPECIALS, *labels.specials()] if data.record_mode else []
    if base is not None:
        tokenizer, added = grow_tokenizer(base.tokenizer, texts, specials=specials,
                                          min_count=data.min_count)
        if (line := describe_growth(added)) is not None:
            log.info(line)
        return tokenizer
    tokenizer = train_tokenizer(
        data.level, texts, max_vocab=data.max_vocab, min_count=data.min_count,
        vocab_size=data.bpe_vocab_size, specials=specials,
    )
    if data.level == "char" and tokenizer.vocab_size > MAX_CHAR_VOCAB:
        raise WeftError(
            f"the corpus has {tokenizer.vocab_size:,} distinct characters and specials (at most "
            f"{MAX_CHAR_VOCAB:,} for --level char): is it binary data or encoded text? Pass "
            "plain text files, or use --level bpe"
        )
    return tokenizer


def train_language_model(
    config: RunConfig, out: str | Path, *, resume: bool = False, quiet: bool = False,
    base: BaseRun | None = None,
) -> tuple[LanguageModel | None, TrainResult]:
    """Train (or resume) a language model into ``out`` and return it loaded.

    With ``base`` (``--init-from``), a new run starts from that model's tokenizer and weights.
    Under ``torchrun`` the model is returned on rank 0 only (None on the other ranks).
    """
    out = Path(out)
    config.model.validate()
    config.data.validate()
    config.train.validate()
    if distributed.from_environment().enabled and config.data.memmap:
        raise WeftError("--memmap training runs in one process for now; drop --memmap or "
                        "torchrun")
    if distributed.from_environment().enabled and config.data.record_mode:
        # Every rank fails alike, before any rank waits for the others.
        raise WeftError("record training (--records, --csv-column) does not run under torchrun "
                        "yet; train it in one process")
    dist, device_name = distributed.setup(config.train.device)
    try:
        with contextlib.ExitStack() as cleanup:
            trained = _train(config, out, resume, quiet or not dist.is_main, dist, device_name,
                             cleanup, None if resume else base)
    except BaseException:
        distributed.teardown()
        raise
    distributed.teardown(finished=True)
    return trained


def _train(
    config: RunConfig, out: Path, resume: bool, quiet: bool, dist: distributed.Distributed,
    device_name: str, cleanup: contextlib.ExitStack, base: BaseRun | None,
) -> tuple[LanguageModel | None, TrainResult]:
    distributed.on_main(dist, lambda: check_output_dir(out, resume))
    distributed.on_main(dist, lambda: cleanup.enter_context(exclusive(out)))
    set_threads(config.train.threads)
    torch.manual_seed(config.train.seed)
    device = resolve_device(device_name)
    precision = training_precision(config.train.precision, device, resume=resume)

    records: list[str] = []
    label_rows: list[tuple[str, ...]] = []
    labels = NO_LABELS
    memmapped: tuple[Tokenizer, np.ndarray, int] | None = None
    if config.data.memmap:
        memmapped, data_fingerprint = _memmap_corpus(config, out, resume)
        text = ""
    elif config.data.record_mode:
        records, label_rows, notes = load_labelled_records(list(config.corpus), config.data)
        for note in notes:
            log.info(note)
        # Records may hold newlines (CSV), so fingerprint them with an unambiguous separator.
        text = "\x1e".join(records)
        if config.data.label_columns:
            labels = LabelSet.from_rows(config.data.label_columns, label_rows)
            text += "\x1d" + "\x1e".join("\x1f".join(row) for row in label_rows)
    else:
        text = prepare_text(config)
    if memmapped is None:
        data_fingerprint = fingerprint(text)
    # The columns are laid out for the global batch, fixed when the run starts, so a run can
    # resume with a different number of ranks and still take the same steps.
    global_batch = config.train.batch_size * dist.world_size
    if resume:
        saved = read_run_config(out)
        check_same_data(saved, data_fingerprint)
        tokenizer = memmapped[0] if memmapped else load_tokenizer(out / TOKENIZER)
        labels = load_labels(out) if config.data.label_columns else NO_LABELS
        global_batch = int(saved.get("global_batch_size", config.train.batch_size))
    elif memmapped is not None:
        tokenizer = memmapped[0]
    else:
        tokenizer = tokenizer_from_dict(distributed.on_main(
            dist, lambda: build_tokenizer(config, records or [text], base, labels).to_dict()))
    if config.data.record_mode:
        train_records, val_records = split_records(records, config.data.val_fraction)
        if config.data.val_fraction > 0 and not val_records:
            raise WeftError("the validation split is empty: use more records")
    else:
        ids = memmapped[1] if memmapped is not None else tokenizer.encode(text)
        train_ids, val_ids = split_tokens(ids, config.data.val_fraction)
        if config.data.val_fraction > 0 and len(val_ids) < 2:
            raise WeftError(
                "the validation split is empty: use more text or a larger --val-fraction")

    model_config = dataclasses.replace(config.model, vocab_size=tokenizer.vocab_size)
    init_from = (base.provenance(tokenizer.vocab_size - base.tokenizer.vocab_size)
                 if base is not None else config.init_from)
    config = RunConfig(model=model_config, data=config.data,
                       train=config.train.with_default_stop(), corpus=config.corpus,
                       weft_version=__version__, init_from=init_from)
    model = RNNLanguageModel(config.model)
    if base is not None:
        load_base_weights(model, base)
    model.to(device)
    distributed.on_main(dist, lambda: check_free_space(out, model, resume))
    task: StreamLMTask | RecordLMTask
    if config.data.record_mode:
        prefixes = labels.prefixes(tokenizer, label_rows) if labels.columns else None
        task = RecordLMTask(model, tokenizer, train_records, val_records, config.data,
                            config.train, device, precision, prefixes=prefixes, labels=labels)
        for note in task.notes:
            log.warning(note)
        train_size, val_size = task.num_tokens, len(val_records)
        summary = f"{len(records):,} records -> {task.num_tokens:,} training tokens"
    else:
        task = StreamLMTask(model, tokenizer, train_ids, val_ids,
                            dataclasses.replace(config.train, batch_size=global_batch), device,
                            precision, rank=dist.rank, world_size=dist.world_size)
        train_size, val_size = len(train_ids), len(val_ids)
        characters = memmapped[2] if memmapped is not None else len(text)
        summary = f"{characters:,} characters -> {len(ids):,} tokens"

    record = config.to_dict() | {FINGERPRINT: data_fingerprint,
                                 "train_tokens": train_size,
                                 ("val_records" if config.data.record_mode else "val_tokens"):
                                     val_size,
                                 "global_batch_size": global_batch}

    def write_run_files() -> None:
        try:
            if not resume:
                save_tokenizer(tokenizer, out / TOKENIZER)
                save_generation_defaults(out, GenerationConfig())
                if labels.columns:
                    save_labels(out, labels)
            atomic_write_json(out / CONFIG, record)
        except OSError as exc:
            raise WeftError(f"cannot write the run files in {out} ({exc.strerror})") from None

    distributed.on_main(dist, write_run_files)
    if not has_index(out):  # runs from before the copy meter get theirs when resumed
        distributed.on_main(dist, lambda: _build_copy_index(config, out, text, records))
    if not quiet:
        params = sum(p.numel() for p in model.parameters())
        print(f"weft: {summary} "
              f"(vocabulary {tokenizer.vocab_size}); {params:,} parameters; "
              f"device {device}, precision {precision or 'fp32'}; "
              f"{task.steps_per_epoch()} steps per epoch"
              + (f"; starting from {base.name}" if base is not None else "")
              + (f"; {dist.world_size} processes x batch {global_batch // dist.world_size}"
                 if dist.enabled else ""))

    def save_best() -> None:
        save_weights(model, out / WEIGHTS)

    if resume:
        check_resumable(out)
    trainer = Trainer(task, config.train, out, device=device, precision=precision,
                      save_best=save_best, quiet=quiet, dist=dist)
    result = trainer.fit(resume=resume)
    if not dist.is_main:
        return None, result
    if not (out / WEIGHTS).exists():
        save_best()  # no validation split: the last weights are the best we have
    if not quiet:
        print(f"weft: stopped ({result.stopped_because}) after {result.steps} steps, "
              f"{result.tokens:,} tokens, {result.elapsed:.0f}s; run saved in {out}")
    return LanguageModel(out, device=str(device)), result


def _build_copy_index(config: RunConfig, out: Path, text: str, records: list[str]) -> None:
    """The copy meter's index of the corpus: records one per line, else the cleaned text."""
    if config.data.memmap:
        chunks: Iterable[str] = _cleaned_chunks(config, expand_sources(list(config.corpus)))
    elif config.data.record_mode:
        chunks = (record + "\n" for record in records)
    else:
        chunks = [text]
    try:
        stats = build_index(out, chunks)
    except OSError as exc:
        raise WeftError(f"cannot write the copy index in {out} ({exc.strerror})") from None
    if stats is None:
        log.warning("the corpus is over %d GiB: no copy index, so the copy meter is "
                    "unavailable for this run", MAX_INDEX_BYTES >> 30)
        return
    log.debug("copy index: %d bytes of text in %.2f s", stats.text_bytes, stats.seconds)


def _cleaned_chunks(config: RunConfig, sources: list[str]) -> Iterator[str]:
    for source in sources:
        for chunk in iter_text_chunks(source):
            yield clean_like_training(chunk, config.data)


def _memmap_corpus(
    config: RunConfig, out: Path, resume: bool
) -> tuple[tuple[Tokenizer, np.ndarray, int], str]:
    """Tokenize a corpus too large for memory into ``tokens.npy``, read back memory-mapped.

    Two passes over the files in chunks: the first learns the characters and fingerprints the
    text, the second writes the ids. Memory stays at one chunk of text and its ids; the
    returned array is paged in from disk as training reads it.
    """
    sources = expand_sources(list(config.corpus))
    if any(source.startswith(BUILTIN_PREFIX) for source in sources):
        raise WeftError("--memmap reads text files; a built-in corpus fits in memory without it")
    digest = hashlib.sha256()
    characters = 0

    def chunks(first_pass: bool) -> Iterator[str]:
        nonlocal characters
        for chunk in _cleaned_chunks(config, sources):
            if first_pass:
                digest.update(chunk.encode("utf-8"))
                characters += len(chunk)
            yield chunk

    if resume:
        for _ in chunks(first_pass=True):
            pass
        tokenizer = load_tokenizer(out / TOKENIZER)
        ids = np.load(out / TOKENS, mmap_mode="c")
    else:
        tokenizer = CharTokenizer.train(chunks(first_pass=True))
        ids = encode_to_npy(chunks(first_pass=False), tokenizer, out / TOKENS)
    return (tokenizer, ids, characters), digest.hexdigest()[:16]
