"""Generated texts with what a user needs to trust them: their labels (and copy meter).

:func:`generate_samples` wraps :func:`weft.generation.generate`: it decides each sequence's
labels (the ones asked for; the others drawn with the training data's frequencies, repeatably
for a seed) and hands their token ids to the generation loop, and returns :class:`Sample`
objects that the CLI, the Python API and the HTTP API report from.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from weft.config import GenerationConfig
from weft.data.labels import Labels, LabelSet
from weft.generation.generate import Completion, OnText, generate
from weft.models.rnn_lm import RNNLanguageModel
from weft.tokenizers import Tokenizer


@dataclass
class Sample:
    """One generated text (without its prompt) and the labels it was generated under."""

    text: Completion
    labels: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The text, why it ended and how many tokens it took, and its labels."""
        return {"text": str(self.text), "finish_reason": self.text.finish_reason,
                "tokens": self.text.tokens, "labels": self.labels}


def with_seed(config: GenerationConfig) -> GenerationConfig:
    """A fixed seed, so that labels and tokens are drawn from one recorded seed."""
    if config.seed is not None:
        return config
    return dataclasses.replace(config, seed=int.from_bytes(os.urandom(4), "little"))


def label_plan(
    label_set: LabelSet, tokenizer: Tokenizer, labels: Labels | None, config: GenerationConfig
) -> tuple[GenerationConfig, list[dict[str, str]], list[list[int]] | None]:
    """What each of ``config.num_return_sequences`` rows is generated under: the config with
    its seed fixed, every row's labels (``labels`` asked for, the rest drawn from that seed
    with the data's frequencies) and their token ids (None without label columns)."""
    chosen = dict(labels or {})
    label_set.check(chosen)
    config = with_seed(config)
    n = config.num_return_sequences
    if not label_set.columns:
        return config, [{} for _ in range(n)], None
    assignments = label_set.sample(chosen, n, config.seed or 0)
    return config, assignments, [label_set.ids(tokenizer, a) for a in assignments]


def generate_samples(
    model: RNNLanguageModel,
    tokenizer: Tokenizer,
    label_set: LabelSet,
    prompt: str,
    config: GenerationConfig,
    *,
    labels: Labels | None = None,
    on_text: OnText | None = None,
    should_stop: Callable[[], bool] | None = None,
    threads: int | None = None,
) -> list[Sample]:
    """``config.num_return_sequences`` samples of ``prompt`` under ``labels``."""
    config, assignments, prefixes = label_plan(label_set, tokenizer, labels, config)
    texts = generate(model, tokenizer, prompt, config, on_text=on_text,
                     should_stop=should_stop, threads=threads, prefixes=prefixes)
    return [Sample(text, assignment) for text, assignment in zip(texts, assignments,
                                                                   strict=True)]
