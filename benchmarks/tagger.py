"""Tagger accuracy and speed: UD English EWT and the NLTK treebank sample (parts of speech),
WNUT-17 (named-entity spans); several settings side by side in one run.

    python -m benchmarks.tagger ewt                  # train on train, select on dev, test
    python -m benchmarks.tagger treebank             # universal tags, first 90% / last 10%
    python -m benchmarks.tagger wnut17 --set crf=true  # named-entity spans, test span F1
    python -m benchmarks.tagger ewt --budget 300 --set hidden=128 --set crf=true

With and without character-LM features, 15 minutes each (docs/tagging.md, "How to measure"):

    python -m benchmarks.tagger ewt --budget 900 --threads 2 --arm plain='{}' \\
        --arm lm='{"char_lm": "builtin:english"}' --name tagger_ewt_char_lm
    python -m benchmarks.tagger wnut17 --budget 900 --threads 2 --set crf=true --arm plain='{}' \\
        --arm lm='{"char_lm": "builtin:english"}' --name tagger_wnut17_char_lm

``ewt``: UPOS, trained on en_ewt-ud-train, model selected on en_ewt-ud-dev, scored on
en_ewt-ud-test (gold tokenization). ``treebank``: NLTK's treebank.zip mapped to the universal
tagset with en-ptb.map; the first 90% of sentences (file order) train, the last 10% of that
part selects the model, and the last 10% of all sentences test. It is reported with the
``-NONE-`` trace tokens (tagged X) and without them: the same model's accuracy over the
non-trace test tokens, and a second model trained and tested with traces dropped.
``wnut17``: WNUT-17 emerging entities, trained on wnut17train.conll, selected on
emerging.dev.conll (span F1), scored on emerging.test.annotated: exact-match span precision,
recall and F1 overall and per type (conlleval's, ``Tagger.evaluate``) and token accuracy.

``--set FIELD=VALUE`` sets a model or training option (TaggerModelConfig, TrainConfig field
names: ``crf``, ``hidden``, ``char_lm``, ``char_lm_backward``, ``char_lm_finetune``...). Each
``--arm NAME=JSON`` is one model per dataset part, its JSON object merged over the ``--set``
options; arms train one after another with the same budget and threads, and a frozen character
LM's pass over the training and dev sentences counts inside the budget (tagging/task.py). Without
``--arm`` there is one arm, its parts (``upos``, ``spans``, ``with_traces``...) at the top of the
result; with arms, each arm's settings and parts are under ``"arms"``. Tagging speed is
``Tagger.tag_sentences`` over the whole test set at 1 thread (LM features included), so arms
compare whatever ``--threads`` trained them. Data comes from $WEFT_DATA; the trained runs are
kept in ``runs/bench-NAME/`` (git-ignored) to try them out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import REPO, data_file, machine, parse_arm, parse_value, write_result
from weft.tagging.api import Tagger
from weft.tagging.model import TaggerModelConfig
from weft.tagging.readers import TRACE_TAG, ReadOptions, TaggedSentence, read_tagged
from weft.tagging.train import TaggerDataConfig, fit_tagger, tagger_train_config

DATASETS = ("ewt", "treebank", "wnut17")
# For scale, where weft has a goal (accuracy in percent)
TARGETS = {"ewt": 95.5, "treebank": 96.0}


def parse_arms(specs: list[str], options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``NAME=JSON`` arm specs as ``{name: options}``, each JSON object merged over
    ``options``; no specs give one arm, ``""``, of ``options`` alone."""
    if not specs:
        return {"": dict(options)}
    arms: dict[str, dict[str, Any]] = {}
    for spec in specs:
        name, settings = parse_arm(spec)
        if name in arms:
            raise SystemExit(f"--arm {name} is given twice")
        arms[name] = {**options, **settings}
    return arms


def tag_speed(tagger: Tagger, test: list[TaggedSentence]) -> float:
    """Tokens/s of tagging the whole test set at 1 thread; the thread count is restored."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tagger.tag_sentences([s.words for s in test[:50]])  # warm-up
        start = time.perf_counter()
        tagger.tag_sentences([s.words for s in test])
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    return sum(len(s) for s in test) / seconds


def run_one(data: TaggerDataConfig, test: list[TaggedSentence], budget: float, threads: int,
            options: dict[str, Any], out: Path,
            traces: list[list[bool]] | None = None) -> dict[str, Any]:
    """Train with ``data``, score on ``test``; accuracy and span figures in percent.

    ``traces`` marks the test tokens that are ``-NONE-`` traces (mapped tags hide them), to
    score the same predictions on the other tokens too.
    """
    model_fields = {f.name for f in dataclasses.fields(TaggerModelConfig)}
    model = TaggerModelConfig(**{k: v for k, v in options.items() if k in model_fields})
    train_options = {k: v for k, v in options.items() if k not in model_fields}
    config = tagger_train_config(time_budget=budget, threads=threads, patience=0,
                                 **train_options)
    start = time.perf_counter()
    result = fit_tagger(out, data, model, config, quiet=True)
    wall = time.perf_counter() - start
    tagger = Tagger(out)
    metrics = tagger.evaluate(test, top_confusions=5)
    selected_on = "best_dev_f1" if tagger.scheme else "best_dev_accuracy"
    figures: dict[str, Any] = {
        "test_accuracy": round(100 * metrics["accuracy"], 2),
        "test_seen_accuracy": round(100 * metrics["seen_accuracy"], 2),
        "test_unseen_accuracy": round(100 * metrics["unseen_accuracy"], 2),
        "test_tokens": metrics["tokens"],
        "test_unseen_tokens": metrics["unseen_tokens"],
        selected_on: round(100 * (result.best or 0.0), 2),
        # the trainer's clock (the LM features' pass included) and the whole call (loading
        # the data and LMs, encoding for the LMs, the last evaluation and save)
        "train_clock_s": round(result.elapsed, 1),
        "train_wall_s": round(wall, 1),
        "train_steps": result.steps,
        "stopped_because": result.stopped_because,
        "tag_tokens_per_s": round(tag_speed(tagger, test)),
        "tag_threads": 1,
        "confusions": metrics["confusions"],
        "config": {"model": dataclasses.asdict(tagger.model_config),
                   "train": tagger.config["train"]},
    }
    if "spans" in metrics:
        spans = metrics["spans"]
        figures["scheme"] = metrics["scheme"]
        figures["spans"] = {**_percent(spans), "per_type": {
            kind: _percent(row) for kind, row in spans["per_type"].items()}}
    if traces is not None and any(any(row) for row in traces):
        # the same model's predictions scored on the tokens that are not -NONE- traces
        predicted = tagger.tag_sentences([s.words for s in test])
        ok = total = 0
        for sentence, pred, marks in zip(test, predicted, traces, strict=True):
            for gold, guess, trace in zip(sentence.tags, pred.tags, marks, strict=True):
                if not trace:
                    total += 1
                    ok += gold == guess
        figures["test_accuracy_without_trace_tokens"] = round(100 * ok / total, 2)
    return figures


def _percent(row: dict[str, Any]) -> dict[str, Any]:
    """span_metrics' fractions as percentages; counts as they are."""
    return {k: round(100 * v, 2) if k in ("precision", "recall", "f1") else v
            for k, v in row.items() if k != "per_type"}


def run_dataset(dataset: str, budget: float, threads: int, options: dict[str, Any], out: Path,
                skip_no_trace_model: bool = False) -> dict[str, Any]:
    """One arm's figures on ``dataset``, keyed by part (``upos``, ``spans``, ``with_traces``,
    ``without_traces``)."""
    if dataset == "ewt":
        folder = "ud-english-ewt/"
        data = TaggerDataConfig(train=str(data_file(folder + "en_ewt-ud-train.conllu")),
                                dev=str(data_file(folder + "en_ewt-ud-dev.conllu")))
        test = read_tagged(data_file(folder + "en_ewt-ud-test.conllu"))
        return {"upos": run_one(data, test, budget, threads, options, out / "ewt")}
    if dataset == "wnut17":
        data = TaggerDataConfig(train=str(data_file("wnut17/wnut17train.conll")),
                                dev=str(data_file("wnut17/emerging.dev.conll")))
        test = read_tagged(data_file("wnut17/emerging.test.annotated"))
        return {"spans": run_one(data, test, budget, threads, options, out / "wnut17")}
    treebank = str(data_file("treebank/treebank.zip"))
    tag_map = str(data_file("treebank/universal_tagset.zip"))
    parts: dict[str, Any] = {}
    for keep in (True, False):
        if not keep and skip_no_trace_model:
            continue
        data = TaggerDataConfig(train=treebank, tagset_map=tag_map, keep_traces=keep,
                                sentences=":0.9", dev_fraction=0.1)
        test = read_tagged(treebank, ReadOptions(tagset_map=tag_map, keep_traces=keep,
                                                 sentences="0.9:"))
        raw = read_tagged(treebank, ReadOptions(keep_traces=keep, sentences="0.9:"))
        traces = [[t == TRACE_TAG for t in s.tags] for s in raw]
        key = "with_traces" if keep else "without_traces"
        parts[key] = run_one(data, test, budget, threads, options, out / key, traces)
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=DATASETS)
    parser.add_argument("--budget", type=float, default=780.0, help="training seconds per model")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a model or training option (repeatable)")
    parser.add_argument("--arm", action="append", default=[], metavar="NAME=JSON",
                        help="a model per arm, these settings over --set's (repeatable)")
    parser.add_argument("--skip-no-trace-model", action="store_true",
                        help="treebank: do not train the second model without traces")
    parser.add_argument("--name", default=None)
    args = parser.parse_args()
    options = {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.set)}
    arms = parse_arms(args.arm, options)
    torch.set_num_threads(args.threads)
    info = machine()
    report: dict[str, Any] = {"benchmark": f"tagger_{args.dataset}", "budget_s": args.budget,
                              "threads": args.threads, "overrides": options}
    tmp = REPO / "runs" / f"bench-{args.name or args.dataset}"  # kept for trying it out
    shutil.rmtree(tmp, ignore_errors=True)
    for name, settings in arms.items():
        parts = run_dataset(args.dataset, args.budget, args.threads, settings, tmp / name,
                            args.skip_no_trace_model)
        if name:
            report.setdefault("arms", {})[name] = {"settings": settings, **parts}
            print(name, json.dumps(parts), flush=True)
        else:
            report.update(parts)
    if args.dataset in TARGETS:
        report["target_test_accuracy"] = TARGETS[args.dataset]
    report["machine"] = info
    write_result(args.name or f"tagger_{args.dataset}", report)


if __name__ == "__main__":
    main()
