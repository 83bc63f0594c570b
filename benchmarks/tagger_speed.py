"""Tagging speed: tokens per second of ``Tagger.tag_sentences`` over the UD English EWT test set.

The tagger has the default sizes and the vocabulary of en_ewt-ud-train; speed does not depend
on what the weights have learned, so they are random (saved and loaded through a real run
directory). Reported for 1 and 2 threads, best of ``--repeats`` passes.

    python -m benchmarks.tagger_speed
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import data_file, machine, write_result
from weft.runs import CONFIG, TAGGER, VOCAB, WEIGHTS, save_weights
from weft.tagging.api import Tagger
from weft.tagging.model import BiLSTMTagger, TaggerModelConfig
from weft.tagging.readers import read_tagged
from weft.tagging.vocab import TaggerVocab


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    folder = "ud-english-ewt/"
    train = read_tagged(data_file(folder + "en_ewt-ud-train.conllu"))
    test = [list(s.words) for s in read_tagged(data_file(folder + "en_ewt-ud-test.conllu"))]
    tokens = sum(len(s) for s in test)
    vocab = TaggerVocab.build((s.words, s.tags) for s in train)
    config = dataclasses.replace(TaggerModelConfig(), num_words=len(vocab.words),
                                 num_chars=len(vocab.chars), num_tags=len(vocab.tags))
    info = machine()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        torch.manual_seed(0)
        save_weights(BiLSTMTagger(config), run / WEIGHTS)
        (run / VOCAB).write_text(json.dumps(vocab.to_dict()))
        (run / CONFIG).write_text(json.dumps({"kind": TAGGER,
                                              "model": dataclasses.asdict(config)}))
        tagger = Tagger(run)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            tagger.tag_sentences(test[:100])  # warm-up
            rates = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                tagger.tag_sentences(test)
                rates.append(tokens / (time.perf_counter() - start))
            results[f"threads_{threads}"] = {"best_tokens_per_s": round(max(rates)),
                                             "all_tokens_per_s": [round(r) for r in rates]}
    write_result("tagger_speed", {
        "benchmark": "tagger_speed",
        "tokens": tokens,
        "sentences": len(test),
        "model": dataclasses.asdict(config),
        **results,
        "target_tokens_per_s": 20000,
        "machine": info,
    })


if __name__ == "__main__":
    main()
