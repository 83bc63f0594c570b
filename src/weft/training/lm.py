"""Training a language model end to end: corpus -> tokenizer -> model -> run directory."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path

import torch

from weft import __version__
from weft.config import GenerationConfig, RunConfig
from weft.data.corpus import read_corpus
from weft.data.stream import split_tokens
from weft.device import resolve_device, resolve_precision, set_threads
from weft.errors import WeftError
from weft.io import atomic_write_json
from weft.models.rnn_lm import RNNLanguageModel
from weft.runs import (
    CONFIG,
    TOKENIZER,
    WEIGHTS,
    LanguageModel,
    read_run_config,
    save_generation_defaults,
    save_weights,
)
from weft.tokenizers import CharTokenizer, Tokenizer, load_tokenizer, save_tokenizer
from weft.training.lm_task import StreamLMTask
from weft.training.trainer import LAST_STATE, Trainer, TrainResult

log = logging.getLogger("weft")


def _fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def prepare_text(config: RunConfig) -> str:
    text = read_corpus(list(config.corpus))
    if config.data.lowercase:
        text = text.lower()
    return text


def build_tokenizer(config: RunConfig, text: str) -> Tokenizer:
    if config.data.level == "char":
        return CharTokenizer.train([text])
    raise WeftError(f"unknown --level {config.data.level!r}; this version knows: char")


def check_output_dir(out: Path, resume: bool) -> None:
    if resume:
        return
    if out.exists() and any(out.iterdir()):
        if (out / CONFIG).exists():
            raise WeftError(f"{out} already holds a run; resume it with `weft train --resume "
                            f"{out}`, or choose another --out")
        raise WeftError(f"{out} exists and is not empty; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise WeftError(f"cannot write to {out} ({exc.strerror}); choose another --out") from None


def train_language_model(
    config: RunConfig, out: str | Path, *, resume: bool = False, quiet: bool = False
) -> tuple[LanguageModel, TrainResult]:
    """Train (or resume) a language model into ``out`` and return it loaded."""
    out = Path(out)
    check_output_dir(out, resume)
    config.model.validate()
    config.data.validate()
    config.train.validate()
    set_threads(config.train.threads)
    torch.manual_seed(config.train.seed)
    device = resolve_device(config.train.device)
    precision = resolve_precision(config.train.precision, device)

    text = prepare_text(config)
    fingerprint = _fingerprint(text)
    if resume:
        saved = read_run_config(out)
        if saved.get("corpus_fingerprint") != fingerprint:
            raise WeftError("the corpus has changed since this run started; resume needs the "
                            "same text (or start a new run)")
        tokenizer = load_tokenizer(out / TOKENIZER)
    else:
        tokenizer = build_tokenizer(config, text)
    ids = tokenizer.encode(text)
    train_ids, val_ids = split_tokens(ids, config.data.val_fraction)
    if config.data.val_fraction > 0 and len(val_ids) < 2:
        raise WeftError("the validation split is empty: use more text or a larger --val-fraction")

    model_config = dataclasses.replace(config.model, vocab_size=tokenizer.vocab_size)
    config = RunConfig(model=model_config, data=config.data,
                       train=config.train.with_default_stop(), corpus=config.corpus,
                       weft_version=__version__)
    model = RNNLanguageModel(config.model).to(device)
    task = StreamLMTask(model, tokenizer, train_ids, val_ids, config.train, device, precision)

    if not resume:
        save_tokenizer(tokenizer, out / TOKENIZER)
        save_generation_defaults(out, GenerationConfig())
    record = config.to_dict() | {"corpus_fingerprint": fingerprint,
                                 "train_tokens": len(train_ids),
                                 "val_tokens": len(val_ids)}
    atomic_write_json(out / CONFIG, record)
    if not quiet:
        params = sum(p.numel() for p in model.parameters())
        print(f"weft: {len(text):,} characters -> {len(ids):,} tokens "
              f"(vocabulary {tokenizer.vocab_size}); {params:,} parameters; "
              f"device {device}, precision {precision or 'fp32'}; "
              f"{task.steps_per_epoch()} steps per epoch")

    def save_best() -> None:
        save_weights(model, out / WEIGHTS)

    if resume and not (out / LAST_STATE).exists():
        raise WeftError(f"{out} has no {LAST_STATE}; it cannot be resumed")
    trainer = Trainer(task, config.train, out, device=device, precision=precision,
                      save_best=save_best, quiet=quiet)
    result = trainer.fit(resume=resume)
    if not (out / WEIGHTS).exists():
        save_best()  # no validation split: the last weights are the best we have
    if not quiet:
        print(f"weft: stopped ({result.stopped_because}) after {result.steps} steps, "
              f"{result.tokens:,} tokens, {result.elapsed:.0f}s; run saved in {out}")
    return LanguageModel(out, device=str(device)), result

