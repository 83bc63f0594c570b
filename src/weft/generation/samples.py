"""Generated texts with what a user needs to trust them: their labels and their copy meter.

:func:`generate_samples` wraps :func:`weft.generation.generate`. It decides each sequence's
labels (the ones asked for; the others drawn with the training data's frequencies, repeatably
for a seed) and hands their token ids to the generation loop. With the run's copy index it
measures each text's longest span copied verbatim from the corpus, and with ``max_copy`` it
generates again (same labels, a new seed) each text that copies ``max_copy`` characters or more,
up to :data:`MAX_COPY_TRIES` tries in all; a text still over the limit then is cut before the
copy completes, and says so. A streamed text cannot be generated again once sent: it is
bounded as it is written (:mod:`weft.generation.copy_guard`: a token that would complete a copy
is drawn again; only if every draw would does the text end, where the last try's cut would).
The CLI, the Python API and the HTTP API all report from the :class:`Sample` objects it
returns.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from weft.config import GenerationConfig
from weft.data.corpus_index import UNAVAILABLE, Copy, CorpusIndex
from weft.data.labels import Labels, LabelSet
from weft.errors import WeftError
from weft.generation.copy_guard import CopyGuard
from weft.generation.generate import STOP, Completion, OnText, generate
from weft.models.rnn_lm import RNNLanguageModel
from weft.tokenizers import Tokenizer

log = logging.getLogger("weft")

MAX_COPY_TRIES = 10  # generations per text under --max-copy, the first included


@dataclass
class Sample:
    """One generated text (without its prompt), the labels it was generated under, and its
    longest span copied from the corpus (None when not measured or no index)."""

    text: Completion
    labels: dict[str, str] = field(default_factory=dict)
    longest_copy: Copy | None = None
    tries: int = 1  # generations it took (more than 1 only under max_copy)
    cut: bool = False  # cut before a copy of max_copy: after the last try, or as streamed

    def to_dict(self) -> dict[str, Any]:
        """The text, why it ended, how many tokens it took, its labels and copy meter."""
        return {"text": str(self.text), "finish_reason": self.text.finish_reason,
                "tokens": self.text.tokens, "labels": self.labels,
                "longest_copy": self.longest_copy.to_dict() if self.longest_copy else None,
                "tries": self.tries, "cut": self.cut}


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
    index: CorpusIndex | None = None,
    copy_meter: bool = False,
    max_copy: int | None = None,
    on_text: OnText | None = None,
    should_stop: Callable[[], bool] | None = None,
    threads: int | None = None,
) -> list[Sample]:
    """``config.num_return_sequences`` samples of ``prompt`` under ``labels``; ``copy_meter``
    measures their longest copies (needs ``index``), ``max_copy`` bounds them: streamed
    (``on_text``) texts as they are written, the others by generating them again."""
    check_max_copy(max_copy, index)
    config, assignments, prefixes = label_plan(label_set, tokenizer, labels, config)
    seed = config.seed or 0
    guards = (stream_guards(index, max_copy, len(assignments)) if on_text is not None
              else None)

    def run(rows: list[int], tries: int) -> list[Completion]:
        return generate(model, tokenizer, prompt,
                        dataclasses.replace(config, num_return_sequences=len(rows),
                                            seed=retry_seed(seed, tries)),
                        on_text=on_text, should_stop=should_stop, threads=threads,
                        prefixes=None if prefixes is None else [prefixes[i] for i in rows],
                        guards=guards if tries == 1 else None)

    samples = [Sample(text, assignment) for text, assignment
               in zip(run(list(range(len(assignments))), 1), assignments, strict=True)]
    if index is not None and (copy_meter or max_copy is not None):
        for sample in samples:
            sample.longest_copy = index.longest_copy(sample.text)
    if guards is not None:
        note_guarded(samples, guards)
    elif index is not None and max_copy is not None:
        bound_copies(samples, index, max_copy, run)
    return samples


def check_max_copy(max_copy: int | None, index: CorpusIndex | None) -> None:
    if max_copy is None:
        return
    if max_copy < 1:
        raise WeftError("--max-copy must be >= 1 (characters)")
    if index is None:
        raise WeftError(f"{UNAVAILABLE}, so --max-copy cannot be enforced")


def stream_guards(index: CorpusIndex | None, max_copy: int | None,
                  rows: int) -> list[CopyGuard] | None:
    """One :class:`CopyGuard` per streamed row under ``max_copy`` (None without it)."""
    if index is None or max_copy is None:
        return None
    return [CopyGuard(index, max_copy) for _ in range(rows)]


def note_guarded(samples: list[Sample], guards: list[CopyGuard]) -> None:
    """Mark (and log) the streamed samples their guards cut before a copy."""
    for i, (sample, guard) in enumerate(zip(samples, guards, strict=True)):
        sample.cut = guard.cut
        if guard.cut:
            log.warning("text %d reached a copy of %d characters from the corpus as it was "
                        "streamed, whatever was drawn: it ends before the copy", i + 1,
                        guard.limit)


def retry_seed(seed: int, tries: int) -> int:
    """The seed of a text's ``tries``-th generation; the first is the seed asked for."""
    return (seed + 7919 * (tries - 1)) % 2**63 if tries > 1 else seed


def bound_copies(samples: list[Sample], index: CorpusIndex, limit: int,
                 again: Callable[[list[int], int], list[Completion]]) -> None:
    """Generate again (``again(rows, tries)``) the samples that copy ``limit`` characters or
    more, up to :data:`MAX_COPY_TRIES` in all; cut those still over, before the copy."""
    over = [i for i, s in enumerate(samples) if _copied(s) >= limit]
    for tries in range(2, MAX_COPY_TRIES + 1):
        if not over:
            return
        for i, text in zip(over, again(over, tries), strict=True):
            samples[i].text, samples[i].tries = text, tries
            samples[i].longest_copy = index.longest_copy(text)
        over = [i for i in over if _copied(samples[i]) >= limit]
    for i in over:
        sample = samples[i]
        end = index.first_copy_end(sample.text, limit)
        assert end is not None
        text = sample.text
        # It ended at the limit, as a streamed text that reaches it does ("stop").
        sample.text = Completion(text[:end - 1], STOP, text.tokens)
        sample.cut = True
        sample.longest_copy = index.longest_copy(sample.text)
        log.warning("text %d still copied %d characters from the corpus after %d tries: cut "
                    "to %d characters, before the copy", i + 1, limit, MAX_COPY_TRIES, end - 1)


def _copied(sample: Sample) -> int:
    return sample.longest_copy.chars if sample.longest_copy is not None else 0
