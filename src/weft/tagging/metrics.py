"""Tagging metrics: token accuracy (overall, on words seen / unseen in training), per-tag
precision, recall and F1, and the most frequent confusions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any


def evaluate_tags(
    words: Sequence[Sequence[str]],
    gold: Sequence[Sequence[str]],
    predicted: Sequence[Sequence[str]],
    is_known: Callable[[str], bool],
    top_confusions: int = 10,
) -> dict[str, Any]:
    """Metrics as a JSON-ready dict; accuracies are fractions in [0, 1]."""
    total = correct = seen = seen_correct = 0
    gold_count: Counter[str] = Counter()
    pred_count: Counter[str] = Counter()
    hits: Counter[str] = Counter()
    confusions: Counter[tuple[str, str]] = Counter()
    for sent_words, sent_gold, sent_pred in zip(words, gold, predicted, strict=True):
        for word, g, p in zip(sent_words, sent_gold, sent_pred, strict=True):
            total += 1
            ok = g == p
            correct += ok
            if is_known(word):
                seen += 1
                seen_correct += ok
            gold_count[g] += 1
            pred_count[p] += 1
            if ok:
                hits[g] += 1
            else:
                confusions[(g, p)] += 1
    unseen = total - seen
    per_tag = {}
    for tag in sorted(set(gold_count) | set(pred_count), key=lambda t: (-gold_count[t], t)):
        precision = hits[tag] / pred_count[tag] if pred_count[tag] else 0.0
        recall = hits[tag] / gold_count[tag] if gold_count[tag] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_tag[tag] = {
            "precision": precision, "recall": recall, "f1": f1, "support": gold_count[tag]
        }
    return {
        "tokens": total,
        "sentences": len(gold),
        "accuracy": correct / total if total else 0.0,
        "seen_tokens": seen,
        "seen_accuracy": seen_correct / seen if seen else 0.0,
        "unseen_tokens": unseen,
        "unseen_accuracy": (correct - seen_correct) / unseen if unseen else 0.0,
        "per_tag": per_tag,
        "confusions": [
            {"gold": g, "predicted": p, "count": c}
            for (g, p), c in sorted(confusions.items(), key=lambda kv: (-kv[1], kv[0]))[
                :top_confusions
            ]
        ],
    }


def format_report(metrics: dict[str, Any]) -> str:
    """A human-readable report of :func:`evaluate_tags`' result."""
    lines = [
        f"sentences {metrics['sentences']}, tokens {metrics['tokens']}",
        f"accuracy        {100 * metrics['accuracy']:.2f}%",
        f"  seen words    {100 * metrics['seen_accuracy']:.2f}% of {metrics['seen_tokens']}",
        f"  unseen words  {100 * metrics['unseen_accuracy']:.2f}% of {metrics['unseen_tokens']}",
        "",
        f"{'tag':<10} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}",
    ]
    for tag, row in metrics["per_tag"].items():
        lines.append(
            f"{tag:<10} {100 * row['precision']:>9.2f} {100 * row['recall']:>7.2f} "
            f"{100 * row['f1']:>7.2f} {row['support']:>8}"
        )
    if metrics["confusions"]:
        lines += ["", "most frequent confusions (gold -> predicted):"]
        lines += [f"  {c['gold']} -> {c['predicted']}: {c['count']}" for c in metrics["confusions"]]
    return "\n".join(lines)
