"""Label columns: one control token per value of each CSV label column, prepended to records.

``weft train data.csv --csv-column text --label-column label`` reads each row's ``label`` field
beside its text. Every value of a label column becomes a special token of the tokenizer spelled
``<column=value>`` (an ordinary special token: never produced from text, never sampled, kept by
anything that keeps a tokenizer's specials), and a record is trained as
``<bos> <column=value>... text <eos>``. The model so learns the text under each label, and also
how often each label comes first, which makes it a classifier too (:mod:`weft.training.classify`).

:class:`LabelSet` holds the columns with their values and counts, saved as ``labels.json`` in the
run directory: generation picks the tokens of the values asked for and samples the others with
the data's frequencies.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from weft.errors import WeftError
from weft.io import atomic_write_json, read_json
from weft.runs import LABELS
from weft.tokenizers import Tokenizer

# A label column names categories; an identifier or free-text column would add a token per row.
MAX_LABEL_VALUES = 1000

Labels = Mapping[str, str]  # column -> value


def label_token(column: str, value: str) -> str:
    """The special token's spelling for one value of a column."""
    return f"<{column}={value}>"


@dataclass(frozen=True)
class LabelColumn:
    name: str
    counts: dict[str, int]  # value -> records with it, most frequent first

    @property
    def values(self) -> list[str]:
        return list(self.counts)

    @property
    def majority(self) -> str:
        return next(iter(self.counts))


@dataclass(frozen=True)
class LabelSet:
    """The label columns of a run, in the order their tokens follow ``<bos>``."""

    columns: tuple[LabelColumn, ...]

    @classmethod
    def from_rows(cls, names: Sequence[str], rows: Sequence[Sequence[str]]) -> LabelSet:
        """Count the values of each column over the records' label rows."""
        columns = []
        for k, name in enumerate(names):
            counts = Counter(row[k] for row in rows)
            if len(counts) > MAX_LABEL_VALUES:
                raise WeftError(
                    f"label column {name!r} has {len(counts):,} distinct values (at most "
                    f"{MAX_LABEL_VALUES:,}): a label column holds a few categories")
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            columns.append(LabelColumn(name, dict(ranked)))
        return cls(tuple(columns))

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> LabelColumn:
        for column in self.columns:
            if column.name == name:
                return column
        known = ", ".join(self.names) or "none: this run was trained without --label-column"
        raise WeftError(f"unknown label column {name!r}; label columns: {known}")

    def specials(self) -> list[str]:
        """Every label token, column by column: added to the tokenizer's special tokens."""
        return [label_token(c.name, v) for c in self.columns for v in c.counts]

    def check(self, labels: Labels) -> None:
        """A one-line error for an unknown column or value, listing the known ones."""
        for name, value in labels.items():
            column = self.column(name)
            if str(value) not in column.counts:
                known = ", ".join(repr(v) for v in column.values)
                raise WeftError(f"label column {name!r} has no value {str(value)!r}; its "
                                f"values: {known}")

    def ids(self, tokenizer: Tokenizer, labels: Labels) -> list[int]:
        """Token ids of a full assignment (one value per column), in column order."""
        self.check(labels)
        return [self.token_id(tokenizer, c.name, str(labels[c.name])) for c in self.columns]

    def prefixes(self, tokenizer: Tokenizer, rows: Sequence[Sequence[str]]) -> np.ndarray:
        """The label token ids of many records at once: ``(records, columns)``."""
        out = np.zeros((len(rows), len(self.columns)), dtype=np.int64)
        for k, column in enumerate(self.columns):
            ids = {v: self.token_id(tokenizer, column.name, v) for v in column.counts}
            try:
                out[:, k] = [ids[row[k]] for row in rows]
            except KeyError as exc:
                known = ", ".join(repr(v) for v in column.values)
                raise WeftError(f"label column {column.name!r} has no value {exc.args[0]!r}; "
                                f"its values: {known}") from None
        return out

    @staticmethod
    def token_id(tokenizer: Tokenizer, column: str, value: str) -> int:
        token_id = tokenizer.special_id(label_token(column, value))
        if token_id is None:
            raise WeftError(f"the tokenizer has no token {label_token(column, value)}: "
                            "labels.json and tokenizer.json do not belong together")
        return token_id

    def sample(self, chosen: Labels, n: int, seed: int) -> list[dict[str, str]]:
        """``n`` full assignments: the ``chosen`` values, the other columns drawn with the
        frequencies they had in the training data (repeatable for a seed)."""
        self.check(chosen)
        rng = np.random.default_rng(seed % 2**64)  # NumPy takes no negative seed; torch does
        drawn: list[dict[str, str]] = [{} for _ in range(n)]
        for column in self.columns:
            if column.name in chosen:
                picks = [str(chosen[column.name])] * n
            else:
                weights = np.array(list(column.counts.values()), dtype=np.float64)
                index = rng.choice(len(weights), size=n, p=weights / weights.sum())
                picks = [column.values[i] for i in index.tolist()]
            for assignment, value in zip(drawn, picks, strict=True):
                assignment[column.name] = value
        return drawn

    def to_dict(self) -> dict[str, Any]:
        return {"columns": [{"name": c.name, "counts": c.counts} for c in self.columns]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelSet:
        return cls(tuple(LabelColumn(str(c["name"]), {str(k): int(v)
                                                      for k, v in c["counts"].items()})
                         for c in data.get("columns", [])))


NO_LABELS = LabelSet(())


def save_labels(run_dir: str | Path, labels: LabelSet) -> None:
    atomic_write_json(Path(run_dir) / LABELS, labels.to_dict())


def load_labels(run_dir: str | Path) -> LabelSet:
    """The run's label columns; a run without ``labels.json`` has none."""
    path = Path(run_dir) / LABELS
    if not path.exists():
        return NO_LABELS
    try:
        return LabelSet.from_dict(read_json(path))
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise WeftError(f"{path} is damaged ({exc!r})") from None


def parse_label_options(options: Sequence[str]) -> dict[str, str]:
    """``["label=4", "topic=a=b"]`` -> ``{"label": "4", "topic": "a=b"}`` (CLI ``--label``)."""
    labels: dict[str, str] = {}
    for option in options:
        name, sep, value = option.partition("=")
        if not sep or not name:
            raise WeftError(f"--label takes COLUMN=VALUE (e.g. --label label=4), not {option!r}")
        if name in labels and labels[name] != value:
            raise WeftError(f"--label {name} given twice ({labels[name]!r} and {value!r}): a "
                            "text has one value per column")
        labels[name] = value
    return labels
