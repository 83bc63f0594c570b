"""Turning sentences into padded batches, vectorized.

A dataset is encoded once: word ids, tag ids and an index into a table of the dataset's
distinct word forms, whose characters are stored as one padded matrix. A batch then only
pads ids and picks the rows of the forms it uses (``torch.unique``), so the character LSTM
runs once per distinct form in the batch. Character-LM features, cached per sentence, are
padded into the batch the same way (or, for a fine-tuned LM, the LM's inputs are passed on).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from weft.tagging.lm_features import LMInput
from weft.tagging.model import Batch
from weft.tagging.vocab import UNK_ID, TaggerVocab, case_id


@dataclass
class EncodedData:
    """Sentences as id tensors, ready to batch."""

    words: list[torch.Tensor]  # per sentence: word ids
    forms: list[torch.Tensor]  # per sentence: index into form_chars
    tags: list[torch.Tensor] | None  # per sentence: tag ids (None when untagged)
    form_chars: torch.Tensor  # (F, L) char ids of every distinct form
    form_lengths: torch.Tensor  # (F,)
    form_cases: torch.Tensor  # (F,) capitalization class of each form
    # Character-LM features (lm_features.py): what the LMs read, per sentence, and once a
    # frozen LM has run, the cache of its features (float16, (T, lm_dim) per sentence).
    lm_inputs: list[LMInput] | None = None
    lm_features: list[torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.words)

    @property
    def lengths(self) -> list[int]:
        return [len(w) for w in self.words]


def encode(
    vocab: TaggerVocab,
    sentences: Sequence[Sequence[str]],
    tags: Sequence[Sequence[str]] | None = None,
) -> EncodedData:
    """Encode word lists (and their tags, which must be known to the vocabulary)."""
    form_index: dict[str, int] = {}
    words, forms = [], []
    for sentence in sentences:
        words.append(torch.tensor([vocab.word_id(w) for w in sentence], dtype=torch.long))
        forms.append(torch.tensor(
            [form_index.setdefault(w, len(form_index)) for w in sentence], dtype=torch.long
        ))
    tag_ids = None
    if tags is not None:
        tag_ids = [torch.tensor([vocab.tags.id(t) for t in s], dtype=torch.long) for s in tags]
    chars, lengths = vocab.char_matrix(list(form_index))
    cases = torch.tensor([case_id(f) for f in form_index], dtype=torch.long)
    return EncodedData(words, forms, tag_ids, chars, lengths, cases)


def make_batch(
    data: EncodedData,
    indices: Sequence[int],
    word_counts: torch.Tensor | None = None,
    word_dropout: float = 0.0,
    generator: torch.Generator | None = None,
) -> Batch:
    """Pad the sentences ``indices`` of ``data`` into a :class:`Batch`.

    With ``word_dropout > 0`` each word becomes unknown with probability
    ``alpha / (alpha + count)``: rare training words are often dropped, so the model learns an
    unknown-word embedding used with the character features it still sees.
    """
    lengths = torch.tensor([len(data.words[i]) for i in indices], dtype=torch.long)
    longest = int(lengths.max())
    words = torch.zeros(len(indices), longest, dtype=torch.long)
    forms = torch.zeros(len(indices), longest, dtype=torch.long)
    cases = torch.zeros(len(indices), longest, dtype=torch.long)
    tags = torch.zeros(len(indices), longest, dtype=torch.long) if data.tags is not None else None
    for row, i in enumerate(indices):
        n = len(data.words[i])
        words[row, :n] = data.words[i]
        forms[row, :n] = data.forms[i]
        cases[row, :n] = data.form_cases[data.forms[i]]
        if tags is not None and data.tags is not None:
            tags[row, :n] = data.tags[i]
    if word_dropout > 0 and word_counts is not None:
        counts = word_counts[words].float()
        p_unk = word_dropout / (word_dropout + counts)
        drop = torch.rand(words.shape, generator=generator) < p_unk
        words = torch.where(drop & (words > UNK_ID), torch.full_like(words, UNK_ID), words)
    # padding rows point at the first form; their outputs are masked out downstream
    unique, inverse = torch.unique(forms, return_inverse=True)
    char_lengths = data.form_lengths[unique]
    chars = data.form_chars[unique, : int(char_lengths.max())]
    lm, lm_inputs = None, None
    if data.lm_features is not None:
        rows = [data.lm_features[i] for i in indices]
        lm = torch.zeros(len(indices), longest, rows[0].size(1))
        for row, features in enumerate(rows):
            lm[row, : len(features)] = features
    elif data.lm_inputs is not None:
        lm_inputs = [data.lm_inputs[i] for i in indices]
    return Batch(words, inverse, chars, char_lengths, lengths, tags, form_ids=unique,
                 cases=cases, lm=lm, lm_inputs=lm_inputs)


def length_batches(
    lengths: Sequence[int], batch_size: int, generator: torch.Generator | None = None
) -> list[list[int]]:
    """Batches of similar-length sentences (little padding); shuffled when a generator is given.

    Sentences are sorted by length with a random tie-break, cut into batches of
    ``batch_size`` and the batch order shuffled, so each epoch differs but stays deterministic.
    """
    n = len(lengths)
    if generator is not None:
        noise = torch.rand(n, generator=generator)
        order = sorted(range(n), key=lambda i: (lengths[i], float(noise[i])))
    else:
        order = sorted(range(n), key=lambda i: lengths[i])
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if generator is not None:
        perm = torch.randperm(len(batches), generator=generator).tolist()
        batches = [batches[i] for i in perm]
    return batches
