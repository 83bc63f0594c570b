"""From corpus sources to what training reads, as :class:`DataConfig` says: text or records.

Cleaning follows the same order everywhere (Gutenberg stripping per file, then Unicode
normalization, then lowercasing) so that training, evaluation and prompts see the same text;
the notes returned say what was done, for the CLI to print.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from weft.config import DataConfig
from weft.data.cleaning import CleaningReport, clean_text, strip_gutenberg
from weft.data.corpus import read_text
from weft.data.records import read_records
from weft.data.weights import weighted_sources
from weft.errors import WeftError


def clean_like_training(text: str, data: DataConfig) -> str:
    """Apply the run's per-text cleaning (case, Unicode form) to other text: prompts, eval."""
    return clean_text(text, lowercase=data.lowercase, normalize=data.normalize)


def load_text(
    sources: Sequence[str | os.PathLike[str]], data: DataConfig
) -> tuple[str, list[str]]:
    """The cleaned corpus as one text (each file ending in a newline, each read once), and
    notes."""
    parts, _, notes = load_text_parts(sources, data)
    return "".join(parts), notes


def load_text_parts(
    sources: Sequence[str | os.PathLike[str]], data: DataConfig
) -> tuple[list[str], list[float], list[str]]:
    """Each file's cleaned text (ending in a newline), its corpus weight (weights.py), and
    notes."""
    if not sources:
        raise WeftError("no corpus given: pass one or more text files (or builtin:pydoc-topics)")
    report = CleaningReport()
    parts, weights = [], []
    for source in weighted_sources([str(s) for s in sources]):
        text = clean_text(
            read_text(source.name),
            strip_boilerplate=data.strip_gutenberg,
            lowercase=data.lowercase,
            normalize=data.normalize,
            source=source.name,
            report=report,
        )
        parts.append(text if text.endswith("\n") else text + "\n")
        weights.append(source.weight)
    return parts, weights, report.notes


def load_labelled_records(
    sources: Sequence[str | os.PathLike[str]], data: DataConfig
) -> tuple[list[str], list[tuple[str, ...]], list[tuple[float, int]], list[str]]:
    """Cleaned records of every source, in order; each record's values of
    ``data.label_columns`` (an empty list without label columns); each file's corpus weight
    (weights.py) and number of records; and notes (counts, empty records skipped)."""
    if not sources:
        raise WeftError("no corpus given: pass one or more text or CSV files")
    records: list[str] = []
    labels: list[tuple[str, ...]] = []
    weights: list[tuple[float, int]] = []
    notes: list[str] = []
    empty = 0
    weighted = weighted_sources([str(s) for s in sources])
    files = [source.name for source in weighted]
    for source, weight in ((s.name, s.weight) for s in weighted):
        text = read_text(source)
        before = len(records)
        if data.strip_gutenberg:
            text, found = strip_gutenberg(text)
            if found:
                notes.append(f"{source}: removed Project Gutenberg header/footer")
        read = read_records(source, text, mode=data.records, csv_column=data.csv_column,
                            label_columns=data.label_columns)
        empty += read.empty
        for i, record in enumerate(read.records):
            cleaned = clean_like_training(record, data)
            if cleaned.strip():
                records.append(cleaned)
                if data.label_columns:
                    labels.append(read.labels[i])
            else:
                empty += 1
        weights.append((weight, len(records) - before))
    what = f"column {data.csv_column!r}" if data.csv_column else "lines"
    notes.append(
        f"{len(records):,} records ({what}) from {len(files)} file(s)"
        + (f"; skipped {empty:,} empty records" if empty else "")
    )
    if not records:
        raise WeftError(f"no records found in {', '.join(files)}: every record was empty")
    return records, labels, weights, notes
