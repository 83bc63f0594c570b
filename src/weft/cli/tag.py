"""``weft tag``: train, evaluate and use part-of-speech taggers.

Every flag and its default is listed in docs/cli.md; docs/tagging.md explains them.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from weft.cli.common import setup_logging, training_options, typed_on_command_line
from weft.config import TrainConfig
from weft.device import set_threads
from weft.errors import WeftError
from weft.tagging.model import SCHEME_CHOICES, TaggerModelConfig
from weft.tagging.readers import FORMATS
from weft.tagging.task import TAGGER_TRAIN_DEFAULTS
from weft.typed_settings import from_fields

_M = TaggerModelConfig()

tag = click.Group("tag", help="Part-of-speech tagging: train, evaluate and tag with a BiLSTM "
                               "tagger.")


def _read_options(func: Any) -> Any:
    """Flags that say how to read a tagged file (shared by train and eval)."""
    options = [
        click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
                     help="Input format [default: auto, from the name and first line; eval: "
                          "auto].", show_default=False),
        click.option("--column", type=click.Choice(["upos", "xpos"]), default=None,
                     help="CoNLL-U tag column [default: upos; eval: the run's]."),
        click.option("--tagset-map", help="Map tags through this file (FROM<TAB>TO lines) or "
                     "the en-ptb.map inside this zip (universal_tagset.zip) [eval: the run's]."),
        click.option("--no-traces", is_flag=True, default=None,
                     help="Drop Penn Treebank -NONE- trace tokens [eval: as the run did]."),
        click.option("--sentences", help="Use only this slice of the file's sentences, as "
                     "fractions: ':0.9' is the first 90%, '0.9:' the rest."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@tag.command("train")
@click.argument("train_file", type=click.Path(path_type=Path), required=False)
@click.option("--dev", "dev_file", type=click.Path(path_type=Path),
              help="Dev file for model selection [default: hold out --dev-fraction].")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Run directory to create.")
@click.option("--resume", "resume", is_flag=False, flag_value="", default=None, metavar="RUN",
              help="Continue RUN from its last saved state (its files and settings come from "
                   "it; `--out RUN --resume` also works).")
@click.option("--dev-fraction", type=float, default=0.1, show_default=True,
              help="Without --dev: share of the training sentences, from the end, held out.")
@_read_options
@click.option("--case-sensitive-words", is_flag=True,
              help="Key word embeddings by the exact word, not the lowercased one.")
@click.option("--word-dim", type=int, default=_M.word_dim, show_default=True,
              help="Word embedding size.")
@click.option("--char-dim", type=int, default=_M.char_dim, show_default=True,
              help="Character embedding size.")
@click.option("--char-hidden", type=int, default=_M.char_hidden, show_default=True,
              help="Character BiLSTM units per direction.")
@click.option("--case-dim", type=int, default=_M.case_dim, show_default=True,
              help="Capitalization class embedding size; 0 disables.")
@click.option("--hidden", type=int, default=_M.hidden, show_default=True,
              help="Sentence BiLSTM units per direction.")
@click.option("--layers", type=int, default=_M.layers, show_default=True,
              help="Sentence BiLSTM layers.")
@click.option("--dropout", type=float, default=_M.dropout, show_default=True,
              help="Dropout on the word features, between layers and before the output.")
@click.option("--word-dropout", type=float, default=_M.word_dropout, show_default=True,
              help="Replace a training word seen c times by <unk> with probability "
                   "a/(a+c); 0 disables.")
@click.option("--crf", is_flag=True, help="Add a CRF layer (Viterbi decoding).")
@click.option("--scheme", type=click.Choice(SCHEME_CHOICES), default=None,
              help="Span tags (named entities): train in BIO or BIOES, converting the data; "
                   "none: plain tags [default: auto, a span scheme when every tag is O or "
                   "B-/I-/E-/S-TYPE].")
@click.option("--char-lm", metavar="RUN",
              help="Add each word's forward hidden state from this byte- or character-level "
                   "LM run (or builtin:english), at the character after the word.")
@click.option("--char-lm-backward", metavar="RUN",
              help="Also a backward LM's (a run trained on reversed text), at the character "
                   "before the word.")
@click.option("--char-lm-finetune", is_flag=True,
              help="Train the LMs' weights with the tagger (saved in its run) instead of "
                   "caching their frozen features.")
@training_options(from_fields(TrainConfig, TAGGER_TRAIN_DEFAULTS),
                  batch_help="Sentences per step.",
                  eval_help="Steps between dev evaluations and checkpoints.")
@click.option("--quiet", is_flag=True, help="No progress bar or evaluation lines.")
def train_command(
    train_file: Path | None, dev_file: Path | None, out: Path | None, resume: str | None,
    dev_fraction: float,
    fmt: str | None, column: str | None, tagset_map: str | None, no_traces: bool | None,
    sentences: str | None, case_sensitive_words: bool, word_dim: int, char_dim: int,
    char_hidden: int, case_dim: int, hidden: int, layers: int, dropout: float,
    word_dropout: float, crf: bool, scheme: str | None, char_lm: str | None,
    char_lm_backward: str | None, char_lm_finetune: bool, quiet: bool, **train_options: Any,
) -> None:
    """Train a tagger on TRAIN_FILE, selecting the model by accuracy on the dev set."""
    from weft import api

    setup_logging(quiet)
    if resume is not None:
        out = _resumed_run(resume, out, train_file)
        # Only what was typed: the rest comes from the run, and the resume policy refuses
        # a change to anything but the limits, saves and placement.
        typed = typed_on_command_line({
            "dev_fraction": dev_fraction, "case_sensitive_words": case_sensitive_words,
            "word_dim": word_dim, "char_dim": char_dim, "char_hidden": char_hidden,
            "case_dim": case_dim, "hidden": hidden, "layers": layers, "dropout": dropout,
            "word_dropout": word_dropout, "crf": crf, "scheme": scheme, "char_lm": char_lm,
            "char_lm_backward": char_lm_backward, "char_lm_finetune": char_lm_finetune,
            **train_options})
        given = {"dev": dev_file, "format": fmt, "column": column, "tagset_map": tagset_map,
                 "no_traces": no_traces, "sentences": sentences}
        changes = typed | {k: v for k, v in given.items() if v is not None}
        _report(api.run_tagger_training(None, out, quiet=quiet, **changes), out, quiet)
        return
    if train_file is None or out is None:
        raise WeftError("weft tag train needs TRAIN_FILE and --out RUN (or --resume RUN)")
    result = api.run_tagger_training(
        train_file, out, dev=dev_file, quiet=quiet, dev_fraction=dev_fraction,
        format=fmt or "auto", column=column or "upos", tagset_map=tagset_map,
        keep_traces=not no_traces, sentences=sentences, lowercase=not case_sensitive_words,
        word_dim=word_dim, char_dim=char_dim, char_hidden=char_hidden, case_dim=case_dim,
        hidden=hidden, layers=layers, dropout=dropout, word_dropout=word_dropout, crf=crf,
        scheme=scheme or "auto", char_lm=char_lm, char_lm_backward=char_lm_backward,
        char_lm_finetune=char_lm_finetune, **train_options)
    _report(result, out, quiet)


def _resumed_run(resume: str, out: Path | None, train_file: Path | None) -> Path:
    """The run ``--resume [RUN]`` continues; a training file, if given, must be the run's."""
    from weft.runs import read_run_config

    if resume and out is not None and Path(resume) != out:
        raise WeftError(f"--resume {resume} and --out {out} name two runs: give one")
    run = Path(resume) if resume else out
    if run is None:
        raise WeftError("--resume needs the run to continue: --resume RUN")
    if train_file is not None:
        recorded = read_run_config(run).get("data", {}).get("train", "")
        if os.path.abspath(train_file) != os.path.abspath(recorded):
            raise WeftError(f"{run} was trained on {recorded}; --resume reads it from there "
                            "(leave the training file out)")
    return run


def _report(result: Any, out: Path, quiet: bool) -> None:
    if not quiet:
        from weft.runs import read_run_config

        spans = read_run_config(out).get("model", {}).get("scheme") in ("bio", "bioes")
        best = f"{100 * result.best:.2f}%" if result.best is not None else "n/a"
        click.echo(f"done: {result.steps} steps in {result.elapsed:.0f}s "
                   f"({result.stopped_because}); best dev {'span F1' if spans else 'accuracy'} "
                   f"{best}; saved in {out}")
    if result.stopped_because.startswith("interrupted"):
        # As `weft train`: a script must not take an interrupted run for a finished one.
        click.echo(f"weft: {result.stopped_because} at step {result.steps}; state saved. "
                   f"Continue with: weft tag train --resume {out}", err=True)
        sys.exit(143 if "SIGTERM" in result.stopped_because else 130)


@tag.command("eval")
@click.argument("run", type=click.Path(path_type=Path))
@click.argument("file", type=click.Path(path_type=Path))
@_read_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--top-confusions", type=click.IntRange(min=0), default=10, show_default=True,
              help="How many of the most frequent confusions to list.")
@click.option("--device", default="cpu", show_default=True, help="auto, cpu, cuda or mps.")
@click.option("--threads", type=int, help="CPU threads [default: PyTorch's choice].")
def eval_command(
    run: Path, file: Path, fmt: str | None, column: str | None, tagset_map: str | None,
    no_traces: bool | None, sentences: str | None, as_json: bool, top_confusions: int,
    device: str, threads: int | None,
) -> None:
    """Score the tagger in RUN on tagged FILE: accuracy, per-tag P/R/F1, confusions; a span
    tagger also exact-match span P/R/F1, overall and per type, as conlleval counts them."""
    from weft.tagging.api import load_tagger
    from weft.tagging.metrics import format_report
    from weft.tagging.readers import ReadOptions, read_tagged
    from weft.tagging.spans import format_span_report

    setup_logging(False)
    set_threads(threads)
    tagger = load_tagger(run, device=device)
    saved = tagger.config.get("data", {})
    options = ReadOptions(
        format=fmt or "auto",
        column=column or saved.get("column", "upos"),
        tagset_map=tagset_map or saved.get("tagset_map"),
        keep_traces=(not no_traces) if no_traces is not None else saved.get("keep_traces", True),
        sentences=sentences,
    )
    gold = read_tagged(file, options)
    start = time.perf_counter()
    metrics = tagger.evaluate(gold, top_confusions)
    seconds = time.perf_counter() - start
    metrics["seconds"] = seconds
    metrics["tokens_per_second"] = metrics["tokens"] / max(seconds, 1e-9)
    if as_json:
        click.echo(json.dumps(metrics))
        return
    click.echo(format_report(metrics))
    if "spans" in metrics:
        click.echo("\n" + format_span_report(metrics["spans"]))
    click.echo(f"\ntagged {metrics['tokens']:,} tokens in {seconds:.2f}s "
               f"({metrics['tokens_per_second']:,.0f} tokens/s)")


@tag.command("predict")
@click.argument("run", type=click.Path(path_type=Path))
@click.argument("file", default="-")
@click.option("--tokenized", is_flag=True,
              help="Input is one sentence per line, tokens separated by spaces.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per sentence, with each token's tag probabilities "
                   "(and a span tagger's spans with their character offsets).")
@click.option("--device", default="cpu", show_default=True, help="auto, cpu, cuda or mps.")
@click.option("--threads", type=int, help="CPU threads [default: PyTorch's choice].")
def predict_command(run: Path, file: str, tokenized: bool, as_json: bool, device: str,
                    threads: int | None) -> None:
    """Tag FILE (raw text; '-' reads standard input) with RUN, one sentence per line."""
    from weft.data.corpus import STDIN, decode_text
    from weft.tagging.api import load_tagger
    from weft.tagging.tokenize import split_tokenized, tokenize_with_offsets

    setup_logging(False)
    set_threads(threads)
    tagger = load_tagger(run, device=device)
    if file == "-":
        if sys.stdin is None:  # started with standard input closed (`<&-`)
            raise WeftError("standard input is closed: give a FILE, or pipe text in")
        text = decode_text(sys.stdin.buffer.read(), STDIN)
    else:
        path = Path(file)
        if not path.is_file():
            raise WeftError(f"file not found: {file}")
        text = decode_text(path.read_bytes(), file)
    # the tokens' character offsets in the input give a span tagger's spans theirs
    sentences = split_tokenized(text) if tokenized else tokenize_with_offsets(text)
    for output in tagger.tag_located(sentences, text, probabilities=as_json):
        click.echo(json.dumps(output.to_dict(), ensure_ascii=False) if as_json else str(output))
