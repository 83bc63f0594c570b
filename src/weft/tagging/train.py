"""Training a tagger: read the data, build vocabularies and model, run weft's trainer.

The model with the best dev accuracy (a span tagger: span F1) is saved as
``model.safetensors`` whenever it improves, so a run directory is usable (``weft tag eval``/
``predict``) while training continues.
Without ``--dev``, the last ``dev_fraction`` of the training sentences (in file order) is
held out for model selection. With ``--char-lm`` the run records the LMs (name or absolute
path, SHA-256 of their weights) and, fine-tuned, keeps copies of their settings and tokenizers
(lm_features.py).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import weft
from weft import interrupts
from weft.config import TrainConfig
from weft.device import resolve_device, set_threads, training_precision
from weft.errors import WeftError
from weft.io import atomic_write_json, read_json
from weft.runs import (
    CONFIG,
    FINGERPRINT,
    TAGGER,
    VOCAB,
    WEIGHTS,
    check_same_data,
    fingerprint,
    load_weights,
    read_run_config,
    save_weights,
)
from weft.tagging.batching import encode
from weft.tagging.lm_features import source_name
from weft.tagging.lm_setup import copy_lm_files, open_tagger_lms, resolve_tagger_lms
from weft.tagging.model import BiLSTMTagger, TaggerModelConfig
from weft.tagging.readers import ReadOptions, TaggedSentence, read_tagged
from weft.tagging.spans import SCHEMES, convert, detect_scheme, split_tag
from weft.tagging.task import TAGGER_TRAIN_DEFAULTS, TaggingTask
from weft.tagging.vocab import TaggerVocab
from weft.training import distributed
from weft.training.checkpoint import check_resumable
from weft.training.safeguards import check_free_space, check_output_dir, exclusive
from weft.training.stopping import Selection
from weft.training.trainer import Trainer, TrainResult
from weft.typed_settings import from_fields, from_saved

log = logging.getLogger("weft")


@dataclass(frozen=True)
class TaggerDataConfig:
    """Where the sentences come from; saved in ``config.json`` under ``"data"``."""

    train: str = ""
    dev: str | None = None
    dev_fraction: float = 0.1  # used only without --dev
    format: str = "auto"
    column: str = "upos"
    tagset_map: str | None = None
    keep_traces: bool = True
    sentences: str | None = None  # fraction slice of the training file, e.g. ":0.9"
    lowercase: bool = True  # word embeddings keyed by lowercased words

    def read_options(self, sentences: str | None = None) -> ReadOptions:
        return ReadOptions(self.format, self.column, self.tagset_map, self.keep_traces, sentences)

    def validate(self) -> None:
        if not 0.0 < self.dev_fraction < 1.0:
            raise WeftError("--dev-fraction must be in (0, 1)")


def tagger_train_config(**options: Any) -> TrainConfig:
    """A :class:`TrainConfig` with the tagger's defaults under the given options."""
    values = {**TAGGER_TRAIN_DEFAULTS, **{k: v for k, v in options.items() if v is not None}}
    config = from_fields(TrainConfig, values)
    config.validate()
    return config


def load_data(
    data: TaggerDataConfig,
) -> tuple[list[TaggedSentence], list[TaggedSentence]]:
    """Training and dev sentences as the data settings say."""
    train = read_tagged(data.train, data.read_options(data.sentences))
    if data.dev:
        dev = read_tagged(data.dev, data.read_options())
    else:
        cut = len(train) - max(1, round(data.dev_fraction * len(train)))
        if cut < 1:
            raise WeftError(
                f"{data.train} has only {len(train)} sentence(s): too few to hold out a dev "
                "set; pass --dev"
            )
        train, dev = train[:cut], train[cut:]
    return train, dev


def training_scheme(model: TaggerModelConfig, sentences: list[TaggedSentence]) -> str | None:
    """The span scheme a run trains in: ``--scheme``, or with ``auto`` the data's own."""
    tags = sorted({t for s in sentences for t in s.tags})
    found = detect_scheme(tags)
    if model.scheme in SCHEMES and found is None:
        odd = [t for t in tags if t != "O" and split_tag(t)[0] not in ("B", "I", "E", "S")]
        raise WeftError(f"--scheme {model.scheme} needs O and B-/I-/E-/S- tags; the training "
                        f"data has {', '.join(odd[:5]) or 'no span tags'}")
    return model.span_scheme(tags)


def to_scheme(sentences: list[TaggedSentence], scheme: str) -> list[TaggedSentence]:
    """The sentences with their spans' tags written in ``scheme``."""
    return [TaggedSentence(s.words, tuple(convert(s.tags, scheme))) for s in sentences]


def data_fingerprint(train: list[TaggedSentence], dev: list[TaggedSentence]) -> str:
    """A digest of the sentences and tags trained and selected on."""
    return fingerprint(json.dumps([[[s.words, s.tags] for s in train],
                                   [[s.words, s.tags] for s in dev]]))


_LM_OPTIONS = ("char_lm", "char_lm_backward", "char_lm_finetune")


def same_char_lms(run_dir: Path, changes: dict[str, Any]) -> dict[str, Any]:
    """``changes`` for a resume without the character-LM options, which may only repeat the
    run's own: resuming with another LM (or none) is a one-line error."""
    saved = read_run_config(run_dir).get("model", {})
    rest = dict(changes)
    for key in _LM_OPTIONS:
        value = rest.pop(key, None)
        if value is None:
            continue
        recorded = saved.get(key)
        given = value if isinstance(value, bool) else source_name(value)
        if given != (recorded or (False if isinstance(value, bool) else None)):
            flag = "--" + key.replace("_", "-")
            raise WeftError(f"this run was trained with {flag} {recorded or 'off'}; --resume "
                            f"continues it with the same (leave {flag} out)")
    return rest


def fit_tagger(
    out: str | Path,
    data: TaggerDataConfig | None = None,
    model: TaggerModelConfig | None = None,
    train: TrainConfig | None = None,
    quiet: bool = False,
    resume: bool = False,
) -> TrainResult:
    """Train (or, with ``resume``, continue training) a tagger into run directory ``out``.

    ``weft.api.train_tagger`` and ``resume_tagger`` are the front door to this. The language
    model's safeguards hold here too (training/safeguards.py): the output directory is checked
    before any work, held by one process, and must have room for the saved states; a resume
    sees the same sentences (runs.py's policy) and takes its settings from the run, except
    ``train``, which the caller has already checked against that policy.
    """
    if distributed.from_environment().enabled:
        raise WeftError("tagger training runs in one process; start `weft tag train` without "
                        "torchrun")
    run_dir = Path(out)
    check_output_dir(run_dir, resume, "weft tag train --resume")
    with exclusive(run_dir):
        return _train_tagger(run_dir, data, model, train, quiet, resume)


def _train_tagger(
    run_dir: Path,
    data: TaggerDataConfig | None,
    model: TaggerModelConfig | None,
    train: TrainConfig | None,
    quiet: bool,
    resume: bool,
) -> TrainResult:
    saved = read_run_config(run_dir) if resume else {}
    if resume:
        path = run_dir / CONFIG
        data = from_saved(TaggerDataConfig, saved.get("data"), path)
        model = from_saved(TaggerModelConfig, saved.get("model"), path)
        train = train or from_saved(TrainConfig, saved.get("train"), path)
    elif data is None:
        raise ValueError("a new tagger run needs its data settings")
    data.validate()
    train_config = (train or tagger_train_config()).with_default_stop()
    train_config.validate()
    set_threads(train_config.threads)
    torch.manual_seed(train_config.seed)

    train_sents, dev_sents = load_data(data)
    interrupts.check("reading the sentences")  # a signal's stop request (weft/interrupts.py)
    sentences_fingerprint = data_fingerprint(train_sents, dev_sents)
    model = model or TaggerModelConfig()
    if resume:
        char_lm = open_tagger_lms(model, run_dir, "this run started")
    else:
        char_lm, model = resolve_tagger_lms(model)
    scheme = training_scheme(model, train_sents)
    if scheme is not None:  # every sentence in the one scheme, and repaired (spans.convert)
        train_sents, dev_sents = (to_scheme(sents, scheme) for sents in (train_sents, dev_sents))
    if resume:
        check_same_data(saved, sentences_fingerprint, "training or dev data")
        check_resumable(run_dir)
        vocab = TaggerVocab.from_dict(read_json(run_dir / VOCAB))
    else:
        vocab = TaggerVocab.build(((s.words, s.tags) for s in train_sents), data.lowercase)
    unknown_tags = sorted({t for s in dev_sents for t in s.tags} - set(vocab.tags.itos))
    if unknown_tags:
        log.warning("dev sentences with tags never seen in training are left out of model "
                    "selection: %s", ", ".join(unknown_tags))
        dev_sents = [s for s in dev_sents if not set(s.tags) & set(unknown_tags)] or dev_sents[:0]
        if not dev_sents:
            raise WeftError("every dev sentence has a tag never seen in training")
    model_config = dataclasses.replace(
        model, num_words=len(vocab.words), num_chars=len(vocab.chars), num_tags=len(vocab.tags),
        scheme=scheme or "none",
    )
    network = BiLSTMTagger(model_config, char_lm if model_config.char_lm_finetune else None)
    network.use_tags(vocab.tags.itos)
    device = resolve_device(train_config.device)
    precision = training_precision(train_config.precision, device, resume=resume)
    network.to(device)
    if char_lm is not None:
        char_lm.to(device)
    check_free_space(run_dir, network, resume)

    train_data = encode(vocab, [s.words for s in train_sents], [s.tags for s in train_sents])
    dev_data = encode(vocab, [s.words for s in dev_sents], [s.tags for s in dev_sents])
    if char_lm is not None:  # what the LMs read; a frozen LM's features are cached by the task
        train_data.lm_inputs = char_lm.encode([s.words for s in train_sents])
        dev_data.lm_inputs = char_lm.encode([s.words for s in dev_sents])
    interrupts.check("building the model")  # the last boundary before anything is written
    task = TaggingTask(network, vocab, train_data, dev_data, train_config.batch_size,
                       train_config.seed, device, spans=scheme is not None, char_lm=char_lm)

    if not resume:
        atomic_write_json(run_dir / VOCAB, vocab.to_dict())
        if model_config.char_lm_finetune:
            copy_lm_files(model_config, run_dir)
    # Rewritten on resume too, like a language model's: it records the limits now in force.
    atomic_write_json(run_dir / CONFIG, {
        "kind": TAGGER,
        "weft_version": weft.__version__,
        "model": dataclasses.asdict(model_config),
        "data": dataclasses.asdict(data),
        "train": dataclasses.asdict(train_config),
        FINGERPRINT: sentences_fingerprint,
        "sizes": {
            "train_sentences": len(train_sents),
            "train_tokens": sum(len(s) for s in train_sents),
            "dev_sentences": len(dev_sents),
            "dev_tokens": sum(len(s) for s in dev_sents),
            "words": len(vocab.words), "chars": len(vocab.chars), "tags": len(vocab.tags),
        },
    })
    if not quiet:
        log.info("training on %d sentences (%d tokens), selecting on %d dev sentences; "
                 "%d tags, %d words, %d characters; %s parameters",
                 len(train_sents), sum(len(s) for s in train_sents), len(dev_sents),
                 len(vocab.tags), len(vocab.words), len(vocab.chars),
                 f"{sum(p.numel() for p in network.parameters()):,}")
    trainer = Trainer(
        task, train_config, run_dir, device=device, precision=precision,
        selection=Selection("dev_f1" if scheme else "dev_accuracy", "max"),
        save_best=lambda: save_weights(network, run_dir / WEIGHTS),
        restore_best=lambda: load_weights(network, run_dir / WEIGHTS), quiet=quiet,
        resume_command="weft tag train --resume",
    )
    return trainer.fit(resume=resume)
