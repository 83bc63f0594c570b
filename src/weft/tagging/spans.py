"""Span tagging: BIO and BIOES tag schemes, conversion between them, spans, span metrics.

A span tag set is ``O`` plus ``PREFIX-TYPE`` tags (``B-person``, ``I-person``; BIOES adds
``E-`` for a span's last token and ``S-`` for a one-token span). The type is everything after
the first hyphen, so ``B-creative-work`` has the type ``creative-work``.

Spans are read off a tag sequence by the chunk rules of the CoNLL ``conlleval`` script, on the
sequence in BIO (BIOES is mapped tag by tag: ``S-`` to ``B-``, ``E-`` to ``I-``): a chunk
starts at a ``B-``, and at an ``I-`` after ``O`` or after another type; it ends before ``O``,
a ``B-`` or another type. So an ``I-X`` that a tagger without a CRF puts after ``O`` still
opens a span, as conlleval scores it. :func:`span_metrics` counts exactly as conlleval does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from weft.errors import WeftError

SCHEMES = ("bio", "bioes")
OUTSIDE = "O"


@dataclass(frozen=True)
class Span:
    """Tokens ``start`` to ``end`` (exclusive) of a sentence form one ``type`` of span."""

    type: str
    start: int
    end: int


def split_tag(tag: str) -> tuple[str, str]:
    """``("B", "person")`` for ``B-person``; ``("O", "")`` for ``O``."""
    prefix, _, kind = tag.partition("-")
    return prefix, kind


def detect_scheme(tags: Sequence[str]) -> str | None:
    """``"bioes"`` or ``"bio"`` when every tag is ``O`` or a prefixed span tag, else None: the
    tag set is not a span tag set (part-of-speech tags). IOB1 (``I-`` opens a span, ``B-`` only
    between two adjacent spans of a type) reads as BIO, as conlleval reads it."""
    prefixes = set()
    for tag in tags:
        if tag == OUTSIDE:
            continue
        prefix, kind = split_tag(tag)
        if prefix not in ("B", "I", "E", "S") or not kind:
            return None
        prefixes.add(prefix)
    if not prefixes:
        return None  # only O
    return "bioes" if prefixes & {"E", "S"} else "bio"


def _bio(tag: str) -> tuple[str, str]:
    """Prefix and type of a tag read as BIO: ``S-`` counts as ``B-``, ``E-`` as ``I-``."""
    prefix, kind = split_tag(tag)
    if tag == OUTSIDE or not kind:
        return OUTSIDE, ""
    return {"S": "B", "E": "I"}.get(prefix, prefix), kind


def _starts(prev: tuple[str, str], cur: tuple[str, str]) -> bool:
    """conlleval's ``startOfChunk`` for BIO tags."""
    (prev_tag, prev_type), (tag, kind) = prev, cur
    if tag == "B" or (prev_tag == "O" and tag == "I"):
        return True
    return tag != "O" and prev_type != kind


def _ends(prev: tuple[str, str], cur: tuple[str, str]) -> bool:
    """conlleval's ``endOfChunk`` for BIO tags."""
    (prev_tag, prev_type), (tag, kind) = prev, cur
    if prev_tag in ("B", "I") and tag in ("B", "O"):
        return True
    return prev_tag != "O" and prev_type != kind


def extract_spans(tags: Sequence[str]) -> list[Span]:
    """The spans of one sentence's tags (BIO or BIOES, valid or not), by conlleval's rules."""
    spans: list[Span] = []
    prev = (OUTSIDE, "")
    start: int | None = None
    for i, cur in enumerate([*(_bio(t) for t in tags), (OUTSIDE, "")]):
        if start is not None and _ends(prev, cur):
            spans.append(Span(prev[1], start, i))
            start = None
        if i < len(tags) and _starts(prev, cur):
            start = i
        prev = cur
    return spans


def spans_to_tags(spans: Sequence[Span], length: int, scheme: str) -> list[str]:
    """Tags of a sentence of ``length`` tokens holding ``spans`` (non-overlapping)."""
    if scheme not in SCHEMES:
        raise WeftError(f"unknown tag scheme {scheme!r}; choose one of: {', '.join(SCHEMES)}")
    tags = [OUTSIDE] * length
    for span in spans:
        size = span.end - span.start
        if scheme == "bioes" and size == 1:
            tags[span.start] = f"S-{span.type}"
            continue
        tags[span.start] = f"B-{span.type}"
        for i in range(span.start + 1, span.end):
            tags[i] = f"I-{span.type}"
        if scheme == "bioes":
            tags[span.end - 1] = f"E-{span.type}"
    return tags


def convert(tags: Sequence[str], scheme: str) -> list[str]:
    """The same spans in ``scheme``. Also repairs an invalid sequence (``O I-X`` becomes
    ``O B-X``), so the result is always one a constrained CRF can produce."""
    return spans_to_tags(extract_spans(tags), len(tags), scheme)


def allowed_transitions(
    tags: Sequence[str], scheme: str
) -> tuple[list[list[bool]], list[bool], list[bool]]:
    """Which tag may follow which (``[i][j]``: ``tags[i]`` then ``tags[j]``), which may start
    a sentence and which may end one, in a valid ``scheme`` sequence."""
    parts = [split_tag(t) if t != OUTSIDE else (OUTSIDE, "") for t in tags]
    inside = ("I", "E") if scheme == "bioes" else ("I",)
    closed = ("O", "E", "S") if scheme == "bioes" else ("O", "B", "I")  # a span may end after

    def follows(prev: tuple[str, str], cur: tuple[str, str]) -> bool:
        if cur[0] in inside:  # continues a span of the same type
            return prev[0] in ("B", "I") and prev[1] == cur[1]
        return prev[0] in closed  # O, B- or S- start fresh after a finished span

    matrix = [[follows(p, c) for c in parts] for p in parts]
    start = [p[0] not in inside for p in parts]
    end = [p[0] in closed for p in parts]
    return matrix, start, end


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


def _prf(correct: int, found: int, gold: int) -> dict[str, Any]:
    precision, recall = _ratio(correct, found), _ratio(correct, gold)
    f1 = _ratio(2 * correct, found + gold)  # = 2PR/(P+R), without rounding on the way
    return {"precision": precision, "recall": recall, "f1": f1, "correct": correct,
            "predicted": found, "gold": gold}


def span_metrics(
    gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]
) -> dict[str, Any]:
    """Exact-match span precision, recall and F1, overall and per type, as conlleval computes
    them (fractions in [0, 1]; conlleval prints percentages). A predicted span is correct when
    a gold span has the same first token, last token and type."""
    correct: Counter[str] = Counter()
    found: Counter[str] = Counter()
    expected: Counter[str] = Counter()
    for sent_gold, sent_pred in zip(gold, predicted, strict=True):
        if len(sent_gold) != len(sent_pred):
            raise ValueError("gold and predicted sentences differ in length")
        gold_spans = extract_spans(sent_gold)
        pred_spans = set(extract_spans(sent_pred))
        expected.update(s.type for s in gold_spans)
        found.update(s.type for s in pred_spans)
        correct.update(s.type for s in gold_spans if s in pred_spans)
    types = sorted(set(expected) | set(found))
    return {
        **_prf(sum(correct.values()), sum(found.values()), sum(expected.values())),
        "per_type": {t: _prf(correct[t], found[t], expected[t]) for t in types},
    }


def span_dicts(
    words: Sequence[str], tags: Sequence[str], offsets: Sequence[tuple[int, int]], text: str
) -> list[dict[str, Any]]:
    """JSON-ready spans of one tagged sentence: ``text``, ``type``, character ``start`` and
    ``end`` in ``text`` (each word's ``offsets``) and the token range."""
    out = []
    for span in extract_spans(tags):
        begin, finish = offsets[span.start][0], offsets[span.end - 1][1]
        out.append({"text": text[begin:finish], "type": span.type, "start": begin,
                    "end": finish, "tokens": [span.start, span.end]})
    return out


def format_span_report(metrics: dict[str, Any]) -> str:
    """conlleval's table: overall and per-type precision, recall and F1 in percent."""
    lines = [
        f"spans: {metrics['gold']} gold, {metrics['predicted']} predicted, "
        f"{metrics['correct']} correct (exact match)",
        f"{'type':<16} {'precision':>9} {'recall':>7} {'f1':>7} {'gold':>6} {'found':>6}",
    ]
    rows = [("overall", metrics), *metrics["per_type"].items()]
    for name, row in rows:
        lines.append(f"{name:<16} {100 * row['precision']:>9.2f} {100 * row['recall']:>7.2f} "
                     f"{100 * row['f1']:>7.2f} {row['gold']:>6} {row['predicted']:>6}")
    return "\n".join(lines)
