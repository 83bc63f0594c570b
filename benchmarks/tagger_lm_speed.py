"""Tagging speed with and without character-LM features (``--char-lm builtin:english``).

Tokens per second of ``Tagger.tag_sentences`` on 1 thread over the first ``--sentences`` of
UD English EWT dev, for a default-sized tagger without LM features, one with the forward
features of ``builtin:english`` (2x512 byte LSTM, frozen: the LM runs over every tagged
sentence), and one with forward and backward features (the same model standing in for a
backward LM of its size). Speed does not depend on what the weights have learned, so the
taggers' weights are random (saved and loaded through real run directories). Also reports the
time the LMs take on their own.

    python -m benchmarks.tagger_lm_speed [--sentences 400]
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
from weft.builtin import builtin_dir
from weft.io import sha256_file
from weft.runs import CONFIG, TAGGER, VOCAB, WEIGHTS, save_weights
from weft.tagging.api import Tagger
from weft.tagging.model import BiLSTMTagger, TaggerModelConfig
from weft.tagging.readers import read_tagged
from weft.tagging.vocab import TaggerVocab

LM = "builtin:english"


def make_run(folder: Path, vocab: TaggerVocab, config: TaggerModelConfig) -> Tagger:
    folder.mkdir()
    torch.manual_seed(0)
    save_weights(BiLSTMTagger(config), folder / WEIGHTS)
    (folder / VOCAB).write_text(json.dumps(vocab.to_dict()))
    (folder / CONFIG).write_text(json.dumps({"kind": TAGGER, "model": dataclasses.asdict(config)}))
    return Tagger(folder)


def rate(tagger: Tagger, sentences: list[list[str]], tokens: int, repeats: int) -> list[float]:
    tagger.tag_sentences(sentences[:20])  # warm-up
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        tagger.tag_sentences(sentences)
        rates.append(tokens / (time.perf_counter() - start))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    folder = "ud-english-ewt/"
    train = read_tagged(data_file(folder + "en_ewt-ud-train.conllu"))
    dev = [list(s.words) for s in read_tagged(data_file(folder + "en_ewt-ud-dev.conllu"))]
    dev = dev[: args.sentences]
    tokens = sum(len(s) for s in dev)
    chars = sum(len(" ".join(s)) + 2 for s in dev)
    vocab = TaggerVocab.build((s.words, s.tags) for s in train)
    plain = dataclasses.replace(TaggerModelConfig(), num_words=len(vocab.words),
                                num_chars=len(vocab.chars), num_tags=len(vocab.tags))
    digest = sha256_file(builtin_dir(LM) / WEIGHTS)
    with_lm = dataclasses.replace(plain, char_lm=LM, lm_dim=512, char_lm_sha256=digest)
    # Speed only: the same model stands in for a backward LM of its size.
    both = dataclasses.replace(with_lm, char_lm_backward=LM, lm_dim=1024,
                               char_lm_backward_sha256=digest)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, config in (("without_lm", plain), ("with_char_lm", with_lm),
                             ("with_forward_and_backward", both)):
            tagger = make_run(Path(tmp) / name, vocab, config)
            rates = rate(tagger, dev, tokens, args.repeats)
            results[name] = {"best_tokens_per_s": round(max(rates)),
                             "all_tokens_per_s": [round(r) for r in rates]}
            if tagger.char_lm is not None:  # the LM's share: its features alone
                start = time.perf_counter()
                tagger.char_lm.compute(tagger.char_lm.encode(dev))
                seconds = time.perf_counter() - start
                results[name]["lm_seconds"] = round(seconds, 2)
                results[name]["lm_chars_per_s"] = round(chars / seconds)
    write_result("tagger_lm_speed", {
        "benchmark": "tagger_lm_speed",
        "threads": 1,
        "sentences": len(dev),
        "tokens": tokens,
        "char_lm": LM,
        **results,
        "machine": machine(),
    })


if __name__ == "__main__":
    main()
