"""A trained tagger loaded from its run directory: tag raw text or tokenized sentences, evaluate.

``weft.load(run_dir)`` returns one for a tagger run (see api.py); what the directory holds is
runs.py's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from weft.device import resolve_device
from weft.errors import WeftError
from weft.io import read_json
from weft.runs import (
    CONFIG,
    TAGGER,
    VOCAB,
    load_weights,
    read_run_config,
    run_kind,
    trained_weights,
)
from weft.tagging.batching import encode, length_batches, make_batch
from weft.tagging.lm_setup import open_tagger_lms
from weft.tagging.metrics import evaluate_tags
from weft.tagging.model import BiLSTMTagger, TaggerModelConfig
from weft.tagging.readers import TaggedSentence
from weft.tagging.spans import convert, span_dicts, span_metrics
from weft.tagging.tokenize import (
    Token,
    join_with_offsets,
    tokenize_sentences,
    tokenize_with_offsets,
)
from weft.tagging.vocab import TaggerVocab
from weft.typed_settings import from_saved

log = logging.getLogger("weft")


@dataclass
class TaggedOutput:
    """Tags of one sentence and, when asked for, each token's probability for every tag."""

    words: list[str]
    tags: list[str]
    probabilities: list[dict[str, float]] | None = None
    # A span tagger's spans: text, type, character start and end, token range [first, last+1)
    spans: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"words": self.words, "tags": self.tags}
        if self.spans is not None:
            out["spans"] = self.spans
        if self.probabilities is not None:
            out["probabilities"] = self.probabilities
        return out

    def __str__(self) -> str:
        return " ".join(f"{w}/{t}" for w, t in zip(self.words, self.tags, strict=True))


class Tagger:
    """A trained tagger: ``Tagger("runs/pos").tag("The old man the boats.")``; a span tagger
    (named entities) also gives spans: ``Tagger("runs/ner").spans("I met Ada in Paris.")``."""

    def __init__(self, run_dir: str | Path, device: str = "cpu") -> None:
        self.run_dir = Path(run_dir)
        self.config: dict[str, Any] = read_run_config(self.run_dir)
        if run_kind(self.config) != TAGGER:
            raise WeftError(f"{run_dir} holds a {run_kind(self.config)!r} run, not a tagger")
        self.vocab = TaggerVocab.from_dict(read_json(self.run_dir / VOCAB))
        self.model_config = from_saved(TaggerModelConfig, self.config.get("model", {}),
                                       self.run_dir / CONFIG)
        self.device = resolve_device(device)
        # Its character LMs, if any: run over every text it tags (a fine-tuned tagger's are
        # part of its network, their weights in its own model.safetensors).
        self.char_lm = open_tagger_lms(self.model_config, self.run_dir, "this tagger was trained")
        finetuned = self.char_lm if self.model_config.char_lm_finetune else None
        self.model = BiLSTMTagger(self.model_config, finetuned)
        load_weights(self.model, trained_weights(self.run_dir))
        self.model.to(self.device).eval()
        if self.char_lm is not None:
            self.char_lm.to(self.device).eval()
        self.scheme = self.model.use_tags(self.vocab.tags.itos)  # bio, bioes or None

    @property
    def tags(self) -> list[str]:
        return list(self.vocab.tags.itos)

    def info(self) -> dict[str, Any]:
        """What ``weft info`` shows: sizes, settings, data and the tag set."""
        params = sum(p.numel() for p in self.model.parameters())
        return {"run_dir": str(self.run_dir), "kind": TAGGER, "parameters": params,
                "tags": self.tags, "model": asdict(self.model_config),
                **{k: self.config[k] for k in ("data", "train", "sizes") if k in self.config}}

    def tag(self, text: str | Sequence[str]) -> list[tuple[str, str]]:
        """``(word, tag)`` pairs: raw text is tokenized and split into sentences first; a list
        of strings is taken as one tokenized sentence."""
        sentences = tokenize_sentences(text) if isinstance(text, str) else [list(text)]
        return [pair for out in self.tag_sentences(sentences)
                for pair in zip(out.words, out.tags, strict=True)]

    def tag_text(self, text: str, probabilities: bool = False) -> list[TaggedOutput]:
        """Tokenize raw text into sentences and tag each; a span tagger's spans have their
        character offsets in ``text``."""
        return self.tag_located(tokenize_with_offsets(text), text, probabilities)

    def tag_located(self, sentences: Sequence[Sequence[Token]], text: str,
                    probabilities: bool = False) -> list[TaggedOutput]:
        """Tag sentences of ``(word, start, end)`` tokens found in ``text``; a span tagger's
        spans then carry those character offsets."""
        outputs = self.tag_sentences([[w for w, _, _ in s] for s in sentences], probabilities)
        if self.scheme is not None:
            for out, sentence in zip(outputs, sentences, strict=True):
                offsets = [(start, end) for _, start, end in sentence]
                out.spans = span_dicts(out.words, out.tags, offsets, text)
        return outputs

    def spans(self, text: str) -> list[dict[str, Any]]:
        """A span tagger's spans of raw ``text``, each ``{"text", "type", "start", "end",
        "tokens"}`` with character offsets into ``text``."""
        if self.scheme is None:
            raise WeftError(f"{self.run_dir} tags parts of speech, not spans")
        return [span for out in self.tag_text(text) for span in out.spans or []]

    @torch.no_grad()
    def tag_sentences(
        self,
        sentences: Sequence[Sequence[str]],
        probabilities: bool = False,
        batch_size: int = 256,
    ) -> list[TaggedOutput]:
        """Tag tokenized sentences (empty ones give empty results), batched by length."""
        sentences = list(sentences)  # read twice below: a generator would be empty the 2nd time
        if any(isinstance(s, str) for s in sentences):
            raise WeftError("tag_sentences takes sentences as lists of words; tag a plain "
                            "string with tag() or tag_text()")
        outputs = [TaggedOutput([], [], [] if probabilities else None) for _ in sentences]
        todo = [i for i, s in enumerate(sentences) if len(s)]
        if not todo:
            return outputs
        data = encode(self.vocab, [list(sentences[i]) for i in todo])
        if self.char_lm is not None:
            data.lm_features = self.char_lm.compute(
                self.char_lm.encode([list(sentences[i]) for i in todo]))
        names = self.vocab.tags.itos
        table = self.model.encode_forms(data.form_chars, data.form_lengths)
        for indices in length_batches(data.lengths, batch_size):
            batch = make_batch(data, indices).to(self.device)
            if probabilities:
                best, probs = self.model.predict(batch, table)
                probs_cpu = probs.cpu()
            else:
                best = self.model.decode(batch, table)
            best_cpu = best.cpu()
            for row, i in enumerate(indices):
                n = int(batch.lengths[row])
                out = outputs[todo[i]]
                out.words = list(sentences[todo[i]])
                out.tags = [names[t] for t in best_cpu[row, :n].tolist()]
                if probabilities:
                    out.probabilities = [
                        {name: round(p, 4) for name, p in zip(names, dist, strict=True)}
                        for dist in probs_cpu[row, :n].tolist()
                    ]
        if self.scheme is not None:  # offsets in the words joined by single spaces
            for out in outputs:
                joined, offsets = join_with_offsets(out.words)
                out.spans = span_dicts(out.words, out.tags, offsets, joined)
        return outputs

    def evaluate(self, sentences: Sequence[TaggedSentence], top_confusions: int = 10
                 ) -> dict[str, Any]:
        """Accuracy (overall, seen and unseen words), per-tag P/R/F1 and confusions. Gold tags
        the model cannot predict are named in a warning (another tag set or column, likely)."""
        if not sentences:
            raise WeftError("nothing to evaluate: no tagged sentences")
        gold = [list(s.tags) for s in sentences]
        if self.scheme is not None:  # the gold spans in the model's scheme, for token accuracy
            gold = [convert(tags, self.scheme) for tags in gold]
        foreign = {t for tags in gold for t in tags} - set(self.tags)
        if foreign:
            log.warning("%d tag(s) of the evaluation file are not in the model's tag set and "
                        "can never be predicted: %s (another tag set? check --column and "
                        "--tagset-map)", len(foreign), ", ".join(sorted(foreign)[:10]))
        predicted = [p.tags for p in self.tag_sentences([s.words for s in sentences])]
        metrics = evaluate_tags([s.words for s in sentences], gold, predicted,
                                self.vocab.is_known, top_confusions)
        if self.scheme is not None:
            metrics["scheme"] = self.scheme
            metrics["spans"] = span_metrics(gold, predicted)
        return metrics


def load_tagger(run_dir: str | Path, device: str = "cpu") -> Tagger:
    """Load a trained tagger run directory."""
    return Tagger(run_dir, device)
