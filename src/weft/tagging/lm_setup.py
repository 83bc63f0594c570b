"""A tagger's character LMs as its settings name them: opened for a new run (recording their
names, checksums and feature size), reopened for a resume or for tagging (refusing LM files
changed since), and a fine-tuned tagger's copies of their files. The features themselves are
lm_features.py's.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from weft.errors import WeftError
from weft.io import atomic_write_bytes
from weft.runs import CONFIG, TOKENIZER
from weft.tagging.lm_features import LM_COPIES, CharLMFeatures, build_features, source_name
from weft.tagging.model import TaggerModelConfig


def resolve_tagger_lms(config: TaggerModelConfig) -> tuple[CharLMFeatures | None,
                                                           TaggerModelConfig]:
    """A new tagger's LMs, and its settings with their recorded names, checksums and the
    feature size filled in."""
    if config.char_lm is None:
        return None, config
    forward = source_name(config.char_lm)
    backward = None if config.char_lm_backward is None else source_name(config.char_lm_backward)
    features, digests = build_features([("--char-lm", forward),
                                        ("--char-lm-backward", backward)])
    return features, dataclasses.replace(
        config, char_lm=forward, char_lm_sha256=digests[0], char_lm_backward=backward,
        char_lm_backward_sha256=digests[1] if backward else None, lm_dim=features.dim)


def open_tagger_lms(config: TaggerModelConfig, run_dir: Path, since: str
                    ) -> CharLMFeatures | None:
    """A trained tagger's LMs. A fine-tuned tagger's are built from its copies of their files
    (its weights hold theirs); a frozen one's are the recorded runs, refused in one line when
    their weights have changed ``since`` (by SHA-256): its features would no longer be the
    ones it learned from."""
    if config.char_lm is None:
        return None
    sources = [("--char-lm", config.char_lm), ("--char-lm-backward", config.char_lm_backward)]
    if config.char_lm_finetune:
        return build_features(sources, run_dir)[0]
    features, digests = build_features(sources)
    recorded = [config.char_lm_sha256, config.char_lm_backward_sha256]
    for (_, name), old, new in zip(sources, recorded, digests, strict=False):
        if old != new:
            raise WeftError(f"the character LM {name} has changed since {since} (its weights' "
                            "SHA-256 differs); this tagger needs the LM it was trained with")
    return features


def copy_lm_files(config: TaggerModelConfig, run_dir: Path) -> None:
    """Keep a fine-tuned tagger's own copy of its LMs' settings and tokenizers."""
    from weft.builtin import resolve_run

    for folder, source in zip(LM_COPIES, (config.char_lm, config.char_lm_backward),
                              strict=True):
        if source is None:
            continue
        (run_dir / folder).mkdir(exist_ok=True)
        for name in (CONFIG, TOKENIZER):
            atomic_write_bytes(run_dir / folder / name, (resolve_run(source) / name).read_bytes())
