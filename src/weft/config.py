"""Typed, frozen configuration for language-model runs.

One dataclass per component; :class:`RunConfig` composes them and is written into every run
directory as ``config.json``. CLI flag names are the field names with dashes
(``hidden_size`` -> ``--hidden-size``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any

from weft.errors import WeftError
from weft.typed_settings import from_fields, json_shaped

CELLS = ("lstm", "gru", "rnn")
QUANTIZE = ("auto", "none", "int8")
LEVELS = ("char", "word", "bpe", "byte")
NORMAL_FORMS = ("NFC", "NFKC")
RECORD_MODES = ("lines",)
LONG_RECORDS = ("split", "truncate")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# What a seed may be: PyTorch's generators take any 64-bit value, signed or not.
SEED_RANGE = (-(2**63), 2**64 - 1)


def check_seed(seed: int | None) -> None:
    if seed is not None and not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise WeftError(f"--seed must be a 64-bit integer ({SEED_RANGE[0]} to {SEED_RANGE[1]})")


def check_finite(**values: float) -> None:
    """NaN and infinity pass every comparison a check makes (or fail it misleadingly)."""
    for name, value in values.items():
        if not math.isfinite(value):
            raise WeftError(f"--{name.replace('_', '-')} must be a finite number, not {value}")
ADAPTIVE_CHOICES = ("auto", "on", "off")


@dataclass(frozen=True)
class ModelConfig:
    """Embedding -> recurrent stack -> linear output."""

    cell: str = "lstm"
    vocab_size: int = 0  # filled in from the tokenizer
    embedding_dim: int = 64  # 0 feeds one-hot vectors instead of an embedding
    hidden_size: int = 320  # measured best at a 2-minute CPU budget (docs/benchmarks.md)
    layers: int = 1
    dropout: float = 0.0
    tie_weights: bool = False  # needs embedding_dim == hidden_size
    # Output layer: "auto" resolves to "on" (adaptive softmax) or "off" (full softmax) once the
    # vocabulary is known (weft.models.rnn_lm.resolve_output_layer); config.json records the
    # resolved value and the cluster boundaries (token ids, ascending; empty: full softmax).
    adaptive_softmax: str = "auto"
    adaptive_cutoffs: tuple[int, ...] = ()

    def validate(self) -> None:
        if self.cell not in CELLS:
            raise WeftError(f"unknown cell {self.cell!r}; choose one of: {', '.join(CELLS)}")
        if self.layers < 1 or self.hidden_size < 1 or self.embedding_dim < 0:
            raise WeftError("--layers and --hidden-size must be >= 1, --embedding-dim >= 0")
        if not 0.0 <= self.dropout < 1.0:
            raise WeftError("--dropout must be in [0, 1)")
        if self.tie_weights and self.embedding_dim != self.hidden_size:
            raise WeftError(
                "--tie-weights shares the embedding with the output layer, so it needs "
                f"--embedding-dim equal to --hidden-size (got {self.embedding_dim} and "
                f"{self.hidden_size})"
            )
        if self.adaptive_softmax not in ADAPTIVE_CHOICES:
            raise WeftError(f"--adaptive-softmax must be one of: {', '.join(ADAPTIVE_CHOICES)}")
        if self.tie_weights and (self.adaptive_softmax == "on" or self.adaptive_cutoffs):
            raise WeftError("--tie-weights shares the embedding with a full softmax output; "
                            "it does not combine with --adaptive-softmax on")
        cutoffs = self.adaptive_cutoffs
        if cutoffs and (sorted(set(cutoffs)) != list(cutoffs) or cutoffs[0] < 1 or (
                self.vocab_size and cutoffs[-1] >= self.vocab_size)):
            raise WeftError(f"adaptive_cutoffs must be ascending token counts between 1 and the "
                            f"vocabulary size, not {list(cutoffs)}")


@dataclass(frozen=True)
class DataConfig:
    """How text becomes a token stream (or, with ``records``/``csv_column``, padded records)."""

    level: str = "char"  # char, word, bpe or byte
    val_fraction: float = 0.1  # taken from the end of the text (or of the records)
    lowercase: bool = False
    normalize: str | None = None  # Unicode normal form: NFC or NFKC
    strip_gutenberg: bool = False  # cut Project Gutenberg header and footer
    max_vocab: int | None = None  # word level: vocabulary size including special tokens
    min_count: int = 1  # word level: rarer words become <unk>
    pretokenized: bool = False  # word level: split at whitespace only; the corpus's <unk> is ours
    bpe_vocab_size: int | None = None  # bpe level: vocabulary size (CLI --vocab-size)
    records: str | None = None  # "lines": one record per non-empty line
    csv_column: str | None = None  # one record per CSV row, from this column
    label_columns: tuple[str, ...] = ()  # CSV columns whose values become control tokens
    max_record_len: int = 512  # tokens per record row; longer records are split
    long_records: str = "split"  # or "truncate"
    memmap: bool = False  # char level: encode in chunks to tokens.npy, train memory-mapped

    @property
    def record_mode(self) -> bool:
        return self.records is not None or self.csv_column is not None

    def validate(self) -> None:
        if not 0.0 <= self.val_fraction < 0.5:
            raise WeftError("--val-fraction must be in [0, 0.5)")
        if self.level not in LEVELS:
            raise WeftError(f"--level must be one of: {', '.join(LEVELS)}")
        if self.normalize is not None and self.normalize not in NORMAL_FORMS:
            raise WeftError(f"--normalize must be one of: {', '.join(NORMAL_FORMS)}")
        if self.records is not None and self.records not in RECORD_MODES:
            raise WeftError(f"--records must be one of: {', '.join(RECORD_MODES)}")
        if self.records is not None and self.csv_column is not None:
            raise WeftError("use --records lines or --csv-column NAME, not both")
        if self.label_columns and self.csv_column is None:
            raise WeftError("--label-column reads CSV columns: it needs --csv-column")
        if self.csv_column in self.label_columns or len(set(self.label_columns)) < len(
                self.label_columns):
            raise WeftError("each --label-column must be named once, and not be the "
                            "--csv-column")
        if self.long_records not in LONG_RECORDS:
            raise WeftError(f"--long-records must be one of: {', '.join(LONG_RECORDS)}")
        if self.max_record_len < 1:
            raise WeftError("--max-record-len must be >= 1")
        if self.min_count < 1:
            raise WeftError("--min-count must be >= 1")
        if self.level != "word" and (self.max_vocab is not None or self.min_count != 1
                                     or self.pretokenized):
            raise WeftError("--max-vocab, --min-count and --pretokenized apply to --level word "
                            "only")
        if self.memmap and (self.level != "char" or self.record_mode or self.strip_gutenberg):
            raise WeftError("--memmap streams character-level text: it does not combine with "
                            "--level word/bpe, --records, --csv-column or --strip-gutenberg")
        if self.level != "bpe" and self.bpe_vocab_size is not None:
            raise WeftError("--vocab-size applies to --level bpe only")


# The bounds of the automatic evaluation interval, in steps (TrainConfig.with_eval_every).
AUTO_EVAL_EVERY = (20, 500)


@dataclass(frozen=True)
class TrainConfig:
    """Optimization, evaluation and stopping. Training stops at whichever limit comes first."""

    # Small batches and windows give more updates per second of CPU, which wins in short runs
    # (docs/benchmarks.md, "Choosing the defaults").
    batch_size: int = 32
    seq_len: int = 32
    lr: float = 5e-3
    weight_decay: float = 0.0
    warmup_steps: int = 50
    min_lr_ratio: float = 0.05  # cosine decays to lr * min_lr_ratio
    grad_clip: float = 1.0
    # Steps between validations (and checkpoints); None: about twice per epoch, within
    # AUTO_EVAL_EVERY (see with_eval_every and docs/benchmarks.md, "Fine-tuning").
    eval_every: int | None = None
    checkpoint_every: float = 600.0  # seconds without a save before the state is saved anyway
    patience: int = 10  # validations without improvement before early stopping; 0 disables
    # After this many validations without improvement, go back to the best weights and
    # multiply the learning rate by plateau_factor (0 disables). A short run on a small
    # corpus peaks early, while the cosine still holds the rate high (docs/benchmarks.md,
    # "Learning rate on a plateau").
    plateau_patience: int = 2
    plateau_factor: float = 0.25
    epochs: float | None = None
    max_steps: int | None = None
    time_budget: float | None = None  # seconds
    precision: str = "auto"
    device: str = "auto"
    seed: int = 1337
    threads: int | None = None  # CPU threads; None keeps PyTorch's default

    def validate(self) -> None:
        check_finite(lr=self.lr, weight_decay=self.weight_decay, grad_clip=self.grad_clip,
                     plateau_factor=self.plateau_factor, min_lr_ratio=self.min_lr_ratio)
        if self.batch_size < 1:
            raise WeftError("--batch-size must be >= 1")
        if self.seq_len < 1:
            raise WeftError("--seq-len must be >= 1")
        if self.lr <= 0:
            raise WeftError("--lr must be > 0")
        if self.weight_decay < 0:
            raise WeftError("--weight-decay must be >= 0")
        if self.warmup_steps < 0:
            raise WeftError("--warmup-steps must be >= 0 (0: none)")
        if not 0 <= self.min_lr_ratio <= 1:
            raise WeftError("--min-lr-ratio must be between 0 and 1")
        if self.grad_clip < 0:
            # A negative norm would flip every gradient: training would climb the loss.
            raise WeftError("--grad-clip must be >= 0 (0 disables clipping)")
        if self.patience < 0:
            raise WeftError("--patience must be >= 0 (0 disables)")
        check_seed(self.seed)
        if self.plateau_patience < 0:
            raise WeftError("--plateau-patience must be >= 0 (0 disables)")
        if not 0 < self.plateau_factor < 1:
            raise WeftError("--plateau-factor must be between 0 and 1")
        if self.eval_every is not None and self.eval_every < 1:
            raise WeftError("--eval-every must be >= 1")
        if self.checkpoint_every < 0:
            raise WeftError("--checkpoint-every must be a duration, or 0 to save only at "
                            "evaluations")
        if self.precision not in PRECISIONS:
            raise WeftError(f"--precision must be one of: {', '.join(PRECISIONS)}")
        for name in ("epochs", "max_steps", "time_budget"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise WeftError(f"--{name.replace('_', '-')} must be > 0")

    def with_eval_every(self, steps_per_epoch: int) -> TrainConfig:
        """Resolve an automatic ``eval_every`` for an epoch of ``steps_per_epoch`` steps.

        Small corpora are passed many times in a short run, and a fine-tuned model overfits
        them within a few passes: evaluating only every 500 steps missed its best weights.
        Twice per epoch finds them; the bounds keep evaluation a small part of a step's cost
        on tiny corpora and leave large ones as before.
        """
        if self.eval_every is not None:
            return self
        low, high = AUTO_EVAL_EVERY
        return dataclasses.replace(self, eval_every=min(high, max(low, steps_per_epoch // 2)))

    def with_default_stop(self) -> TrainConfig:
        """Ten epochs when no stopping limit is given at all."""
        if self.epochs is None and self.max_steps is None and self.time_budget is None:
            return dataclasses.replace(self, epochs=10.0)
        return self


@dataclass(frozen=True)
class GenerationConfig:
    """Sampling settings; a run stores its defaults in ``generation.json``."""

    max_new_tokens: int = 500
    temperature: float = 0.8  # 0 means greedy
    top_k: int = 0  # 0 disables
    top_p: float = 1.0  # 1 disables
    repetition_penalty: float = 1.0  # 1 disables
    num_return_sequences: int = 1
    stop: tuple[str, ...] = ()
    seed: int | None = None
    # "auto": int8 where it is faster on this CPU (weft.generation.plan); "none": float32,
    # the reference logits exactly; "int8": int8 weight products on CPU (logits ~1% off).
    quantize: str = "auto"
    compile: bool = False  # CPU: compiled chunks of 8 tokens (weft.generation.compiled)

    def validate(self) -> None:
        if self.quantize not in QUANTIZE:
            raise WeftError(f"--quantize must be one of: {', '.join(QUANTIZE)}")
        if not isinstance(self.compile, bool):
            raise WeftError("compile must be true or false")
        check_finite(temperature=self.temperature, top_p=self.top_p,
                     repetition_penalty=self.repetition_penalty)
        check_seed(self.seed)
        if "" in self.stop:
            raise WeftError("--stop must not be empty (it would end every text at once)")
        if self.max_new_tokens < 0:
            raise WeftError("--max-new-tokens must be >= 0")
        if self.temperature < 0:
            raise WeftError("--temperature must be >= 0 (0 means greedy)")
        if self.top_k < 0:
            raise WeftError("--top-k must be >= 0 (0 disables it)")
        if not 0.0 < self.top_p <= 1.0:
            raise WeftError("--top-p must be in (0, 1]")
        if self.repetition_penalty <= 0:
            raise WeftError("--repetition-penalty must be > 0 (1 disables it)")
        if self.num_return_sequences < 1:
            raise WeftError("--num-return-sequences must be >= 1")


# Defaults that depend on the tokenization level, chosen by held-out bits/char at equal training
# time (docs/benchmarks.md, "Word level"); the dataclasses' own defaults were measured for
# characters. A value the user gives always wins, and config.json records the resolved values.
# Kept as for characters, since nothing measured beat them beyond the noise at 2 minutes:
# --hidden-size 320 (512 was worse), --lr 5e-3 (1e-2 worse, 3e-3 the same), --batch-size 32
# (16 the same, 64 worse); --seq-len and --min-count were not measured. Dropout 0.3: better at
# 10 minutes, where a word model sees its corpus many times.
LEVEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "word": {"embedding_dim": 256, "dropout": 0.3, "max_vocab": 30_000},
    # BPE (2,000 subwords by default) gains from the same wider embedding and dropout: 5.2%
    # fewer held-out bits/char at 2 minutes on the tuning novels (docs/benchmarks.md, "BPE: the
    # word level's embedding and dropout").
    "bpe": {"embedding_dim": 256, "dropout": 0.3},
}


def with_level_defaults(options: dict[str, Any]) -> dict[str, Any]:
    """The options given (None: not given) over the defaults of their ``level``."""
    given = {k: v for k, v in options.items() if v is not None}
    return {**LEVEL_DEFAULTS.get(given.get("level", DataConfig.level), {}), **given}


@dataclass(frozen=True)
class RunConfig:
    """Everything needed to rebuild a run: written as ``config.json``."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    corpus: tuple[str, ...] = ()
    kind: str = "language-model"
    weft_version: str = ""
    # Where the starting weights came from (--init-from): name, SHA-256, tokens added.
    init_from: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """As ``config.json`` holds it (lists for tuples)."""
        return json_shaped(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        return cls(
            model=from_fields(ModelConfig, data.get("model", {})),
            data=from_fields(DataConfig, data.get("data", {})),
            train=from_fields(TrainConfig, data.get("train", {})),
            corpus=tuple(data.get("corpus", ())),
            kind=data.get("kind", "language-model"),
            weft_version=data.get("weft_version", ""),
            init_from=data["init_from"] if isinstance(data.get("init_from"), dict) else None,
        )


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|h|m|s)?")  # "ms" before "m"


def parse_duration(text: str | float | int, *, allow_zero: bool = False) -> float:
    """Seconds from ``90``, ``90s``, ``500ms``, ``10m``, ``1h30m`` or ``1.5h``.

    A zero length (``0``, ``0m``...) is refused unless ``allow_zero`` (where 0 means "off").
    """
    total = float(text) if isinstance(text, (int, float)) else _sum_duration(text)
    if total < 0 or (total == 0 and not allow_zero):
        raise WeftError(f"cannot read duration {text!r}; use e.g. 90s, 10m, 1h30m")
    return total


def parse_durations(options: dict[str, Any]) -> dict[str, Any]:
    """Training options with ``time_budget`` and ``checkpoint_every`` in seconds, as given on
    the command line or to the API (``90s``, ``10m``...); ``checkpoint_every`` 0 or ``off``
    turns timed saves off."""
    parsed = dict(options)
    if parsed.get("time_budget") is not None:
        parsed["time_budget"] = parse_duration(parsed["time_budget"])
    every = parsed.get("checkpoint_every")
    if every is not None:
        off = isinstance(every, str) and every.strip().lower() == "off"
        parsed["checkpoint_every"] = 0.0 if off else parse_duration(every, allow_zero=True)
    return parsed


def _sum_duration(text: str) -> float:
    cleaned = text.strip().lower().replace(" ", "")
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, None: 1.0}
    pos, total = 0, 0.0
    while pos < len(cleaned):
        match = _DURATION.match(cleaned, pos)
        if not match or match.end() == pos:
            raise WeftError(f"cannot read duration {text!r}; use e.g. 90s, 10m, 1h30m")
        total += float(match.group(1)) * units[match.group(2)]
        pos = match.end()
    if not cleaned:
        raise WeftError(f"cannot read duration {text!r}; use e.g. 90s, 10m, 1h30m")
    return total
