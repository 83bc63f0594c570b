"""Word-level models: training speed at a 30k vocabulary, and held-out bits/char at equal time.

    python -m benchmarks.word_level throughput --threads 2 --steps 40
    python -m benchmarks.word_level quality --corpora wikitext,dickens --budgets 2m,10m --threads 2
    python -m benchmarks.word_level quality --corpora tune --budgets 2m --threads 1 \\
        --arm big='{"hidden_size": 512}'      # choosing the defaults (not reported)
    python -m benchmarks.word_level evaluation --threads 2

``throughput``: word-level training tokens/s over the same steps of three Gutenberg novels
(vocabulary cut at 30,000 words), for weft's word defaults before this benchmark existed
(:data:`OLD_WORD`: the character-level defaults and a full softmax), the same with the adaptive
softmax, and today's word defaults.

``quality``: each corpus is cut into a training text and a held-out text that follows it; every
arm trains on the training text for each budget, one run after the other with the same threads,
and is scored with ``weft eval`` on the held-out text (bits per character, so tokenizations
compare). Arms: ``old`` (:data:`OLD_WORD`) and ``new`` (``--level word`` alone: today's
defaults), plus any ``--arm NAME=JSON`` of settings over today's defaults. The ``tune`` corpus
(five Gutenberg novels) is for choosing the defaults; ``wikitext``, ``dickens`` and ``books``
are reported.

``evaluation``: held-out scoring speed with the adaptive softmax at a 30,000-word vocabulary,
scoring each target's clusters (weft) against building the full distribution.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import data_file, machine, parse_arm, write_result
from weft.api import load, run_training
from weft.config import parse_duration
from weft.data.cleaning import strip_gutenberg
from weft.training.evaluate import stream_loss

# weft's word level before per-level defaults: the character defaults, all of them spelled out
# (so this arm stays what it was whatever the defaults become).
OLD_WORD: dict[str, Any] = {
    "embedding_dim": 64, "hidden_size": 320, "layers": 1, "dropout": 0.0, "tie_weights": False,
    "lr": 5e-3, "batch_size": 32, "seq_len": 32, "max_vocab": 30_000, "min_count": 1,
    "adaptive_softmax": "off",
}

# name -> (files under the data folder, characters held out at the end; None: a test file)
CORPORA: dict[str, tuple[list[str], int]] = {
    # For choosing the defaults only: Austen, Shelley, Wilde, Twain, Stevenson.
    "tune": ([f"gutenberg/{n}.txt" for n in (1342, 84, 174, 74, 120)], 100_000),
    # Two of them (Austen, Stevenson: 1 MB), as small as the reported corpora, where a word
    # model overfits within the budget: for choosing regularization.
    "tune-small": ([f"gutenberg/{n}.txt" for n in (1342, 120)], 100_000),
    # Reported: David Copperfield (not in the tuning set), WikiText-2 (below).
    "dickens": (["gutenberg/766.txt"], 100_000),
    "wikitext": (["wikitext-2/valid.txt"], 0),
    # Reported: a corpus the budget cannot exhaust (13 MB, 16 books: none of the tuning ones,
    # nor David Copperfield), held out: the end of Gulliver's Travels.
    "books": ([f"gutenberg/{n}.txt" for n in (2701, 4300, 2554, 219, 43, 1184, 730, 205,
                                                64317, 1998, 55, 209, 1952, 45, 1023, 829)],
              100_000),
    # Throughput: three long novels, over 30,000 distinct words.
    "novels": ([f"gutenberg/{n}.txt" for n in (1184, 766, 1023)], 20_000),
}
WIKITEXT_TEST = "wikitext-2/test.txt"  # its first 100,000 characters are wikitext's held-out
HELD_OUT_CHARS = 100_000


def split_corpus(name: str, folder: Path) -> tuple[Path, Path]:
    files, held_out = CORPORA[name]
    text = "".join(strip_gutenberg(data_file(f).read_text(encoding="utf-8"))[0] for f in files)
    if held_out:
        train_text, test_text = text[:-held_out], text[-held_out:]
    else:
        train_text = text
        test_text = data_file(WIKITEXT_TEST).read_text(encoding="utf-8")[:HELD_OUT_CHARS]
    train, test = folder / f"{name}-train.txt", folder / f"{name}-test.txt"
    train.write_text(train_text, encoding="utf-8")
    test.write_text(test_text, encoding="utf-8")
    return train, test


def train_arm(train: Path, out: Path, settings: dict[str, Any], **limits: Any
              ) -> tuple[Any, dict[str, Any]]:
    started = time.perf_counter()
    # An arm may set another level ({"level": "bpe", ...}) to compare subword models too.
    model, result = run_training([str(train)], out, quiet=True,
                                 **{"level": "word", **settings, **limits})
    assert model is not None
    config = json.loads((out / "config.json").read_text())
    return model, {
        "steps": result.steps, "tokens": result.tokens,
        "train_seconds": round(result.elapsed, 1),
        "tokens_per_s": round(result.tokens / max(result.elapsed, 1e-9)),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "vocab_size": config["model"]["vocab_size"],
        "parameters": sum(p.numel() for p in model.module.parameters()),
        "resolved": {**config["model"], **{k: config["train"][k] for k in (
            "lr", "batch_size", "seq_len")}, **{k: config["data"][k] for k in (
            "max_vocab", "min_count")}},
    }


def throughput(args: argparse.Namespace) -> None:
    arms = {"old": OLD_WORD, "old+adaptive": {**OLD_WORD, "adaptive_softmax": "on"},
            "new": {}}
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        train, _ = split_corpus("novels", Path(tmp))
        for name, settings in arms.items():
            _, info = train_arm(train, Path(tmp) / name, settings, max_steps=args.steps,
                                eval_every=10**6, val_fraction=0.01, threads=args.threads)
            results[name] = info
            print(name, info["tokens_per_s"], "tokens/s", flush=True)
    old = results["old"]["tokens_per_s"]
    write_result(args.name or "word_throughput", {
        "command": f"python -m benchmarks.word_level throughput --threads {args.threads} "
                   f"--steps {args.steps}",
        "machine": args.machine, "arms": results,
        "speedup_vs_old": {k: round(v["tokens_per_s"] / old, 2) for k, v in results.items()},
    })


def evaluation(args: argparse.Namespace) -> None:
    """Held-out scoring speed at a 30,000-word vocabulary with the adaptive softmax: weft's
    evaluation (each target's clusters only) against building the full distribution, as weft
    did before, on the same model and text, best of 3 each."""
    with tempfile.TemporaryDirectory() as tmp:
        train, test = split_corpus("novels", Path(tmp))
        model, info = train_arm(train, Path(tmp) / "new", {}, max_steps=2, eval_every=10**6,
                                val_fraction=0.01, threads=args.threads)
        ids = model.tokenizer.encode(test.read_text(encoding="utf-8")).astype(np.int64)
        columns = min(32, (len(ids) - 1) // 256)  # both score 32-column windows of 256: no tail
        ids = ids[:columns * ((len(ids) - 1) // columns) + 1]
        torch.set_num_threads(args.threads)
        timings: dict[str, Any] = {}
        for name, score in (("target_clusters", stream_loss), ("full_distribution", _full_loss)):
            best = math.inf
            for _ in range(3):
                started = time.perf_counter()
                total, count = score(model.module, ids)
                best = min(best, time.perf_counter() - started)
            timings[name] = {"tokens_per_s": round(count / best), "nats": round(total, 3),
                             "tokens": count}
            print(name, timings[name], flush=True)
    # The same sum, up to float32 rounding: scoring the targets alone changes no result.
    assert math.isclose(timings["target_clusters"]["nats"], timings["full_distribution"]["nats"],
                        rel_tol=1e-4), timings
    write_result(args.name or "word_evaluation_speed", {
        "command": f"python -m benchmarks.word_level evaluation --threads {args.threads}",
        "machine": args.machine, "vocab_size": info["vocab_size"],
        "arms": timings, "speedup": round(timings["target_clusters"]["tokens_per_s"]
                                          / timings["full_distribution"]["tokens_per_s"], 2)})


@torch.no_grad()
def _full_loss(model: Any, ids: np.ndarray, batch_size: int = 32,
               seq_len: int = 256) -> tuple[float, int]:
    """The same columns and windows as weft's stream evaluation, scored from the full
    distribution (``model.scores``) instead of the targets' clusters."""
    model.eval()
    columns = max(1, min(batch_size, (len(ids) - 1) // seq_len))
    col_len = (len(ids) - 1) // columns
    rows = np.stack([ids[c * col_len:c * col_len + col_len + 1] for c in range(columns)])
    total, count, state = 0.0, 0, None
    for start in range(0, col_len, seq_len):
        window = torch.from_numpy(rows[:, start:min(start + seq_len, col_len) + 1])
        logits, _, state = model(window[:, :-1], state)
        total += float(torch.nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.size(-1)), window[:, 1:].reshape(-1),
            reduction="sum"))
        count += window[:, 1:].numel()
    return total, count


def quality(args: argparse.Namespace) -> None:
    arms: dict[str, dict[str, Any]] = {} if args.no_baselines else {"old": OLD_WORD, "new": {}}
    for spec in args.arm or []:
        name, settings = parse_arm(spec)
        arms[name] = settings
    budgets = [b.strip() for b in args.budgets.split(",")]
    results: dict[str, Any] = {}
    out = args.name or "word_quality"
    for corpus in args.corpora.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            train, test = split_corpus(corpus, Path(tmp))
            held_out = test.read_text(encoding="utf-8")
            for budget in budgets:
                for name, settings in arms.items():
                    run = Path(tmp) / f"{name}-{budget}"
                    model, info = train_arm(train, run, settings, threads=args.threads,
                                            time_budget=parse_duration(budget))
                    scored = load(run, device="cpu").evaluate(held_out)
                    info["bits_per_char"] = round(scored.bits_per_char, 4)
                    # Words outside the vocabulary are scored as <unk>, which costs less than
                    # spelling them: a smaller vocabulary flatters bits/char, so say how many.
                    info["held_out_unknown_tokens"] = scored.unknown
                    info["held_out_tokens"] = scored.tokens
                    del model
                    results.setdefault(corpus, {}).setdefault(budget, {})[name] = info
                    print(corpus, budget, name, info["bits_per_char"], "bits/char",
                          info["tokens_per_s"], "tokens/s", flush=True)
                    # Written after every run: a long benchmark keeps what it has so far.
                    write_result(out, _quality_record(args, results), quiet=True)
    write_result(out, _quality_record(args, results))


def _quality_record(args: argparse.Namespace, results: dict[str, Any]) -> dict[str, Any]:
    gains = {corpus: {budget: round(1 - arms["new"]["bits_per_char"]
                                    / arms["old"]["bits_per_char"], 4)
                      for budget, arms in by_budget.items() if {"old", "new"} <= arms.keys()}
             for corpus, by_budget in results.items()}
    return {"command": "python -m benchmarks.word_level quality "
                       f"--corpora {args.corpora} --budgets {args.budgets} "
                       f"--threads {args.threads}"
                       + "".join(f" --arm '{a}'" for a in args.arm or []),
            "machine": args.machine, "held_out_chars": HELD_OUT_CHARS, "results": results,
            "fewer_bits_per_char_new_vs_old": gains}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    speed = sub.add_parser("throughput")
    speed.add_argument("--steps", type=int, default=40)
    quality_args = sub.add_parser("quality")
    quality_args.add_argument("--corpora", default="wikitext,dickens")
    quality_args.add_argument("--budgets", default="2m,10m")
    quality_args.add_argument("--arm", action="append", metavar="NAME=JSON")
    quality_args.add_argument("--no-baselines", action="store_true",
                              help="only the --arm runs (tuning)")
    scoring = sub.add_parser("evaluation")
    for command in (speed, quality_args, scoring):
        command.add_argument("--threads", type=int, default=2)
        command.add_argument("--name", help="results file name (benchmarks/results/NAME.json)")
    args = parser.parse_args()
    args.machine = machine()  # the load average before the work, as it is named
    {"throughput": throughput, "quality": quality, "evaluation": evaluation}[args.command](args)


if __name__ == "__main__":
    main()
