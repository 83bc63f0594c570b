"""The tagger network: word embedding + character BiLSTM -> sentence BiLSTM -> tag scores (+ CRF).

A batch is a padded ``(B, T)`` word-id matrix with a mask. Characters are encoded once per
*distinct* word form of the batch (a ``(U, L)`` char matrix) and gathered back to ``(B, T)``
with an index, so frequent words cost one char-LSTM pass per batch. Both LSTMs run on packed
sequences, so padding never changes a sentence's scores. With ``--char-lm``, each word's
character-LM features (lm_features.py) are joined to its vector: cached ones come in the batch,
a fine-tuned LM is a submodule run on the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from weft.errors import WeftError
from weft.tagging.crf import CRF
from weft.tagging.lm_features import CharLMFeatures, LMInput
from weft.tagging.spans import SCHEMES, allowed_transitions, detect_scheme
from weft.tagging.vocab import CASES

SCHEME_CHOICES = ("auto", "none", *SCHEMES)


@dataclass(frozen=True)
class TaggerModelConfig:
    """Sizes and regularization; saved in ``config.json`` under ``"model"``."""

    num_words: int = 0  # filled in from the vocabulary
    num_chars: int = 0
    num_tags: int = 0
    word_dim: int = 100
    char_dim: int = 50
    char_hidden: int = 50  # per direction
    case_dim: int = 8  # capitalization class embedding; 0 disables
    hidden: int = 128  # sentence LSTM, per direction; 2x128 trains EWT in 15 min on a CPU
    layers: int = 2
    dropout: float = 0.25
    word_dropout: float = 0.25  # alpha in p(unk) = alpha / (alpha + count)
    crf: bool = False
    # auto: bio or bioes when the training tags are a span tag set (spans.py), else none.
    # A run saves the resolved scheme; a saved "auto" (older runs) is resolved from its tags.
    scheme: str = "auto"
    # Character-LM features (lm_features.py): the forward and backward LM runs as recorded
    # (builtin:NAME or an absolute path), the SHA-256 of their weights when training started,
    # whether the LMs train with the tagger, and the feature size (filled in from the LMs).
    char_lm: str | None = None
    char_lm_sha256: str | None = None
    char_lm_backward: str | None = None
    char_lm_backward_sha256: str | None = None
    char_lm_finetune: bool = False
    lm_dim: int = 0

    def validate(self) -> None:
        sizes = (self.word_dim, self.char_dim, self.char_hidden, self.hidden, self.layers)
        if min(sizes) < 1:
            raise WeftError(
                "--word-dim, --char-dim, --char-hidden, --hidden and --layers must be >= 1"
            )
        if self.case_dim < 0:
            raise WeftError("--case-dim must be >= 0 (0 disables it)")
        if not 0.0 <= self.dropout < 1.0:
            raise WeftError("--dropout must be in [0, 1)")
        if self.word_dropout < 0:
            raise WeftError("--word-dropout must be >= 0 (0 disables it)")
        if self.scheme not in SCHEME_CHOICES:
            raise WeftError(f"--scheme must be one of {', '.join(SCHEME_CHOICES)}, "
                            f"not {self.scheme!r}")
        if self.char_lm is None and (self.char_lm_backward or self.char_lm_finetune):
            raise WeftError("--char-lm-backward and --char-lm-finetune need --char-lm (the "
                            "forward LM)")

    def span_scheme(self, tags: Sequence[str]) -> str | None:
        """``bio`` or ``bioes`` for a span tagger of these tags, None for another tag set."""
        if self.scheme == "auto":
            return detect_scheme(tags)
        return None if self.scheme == "none" else self.scheme


@dataclass
class Batch:
    """Tensors for one padded batch of sentences."""

    words: torch.Tensor  # (B, T) word ids, 0 on padding
    forms: torch.Tensor  # (B, T) index into ``chars``' rows
    chars: torch.Tensor  # (U, L) char ids of the distinct forms
    char_lengths: torch.Tensor  # (U,)
    lengths: torch.Tensor  # (B,) sentence lengths, on the CPU
    tags: torch.Tensor | None = None  # (B, T) gold tag ids, 0 on padding
    form_ids: torch.Tensor | None = None  # (U,) dataset-level ids of the rows of ``chars``
    cases: torch.Tensor | None = None  # (B, T) capitalization classes, 0 on padding
    lm: torch.Tensor | None = None  # (B, T, lm_dim) cached character-LM features
    lm_inputs: list[LMInput] | None = None  # what a fine-tuned LM reads, per sentence

    @property
    def mask(self) -> torch.Tensor:
        positions = torch.arange(self.words.size(1), device=self.words.device)
        return positions.unsqueeze(0) < self.lengths.to(self.words.device).unsqueeze(1)

    def to(self, device: torch.device) -> Batch:
        return Batch(
            self.words.to(device), self.forms.to(device), self.chars.to(device),
            self.char_lengths, self.lengths,
            None if self.tags is None else self.tags.to(device),
            None if self.form_ids is None else self.form_ids.to(device),
            None if self.cases is None else self.cases.to(device),
            None if self.lm is None else self.lm.to(device), self.lm_inputs,
        )


class BiLSTMTagger(nn.Module):
    def __init__(self, config: TaggerModelConfig, char_lm: CharLMFeatures | None = None
                 ) -> None:
        """``char_lm``: the LMs of a fine-tuned tagger (their weights are then part of the
        tagger's); a frozen LM's features come in the batches instead."""
        super().__init__()
        config.validate()
        self.config = config
        self.char_lm = char_lm
        self.word_embedding = nn.Embedding(config.num_words, config.word_dim, padding_idx=0)
        self.char_embedding = nn.Embedding(config.num_chars, config.char_dim, padding_idx=0)
        self.char_lstm = nn.LSTM(
            config.char_dim, config.char_hidden, batch_first=True, bidirectional=True
        )
        self.case_embedding = (
            nn.Embedding(CASES, config.case_dim, padding_idx=0) if config.case_dim else None
        )
        self.lstm = nn.LSTM(
            config.word_dim + 2 * config.char_hidden + config.case_dim + config.lm_dim,
            config.hidden,
            num_layers=config.layers,
            batch_first=True,
            bidirectional=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(config.dropout)
        self.output = nn.Linear(2 * config.hidden, config.num_tags)
        self.crf = CRF(config.num_tags) if config.crf else None

    def use_tags(self, tags: Sequence[str]) -> str | None:
        """Name the tags (the vocabulary's, in id order) and return the span scheme, if any:
        a span tagger's CRF then never scores or decodes an invalid transition."""
        if len(tags) != self.config.num_tags:
            raise ValueError(f"{len(tags)} tag names for a model of {self.config.num_tags}")
        scheme = self.config.span_scheme(tags)
        if scheme is not None and self.crf is not None:
            self.crf.constrain(*allowed_transitions(tags, scheme))
        return scheme

    def encode_chars(self, chars: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(U, 2*char_hidden)``: final forward and backward states of each form's chars."""
        packed = pack_padded_sequence(
            self.char_embedding(chars), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        _, (h_n, _) = self.char_lstm(packed)
        return torch.cat([h_n[0], h_n[1]], dim=1)

    @torch.no_grad()
    def encode_forms(
        self, chars: torch.Tensor, lengths: torch.Tensor, chunk: int = 4096
    ) -> torch.Tensor:
        """Char features of every form of a dataset at once, for inference: a dataset has far
        fewer distinct forms than the batches together, so each is encoded only once."""
        device = self.char_embedding.weight.device
        parts = [
            self.encode_chars(chars[i : i + chunk].to(device), lengths[i : i + chunk])
            for i in range(0, chars.size(0), chunk)
        ]
        return torch.cat(parts)

    def emissions(self, batch: Batch, form_table: torch.Tensor | None = None) -> torch.Tensor:
        """Per-token tag scores ``(B, T, num_tags)``; padding positions hold zeros.

        ``form_table`` holds precomputed char features by dataset form id (see
        :meth:`encode_forms`); then the batch's ``form_ids`` index it instead of running the
        char LSTM.
        """
        if form_table is not None and batch.form_ids is not None:
            char_features = form_table[batch.form_ids][batch.forms]
        else:
            char_features = self.encode_chars(batch.chars, batch.char_lengths)[batch.forms]
        parts = [self.word_embedding(batch.words), char_features]
        if self.case_embedding is not None:
            if batch.cases is None:
                raise ValueError("this model needs the batch's capitalization classes")
            parts.append(self.case_embedding(batch.cases))
        if self.config.lm_dim:
            parts.append(self.lm_features(batch).to(parts[0].dtype))
        x = torch.cat(parts, dim=2)
        x = self.dropout(x)
        packed = pack_padded_sequence(x, batch.lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        out, _ = self.lstm(packed)
        h, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
        return self.output(self.dropout(h))

    def lm_features(self, batch: Batch) -> torch.Tensor:
        """``(B, T, lm_dim)``: the batch's cached features, or a fine-tuned LM's run now."""
        if batch.lm is not None:
            return batch.lm
        if self.char_lm is None or batch.lm_inputs is None:
            raise ValueError("this model needs the batch's character-LM features")
        return self.char_lm.features(batch.lm_inputs, batch.words.size(1))

    def forward(self, batch: Batch) -> torch.Tensor:
        """The training loss (see :meth:`loss`): called as ``model(batch)`` so that a wrapper
        such as DistributedDataParallel sees it."""
        return self.loss(batch)

    def loss(self, batch: Batch) -> torch.Tensor:
        """Summed loss over the batch's tokens (CRF: summed sentence negative log-likelihood)."""
        if batch.tags is None:
            raise ValueError("loss needs a batch with gold tags")
        scores = self.emissions(batch)
        mask = batch.mask
        if self.crf is not None:
            return self.crf.neg_log_likelihood(scores.float(), batch.tags, mask)
        return nn.functional.cross_entropy(scores[mask].float(), batch.tags[mask], reduction="sum")

    def predict(
        self, batch: Batch, form_table: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Best tags ``(B, T)`` and per-tag probabilities ``(B, T, K)`` (CRF: marginals)."""
        scores = self.emissions(batch, form_table).float()
        mask = batch.mask
        if self.crf is not None:
            return self.crf.decode(scores, mask), self.crf.marginals(scores, mask)
        probs = scores.softmax(dim=2) * mask.unsqueeze(2)
        return scores.argmax(dim=2) * mask.long(), probs

    def decode(self, batch: Batch, form_table: torch.Tensor | None = None) -> torch.Tensor:
        """Best tags only (cheaper than :meth:`predict` with a CRF)."""
        scores = self.emissions(batch, form_table).float()
        if self.crf is not None:
            return self.crf.decode(scores, batch.mask)
        return scores.argmax(dim=2) * batch.mask.long()
