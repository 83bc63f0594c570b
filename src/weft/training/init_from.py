"""Starting a new run from a trained model (``--init-from RUN``): fine-tuning.

The new run takes the base run's architecture, tokenizer and weights, and trains them on its own
corpus with a fresh optimizer and schedule, in its own run directory (resumable like any run).

* Settings that would change a weight's shape (cell, layers, sizes, tying, tokenizer level and
  size) come from the base; giving a different value is refused, naming the flag. The rest
  (dropout, learning rate, batch, window, limits, cleaning, records) are the new run's own.
* Vocabulary growth: characters or words of the new corpus that the base tokenizer lacks, and
  the ``<bos>``/``<eos>``/``<pad>`` that record training needs, are appended after every known
  id (nothing the base knew is renumbered), with new embedding and output rows initialised to
  the mean of the existing ones: a new token starts as an average token, not as noise that the
  first steps must undo. A record starts and ends where a line would: ``<bos>`` takes the
  newline's input row and ``<eos>`` its output row, when the base has a newline token. With an
  adaptive softmax the new tokens join its last (rarest) cluster, whose rows grow the same way
  (the mean only).
* Unless the user says otherwise, fine-tuning uses :data:`FINETUNE_DEFAULTS`, measured for short
  runs on small corpora (docs/benchmarks.md, "Fine-tuning").
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from weft.builtin import is_builtin, resolve_run
from weft.config import RunConfig
from weft.errors import WeftError
from weft.io import sha256_file
from weft.runs import (
    LANGUAGE_MODEL,
    TOKENIZER,
    WEIGHTS,
    load_weight_tensors,
    read_run_config,
    run_config,
    run_kind,
)
from weft.tokenizers import (
    BPETokenizer,
    ByteTokenizer,
    CharTokenizer,
    Tokenizer,
    WordTokenizer,
    load_tokenizer,
)
from weft.tokenizers.char import characters_of
from weft.tokenizers.word import count_words

log = logging.getLogger("weft")

# Measured: the best held-out bits/char after a 2-minute fine-tune of builtin:english on 2 CPU
# cores, over small corpora not used to pick them (docs/benchmarks.md, "Fine-tuning").
FINETUNE_DEFAULTS: dict[str, Any] = {"lr": 5e-4, "warmup_steps": 20, "dropout": 0.1}

# Option -> (section of config.json, field): what the base run fixes.
SHAPE_OPTIONS: dict[str, tuple[str, str]] = {
    "cell": ("model", "cell"),
    "layers": ("model", "layers"),
    "hidden_size": ("model", "hidden_size"),
    "embedding_dim": ("model", "embedding_dim"),
    "tie_weights": ("model", "tie_weights"),
    "adaptive_softmax": ("model", "adaptive_softmax"),
    "adaptive_cutoffs": ("model", "adaptive_cutoffs"),
    "level": ("data", "level"),
    "max_vocab": ("data", "max_vocab"),
    "pretokenized": ("data", "pretokenized"),
    "bpe_vocab_size": ("data", "bpe_vocab_size"),
}


@dataclass(frozen=True)
class BaseRun:
    """A trained language model to start from."""

    name: str  # as the user gave it: a path or builtin:NAME
    run_dir: Path
    config: RunConfig
    tokenizer: Tokenizer
    sha256: str  # of its model.safetensors

    def provenance(self, added: int) -> dict[str, Any]:
        """What ``config.json`` records about where the weights came from."""
        name = self.name if is_builtin(self.name) else str(self.run_dir.resolve())
        return {"name": name, "sha256": self.sha256, "vocab_size": self.tokenizer.vocab_size,
                "added_tokens": added}


def load_base(name: str | os.PathLike[str]) -> BaseRun:
    """Read the base run (its weights are loaded later, into the new model)."""
    run_dir = resolve_run(name)
    raw = read_run_config(run_dir)
    if run_kind(raw) != LANGUAGE_MODEL:
        raise WeftError(f"{name} is a {raw.get('kind')} run; --init-from takes a language model")
    weights = run_dir / WEIGHTS
    if not weights.is_file():
        raise WeftError(f"{name} has no {WEIGHTS} yet: train it first")
    config = run_config(raw, run_dir)
    tokenizer = load_tokenizer(run_dir / TOKENIZER)
    if tokenizer.vocab_size != config.model.vocab_size:
        raise WeftError(f"{name} is damaged: its tokenizer has {tokenizer.vocab_size} tokens but "
                        f"its model {config.model.vocab_size}")
    return BaseRun(str(name), run_dir, config, tokenizer, sha256_file(weights))


def settings_from_base(base: BaseRun, options: dict[str, Any]) -> dict[str, Any]:
    """The new run's options: the base's shape, fine-tuning defaults, then the user's options.

    ``options`` holds only what the user gave; a shape option that differs from the base is
    refused.
    """
    given = {k: v for k, v in options.items() if v is not None}
    saved = base.config.to_dict()
    shape = {key: saved[section][field] for key, (section, field) in SHAPE_OPTIONS.items()}
    # A run from before the adaptive softmax says "auto": its weights are a full softmax's.
    shape["adaptive_softmax"] = "on" if base.config.model.adaptive_cutoffs else "off"
    conflicts = [f"--{key.replace('_', '-')} {given[key]} (the base has {shape[key]})"
                 for key in SHAPE_OPTIONS if key in given and _plain(given[key]) != shape[key]]
    if conflicts:
        raise WeftError(f"--init-from {base.name} fixes the model's shape; drop "
                        + ", ".join(conflicts))
    if given.get("memmap"):
        raise WeftError("--memmap does not combine with --init-from yet; drop --memmap")
    base_dropout = {"dropout": base.config.model.dropout}
    return {**shape, **base_dropout, **FINETUNE_DEFAULTS, **given}


def _plain(value: Any) -> Any:
    """A setting as config.json holds it (a list for a tuple)."""
    return list(value) if isinstance(value, tuple) else value


def grow_tokenizer(
    base: Tokenizer, texts: Sequence[str], *, specials: Sequence[str] = (), min_count: int = 1
) -> tuple[Tokenizer, list[str]]:
    """The base tokenizer with what ``texts`` need appended, and the entries added."""
    grown: Tokenizer
    if isinstance(base, CharTokenizer):
        grown = base.with_added(characters_of(texts), specials)
        added = grown.added[len(base.added):]
    elif isinstance(base, WordTokenizer):
        counts = count_words(texts, base.pretokenized)
        ranked = sorted((w for w, c in counts.items() if c >= min_count),
                        key=lambda w: (-counts[w], w))
        grown = base.with_added(ranked, specials)
        added = grown.added[len(base.added):]
    elif isinstance(base, (ByteTokenizer, BPETokenizer)):
        grown = base.with_specials(specials)  # bytes spell any text: only specials are new
        added = [s for s in specials if s not in base._special_ids]
    else:
        raise WeftError(f"cannot fine-tune a {base.type_name} tokenizer")
    return grown, list(added)


def describe_growth(added: list[str], limit: int = 8) -> str | None:
    """One line for the user: how many tokens were added, with a few examples."""
    if not added:
        return None
    shown = ", ".join(repr(t) for t in added[:limit])
    more = f" and {len(added) - limit} more" if len(added) > limit else ""
    return f"added {len(added)} token(s) the base model lacks: {shown}{more}"


def load_base_weights(model: torch.nn.Module, base: BaseRun,
                      tokenizer: Tokenizer | None = None) -> None:
    """Copy the base weights into ``model``, whose vocabulary (``tokenizer``'s) may be larger.

    Rows of the embedding and output layer beyond the base vocabulary get the mean of the
    base's rows, but a new ``<bos>`` and ``<eos>`` get the newline's (see the module's
    docstring); every other tensor must match in shape.
    """
    # Checks the SHA-256 in its metadata; a bf16-stored base comes back as float32, so that new
    # rows are means of float32 rows.
    tensors = load_weight_tensors(base.run_dir / WEIGHTS)
    old_vocab = base.tokenizer.vocab_size
    own = model.state_dict()
    cutoffs = base.config.model.adaptive_cutoffs
    # An adaptive softmax scores the appended tokens in its last cluster, which grows.
    last_cluster = f"adaptive.tail.{len(cutoffs) - 1}.1.weight" if cutoffs else None
    for key, value in tensors.items():
        if key not in own:
            raise WeftError(f"{base.name}: weight {key} does not fit this model")
        target = own[key]
        if key == last_cluster:
            target.copy_(_grown(value, target.shape, value.shape[0]))
        elif key in ("embedding.weight", "head.weight", "head.bias") or (
                key.startswith("rnn.weight_ih_l0") and value.shape[-1] == old_vocab
                and target.shape[-1] != old_vocab):
            target.copy_(_grown(value, target.shape, old_vocab))
        elif value.shape == target.shape:
            target.copy_(value)
        else:
            raise WeftError(f"{base.name}: weight {key} has shape {tuple(value.shape)}, the new "
                            f"model needs {tuple(target.shape)}")
    tied = getattr(getattr(model, "config", None), "tie_weights", False)
    missing = set(own) - set(tensors) - ({"head.weight"} if tied else set())
    if missing:
        raise WeftError(f"{base.name} lacks weights {sorted(missing)}: is it damaged?")
    if tokenizer is not None and not cutoffs:
        _records_start_like_lines(own, base.tokenizer, tokenizer)
    model.load_state_dict(own)


def _records_start_like_lines(own: dict[str, torch.Tensor], base: Tokenizer,
                              tokenizer: Tokenizer) -> None:
    """A new ``<bos>`` gets the newline's input row and a new ``<eos>`` its output row, so
    that from the first step a record starts as a line does and its end is predicted where
    a line break would be (a stream-trained base has seen lines, never records)."""
    newline = base.encode("\n").tolist()
    if len(newline) != 1 or newline[0] == base.unk_id:
        return
    line, old_vocab = newline[0], base.vocab_size
    bos, eos = tokenizer.bos_id, tokenizer.eos_id
    if bos is not None and bos >= old_vocab:
        if "embedding.weight" in own:
            own["embedding.weight"][bos] = own["embedding.weight"][line]
        else:  # one-hot input: the first layer's columns are the input rows
            own["rnn.weight_ih_l0"][:, bos] = own["rnn.weight_ih_l0"][:, line]
    if eos is not None and eos >= old_vocab and "head.weight" in own:
        own["head.weight"][eos] = own["head.weight"][line]
        own["head.bias"][eos] = own["head.bias"][line]


def _grown(value: torch.Tensor, shape: torch.Size, old_vocab: int) -> torch.Tensor:
    """``value`` with vocabulary rows (or, for a one-hot input layer, columns) appended."""
    axis = 0 if value.shape[0] == old_vocab else value.dim() - 1
    extra = shape[axis] - old_vocab
    if extra < 0:
        raise WeftError("the new vocabulary is smaller than the base's")
    mean = value.float().mean(dim=axis, keepdim=True).to(value.dtype)
    repeats = [1] * value.dim()
    repeats[axis] = extra
    return torch.cat([value, mean.repeat(*repeats)], dim=axis)
