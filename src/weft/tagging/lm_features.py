"""Character-language-model features for the tagger (flair's contextual string embeddings).

A sentence is read by a byte- or character-level weft language model as the text its tokens
make, joined by single spaces, between a start marker (a line break: a sentence starts a line)
and an end marker (a space). Each word gets the forward LM's top-layer output at the position
*after* its last character (the separator following it, so the state has seen the whole
word), and a backward LM's at the position *before* its first character. A backward LM is an
ordinary weft LM run trained on text reversed by characters (``text[::-1]``): it reads the
sentence reversed, where "before the first character" becomes "after the reversed word", so
both directions follow one rule and only the reading order differs (Akbik et al. 2018).

Positions are found by encoding each piece (marker, word, separator) on its own and adding up
the lengths: byte and character tokenizers map every character on its own, so this equals
encoding the whole text, and a multi-byte UTF-8 character counts as its bytes in a byte LM and
as one token in a character LM. Each word is cleaned as the LM's corpus was (case, Unicode form)
on its own, so cleaning that changes a word's length cannot shift the other words.

Frozen (the default) features are computed once per sentence under ``torch.inference_mode`` in
batches of sentences of similar length and cached as float16; ``--char-lm-finetune`` makes the
LMs part of the tagger, run on every batch with gradients.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from weft.config import DataConfig
from weft.errors import WeftError
from weft.io import sha256_file
from weft.models.rnn_lm import RNNLanguageModel
from weft.runs import (
    CONFIG,
    TAGGER,
    TOKENIZER,
    WEIGHTS,
    load_weights,
    read_run_config,
    run_config,
    run_kind,
)
from weft.tokenizers import Tokenizer, load_tokenizer

START = "\n"
SEPARATOR = " "
END = " "
LEVELS = ("byte", "char")  # tokenizers that give every character its own tokens
# Inference batches: at most this many sentences and padded LM tokens. Smaller batches keep
# the LSTM's gate activations in the CPU's cache: on EWT dev (1 thread, builtin:english) 64
# sentences / 8,192 tokens read 11,200 characters/s, 128 / 32,768 only 7,700.
BATCH_TOKENS = 8192
MAX_BATCH_SENTENCES = 64
# Inference reads a long sentence in windows of this many tokens, carrying the state, so a
# 30,000-word input does not hold every position's output at once.
WINDOW = 4096

# A fine-tuned tagger's copies of its LMs' config.json and tokenizer.json (forward, backward):
# its own weights hold the LMs', so it needs neither the LM runs nor their checksums.
LM_COPIES = ("char-lm-forward", "char-lm-backward")

# One sentence for one direction: the LM's token ids and, per word, the index in them whose
# output is the word's feature.
DirectionInput = tuple[torch.Tensor, torch.Tensor]
# One sentence for every direction of a tagger's LMs (forward, then backward if any).
LMInput = tuple[DirectionInput, ...]


def source_name(given: str | os.PathLike[str]) -> str:
    """How a tagger run records an LM: ``builtin:NAME`` as given, a directory as an absolute
    path (so the run resumes and tags from any folder)."""
    from weft.builtin import is_builtin

    return str(given) if is_builtin(given) else os.path.abspath(given)


@dataclass(frozen=True)
class LMFiles:
    """What a language-model run directory gives a tagger."""

    module: RNNLanguageModel
    tokenizer: Tokenizer
    data: DataConfig
    sha256: str  # of its model.safetensors


def open_lm(source: str, flag: str, backward: bool, weights: bool = True) -> LMFiles:
    """The LM run named by ``flag`` (``--char-lm`` or ``--char-lm-backward``): a one-line
    error when it is missing, a tagger, or not byte/char level. ``weights=False`` builds the
    network untrained (a fine-tuned tagger's copy of its LM: the weights are the tagger's)."""
    from weft.builtin import resolve_run

    path = resolve_run(source)
    if not (path / CONFIG).is_file():
        raise WeftError(f"{flag} {source} is not a weft language model run directory (no "
                        f"{CONFIG}); give a byte- or character-level LM run or builtin:english")
    raw = read_run_config(path)
    if run_kind(raw) == TAGGER:
        raise WeftError(f"{flag} {source} is a tagger run; it needs a byte- or "
                        "character-level language model run")
    config = run_config(raw, path)
    tokenizer = load_tokenizer(path / TOKENIZER)
    if tokenizer.type_name not in LEVELS:
        raise WeftError(f"{flag} {source} is a {tokenizer.type_name}-level language model; "
                        "word features need a byte- or character-level one")
    reversed_text = raw.get("reversed")  # a backward LM run may say so in its config.json
    if reversed_text is not None and bool(reversed_text) != backward:
        other = "--char-lm-backward" if reversed_text else "--char-lm"
        raise WeftError(f"{flag} {source} was trained on "
                        f"{'reversed' if reversed_text else 'forward'} text: give it as {other}")
    module = RNNLanguageModel(config.model)
    digest = ""
    if weights:
        if not (path / WEIGHTS).is_file():
            raise WeftError(f"{flag} {source} has no {WEIGHTS} yet: train it first")
        load_weights(module, path / WEIGHTS)
        digest = sha256_file(path / WEIGHTS)
    return LMFiles(module, tokenizer, config.data, digest)


class DirectionLM(nn.Module):
    """One language model reading sentences in one direction."""

    def __init__(self, files: LMFiles, backward: bool) -> None:
        super().__init__()
        # Only the embedding and the recurrent layers make features: the output layer is
        # dropped, so a fine-tuned tagger neither trains nor saves it (a tied one would share
        # the embedding's tensor, which safetensors refuses to write twice).
        files.module.head = None
        files.module.adaptive = None
        self.lm = files.module
        self.tokenizer = files.tokenizer
        self.data = files.data
        self.backward = backward

    @property
    def dim(self) -> int:
        return self.lm.config.hidden_size

    def _ids(self, text: str) -> np.ndarray:
        return np.asarray(self.tokenizer.encode(text), dtype=np.int64)

    def encode(self, words: Sequence[str]) -> DirectionInput:
        """The LM's ids for a sentence and the index of each word's feature in them."""
        from weft.data.prepare import clean_like_training

        pieces = [clean_like_training(w, self.data) for w in words]
        if self.backward:
            pieces = [p[::-1] for p in reversed(pieces)]
        parts = [self._ids(START)]
        length = len(parts[0])
        positions = []
        for i, piece in enumerate(pieces):
            ids = self._ids(piece)
            parts.append(ids)
            length += len(ids)
            positions.append(length)  # the separator (or end marker) after the piece
            parts.append(self._ids(END if i == len(pieces) - 1 else SEPARATOR))
            length += len(parts[-1])
        if self.backward:
            positions.reverse()  # the k-th reversed piece is word n-1-k
        return (torch.from_numpy(np.concatenate(parts)),
                torch.tensor(positions, dtype=torch.long))

    def outputs(self, ids: torch.Tensor) -> torch.Tensor:
        """Top-layer outputs ``(B, N, H)`` for right-padded ``ids``: the LM reads left to right,
        so padding after a sentence never changes its positions."""
        out, _ = self.lm.rnn(self.lm.embed(ids))
        return out

    def windowed(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """``(B, T, H)`` outputs at ``positions`` (inference), reading ``ids`` in windows."""
        feats = torch.zeros(*positions.shape, self.dim, device=ids.device)
        state = None
        for start in range(0, ids.size(1), WINDOW):
            out, state = self.lm.rnn(self.lm.embed(ids[:, start : start + WINDOW]), state)
            inside = (positions >= start) & (positions < start + out.size(1))
            local = (positions - start).clamp(0, out.size(1) - 1)
            taken = out.gather(1, local.unsqueeze(2).expand(-1, -1, out.size(2)))
            feats = torch.where(inside.unsqueeze(2), taken, feats)
        return feats


def _pad(rows: Sequence[torch.Tensor], width: int | None = None) -> torch.Tensor:
    out = torch.zeros(len(rows), width or max(len(r) for r in rows), dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


class CharLMFeatures(nn.Module):
    """A tagger's character LMs: a forward one and optionally a backward one."""

    def __init__(self, forward: DirectionLM, backward: DirectionLM | None = None) -> None:
        super().__init__()
        self.forward_lm = forward
        self.backward_lm = backward

    @property
    def directions(self) -> list[DirectionLM]:
        return [d for d in (self.forward_lm, self.backward_lm) if d is not None]

    @property
    def dim(self) -> int:
        return sum(d.dim for d in self.directions)

    def encode(self, sentences: Sequence[Sequence[str]]) -> list[LMInput]:
        return [tuple(d.encode(words) for d in self.directions) for words in sentences]

    def features(self, inputs: Sequence[LMInput], width: int) -> torch.Tensor:
        """``(B, width, dim)`` features of a batch, differentiable (fine-tuning); padding
        words read position 0 and are masked out downstream."""
        device = self.forward_lm.lm.device
        parts = []
        for k, direction in enumerate(self.directions):
            ids = _pad([inp[k][0] for inp in inputs]).to(device)
            positions = _pad([inp[k][1] for inp in inputs], width).to(device)
            out = direction.outputs(ids)
            parts.append(out.gather(1, positions.unsqueeze(2).expand(-1, -1, out.size(2))))
        return torch.cat(parts, dim=2)

    @torch.inference_mode()
    def compute(self, inputs: Sequence[LMInput]) -> list[torch.Tensor]:
        """Each sentence's ``(T, dim)`` float16 features, on the CPU: the cache of a frozen
        LM, and what tagging new text uses. The caller sets eval mode."""
        device = self.forward_lm.lm.device
        out: list[torch.Tensor] = [torch.empty(0)] * len(inputs)
        order = sorted(range(len(inputs)), key=lambda i: len(inputs[i][0][0]))
        start = 0
        while start < len(order):
            stop = start + 1
            while (stop < len(order) and stop - start < MAX_BATCH_SENTENCES
                   and (stop - start + 1) * len(inputs[order[stop]][0][0]) <= BATCH_TOKENS):
                stop += 1
            rows = order[start:stop]
            longest = max(len(inputs[i][0][0]) for i in rows)
            width = max(len(inputs[i][0][1]) for i in rows)
            parts = []
            for k, direction in enumerate(self.directions):
                ids = _pad([inputs[i][k][0] for i in rows], longest).to(device)
                positions = _pad([inputs[i][k][1] for i in rows], width).to(device)
                parts.append(direction.windowed(ids, positions))
            feats = torch.cat(parts, dim=2).to("cpu", torch.float16)
            for row, i in enumerate(rows):
                out[i] = feats[row, : len(inputs[i][0][1])].clone()
            start = stop
        return out


def build_features(sources: Sequence[tuple[str, str | None]], run_dir: Path | None = None,
                   ) -> tuple[CharLMFeatures, list[str]]:
    """The LMs named by ``(flag, source)`` pairs, forward first (a None source: no backward
    LM), and the SHA-256 of each one's weights. ``run_dir``: build them from a fine-tuned
    tagger's copies of their files there, untrained (the tagger's weights hold theirs)."""
    directions: list[DirectionLM] = []
    digests: list[str] = []
    for k, (flag, source) in enumerate(sources):
        if source is None:
            continue
        if run_dir is not None:
            files = open_lm(str(run_dir / LM_COPIES[k]), flag, k == 1, weights=False)
        else:
            files = open_lm(source, flag, k == 1)
        directions.append(DirectionLM(files, backward=k == 1))
        digests.append(files.sha256)
    return CharLMFeatures(*directions), digests

