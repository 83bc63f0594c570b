"""From scratch vs from a trained model: held-out bits/char after the same short budget.

    python -m benchmarks.finetune --budget 2m --threads 2
    python -m benchmarks.finetune --corpora anna,wikitext --arm lr1e-3='{"lr": 1e-3}' ...

Each corpus is cut into a training file and a held-out file (records: the last 10% of rows;
text: the 10 KB after a 90 KB training slice). Every arm trains on the same training file with the
same budget and threads, one after the other, and is scored with ``weft eval`` on the held-out
file (bits per character, so levels compare). Arms: ``scratch`` (weft's defaults, character
level) and ``finetune`` (``--init-from builtin:english`` with the fine-tuning defaults), plus any
``--arm NAME=JSON`` of extra settings for an init-from run (used to choose those defaults on
corpora that are not reported; ``"init_from": null`` makes it a run from scratch).

``--held-out DIR`` adds a corpus per text file of DIR (``new:NAME``: held-out slices that a base
never trained on, cut 90/10 like the books, at most 90 KB + 10 KB) and ``rec:NAME`` (the same
file as records, like the tweets and the jokes: one per unit, units parted by blank lines or
fortune files' ``%`` lines; the last 10% held out). ``--base-alone`` also scores
every arm's starting model, untrained, on every held-out file (records one per line, as the
base reads text), and ``--no-finetune`` does only that.
"""

from __future__ import annotations

import argparse
import csv
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import data_file, machine, parse_arm, write_result
from weft.api import run_training
from weft.data.cleaning import strip_gutenberg

# name -> (file under the data folder, CSV column or None for text)
CORPORA: dict[str, tuple[str, str | None]] = {
    "tweets": ("tweets/sentiment140-testdata-with-header.csv", "text"),
    "jokes": ("jokes/reddit-cleanjokes.csv", "Joke"),
    "alice": ("alice/wonderland.txt", None),
    # For choosing the fine-tuning defaults only (not reported as results):
    "anna": ("anna/anna.txt", None),
    "wikitext": ("wikitext-2/valid.txt", None),
    # Short informal sentences (reviews, e-mails, forums) as records, like the tweets:
    "ewt": ("ud-english-ewt/en_ewt-ud-dev.conllu", "text"),
}
EWT_SENTENCES = 1000  # about twice the tweets: 900 to train on, 100 held out
TRAIN_CHARS, TEST_CHARS = 90_000, 10_000
NEW = "new:"  # a corpus from --held-out: new:NAME is DIR/NAME.txt
REC = "rec:"  # the same file as records (a CSV): rec:NAME
UNIT_BREAK = re.compile(r"\n(?:[ \t]*%?[ \t]*\n)+")  # blank lines or a fortune file's "%"


def split_held_out_slice(name: str, source: Path, folder: Path) -> tuple[Path, Path, None]:
    """A held-out slice of a base's corpus: its first 90% to train on (at most 90 KB), the
    next 10% (at most 10 KB) to score, cut at line ends."""
    text = source.read_text(encoding="utf-8")
    cut = min(TRAIN_CHARS, len(text) * 9 // 10)
    cut = text.rfind("\n", 0, cut) + 1 or cut
    end = min(len(text), cut + TEST_CHARS)
    end = text.rfind("\n", cut, end) + 1 or end
    train = folder / f"{name.replace(':', '-')}-train.txt"
    test = folder / f"{name.replace(':', '-')}-test.txt"
    train.write_text(text[:cut], encoding="utf-8")
    test.write_text(text[cut:end], encoding="utf-8")
    return train, test, None


def split_held_out_records(name: str, source: Path, folder: Path) -> tuple[Path, Path, str]:
    """A held-out slice as records (column ``text``): units parted by blank or ``%`` lines,
    the first 90% (at most 90 KB) to train on, the next 10% (at most 10 KB) to score."""
    units = [u.strip("\n") for u in UNIT_BREAK.split(source.read_text(encoding="utf-8"))]
    units = [u for u in units if u.strip() and u.strip() != "%"]
    cut = len(units) * 9 // 10
    train = folder / f"{name.replace(':', '-')}-train.csv"
    test = folder / f"{name.replace(':', '-')}-test.csv"
    write_records(train, [{"text": u} for u in take_chars(units[:cut], TRAIN_CHARS)], "text")
    write_records(test, [{"text": u} for u in take_chars(units[cut:], TEST_CHARS)], "text")
    return train, test, "text"


def write_records(path: Path, rows: list[dict[str, str]], column: str) -> None:
    """A CSV of one column: each row's ``column``."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=[column], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def take_chars(units: list[str], limit: int) -> list[str]:
    """The leading units of ``units`` that fit in ``limit`` characters (at least one)."""
    taken: list[str] = []
    size = 0
    for unit in units:
        size += len(unit) + 1
        if taken and size > limit:
            break
        taken.append(unit)
    return taken


def as_lines(test: Path, column: str | None) -> Path:
    """The held-out file as a base model reads text: a CSV's records one per line."""
    if column is None:
        return test
    with test.open(newline="", encoding="utf-8") as handle:
        records = [row[column].replace("\n", " ") for row in csv.DictReader(handle)]
    lines = test.with_name(f"{test.stem}-lines.txt")
    lines.write_text("\n".join(records) + "\n", encoding="utf-8")
    return lines


def split_corpus(name: str, folder: Path,
                 held_out: Path | None = None) -> tuple[Path, Path, str | None]:
    if name.startswith((NEW, REC)):
        if held_out is None:
            raise SystemExit(f"{name} needs --held-out DIR")
        source = held_out / f"{name.partition(':')[2]}.txt"
        if name.startswith(REC):
            return split_held_out_records(name, source, folder)
        return split_held_out_slice(name, source, folder)
    relative, column = CORPORA[name]
    source = data_file(relative)
    train, test = folder / f"{name}-train", folder / f"{name}-test"
    if column is not None:
        if source.suffix == ".conllu":
            rows = [{column: line.removeprefix("# text = ").rstrip("\n")}
                    for line in source.open(encoding="utf-8")
                    if line.startswith("# text = ")][:EWT_SENTENCES]
        else:
            with source.open(newline="", encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle))
        cut = len(rows) - len(rows) // 10
        write_records(train.with_suffix(".csv"), rows[:cut], column)
        write_records(test.with_suffix(".csv"), rows[cut:], column)
        return train.with_suffix(".csv"), test.with_suffix(".csv"), column
    text, _ = strip_gutenberg(source.read_text(encoding="utf-8"))
    start = len(text) // 3 if name == "anna" else 0  # past the opening pages
    train.with_suffix(".txt").write_text(text[start:start + TRAIN_CHARS], encoding="utf-8")
    test.with_suffix(".txt").write_text(
        text[start + TRAIN_CHARS:start + TRAIN_CHARS + TEST_CHARS], encoding="utf-8")
    return train.with_suffix(".txt"), test.with_suffix(".txt"), None


def run_arm(train: Path, test: Path, column: str | None, out: Path, budget: str,
            threads: int, settings: dict[str, Any]) -> dict[str, Any]:
    options = dict(settings)
    if column is not None:
        options["csv_column"] = column
    started = time.perf_counter()
    model, result = run_training([train], out, time_budget=budget, threads=threads,
                                      quiet=True, **options)
    assert model is not None
    scored = model.evaluate(test)
    return {"settings": settings, "bits_per_char": round(scored.bits_per_char, 4),
            "steps": result.steps, "tokens": result.tokens,
            "seconds": round(time.perf_counter() - started, 1),
            "level": model.config.data.level}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", default="tweets,jokes,alice")
    parser.add_argument("--budget", default="2m")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--base", default="builtin:english")
    parser.add_argument("--arm", action="append", default=[], metavar="NAME=JSON",
                        help="an extra init-from arm with these settings (repeatable)")
    parser.add_argument("--no-default-arms", action="store_true")
    parser.add_argument("--held-out", type=Path, metavar="DIR",
                        help="held-out slices of a base's corpus: corpora new:NAME, and with "
                        "--base-alone every file of DIR is scored")
    parser.add_argument("--base-alone", action="store_true",
                        help="also score each arm's starting model, untrained, on each "
                        "held-out file")
    parser.add_argument("--no-finetune", action="store_true",
                        help="only --base-alone: train nothing")
    parser.add_argument("--name", default="finetune", help="results/NAME.json")
    parser.add_argument("--keep", type=Path, help="keep the runs in this folder")
    args = parser.parse_args()
    arms: dict[str, dict[str, Any]] = {}
    if not args.no_default_arms:
        arms = {"scratch": {}, "finetune": {"init_from": args.base}}
    for spec in args.arm:
        name, settings = parse_arm(spec)
        arms[name] = {"init_from": args.base, **settings}
        if arms[name]["init_from"] is None:
            del arms[name]["init_from"]
    requested = args.corpora.split(",") if args.corpora else []
    corpora = list(requested)
    if args.base_alone and args.held_out is not None:
        corpora += [f"{NEW}{p.stem}" for p in sorted(args.held_out.glob("*.txt"))
                    if f"{NEW}{p.stem}" not in corpora]
    info = machine()
    results: dict[str, dict[str, Any]] = {}
    base_alone: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for corpus in corpora:
            train, test, column = split_corpus(corpus, folder, args.held_out)
            if args.base_alone:
                base_alone[corpus] = score_bases(arms, as_lines(test, column))
                print(corpus, "base alone", base_alone[corpus], flush=True)
            if args.no_finetune or corpus not in requested:
                continue
            results[corpus] = {}
            for arm, settings in arms.items():
                results[corpus][arm] = run_arm(train, test, column, folder / f"{corpus}-{arm}",
                                               args.budget, args.threads, settings)
                print(corpus, arm, results[corpus][arm], flush=True)
            if "scratch" in arms:
                before = results[corpus]["scratch"]["bits_per_char"]
                for arm in arms:
                    if arm != "scratch":
                        after = results[corpus][arm]["bits_per_char"]
                        key = "reduction" if arm == "finetune" else f"reduction_{arm}"
                        results[corpus][key] = round(1 - after / before, 4)
    write_result(args.name, {"benchmark": "finetune", "budget": args.budget,
                             "threads": args.threads, "base": args.base, "arms": arms,
                             "machine": info, "results": results, "base_alone": base_alone})


def score_bases(arms: dict[str, dict[str, Any]], text: Path) -> dict[str, float]:
    """Held-out bits/char of each arm's starting model (arms from scratch have none)."""
    import weft

    bases = {settings["init_from"] for settings in arms.values() if "init_from" in settings}
    return {str(base): round(weft.load(base).evaluate(text).bits_per_char, 4)
            for base in sorted(bases)}


if __name__ == "__main__":
    main()
