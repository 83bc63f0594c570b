"""``weft export RUN --web SITE/``: a language-model run as a static web page that runs it.

The folder holds ``index.html`` and its script, a small JavaScript runtime written for weft's
models (``runtime.js``, run in a Web Worker by ``worker.js``), the playground's stylesheet,
``model.json`` (shape, tokenizer, generation defaults, labels, where each tensor lies) and
``weights.bin`` (every tensor, one after another). Nothing is fetched from elsewhere and nothing
is built: any static host serves it.

Weights are stored as float16 by default: half the bytes of float32, and decoded exactly to
float32 in the page, so the only change to the model is float16's rounding of each weight (a
relative error below 2^-11; the log-probabilities it moves are measured in docs/web-export.md).
``int8`` stores each matrix row as int8 with one float32 scale (a quarter of the bytes, for a
smaller page, at a larger change); ``float32`` keeps the weights exactly. The page always
computes in float32/float64 after decoding, so the format changes the download, not the speed.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from weft.errors import WeftError
from weft.tokenizers import BPETokenizer, ByteTokenizer, CharTokenizer, WordTokenizer

WEIGHT_FORMATS = ("float16", "int8", "float32")
FORMAT_VERSION = 1
ASSETS = Path(__file__).with_name("site")
SITE_FILES = ("index.html", "page.js", "worker.js", "kernel.js", "runtime.js", "tokenizers.js",
              "export.css")
PLAYGROUND_STYLE = Path(__file__).parent.parent / "serving" / "static" / "style.css"
# What the runtime can run; anything else is refused by name before a file is written.
LEVELS_SUPPORTED = ("char", "byte", "word", "bpe")
ALIGN = 8  # every tensor starts at a multiple of this, so typed-array views need no copy


def export_web(model: Any, site: str | Path, *, weights: str = "float16",
               force: bool = False) -> Path:
    """Write ``model`` (a :class:`~weft.language_model.LanguageModel`) as a static page in
    ``site``; returns the folder. ``force`` allows writing into a non-empty folder."""
    if weights not in WEIGHT_FORMATS:
        raise WeftError(f"--weights must be one of: {', '.join(WEIGHT_FORMATS)}")
    check_exportable(model)
    site = Path(site)
    if site.exists() and not site.is_dir():
        raise WeftError(f"{site} is a file, not a folder")
    if site.is_dir() and any(site.iterdir()) and not force:
        raise WeftError(f"{site} is not empty; choose an empty folder or pass --force")
    site.mkdir(parents=True, exist_ok=True)
    blob, tensors = pack_weights(model.module.state_dict(), model.config.model.tie_weights,
                                 weights)
    (site / "weights.bin").write_bytes(blob)
    manifest = build_manifest(model, tensors, weights)
    (site / "model.json").write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    for name in SITE_FILES:
        shutil.copyfile(ASSETS / name, site / name)
    shutil.copyfile(PLAYGROUND_STYLE, site / "style.css")  # the playground's look, one source
    return site


def check_exportable(model: Any) -> None:
    """A one-line error naming what the runtime cannot run yet."""
    level = model.config.data.level
    if level not in LEVELS_SUPPORTED:
        raise WeftError(f"the web export runs {', '.join(LEVELS_SUPPORTED)} level models, not "
                        f"the {level} level of {model.run_dir}")


def pack_weights(state: dict[str, torch.Tensor], tied: bool, fmt: str
                 ) -> tuple[bytes, list[dict[str, Any]]]:
    """Every tensor in ``fmt`` in one buffer, and where each lies (``scales``: int8 only)."""
    parts: list[bytes] = []
    entries: list[dict[str, Any]] = []
    size = 0

    def add(data: bytes) -> int:
        nonlocal size
        pad = -size % ALIGN
        parts.append(b"\0" * pad + data)
        start = size + pad
        size = start + len(data)
        return start

    for name, tensor in state.items():
        if tied and name == "head.weight":
            continue  # the runtime reads the embedding (the same tensor)
        array = tensor.detach().float().cpu().numpy()
        entry: dict[str, Any] = {"name": name, "shape": list(array.shape)}
        if fmt == "int8" and array.ndim == 2:
            # One scale per row: a row is one output's weights, so a large row does not coarsen
            # the others. Symmetric (no zero point): weights center on zero.
            peak = np.abs(array).max(axis=1)
            scales = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
            quantized = np.clip(np.rint(array / scales[:, None]), -127, 127).astype(np.int8)
            entry.update(dtype="int8", offset=add(quantized.tobytes()),
                         scales=add(scales.tobytes()))
        elif fmt == "float32" or (fmt == "int8" and array.ndim != 2):
            entry.update(dtype="float32", offset=add(array.astype("<f4").tobytes()))
        else:
            entry.update(dtype="float16", offset=add(array.astype("<f2").tobytes()))
        entries.append(entry)
    return b"".join(parts), entries


def build_manifest(model: Any, tensors: list[dict[str, Any]], weights: str) -> dict[str, Any]:
    """What the page needs besides the weights: shape, tokenizer, defaults, prompt cleaning."""
    from weft.generation.generate import start_ids

    tokenizer = model.tokenizer
    config = model.config
    defaults = asdict(model.generation_defaults)
    return {
        "format": FORMAT_VERSION,
        "name": Path(model.run_dir).name,
        "model": {"cell": config.model.cell, "layers": config.model.layers,
                  "hidden_size": config.model.hidden_size,
                  "embedding_dim": config.model.embedding_dim,
                  "vocab_size": config.model.vocab_size,
                  "tie_weights": config.model.tie_weights,
                  "adaptive_cutoffs": list(config.model.adaptive_cutoffs)},
        "weights": {"file": "weights.bin", "format": weights, "tensors": tensors},
        "tokenizer": tokenizer_manifest(tokenizer),
        "prompt": {"lowercase": config.data.lowercase, "normalize": config.data.normalize},
        "records": config.data.record_mode,
        # Label columns in the order their tokens follow <bos>, with each value's token.
        "labels": [{"index": k, "name": column.name, "counts": column.counts,
                    "ids": {value: model.labels.token_id(tokenizer, column.name, value)
                            for value in column.values}}
                   for k, column in enumerate(model.labels.columns)],
        "bos_id": tokenizer.bos_id,
        "eos_id": tokenizer.eos_id,
        "never_generate": sorted(tokenizer.never_generate),
        # A stream model given no prompt starts as if after a line break (generate.start_ids).
        "empty_prompt_ids": [int(i) for i in start_ids(tokenizer, "")],
        "generation": {k: defaults[k] for k in (
            "max_new_tokens", "temperature", "top_k", "top_p", "repetition_penalty", "stop",
            "seed")},
    }


def tokenizer_manifest(tokenizer: Any) -> dict[str, Any]:
    """The tokenizer in the form the runtime reads: each id's text, or the byte offset."""
    if isinstance(tokenizer, CharTokenizer):
        entries = tokenizer.specials + tokenizer.chars + tokenizer.added
        offset = len(tokenizer.specials)
        return {"type": "char", "unk_id": tokenizer.unk_id, "pieces": tokenizer.pieces,
                "chars": {c: i for i, c in enumerate(entries) if len(c) == 1 and i >= offset}}
    if isinstance(tokenizer, ByteTokenizer):
        return {"type": "byte", "offset": len(tokenizer.specials)}
    if isinstance(tokenizer, WordTokenizer):
        unk = tokenizer.unk_id
        return {"type": "word", "unk_id": unk, "tokens": tokenizer.tokens,
                "pretokenized": tokenizer.pretokenized,
                "index": {w: tokenizer.id_of(w) for w in tokenizer.tokens
                          if tokenizer.id_of(w) is not None},
                "hidden_ids": [i for i in special_ids(tokenizer) if i != unk]}
    if isinstance(tokenizer, BPETokenizer):
        hf = json.loads(tokenizer.hf.to_str())
        if hf["model"].get("ignore_merges") or hf["model"].get("continuing_subword_prefix"):
            raise WeftError("the web export runs byte-level BPE without ignore_merges or a "
                            "subword prefix")
        vocab = tokenizer.hf.get_vocab(with_added_tokens=True)
        tokens = [""] * tokenizer.vocab_size
        for piece, i in vocab.items():
            tokens[i] = piece
        merges = [m.split(" ") if isinstance(m, str) else m for m in hf["model"]["merges"]]
        return {"type": "bpe", "tokens": tokens, "merges": merges,
                "special_ids": special_ids(tokenizer)}
    raise WeftError(f"the web export cannot run a {tokenizer.type_name} tokenizer yet")


def special_ids(tokenizer: Any) -> list[int]:
    """Every special token's id: those never generated, and the end token."""
    eos = [] if tokenizer.eos_id is None else [tokenizer.eos_id]
    return sorted({*tokenizer.never_generate, *eos})
