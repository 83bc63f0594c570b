"""Train the built-in base model (``builtin:english``) from public-domain books, and ship it.

    python tools/train_base_model.py GUTENBERG_DIR --web-text EWT_TRAIN   # two stages, then export
    python tools/train_base_model.py GUTENBERG_DIR           # the books only (stage 1), then export
    python tools/train_base_model.py --export-only RUN_DIR   # export a finished run
    python tools/train_base_model.py GUTENBERG_DIR --web-text EWT_TRAIN --preset gpu \
        --minutes 4,2 --export-to OUT_DIR                    # on a GPU (benchmarks/gpu_base.sh)

GUTENBERG_DIR is a folder of plain-text Project Gutenberg books (the project's shared data has
22, listed with their sources in its SOURCES.md); EWT_TRAIN is the training part of the
Universal Dependencies English Web Treebank (``en_ewt-ud-train.conllu``: reviews, e-mails,
blogs and forum posts). None of them is text that a benchmark scores (the UD test set is not
used). Stage 1 trains on the books; stage 2 continues from stage 1 on the web text (repeated,
so that it is about a fifth of what is read) followed by the books, so that the base knows
informal present-day English as well as 19th-century prose.

Training is ordinary ``weft train`` with the settings below; exporting copies the run's
``config.json``, ``tokenizer.json``, ``generation.json`` and best weights into
``src/weft/builtin/english/`` (or ``--export-to``) with a ``MANIFEST.json`` of their SHA-256.
docs/base-model.md records how long it took, on what, and how well it does.

``--preset gpu`` keeps the model's shape (what a 2-core CPU fine-tunes in two minutes, the
criterion) and only changes how it is trained: batches 4x larger for a GPU, a learning rate
raised with them, and budgets of minutes (``--minutes STAGE1,STAGE2``) instead of hours.
``--set FIELD=VALUE`` overrides one ``weft.train`` option in both stages.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from weft.builtin import MANIFEST
from weft.io import sha256_file
from weft.runs import CONFIG, GENERATION, TOKENIZER, WEIGHTS
from weft.training.init_from import SHAPE_OPTIONS

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "src" / "weft" / "builtin" / "english"
FILES = (CONFIG, TOKENIZER, GENERATION, WEIGHTS)

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
# Stage 2 starts from stage 1 (``--init-from``, so the architecture is stage 1's).
WEB_SETTINGS: dict[str, object] = {
    "strip_gutenberg": True, "dropout": 0.0, "batch_size": 64, "seq_len": 128, "lr": 1e-3,
    "warmup_steps": 100, "val_fraction": 0.02, "eval_every": 1000, "patience": 0,
    "plateau_patience": 0, "time_budget": "85m", "threads": 1, "seed": 1337,
}
WEB_REPEATS = 4  # the web text is 1.0 MB against the books' 17 MB

# On a GPU the same model, trained for minutes: 256 x 128 tokens a step fill far more of the
# GPU than 64 x 128 (the recurrence is sequential, so only the batch widens each step), and
# Adam's rate rises about with the square root of the batch. Not yet run on a GPU.
GPU_PRESET: dict[str, dict[str, object]] = {
    "stage1": {"batch_size": 256, "lr": 3e-3, "warmup_steps": 300, "eval_every": 500,
               "threads": None, "time_budget": "4m"},
    "stage2": {"batch_size": 256, "lr": 1.5e-3, "warmup_steps": 100, "eval_every": 500,
               "threads": None, "time_budget": "2m"},
}


def stage_settings(preset: str, minutes: str | None,
                   overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``weft.train`` options of stage 1 and stage 2."""
    stage1: dict[str, Any] = dict(SETTINGS)
    stage2: dict[str, Any] = dict(WEB_SETTINGS)
    if preset == "gpu":
        stage1.update(GPU_PRESET["stage1"])
        stage2.update(GPU_PRESET["stage2"])
    if minutes is not None:
        try:
            first, second = (float(m) for m in minutes.split(","))
        except ValueError:
            raise SystemExit(f"--minutes takes STAGE1,STAGE2 (e.g. 4,2), not {minutes!r}") from None
        stage1["time_budget"], stage2["time_budget"] = f"{first:g}m", f"{second:g}m"
    return {**stage1, **overrides}, {**stage2, **overrides}


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


def export(run_dir: Path, target: Path = TARGET) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        shutil.copyfile(run_dir / name, target / name)
    # The shipped config names the corpus by folder name only: no machine's paths. Device and
    # precision go back to "auto": a base trained on a GPU is used on whatever the user has.
    config = json.loads((target / CONFIG).read_text())
    config["corpus"] = [Path(c).name for c in config.get("corpus", [])]
    config["train"].update(threads=None, device="auto", precision="auto")
    if config.get("init_from"):  # stage 2: name stage 1, not a path or the old builtin
        config["init_from"]["name"] = "stage 1 of tools/train_base_model.py (the books alone)"
    (target / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    manifest = {"sha256": {name: sha256_file(target / name) for name in FILES}}
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"exported {run_dir} to {target}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", type=Path, help="folder of Gutenberg .txt books")
    parser.add_argument("--web-text", type=Path, metavar="EWT_TRAIN",
                        help="en_ewt-ud-train.conllu: adds stage 2 on web text")
    parser.add_argument("--out", type=Path, default=Path("runs/base-english"))
    parser.add_argument("--stage1", metavar="RUN",
                        help="start stage 2 from this finished stage-1 run (skips stage 1)")
    parser.add_argument("--export-only", type=Path, metavar="RUN_DIR")
    parser.add_argument("--export-to", type=Path, default=TARGET, metavar="DIR",
                        help="where the model goes (default: the package's builtin:english)")
    parser.add_argument("--preset", choices=("cpu", "gpu"), default="cpu",
                        help="cpu: the settings the shipped model was trained with")
    parser.add_argument("--minutes", metavar="STAGE1,STAGE2",
                        help="time budgets of the two stages, in minutes")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="FIELD=VALUE", help="a weft.train option for both stages")
    args = parser.parse_args(argv)
    if args.export_only is not None:
        export(args.export_only, args.export_to)
        return
    if args.corpus is None:
        parser.error("give the folder of Gutenberg books, or --export-only RUN_DIR")
    import weft

    settings, web_settings = stage_settings(
        args.preset, args.minutes, dict(parse_override(o) for o in args.overrides))
    stage1 = args.stage1 or args.out
    if args.stage1 is None:
        weft.train(str(args.corpus), out=args.out, **settings)
    if args.web_text is None:
        export(Path(stage1), args.export_to)
        return
    stage2 = Path(f"{args.out}-web")
    stage2.mkdir(parents=True, exist_ok=True)
    web = stage2.parent / f"{stage2.name}-ewt-train.txt"
    web.write_text(conllu_text(args.web_text) * WEB_REPEATS, encoding="utf-8")
    # The shape comes from stage 1 (--init-from refuses shape flags): --set's reach stage 1 only.
    web_settings = {k: v for k, v in web_settings.items() if k not in SHAPE_OPTIONS}
    weft.train([str(web), str(args.corpus)], out=stage2, init_from=stage1, **web_settings)
    export(stage2, args.export_to)


if __name__ == "__main__":
    main()
