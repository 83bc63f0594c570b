"""Training a language model end to end: data settings -> corpus -> model -> run directory.

The corpus (tokenizer, splits, fingerprint) is data/pipeline.py's; this module builds the model
and its task, writes the run's files and runs the trainer. Under ``torchrun`` every rank reads
the corpus and builds the same model; rank 0 alone builds the tokenizer (and hands it to the
others), checks and writes the run directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from weft import __version__, interrupts
from weft.config import GenerationConfig, RunConfig
from weft.data.corpus_index import MAX_INDEX_BYTES, MEMMAP_INDEX_BYTES, build_index, has_index
from weft.data.labels import save_labels
from weft.data.pipeline import PreparedCorpus, prepare_corpus
from weft.device import resolve_device, set_threads, training_precision
from weft.errors import WeftError
from weft.io import atomic_write_json
from weft.language_model import LanguageModel
from weft.models.rnn_lm import RNNLanguageModel, resolve_output_layer
from weft.runs import (
    CONFIG,
    FINGERPRINT,
    TOKENIZER,
    WEIGHTS,
    load_weights,
    read_run_config,
    save_generation_defaults,
    save_weights,
)
from weft.tokenizers import Tokenizer, save_tokenizer, tokenizer_from_dict
from weft.training import distributed
from weft.training.checkpoint import check_resumable
from weft.training.init_from import BaseRun, describe_growth, grow_tokenizer, load_base_weights
from weft.training.records_task import RecordLMTask
from weft.training.safeguards import check_free_space, check_output_dir, exclusive
from weft.training.stream_task import StreamLMTask
from weft.training.trainer import Trainer, TrainResult

log = logging.getLogger("weft")


def fit_language_model(
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
    _stop_if_requested(dist, "loading PyTorch")
    distributed.on_main(dist, lambda: check_output_dir(out, resume))
    distributed.on_main(dist, lambda: cleanup.enter_context(exclusive(out)))
    set_threads(config.train.threads)
    torch.manual_seed(config.train.seed)
    device = resolve_device(device_name)
    precision = training_precision(config.train.precision, device, resume=resume)

    def build_on_main(make: Callable[[], Tokenizer]) -> Tokenizer:
        return tokenizer_from_dict(distributed.on_main(dist, lambda: make().to_dict()))

    corpus = prepare_corpus(config.data, config.corpus, out, resume=resume,
                            grow=_grow_from(base, config.data.min_count) if base else None,
                            build=build_on_main)
    _stop_if_requested(dist, "reading the corpus")
    tokenizer = corpus.tokenizer
    # The columns are laid out for the global batch, fixed when the run starts, so a run can
    # resume with a different number of ranks and still take the same steps.
    global_batch = config.train.batch_size * dist.world_size
    if resume:
        global_batch = int(read_run_config(out).get("global_batch_size",
                                                    config.train.batch_size))

    model_config = resolve_output_layer(config.model, tokenizer.vocab_size,
                                        fixed=resume or base is not None)
    init_from = (base.provenance(tokenizer.vocab_size - base.tokenizer.vocab_size)
                 if base is not None else config.init_from)
    config = RunConfig(model=model_config, data=config.data,
                       train=config.train.with_default_stop(), corpus=config.corpus,
                       weft_version=__version__, init_from=init_from)
    model = RNNLanguageModel(config.model)
    if base is not None:
        load_base_weights(model, base, tokenizer)
    model.to(device)
    _stop_if_requested(dist, "building the model")
    distributed.on_main(dist, lambda: check_free_space(out, model, resume))
    task: StreamLMTask | RecordLMTask
    if config.data.record_mode:
        task = RecordLMTask(model, tokenizer, corpus.train_records, corpus.val_records,
                            config.data, config.train, device, precision,
                            prefixes=corpus.prefixes, labels=corpus.labels)
        for note in task.notes:
            log.warning(note)
        sizes = {"train_tokens": task.num_tokens, "val_records": len(corpus.val_records)}
        summary = f"{corpus.num_records:,} records -> {task.num_tokens:,} training tokens"
    else:
        assert corpus.train_ids is not None and corpus.val_ids is not None  # a stream corpus
        task = StreamLMTask(model, tokenizer, corpus.train_ids, corpus.val_ids,
                            dataclasses.replace(config.train, batch_size=global_batch), device,
                            precision, rank=dist.rank, world_size=dist.world_size)
        sizes = {"train_tokens": len(corpus.train_ids), "val_tokens": len(corpus.val_ids)}
        summary = f"{corpus.characters:,} characters -> {corpus.num_ids:,} tokens"

    # The resolved evaluation interval is recorded, so a resumed run keeps it.
    config = dataclasses.replace(
        config, train=config.train.with_eval_every(task.steps_per_epoch()))
    record = config.to_dict() | {FINGERPRINT: corpus.fingerprint, **sizes,
                                 "global_batch_size": global_batch}

    def write_run_files() -> None:
        try:
            if not resume:
                save_tokenizer(tokenizer, out / TOKENIZER)
                save_generation_defaults(out, GenerationConfig())
                if corpus.labels.columns:
                    save_labels(out, corpus.labels)
            atomic_write_json(out / CONFIG, record)
        except OSError as exc:
            raise WeftError(f"cannot write the run files in {out} ({exc.strerror})") from None

    distributed.on_main(dist, write_run_files)
    if not has_index(out):  # runs from before the copy meter get theirs when resumed
        limit = MEMMAP_INDEX_BYTES if config.data.memmap else MAX_INDEX_BYTES
        distributed.on_main(dist, lambda: _build_copy_index(corpus, out, limit))
    if not quiet:
        params = sum(p.numel() for p in model.parameters())
        print(f"weft: {summary} "
              f"(vocabulary {tokenizer.vocab_size}"
              + (", adaptive softmax" if config.model.adaptive_cutoffs else "")
              + f"); {params:,} parameters; "
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
                      save_best=save_best,
                      restore_best=lambda: load_weights(model, out / WEIGHTS),
                      quiet=quiet, dist=dist)
    result = trainer.fit(resume=resume)
    if not dist.is_main:
        return None, result
    if not (out / WEIGHTS).exists():
        save_best()  # no validation split: the last weights are the best we have
    if not quiet:
        print(f"weft: stopped ({result.stopped_because}) after {result.steps} steps, "
              f"{result.tokens:,} tokens, {result.elapsed:.0f}s; run saved in {out}")
    return LanguageModel(out, device=str(device)), result


def _stop_if_requested(dist: distributed.Distributed, phase: str) -> None:
    """A phase boundary of start-up, before anything is written to the run directory: a
    signal's request (weft/interrupts.py) stops the run here. Under torchrun every rank takes
    part, and all stop at the same boundary, so that none waits for a rank that has gone."""
    reason = interrupts.requested()
    if dist.enabled and distributed.all_sum([1.0 if reason else 0.0])[0] and not reason:
        reason = "a signal on another rank"
    if reason:
        raise interrupts.Interrupted(reason, phase)


def _grow_from(base: BaseRun, min_count: int) -> Callable[[Sequence[str], Sequence[str]],
                                                          Tokenizer]:
    """The hook that grows the base model's tokenizer to cover the new corpus."""
    def grow(texts: Sequence[str], specials: Sequence[str]) -> Tokenizer:
        tokenizer, added = grow_tokenizer(base.tokenizer, texts, specials=specials,
                                          min_count=min_count)
        if (line := describe_growth(added)) is not None:
            log.info(line)
        return tokenizer

    return grow


def _build_copy_index(corpus: PreparedCorpus, out: Path, limit: int) -> None:
    """The copy meter's index of the corpus (records one per line, else the cleaned text), for
    a corpus of at most ``limit`` bytes."""
    try:
        stats = build_index(out, corpus.index_chunks(), limit)
    except OSError as exc:
        raise WeftError(f"cannot write the copy index in {out} ({exc.strerror})") from None
    except ImportError:
        # An environment that lacks it (an installation with --no-deps, a prepared GPU image)
        # still trains; a resume with the package installed builds the index then.
        log.warning("pydivsufsort is not installed: no copy index, so the copy meter is "
                    "unavailable for this run (pip install pydivsufsort, then --resume)")
        return
    if stats is None:
        # Building holds 5 bytes per byte of text in memory: past the limit, none is built.
        log.warning("the corpus is over %d MiB%s: no copy index, so the copy meter is "
                    "unavailable for this run", limit >> 20,
                    " (--memmap keeps memory flat)" if limit == MEMMAP_INDEX_BYTES else "")
        return
    log.debug("copy index: %d bytes of text in %.2f s", stats.text_bytes, stats.seconds)
