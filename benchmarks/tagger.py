"""Part-of-speech tagger accuracy and speed on UD English EWT and the NLTK treebank sample.

    python -m benchmarks.tagger ewt                  # train on train, select on dev, test
    python -m benchmarks.tagger treebank             # universal tags, first 90% / last 10%
    python -m benchmarks.tagger ewt --budget 300 --set hidden=128 --set crf=true

``ewt``: UPOS, trained on en_ewt-ud-train, model selected on en_ewt-ud-dev, scored on
en_ewt-ud-test (gold tokenization). ``treebank``: NLTK's treebank.zip mapped to the universal
tagset with en-ptb.map; the first 90% of sentences (file order) train, the last 10% of that
part selects the model, and the last 10% of all sentences test. It is reported with the
``-NONE-`` trace tokens (tagged X) and without them: the same model's accuracy over the
non-trace test tokens, and a second model trained and tested with traces dropped.
Tagging speed is ``Tagger.tag_sentences`` over the whole test set. Data comes from $WEFT_DATA;
the trained runs are kept in ``runs/bench-NAME/`` (git-ignored) to try them out.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import REPO, data_file, machine, parse_value, write_result
from weft.tagging.api import Tagger
from weft.tagging.model import TaggerModelConfig
from weft.tagging.readers import TRACE_TAG, ReadOptions, TaggedSentence, read_tagged
from weft.tagging.train import TaggerDataConfig, fit_tagger, tagger_train_config


def run_one(data: TaggerDataConfig, test: list[TaggedSentence], budget: float, threads: int,
            options: dict[str, Any], out: Path,
            traces: list[list[bool]] | None = None) -> dict[str, Any]:
    """Train with ``data``, score on ``test``; accuracy figures in percent.

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
    tagger.tag_sentences([s.words for s in test[:50]])  # warm-up
    start = time.perf_counter()
    predicted = tagger.tag_sentences([s.words for s in test])
    tag_seconds = time.perf_counter() - start
    metrics = tagger.evaluate(test, top_confusions=5)
    tokens = sum(len(s) for s in test)
    figures = {
        "test_accuracy": round(100 * metrics["accuracy"], 2),
        "test_seen_accuracy": round(100 * metrics["seen_accuracy"], 2),
        "test_unseen_accuracy": round(100 * metrics["unseen_accuracy"], 2),
        "test_tokens": tokens,
        "test_unseen_tokens": metrics["unseen_tokens"],
        "best_dev_accuracy": round(100 * (result.best or 0.0), 2),
        "train_wall_s": round(wall, 1),
        "train_steps": result.steps,
        "stopped_because": result.stopped_because,
        "tag_tokens_per_s": round(tokens / tag_seconds),
        "confusions": metrics["confusions"],
        "config": {"model": dataclasses.asdict(tagger.model_config),
                   "train": tagger.config["train"]},
    }
    if traces is not None and any(any(row) for row in traces):
        # the same predictions scored on the tokens that are not -NONE- traces
        ok = total = 0
        for sentence, pred, marks in zip(test, predicted, traces, strict=True):
            for gold, guess, trace in zip(sentence.tags, pred.tags, marks, strict=True):
                if not trace:
                    total += 1
                    ok += gold == guess
        figures["test_accuracy_without_trace_tokens"] = round(100 * ok / total, 2)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=["ewt", "treebank"])
    parser.add_argument("--budget", type=float, default=780.0, help="training seconds per model")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a model or training option (repeatable)")
    parser.add_argument("--skip-no-trace-model", action="store_true",
                        help="treebank: do not train the second model without traces")
    parser.add_argument("--name", default=None)
    args = parser.parse_args()
    options = {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.set)}
    torch.set_num_threads(args.threads)
    info = machine()
    report: dict[str, Any] = {"benchmark": f"tagger_{args.dataset}", "budget_s": args.budget,
                              "overrides": options}
    tmp = REPO / "runs" / f"bench-{args.name or args.dataset}"  # kept for trying it out
    shutil.rmtree(tmp, ignore_errors=True)
    if args.dataset == "ewt":
        folder = "ud-english-ewt/"
        data = TaggerDataConfig(train=str(data_file(folder + "en_ewt-ud-train.conllu")),
                                dev=str(data_file(folder + "en_ewt-ud-dev.conllu")))
        test = read_tagged(data_file(folder + "en_ewt-ud-test.conllu"))
        report["upos"] = run_one(data, test, args.budget, args.threads, options,
                                 tmp / "ewt")
        report["target_test_accuracy"] = 95.5
    else:
        treebank = str(data_file("treebank/treebank.zip"))
        tag_map = str(data_file("treebank/universal_tagset.zip"))
        for keep in (True, False):
            if not keep and args.skip_no_trace_model:
                continue
            data = TaggerDataConfig(train=treebank, tagset_map=tag_map, keep_traces=keep,
                                    sentences=":0.9", dev_fraction=0.1)
            test = read_tagged(treebank, ReadOptions(tagset_map=tag_map, keep_traces=keep,
                                                     sentences="0.9:"))
            raw = read_tagged(treebank, ReadOptions(keep_traces=keep, sentences="0.9:"))
            traces = [[t == TRACE_TAG for t in s.tags] for s in raw]
            key = "with_traces" if keep else "without_traces"
            report[key] = run_one(data, test, args.budget, args.threads, options,
                                  tmp / key, traces)
        report["target_test_accuracy"] = 96.0
    report["machine"] = info
    write_result(args.name or f"tagger_{args.dataset}", report)


if __name__ == "__main__":
    main()
