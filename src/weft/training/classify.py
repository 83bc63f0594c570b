"""A labelled language model as a classifier: pick the label value that makes a record likeliest.

A record is trained as ``<bos> <column=value>... text <eos>``, so the model gives the joint
probability of a label value and the text. Scoring a record once per value of one column (the
other columns keep the record's own values) and taking the highest is Bayes' rule with the
label frequencies the model learned. Beside each accuracy stands the majority-class baseline:
always answering the value most frequent in the training data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from weft.data.labels import LabelSet
from weft.data.records import RecordBatches
from weft.models.rnn_lm import RNNLanguageModel
from weft.tokenizers import Tokenizer
from weft.training.records_task import record_nats


@dataclass(frozen=True)
class LabelAccuracy:
    """How well one label column is predicted from the text."""

    column: str
    accuracy: float  # share of records whose likeliest value is their own
    baseline: float  # share of records whose value is the training data's most frequent
    majority: str  # that most frequent value
    records: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def label_accuracies(
    model: RNNLanguageModel,
    tokenizer: Tokenizer,
    label_set: LabelSet,
    batches: RecordBatches,
    rows: Sequence[Sequence[str]],
    precision: torch.dtype | None = None,
) -> list[LabelAccuracy]:
    """Accuracy per label column; ``batches`` hold the records under their own labels (label
    tokens right after ``<bos>``) and ``rows`` their label values."""
    label_at = batches.offsets[:-1] + 1  # the first label token of every record
    results = []
    for k, column in enumerate(label_set.columns):
        scores = np.empty((len(column.values), batches.num_records))
        for v, value in enumerate(column.values):
            flat = batches.flat.copy()
            flat[label_at + k] = label_set.token_id(tokenizer, column.name, value)
            trial = RecordBatches(flat, batches.offsets, pad_id=batches.pad_id,
                                  batch_size=batches.batch_size, max_len=batches.max_len,
                                  long_records=batches.long_records, shuffle=False)
            scores[v] = -record_nats(model, trial, precision)
        predicted = scores.argmax(axis=0)
        truth = np.array([column.values.index(row[k]) for row in rows])
        majority = column.values.index(column.majority)
        results.append(LabelAccuracy(column.name, float((predicted == truth).mean()),
                                     float((truth == majority).mean()), column.majority,
                                     len(rows)))
    return results
