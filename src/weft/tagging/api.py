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
from weft.tagging.metrics import evaluate_tags
from weft.tagging.model import BiLSTMTagger, TaggerModelConfig
from weft.tagging.readers import TaggedSentence
from weft.tagging.tokenize import tokenize_sentences
from weft.tagging.vocab import TaggerVocab
from weft.typed_settings import from_saved

log = logging.getLogger("weft")


@dataclass
class TaggedOutput:
    """Tags of one sentence and, when asked for, each token's probability for every tag."""

    words: list[str]
    tags: list[str]
    probabilities: list[dict[str, float]] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"words": self.words, "tags": self.tags}
        if self.probabilities is not None:
            out["probabilities"] = self.probabilities
        return out

    def __str__(self) -> str:
        return " ".join(f"{w}/{t}" for w, t in zip(self.words, self.tags, strict=True))


class Tagger:
    """A trained part-of-speech tagger: ``Tagger("runs/pos").tag("The old man the boats.")``."""

    def __init__(self, run_dir: str | Path, device: str = "cpu") -> None:
        self.run_dir = Path(run_dir)
        self.config: dict[str, Any] = read_run_config(self.run_dir)
        if run_kind(self.config) != TAGGER:
            raise WeftError(f"{run_dir} holds a {run_kind(self.config)!r} run, not a tagger")
        self.vocab = TaggerVocab.from_dict(read_json(self.run_dir / VOCAB))
        self.model_config = from_saved(TaggerModelConfig, self.config.get("model", {}),
                                       self.run_dir / CONFIG)
        self.device = resolve_device(device)
        self.model = BiLSTMTagger(self.model_config)
        load_weights(self.model, trained_weights(self.run_dir))
        self.model.to(self.device).eval()

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
        """Tokenize raw text into sentences and tag each."""
        return self.tag_sentences(tokenize_sentences(text), probabilities)

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
        return outputs

    def evaluate(self, sentences: Sequence[TaggedSentence], top_confusions: int = 10
                 ) -> dict[str, Any]:
        """Accuracy (overall, seen and unseen words), per-tag P/R/F1 and confusions. Gold tags
        the model cannot predict are named in a warning (another tag set or column, likely)."""
        if not sentences:
            raise WeftError("nothing to evaluate: no tagged sentences")
        foreign = {t for s in sentences for t in s.tags} - set(self.tags)
        if foreign:
            log.warning("%d tag(s) of the evaluation file are not in the model's tag set and "
                        "can never be predicted: %s (another tag set? check --column and "
                        "--tagset-map)", len(foreign), ", ".join(sorted(foreign)[:10]))
        predicted = self.tag_sentences([s.words for s in sentences])
        return evaluate_tags(
            [s.words for s in sentences], [s.tags for s in sentences],
            [p.tags for p in predicted], self.vocab.is_known, top_confusions,
        )


def load_tagger(run_dir: str | Path, device: str = "cpu") -> Tagger:
    """Load a trained tagger run directory."""
    return Tagger(run_dir, device)
