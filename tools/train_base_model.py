"""Train the built-in base model (``builtin:english``) from public-domain books, and ship it.

    python tools/train_base_model.py GUTENBERG_DIR --web-text EWT_TRAIN --modern MODERN_DIR
                                              # the three stages of today's base, then export
    python tools/train_base_model.py GUTENBERG_DIR --web-text EWT_TRAIN   # stages 1 and 2 only
    python tools/train_base_model.py GUTENBERG_DIR           # the books only (stage 1), then export
    python tools/train_base_model.py --export-only RUN_DIR   # export a finished run
    python tools/train_base_model.py GUTENBERG_DIR --web-text EWT_TRAIN --modern MODERN_DIR \
        --backward [--stage2 RUN]            # builtin:english-backward: stage 3's mix reversed
    python tools/train_base_model.py GUTENBERG_DIR --web-text EWT_TRAIN --preset gpu \
        --minutes 4,2 --export-to OUT_DIR                    # on a GPU (benchmarks/gpu_base.sh)

GUTENBERG_DIR is a folder of plain-text Project Gutenberg books (the project's shared data has
22, listed with their sources in its SOURCES.md); EWT_TRAIN is the training part of the
Universal Dependencies English Web Treebank (``en_ewt-ud-train.conllu``: reviews, e-mails,
blogs and forum posts). None of them is text that a benchmark scores (the UD test set is not
used). Stage 1 trains on the books; stage 2 continues from stage 1 on the web text (repeated,
so that it is about a fifth of what is read) followed by the books, so that the base knows
informal present-day English as well as 19th-century prose. Stage 3 (``--modern``, the shared
data's ``modern-english/`` folder) continues from stage 2 (or ``--stage2 RUN``) on present-day
English mixed with the books and the EWT text by corpus weights (MODERN_MIX), keeping the last
2% of each modern file out of training as held-out text.

Training is ordinary ``weft train`` with the settings below; exporting copies the run's
``config.json``, ``tokenizer.json``, ``generation.json`` and best weights (stored in bf16 unless
``--storage float32``) into ``src/weft/builtin/english/`` (or ``--export-to``) with a
``MANIFEST.json`` of their SHA-256.
docs/base-model.md records how long it took, on what, and how well it does.

``--preset gpu`` keeps the model's shape (what a 2-core CPU fine-tunes in two minutes, the
criterion) and only changes how it is trained: batches 4x larger for a GPU, a learning rate
raised with them, and budgets of minutes (``--minutes STAGE1,STAGE2``) instead of hours.
``--set FIELD=VALUE`` overrides one ``weft.train`` option in both stages.

``--backward`` trains the backward language model that taggers read with
``--char-lm-backward`` (docs/tagging.md): stage 3's mix with every file reversed by characters
(``text[::-1]``, books with their Gutenberg licences cut off first), from scratch in stage 1's
shape or from ``--stage2 RUN``, exported as ``builtin:english-backward`` with ``"reversed":
true`` in its config.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

if not __package__:  # run as a script (python tools/train_base_model.py): find tools/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.base_model_licence import licence_text
from weft.builtin import MANIFEST
from weft.data.cleaning import strip_gutenberg
from weft.io import sha256_file
from weft.runs import CONFIG, GENERATION, TOKENIZER, WEIGHT_STORAGE, WEIGHTS, store_weights
from weft.training.init_from import SHAPE_OPTIONS

ROOT = Path(__file__).resolve().parent.parent
EWT_TEXT, GUTENBERG = "ewt-train.txt", "gutenberg/"  # stage 3's names for the stage-2 corpus
TARGET = ROOT / "src" / "weft" / "builtin" / "english"
BACKWARD_TARGET = TARGET.with_name("english-backward")
FILES = (CONFIG, TOKENIZER, GENERATION, WEIGHTS)
LICENSE = "LICENSE.md"  # every source and its licence, made from the config's corpus names
# Every shipped weights file stays in git history: bf16 halves it (14.3 to 7.2 MB) and moved
# held-out bits/char by under 0.001 (docs/base-model.md, "Stored in bf16"). It loads as
# float32 either way; how it computes is its precision setting's business.
STORAGE = "bf16"

# Chosen by measurement (docs/base-model.md): byte level covers any script with no unknowns;
# 2 x 512 trains fast enough on 2 CPU cores that a 2-minute fine-tune still takes thousands of
# steps. One thread: on a busy 2-core machine, two OpenMP threads stall on each other.
SETTINGS: dict[str, object] = {
    "level": "byte", "strip_gutenberg": True, "layers": 2, "hidden_size": 512,
    "embedding_dim": 128, "batch_size": 64, "seq_len": 128, "lr": 2e-3, "warmup_steps": 200,
    "val_fraction": 0.02, "eval_every": 1000, "patience": 0, "plateau_patience": 0,
    "time_budget": "110m",
    "threads": 1, "seed": 1337,
}
# Stage 3 starts from stage 2: same rate as stage 2; a small validation split (the end of the
# chat file, about 70 KB), since scoring 2% of 160 MB at every evaluation took most of the time.
MODERN_SETTINGS: dict[str, object] = {
    "strip_gutenberg": True, "dropout": 0.0, "batch_size": 64, "seq_len": 128, "lr": 1e-3,
    "warmup_steps": 100, "val_fraction": 0.0005, "eval_every": 1000, "patience": 0,
    "plateau_patience": 0, "time_budget": "204m", "threads": 1, "seed": 1337,
}
# (The shipped stage 3 trained 204 minutes in two sittings: 100 with its own cosine, then
# resumed with --time-budget 204m, so the rate rose again to 7.4e-4 and fell to 5e-5.)
# Stage 2 starts from stage 1 (``--init-from``, so the architecture is stage 1's).
WEB_SETTINGS: dict[str, object] = {
    "strip_gutenberg": True, "dropout": 0.0, "batch_size": 64, "seq_len": 128, "lr": 1e-3,
    "warmup_steps": 100, "val_fraction": 0.02, "eval_every": 1000, "patience": 0,
    "plateau_patience": 0, "time_budget": "85m", "threads": 1, "seed": 1337,
}
WEB_REPEATS = 4  # the web text is 1.0 MB against the books' 17 MB

# Stage 3 continues stage 2 on present-day English (the shared data's modern-english/) mixed
# with the books and the EWT text, as corpus weights (``FILE:WEIGHT``): how many times one pass
# reads each file. The informal files are small, so they weigh more; the 94 MB of 1900-1955
# books and the 19th-century ones are read in part, enough that prose is not forgotten. About
# 70 MB a pass: 60% chat, dialogue, tweets, e-mail, jokes; 34% books; 6% dictionary glosses.
# The last file's end is the validation split (chat, the register the base is for).
MODERN_MIX: dict[str, float] = {
    "broad-twitter-corpus.txt": 5, "masc.txt": 3, "fortunes.txt": 2, "jargon-file.txt": 1,
    "ud-atis-eslspok.txt": 1, "taskmaster-4.txt": 1, "schema-guided-dialogue.txt": 0.5,
    "wordnet-glosses.txt": 0.5, "books-1900-1955.txt": 0.2, EWT_TEXT: 3, GUTENBERG: 0.3,
    "chitchat.txt": 1,
}
# The last 2% of each modern file (from a unit boundary on) is never trained on: the held-out
# text that docs/base-model.md scores the bases on.
HELD_OUT_FRACTION = 0.02

# On a GPU the same model, trained for minutes: 256 x 128 tokens a step fill far more of the
# GPU than 64 x 128 (the recurrence is sequential, so only the batch widens each step), and
# Adam's rate rises about with the square root of the batch. Not yet run on a GPU.
GPU_PRESET: dict[str, dict[str, object]] = {
    "stage1": {"batch_size": 256, "lr": 3e-3, "warmup_steps": 300, "eval_every": 500,
               "threads": None, "time_budget": "4m"},
    "stage2": {"batch_size": 256, "lr": 1.5e-3, "warmup_steps": 100, "eval_every": 500,
               "threads": None, "time_budget": "2m"},
}


def stage_settings(preset: str, minutes: str | None, overrides: dict[str, Any],
                   ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The ``weft.train`` options of stages 1, 2 and 3."""
    stages: list[dict[str, Any]] = [dict(SETTINGS), dict(WEB_SETTINGS), dict(MODERN_SETTINGS)]
    if preset == "gpu":
        stages[0].update(GPU_PRESET["stage1"])
        stages[1].update(GPU_PRESET["stage2"])
        stages[2].update(GPU_PRESET["stage2"])
    if minutes is not None:
        try:
            budgets = [float(m) for m in minutes.split(",")]
            if len(budgets) not in (2, 3):
                raise ValueError
        except ValueError:
            raise SystemExit(f"--minutes takes STAGE1,STAGE2[,STAGE3] (e.g. 4,2), not "
                             f"{minutes!r}") from None
        for stage, budget in zip(stages, budgets, strict=False):
            stage["time_budget"] = f"{budget:g}m"
    first, second, third = ({**stage, **overrides} for stage in stages)
    return first, second, third


def unit_boundary(text: str, at: int) -> int:
    """The first unit boundary from ``at`` on: a blank line (dialogues, paragraphs), else a
    line end; the whole text if there is none."""
    for boundary in ("\n\n", "\n"):
        found = text.find(boundary, at)
        if found >= 0:
            return found + len(boundary)
    return len(text)


def split_held_out(modern: Path, folder: Path) -> None:
    """Each ``*.txt`` of ``modern`` cut in two: ``folder/train/NAME`` (the first 98%) and
    ``folder/held-out/NAME`` (the rest, from a unit boundary on), written once."""
    for part in ("train", "held-out"):
        (folder / part).mkdir(parents=True, exist_ok=True)
    for source in sorted(modern.glob("*.txt")):
        if (folder / "held-out" / source.name).exists():
            continue  # kept from an earlier start: a resume must read the same files
        text = source.read_text(encoding="utf-8")
        cut = unit_boundary(text, int(len(text) * (1 - HELD_OUT_FRACTION)))
        (folder / "train" / source.name).write_text(text[:cut], encoding="utf-8")
        (folder / "held-out" / source.name).write_text(text[cut:], encoding="utf-8")


def modern_sources(modern: Path, gutenberg: Path, web_text: Path, folder: Path) -> list[str]:
    """Stage 3's corpus, as weighted sources (MODERN_MIX), after writing its files."""
    split_held_out(modern, folder)
    ewt = folder / "train" / EWT_TEXT
    if not ewt.exists():
        ewt.write_text(conllu_text(web_text), encoding="utf-8")
    missing = [name for name in MODERN_MIX
               if name not in (GUTENBERG, EWT_TEXT) and not (modern / name).exists()]
    if missing:
        raise SystemExit(f"{modern} lacks {', '.join(missing)}: pass the modern-english folder")
    return [f"{gutenberg if name == GUTENBERG else folder / 'train' / name}:{weight:g}"
            for name, weight in MODERN_MIX.items()]


def reversed_sources(sources: list[str], folder: Path) -> list[str]:
    """Weighted sources with every file reversed by characters into ``folder`` (same names and
    weights, written once); a folder of books becomes a folder of its books, each with its
    Gutenberg header and footer cut off before reversing (reversed, no marker is found)."""
    out: list[str] = []
    for source in sources:
        path_text, _, weight = source.rpartition(":")
        path = Path(path_text)
        target = folder / path.name
        files = sorted(path.glob("*.txt")) if path.is_dir() else [path]
        for file in files:
            reversed_file = target / file.name if path.is_dir() else target
            if reversed_file.exists():
                continue  # kept from an earlier start: a resume must read the same files
            reversed_file.parent.mkdir(parents=True, exist_ok=True)
            text = file.read_text(encoding="utf-8")
            if path.is_dir():
                text, _ = strip_gutenberg(text)
            reversed_file.write_text(text[::-1], encoding="utf-8")
        out.append(f"{target}:{weight}")
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """``FIELD=VALUE`` with VALUE read as JSON where it is JSON (numbers, true, null)."""
    field, sep, value = text.partition("=")
    if not sep or not field:
        raise SystemExit(f"--set takes FIELD=VALUE, not {text!r}")
    try:
        return field, json.loads(value)
    except json.JSONDecodeError:
        return field, value


def conllu_text(path: Path) -> str:
    """The sentences of a CoNLL-U file as running text: a paragraph per line, a blank line
    between documents (the ``# newdoc`` / ``# newpar`` / ``# text =`` comments)."""
    documents: list[list[list[str]]] = []
    for line in path.open(encoding="utf-8"):
        if line.startswith("# newdoc") or not documents:
            documents.append([[]])
        if line.startswith("# newpar") and documents[-1][-1]:
            documents[-1].append([])
        if line.startswith("# text = "):
            documents[-1][-1].append(line.removeprefix("# text = ").strip())
    return "\n\n".join("\n".join(" ".join(par) for par in doc if par) for doc in documents) + "\n"


def export(run_dir: Path, target: Path = TARGET, start: str | None = None,
           books: str = "gutenberg", storage: str = STORAGE, backward: bool = False) -> None:
    """Copy a finished run's files into ``target`` with a fresh manifest and a LICENSE.md
    naming every source; ``start`` names the stage it started from (its config's
    ``init_from``); ``books`` is the name of the folder of Gutenberg books; ``storage`` is how
    the weights are stored (``bf16`` or ``float32``); ``backward``: the run read reversed
    text, which its config then says (``"reversed": true``, checked by the tagger)."""
    target.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        shutil.copyfile(run_dir / name, target / name)
    if storage != "float32":
        store_weights(target / WEIGHTS, target / WEIGHTS, storage)  # before the manifest
    # The shipped config names the corpus by folder name only: no machine's paths. Device and
    # precision go back to "auto": a base trained on a GPU is used on whatever the user has.
    config = json.loads((target / CONFIG).read_text())
    config["corpus"] = [Path(c).name for c in config.get("corpus", [])]
    config["train"].update(threads=None, device="auto", precision="auto")
    if backward:
        config["reversed"] = True
    if config.get("init_from"):  # name the stage, not a path or the old builtin
        config["init_from"]["name"] = start or "an earlier stage of tools/train_base_model.py"
    (target / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    (target / LICENSE).write_text(licence_text(config["corpus"], books, f"builtin:{target.name}"),
                                  encoding="utf-8")
    manifest = {"sha256": {name: sha256_file(target / name) for name in FILES}}
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"exported {run_dir} to {target}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", type=Path, help="folder of Gutenberg .txt books")
    parser.add_argument("--web-text", type=Path, metavar="EWT_TRAIN",
                        help="en_ewt-ud-train.conllu: adds stage 2 on web text")
    parser.add_argument("--modern", type=Path, metavar="MODERN_DIR",
                        help="the modern-english folder: adds stage 3 (needs --web-text)")
    parser.add_argument("--out", type=Path, default=Path("runs/base-english"))
    parser.add_argument("--stage1", metavar="RUN",
                        help="start stage 2 from this finished stage-1 run (skips stage 1)")
    parser.add_argument("--stage2", metavar="RUN",
                        help="start stage 3 from this finished stage-2 run or builtin:english "
                        "(skips stages 1 and 2)")
    parser.add_argument("--export-only", type=Path, metavar="RUN_DIR")
    parser.add_argument("--export-to", type=Path, metavar="DIR",
                        help="where the model goes (default: the package's builtin:english, "
                        "or builtin:english-backward with --backward)")
    parser.add_argument("--backward", action="store_true",
                        help="train (or export) the backward LM: stage 3's mix reversed")
    parser.add_argument("--storage", choices=WEIGHT_STORAGE, default=STORAGE,
                        help=f"how the exported weights are stored (default {STORAGE}: half "
                        "of float32's size; loading reads them as float32)")
    parser.add_argument("--preset", choices=("cpu", "gpu"), default="cpu",
                        help="cpu: the settings the shipped model was trained with")
    parser.add_argument("--minutes", metavar="STAGE1,STAGE2[,STAGE3]",
                        help="time budgets of the stages, in minutes")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="FIELD=VALUE", help="a weft.train option for every stage")
    args = parser.parse_args(argv)
    if args.export_to is None:
        args.export_to = BACKWARD_TARGET if args.backward else TARGET
    if args.export_only is not None:
        export(args.export_only, args.export_to,
               books=args.corpus.name if args.corpus else "gutenberg", storage=args.storage,
               backward=args.backward)
        return
    if args.corpus is None:
        parser.error("give the folder of Gutenberg books, or --export-only RUN_DIR")
    if args.modern is not None and args.web_text is None:
        parser.error("--modern (stage 3) needs --web-text: it reads the EWT text too")
    if args.backward and args.modern is None:
        parser.error("--backward reads stage 3's mix: give --web-text and --modern")
    import weft

    settings, web_settings, modern_settings = stage_settings(
        args.preset, args.minutes, dict(parse_override(o) for o in args.overrides))
    # The shape comes from stage 1 (--init-from refuses shape flags): --set's reach stage 1 only.
    web_settings = {k: v for k, v in web_settings.items() if k not in SHAPE_OPTIONS}
    modern_settings = {k: v for k, v in modern_settings.items() if k not in SHAPE_OPTIONS}
    if args.backward:
        train_backward(args, settings, modern_settings)
        return
    stage2 = args.stage2 or Path(f"{args.out}-web")
    if args.stage2 is None:
        stage1 = args.stage1 or args.out
        if args.stage1 is None:
            weft.train(str(args.corpus), out=args.out, **settings)
        if args.web_text is None:
            export(Path(stage1), args.export_to, books=args.corpus.name, storage=args.storage)
            return
        stage2.mkdir(parents=True, exist_ok=True)
        web = stage2.parent / f"{stage2.name}-ewt-train.txt"
        web.write_text(conllu_text(args.web_text) * WEB_REPEATS, encoding="utf-8")
        weft.train([str(web), str(args.corpus)], out=stage2, init_from=stage1, **web_settings)
    if args.modern is None:
        export(Path(stage2), args.export_to, "stage 1 of tools/train_base_model.py (the books)",
               args.corpus.name, args.storage)
        return
    stage3 = Path(f"{args.out}-modern")
    sources = modern_sources(args.modern, args.corpus, args.web_text,
                             stage3.parent / f"{stage3.name}-data")
    weft.train(sources, out=stage3, init_from=stage2, **modern_settings)
    export(stage3, args.export_to, "stage 2 of tools/train_base_model.py (books and EWT)",
           args.corpus.name, args.storage)


def train_backward(args: argparse.Namespace, settings: dict[str, Any],
                   modern_settings: dict[str, Any]) -> None:
    """The backward LM: stage 3's mix reversed, from ``--stage2`` (stage 3's settings) or from
    scratch (stage 1's shape and rate, stage 3's budget and validation split)."""
    import weft

    run = Path(f"{args.out}-backward")
    data = Path(f"{args.out}-modern-data")  # the same held-out cut as stage 3's
    sources = reversed_sources(modern_sources(args.modern, args.corpus, args.web_text, data),
                               data / "train-reversed")
    if args.stage2 is not None:
        weft.train(sources, out=run, init_from=args.stage2, **modern_settings)
        start = f"{args.stage2} (read forwards), continued on reversed text"
    else:
        keep = ("time_budget", "val_fraction")
        weft.train(sources, out=run, **{**settings, **{k: modern_settings[k] for k in keep}})
        start = None
    export(run, args.export_to, start, args.corpus.name, args.storage, backward=True)


if __name__ == "__main__":
    main()
