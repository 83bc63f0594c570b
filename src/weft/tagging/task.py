"""The tagger as a training task for weft's generic trainer.

Batches are length buckets reshuffled each epoch from ``seed + epoch``; word dropout draws from
a generator seeded by ``(seed, epoch, index)``, so a resumed run sees exactly the batches it
would have seen. The selection metric is ``dev_accuracy`` (higher is better), or for a span
tagger ``dev_f1``, the exact-match span F1: with most tokens ``O``, token accuracy barely moves
when entities are found.

A frozen character LM's features (lm_features.py) are computed on the first step or evaluation,
inside the trainer's clock (they are the LM's share of the training time), and cached for the
run's life; a fine-tuned LM runs in every batch, and again over the dev set at each evaluation.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import torch

from weft.tagging.batching import EncodedData, length_batches, make_batch
from weft.tagging.lm_features import CharLMFeatures
from weft.tagging.model import BiLSTMTagger
from weft.tagging.spans import span_metrics
from weft.tagging.vocab import TaggerVocab
from weft.training.task import TaskDefaults

log = logging.getLogger("weft")

# The tagger's training defaults where they differ from a language model's (TrainConfig's).
TAGGER_TRAIN_DEFAULTS: dict[str, Any] = {
    "batch_size": 16, "lr": 2e-3, "warmup_steps": 100, "eval_every": 500, "patience": 10,
    "grad_clip": 5.0,
}


class TaggingTask(TaskDefaults):
    model: torch.nn.Module  # the trainer's contract; also kept as .tagger

    def __init__(
        self,
        model: BiLSTMTagger,
        vocab: TaggerVocab,
        train: EncodedData,
        dev: EncodedData,
        batch_size: int,
        seed: int,
        device: torch.device,
        eval_batch_size: int = 256,
        spans: bool = False,
        char_lm: CharLMFeatures | None = None,
    ) -> None:
        self.model = model
        self.tagger = model
        self.vocab = vocab
        self.train = train
        self.dev = dev
        self.batch_size = batch_size
        self.seed = seed
        self.device = device
        self.eval_batch_size = eval_batch_size
        self.spans = spans
        self.char_lm = char_lm  # frozen: kept here; fine-tuned: also the tagger's submodule
        self.word_counts = torch.tensor(vocab.word_counts, dtype=torch.long)
        self.batches: list[list[int]] = []
        self._epoch = -1

    def steps_per_epoch(self) -> int:
        return -(-len(self.train) // self.batch_size)

    def start_epoch(self, epoch: int) -> None:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        self.batches = length_batches(self.train.lengths, self.batch_size, generator)
        self._epoch = epoch

    def cache_lm_features(self) -> None:
        """Run a frozen LM once over the training and dev sentences (a no-op after that, and
        for a fine-tuned LM, whose features change with every step)."""
        if self.char_lm is None or self.tagger.char_lm is not None:
            return
        for data in (self.train, self.dev):
            if data.lm_features is None and data.lm_inputs is not None:
                log.info("computing character-LM features of %d sentences", len(data))
                self.char_lm.eval()
                data.lm_features = self.char_lm.compute(data.lm_inputs)
                data.lm_inputs = None

    def train_loss(self, epoch: int, index: int) -> tuple[torch.Tensor, int]:
        self.cache_lm_features()
        if epoch != self._epoch:
            self.start_epoch(epoch)
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) * 100_003 + index)
        batch = make_batch(
            self.train, self.batches[index], self.word_counts,
            self.tagger.config.word_dropout, generator,
        ).to(self.device)
        tokens = int(batch.lengths.sum())
        # mean over tokens, so the learning rate does not depend on sentence lengths
        # Through self.model (the trainer's, possibly a DDP wrapper), never the bare tagger.
        return self.model(batch) / tokens, tokens

    def predict_ids(self, data: EncodedData) -> list[list[int]]:
        """Best tag ids of every sentence of ``data`` (the model's mode is left to the caller)."""
        self.cache_lm_features()
        if data.lm_features is None and data.lm_inputs is not None and self.char_lm is not None:
            # a fine-tuned LM: the dev features of its current weights (the caller set eval)
            data = dataclasses.replace(data, lm_features=self.char_lm.compute(data.lm_inputs))
        out: list[list[int]] = [[] for _ in range(len(data))]
        table = self.tagger.encode_forms(data.form_chars, data.form_lengths)
        for indices in length_batches(data.lengths, self.eval_batch_size):
            batch = make_batch(data, indices).to(self.device)
            tags = self.tagger.decode(batch, table).cpu()
            for row, i in enumerate(indices):
                out[i] = tags[row, : int(batch.lengths[row])].tolist()
        return out

    def evaluate(self) -> dict[str, float]:
        assert self.dev.tags is not None
        correct = total = 0
        predicted = self.predict_ids(self.dev)
        for pred, gold in zip(predicted, self.dev.tags, strict=True):
            correct += int((torch.tensor(pred) == gold).sum())
            total += len(gold)
        metrics = {"dev_accuracy": correct / max(total, 1)}
        if self.spans:
            gold_names = [tag_names(self.vocab, g.tolist()) for g in self.dev.tags]
            metrics["dev_f1"] = span_metrics(
                gold_names, [tag_names(self.vocab, p) for p in predicted])["f1"]
        return metrics

    def sample(self) -> str | None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}  # batches and word dropout are recomputed from the seed, epoch and index

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def tag_names(vocab: TaggerVocab, ids: Sequence[int]) -> list[str]:
    return [vocab.tags.itos[i] for i in ids]
