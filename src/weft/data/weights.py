"""Corpus weights: ``weft train chats.txt:3 books/:0.5`` reads some sources more than others.

A source written ``SOURCE:WEIGHT`` (a file, a folder, a glob or a ``builtin:`` corpus, then a
positive number) is read ``WEIGHT`` times per pass over the training data: ``:3`` three times,
``:0.5`` the first half of it, ``:2.5`` twice and then its first half. A folder's or a glob's
weight is each of its files' weight. Sources without one weigh 1.

Weights shape the *training* part only. Validation is the end of the corpus as written, each
source once, so that figures compare across mixes and no repeated text is scored as held out:
the training part of each source is what validation leaves of it, repeated by its weight.
The sources keep their order, and a stream of them is read in ``--batch-size`` columns spread
over the whole stream, so each step sees every region of the mix in proportion to its share.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from weft.data.corpus import expand_sources
from weft.errors import WeftError

# What may follow the last colon as a weight: digits, a point, an exponent, a sign, or the
# words Python reads as numbers. Anything else (``builtin:pydoc-topics``) is part of the name.
_WEIGHT = re.compile(r"^(?P<name>.+):(?P<weight>[-+]?(?:[0-9.]+(?:[eE][-+]?[0-9]+)?|inf|nan))$",
                     re.IGNORECASE)


@dataclass(frozen=True)
class WeightedSource:
    """One file (or ``builtin:`` corpus) to read, and how many times a pass reads it."""

    name: str
    weight: float = 1.0


def split_weight(source: str) -> tuple[str, float]:
    """``"chats.txt:3"`` -> ``("chats.txt", 3.0)``; a source without a weight weighs 1.

    A path that exists as written is a path, even with a colon and digits at its end.
    """
    match = _WEIGHT.match(source)
    if match is None or Path(source).exists():
        return source, 1.0
    try:
        weight = float(match["weight"])
    except ValueError:
        raise WeftError(f"{source}: the weight after ':' must be a number, "
                        f"like {match['name']}:2 or {match['name']}:0.5") from None
    if not math.isfinite(weight) or weight <= 0:
        raise WeftError(f"{source}: a corpus weight must be a positive number (2 reads it "
                        f"twice, 0.5 reads its first half), not {match['weight']}")
    return match["name"], weight


def weighted_sources(sources: Sequence[str]) -> list[WeightedSource]:
    """The files to read, in order, each with its weight (folders and globs expanded)."""
    files: list[WeightedSource] = []
    for source in sources:
        name, weight = split_weight(str(source))
        files.extend(WeightedSource(path, weight) for path in expand_sources([name]))
    return files


def is_weighted(sources: Sequence[str]) -> bool:
    return any(split_weight(str(source))[1] != 1.0 for source in sources)


def describe_weights(sources: Sequence[str]) -> str:
    """A stable text of every source's weight, for the corpus fingerprint: the same files in
    another mix are other training data, so a resume must refuse them."""
    return "\x1d".join(f"{name}:{weight!r}" for name, weight in map(split_weight, sources))


Items = TypeVar("Items", np.ndarray, list[str])


def repeat_by_weight(items: Items, weight: float) -> Items:
    """``items`` read ``weight`` times: whole copies, then the first share of one more."""
    whole, share = int(weight), weight - int(weight)
    head = items[: round(len(items) * share)]
    if isinstance(items, np.ndarray):
        return np.concatenate([items] * whole + [head])
    return list(items) * whole + list(head)


def weighted_training_part(parts: Sequence[Items], weights: Sequence[float],
                           train_length: int) -> list[Items]:
    """Each part's share of the first ``train_length`` items (the rest is validation),
    repeated by its weight."""
    weighted = []
    left = train_length
    for part, weight in zip(parts, weights, strict=True):
        kept = part[: max(0, min(len(part), left))]
        left -= len(part)
        weighted.append(repeat_by_weight(kept, weight))
    return weighted
