"""The ``weft`` command line: train, generate, eval, info, plot.

Flag names are the configuration field names with dashes; every flag and its default is listed
in docs/cli.md. User errors (:class:`WeftError`) print one line and exit with status 2.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

import click

from weft import interrupts
from weft.cli import launch
from weft.cli.common import (
    level_default,
    setup_logging,
    training_options,
    typed_on_command_line,
)
from weft.cli.tag import tag
from weft.config import (
    ADAPTIVE_CHOICES,
    CELLS,
    LEVELS,
    LONG_RECORDS,
    NORMAL_FORMS,
    QUANTIZE,
    RECORD_MODES,
    DataConfig,
    ModelConfig,
    TrainConfig,
)
from weft.errors import WeftError

_M, _D, _T = ModelConfig(), DataConfig(), TrainConfig()
log = logging.getLogger("weft")


class WeftGroup(click.Group):
    """Turns user errors into one clear line instead of a traceback."""

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        ctx = super().make_context(info_name, list(args), parent, **extra)  # parsing eats it
        ctx.meta.setdefault(launch.ARGV, list(args))  # the root's: what each rank is given
        return ctx

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except WeftError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except interrupts.Interrupted as exc:  # a signal at a boundary of a command's start-up
            click.echo(f"weft: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=WeftGroup, context_settings={"help_option_names": ["-h", "--help"],
                                               "max_content_width": 100})
@click.version_option(package_name="weft")
def cli() -> None:
    """Train recurrent text models on your own text, then generate and evaluate with them."""


@cli.command()
@click.argument("corpus", nargs=-1)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Run directory to create (required unless --resume).")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Continue this run from its last saved state.")
@click.option("--init-from", help="Start a new run from this trained model (a run directory "
              "or builtin:english): its weights, tokenizer and shape, with fine-tuning defaults "
              "for --lr, --warmup-steps and --dropout.")
@click.option("--level", type=click.Choice(LEVELS), default=_D.level, show_default=True,
              help="Tokenization level: characters, words, byte-level BPE subwords, or UTF-8 "
              "bytes (any script, no unknowns).")
@click.option("--max-vocab", type=int, help="Word level: keep this many tokens, specials "
              "included; the rest become <unk> [default: 30000].")
@click.option("--min-count", type=int, default=_D.min_count,
              show_default=level_default("min_count", _D.min_count),
              help="Word level: words seen fewer times become <unk>.")
@click.option("--pretokenized", is_flag=True,
              help="Word level, for corpora already tokenized (Penn Treebank, WikiText): split "
              "at whitespace only; the corpus's <unk> is the unknown token; @-@ @,@ @.@ are "
              "joined back for display.")
@click.option("--vocab-size", "bpe_vocab_size", type=int,
              help="BPE level: vocabulary size, the 256 bytes included [default: 2000].")
@click.option("--records", type=click.Choice(RECORD_MODES),
              help="Train on records, not one stream: 'lines' makes each non-empty line one "
              "(<bos> record <eos>, state reset per record).")
@click.option("--csv-column", help="Train on records: one per CSV row, from this column.")
@click.option("--label-column", "label_columns", multiple=True,
              help="With --csv-column: learn a control token per value of this CSV column, "
              "to choose at generation with --label (repeatable).")
@click.option("--max-record-len", type=int, default=_D.max_record_len, show_default=True,
              help="Longest record row in tokens; longer records are split (see "
              "--long-records).")
@click.option("--long-records", type=click.Choice(LONG_RECORDS), default=_D.long_records,
              show_default=True, help="What to do with records over --max-record-len.")
@click.option("--strip-gutenberg", is_flag=True,
              help="Cut Project Gutenberg headers and footers (license text) off each file.")
@click.option("--normalize", type=click.Choice(NORMAL_FORMS),
              help="Unicode normalization before training (and of prompts).")
@click.option("--lowercase", is_flag=True, help="Lowercase the corpus before training.")
@click.option("--memmap", is_flag=True,
              help="Character level: encode the corpus in chunks to tokens.npy in the run and "
              "train from it memory-mapped (corpora larger than memory).")
@click.option("--val-fraction", type=float, default=_D.val_fraction, show_default=True,
              help="Share of the text, taken from its end, held out for validation.")
@click.option("--cell", type=click.Choice(CELLS), default=_M.cell, show_default=True,
              help="Recurrent cell.")
@click.option("--layers", type=int, default=_M.layers, show_default=True,
              help="Stacked recurrent layers.")
@click.option("--hidden-size", type=int, default=_M.hidden_size,
              show_default=level_default("hidden_size", _M.hidden_size),
              help="Units per recurrent layer.")
@click.option("--embedding-dim", type=int, default=_M.embedding_dim,
              show_default=level_default("embedding_dim", _M.embedding_dim),
              help="0 feeds one-hot vectors instead of an embedding.")
@click.option("--dropout", type=float, default=_M.dropout,
              show_default=level_default("dropout", _M.dropout),
              help="Dropout on embeddings, between layers and before the output.")
@click.option("--tie-weights", is_flag=True, help="Share input embedding and output weights.")
@click.option("--adaptive-softmax", type=click.Choice(ADAPTIVE_CHOICES),
              default=_M.adaptive_softmax, show_default=True,
              help="Output layer: an adaptive softmax (frequent tokens scored at every step, "
              "rare ones in small clusters: much faster for large vocabularies, exact "
              "probabilities) or a full one; auto: adaptive from a vocabulary of 5000.")
@click.option("--seq-len", type=int, default=_T.seq_len,
              show_default=level_default("seq_len", _T.seq_len),
              help="Tokens per truncated-BPTT window.")
@training_options(_T, batch_help="Parallel streams (columns) per step.",
                  eval_help="Steps between validations, samples and checkpoints.", by_level=True)
@click.option("--quiet", is_flag=True, help="No progress bar or samples.")
@click.option("--nproc-per-node", type=click.IntRange(min=1), default=1, show_default=True,
              help="Train data-parallel with this many processes on this machine (one per "
              "GPU; Gloo between CPU processes), started through torchrun's launcher; a "
              "Ctrl-C stops them all and exits 130. --batch-size is per process.")
def train(corpus: tuple[str, ...], out: Path | None, resume_dir: Path | None,
          init_from: str | None, quiet: bool, nproc_per_node: int, **options: Any) -> None:
    """Train a language model on CORPUS (text files, folders, globs, or builtin:pydoc-topics).

    FILE:WEIGHT reads a source WEIGHT times a pass (chats.txt:3; books/:0.5 reads the first
    half of each book): mix small corpora with large ones. Validation is taken from the
    corpus read once.

    Some defaults depend on --level (each flag shows them, e.g. "64; word level: 256"): they
    were measured per level; a flag you give always wins, and config.json records the values
    used.
    """
    from weft import api
    from weft.training.distributed import from_environment

    setup_logging(quiet)
    # Only what was typed: the rest comes from the run (resume), the base (init-from) or the
    # defaults of the level (config.LEVEL_DEFAULTS).
    options = typed_on_command_line(options)
    if resume_dir is not None:
        if corpus or out:
            raise WeftError("--resume takes no corpus or --out: they come from the run")
        if init_from is not None:
            raise WeftError("--init-from starts a new run; --resume continues one: use one "
                            "of them")
        run_dir = resume_dir
    else:
        if out is None:
            raise WeftError("--out is required: the run directory to create, e.g. "
                            "--out runs/demo")
        if not corpus:
            raise WeftError("no corpus given: pass text files, or builtin:pydoc-topics")
        run_dir = out
    if launch.is_launcher(nproc_per_node):  # after the checks: one error line, not one a rank
        launch.launch(nproc_per_node, click.get_current_context().meta[launch.ARGV])
    ranks = f" --nproc-per-node {nproc_per_node}" if nproc_per_node > 1 else ""
    hint = f"weft train{ranks} --resume {shlex.quote(str(run_dir))}"
    try:
        _, result = api.run_training(list(corpus) if resume_dir is None else None, run_dir,
                                     init_from=init_from, quiet=quiet, **options)
    except interrupts.Interrupted as exc:  # a signal while starting: nothing trained yet
        if from_environment().is_main:
            click.echo(f"weft: {exc}; {_started_again(run_dir, resume_dir is not None, hint)}",
                       err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        # A second Ctrl-C when weft runs as a library (the `weft` command itself ends the
        # process in its signal handler): quit; the state saved at the last evaluation is kept.
        click.echo(f"interrupted without saving this step; continue from the last saved "
                   f"state with: {hint}", err=True)
        sys.exit(130)
    if result.stopped_because.startswith("interrupted"):
        if from_environment().is_main:  # under torchrun, one message rather than one per rank
            click.echo(f"weft: {result.stopped_because} at step {result.steps}; state saved. "
                       f"Continue with: {hint}", err=True)
        sys.exit(143 if "SIGTERM" in result.stopped_because else 130)


def _started_again(run_dir: Path, resumed: bool, hint: str) -> str:
    """How to go on after a signal stopped a run before its first step."""
    from weft.runs import LOCK

    if resumed:
        return f"the saved state is unchanged. Continue with: {hint}"
    if run_dir.is_dir() and any(p.name != LOCK for p in run_dir.iterdir()):
        return f"nothing was trained: remove {run_dir} and run the same command again"
    return "nothing was trained: run the same command again"


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--prompt", default="", help="Text to continue.")
@click.option("--max-new-tokens", type=int, help="[default: from the run, 500]")
@click.option("--temperature", type=float, help="0 means greedy [default: from the run, 0.8]")
@click.option("--top-k", type=int, help="Sample from the k likeliest tokens; 0 disables.")
@click.option("--top-p", type=float, help="Nucleus sampling mass; 1 disables.")
@click.option("--repetition-penalty", type=float, help="> 1 discourages repeats; 1 disables.")
@click.option("--num-return-sequences", type=int, help="How many texts to write [default: 1]")
@click.option("--stop", multiple=True, help="End a text at this string (repeatable).")
@click.option("--label", "labels", multiple=True, metavar="COLUMN=VALUE",
              help="Generate under this label value (repeatable); columns not given are "
              "drawn as often as the training data had them.")
@click.option("--seed", type=int,
              help="Makes sampling repeatable on this machine (--quantize auto may take "
                   "int8 on another CPU; --quantize none is float32 everywhere).")
@click.option("--max-copy", type=click.IntRange(min=1), metavar="N",
              help="Generate a text again (up to 10 tries, then cut it) while it copies N or "
              "more characters verbatim from the training corpus; the text is written when "
              "complete (so that it can be generated again), not streamed.")
@click.option("--quantize", type=click.Choice(QUANTIZE),
              help="auto: int8 where it is faster on this CPU (measured once per machine and "
                   "model shape); none: float32, exact; int8: int8 weight products, logits "
                   "about 1% off float32 [default: from the run, auto]")
@click.option("--compile/--no-compile", default=None,
              help="CPU: run 8 tokens per call of compiled C++ (torch.compile); the first "
                   "call compiles for seconds, so it pays off for long texts "
                   "[default: from the run, off]")
@click.option("--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text",
              show_default=True,
              help="jsonl: one JSON object per text, with its finish_reason, after generation.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or mps.")
@click.option("--threads", type=click.IntRange(min=1),
              help="CPU threads [default: below 8 sequences 1 or 2, whichever is measured "
                   "faster (2 for small models), else PyTorch's choice]")
@click.option("--explain", is_flag=True,
              help="Say which path (float32 or int8, threads, compiled) this CPU gets, and why.")
def generate(run: Path, prompt: str, fmt: str, device: str, threads: int | None,
             labels: tuple[str, ...], max_copy: int | None,
             explain: bool, **options: Any) -> None:
    """Write text with the model in RUN (a run directory, or builtin:english), streaming it as
    it is generated."""
    from weft.api import load_language_model
    from weft.data.corpus_index import UNAVAILABLE
    from weft.data.labels import parse_label_options
    from weft.generation.plan import choose_plan

    setup_logging(False)
    model = load_language_model(run, device=device)
    chosen = parse_label_options(labels)
    model.labels.check(chosen)  # before any output
    config = model.generation_config(**options)
    shown = model.prepare_prompt(prompt)  # lowercased/normalized like the training text
    if max_copy is not None and model.copy_index is None:
        raise WeftError(f"{UNAVAILABLE}, so --max-copy cannot be enforced")
    if explain:  # generation below takes the same plan (measured once, then remembered)
        click.echo(choose_plan(model.module, config, threads).explain(), err=True)
    if fmt == "jsonl":
        if model.copy_index is None:
            log.warning(UNAVAILABLE)  # longest_copy is null
        samples = model.samples(prompt, labels=chosen, threads=threads, max_copy=max_copy,
                                **options)
        for i, sample in enumerate(samples):
            click.echo(json.dumps({"index": i, "prompt": shown, **sample.to_dict()},
                                  ensure_ascii=False))
        return
    if config.num_return_sequences == 1 and max_copy is None:
        click.echo(shown, nl=False)
        model.samples(prompt, labels=chosen, threads=threads, **options,
                      on_text=lambda i, text: click.echo(text, nl=False))
        click.echo()
        return
    samples = model.samples(prompt, labels=chosen, threads=threads, max_copy=max_copy,
                            **options)
    for i, sample in enumerate(samples):
        tags = "".join(f" {k}={v}" for k, v in sample.labels.items())
        if len(samples) > 1:
            click.echo(f"--- {i + 1}{tags} ---")
        click.echo(f"{shown}{sample.text}")


@cli.command("eval")
@click.argument("run", type=click.Path(path_type=Path))
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or mps.")
@click.option("--threads", type=click.IntRange(min=1),
              help="CPU threads [default: PyTorch's choice].")
def eval_command(run: Path, file: Path, as_json: bool, device: str, threads: int | None) -> None:
    """Measure the model in RUN (a run directory, or builtin:english) on held-out text in
    FILE."""
    from weft.api import load_language_model
    from weft.device import cpu_threads

    setup_logging(False)
    with cpu_threads(threads):
        result = load_language_model(run, device=device).evaluate(Path(file))
    if as_json:
        click.echo(json.dumps(result.to_dict()))
        return
    click.echo(f"loss {result.loss:.4f} nats/token, {result.bits_per_char:.4f} bits/char, "
               f"perplexity {result.perplexity:.2f} ({result.tokens:,} tokens, "
               f"{result.characters:,} characters, {result.unknown} unknown)")
    for label in result.labels:
        click.echo(f"label {label['column']}: accuracy {label['accuracy']:.1%} of "
                   f"{label['records']:,} records (majority class {label['majority']!r}: "
                   f"{label['baseline']:.1%})")


LICENSE = "LICENSE.md"  # beside a shipped model's files: its training data and licence


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def info(run: Path, as_json: bool) -> None:
    """Show what is in a run directory (or a built-in model such as builtin:english)."""
    from weft.api import load
    from weft.builtin import is_builtin
    from weft.runs import METRICS
    from weft.training.metrics import read_metrics

    model = load(run, device="cpu")
    details = model.info()
    run_dir = Path(model.run_dir)
    records = read_metrics(run_dir / METRICS)
    details["files"] = sorted(p.name for p in run_dir.iterdir() if not p.name.startswith("."))
    if (run_dir / LICENSE).is_file():  # a shipped model names its sources and their licences
        details["license"] = (run_dir / LICENSE).read_text(encoding="utf-8")
    if details["kind"] == "tagger":
        _tagger_info(run, details, records, as_json)
        return
    if records:
        best = min((r for r in records if r.get("val_loss") is not None),
                   key=lambda r: r["val_loss"], default=None)
        details["last_step"] = records[-1]["step"]
        details["best_val_loss"] = best["val_loss"] if best else None
    if as_json:
        click.echo(json.dumps(details, indent=2))
        return
    m = details["model"]
    output = (f", adaptive softmax (clusters from {', '.join(map(str, m['adaptive_cutoffs']))})"
              if m.get("adaptive_cutoffs") else "")
    click.echo(f"{run}: {m['layers']} x {m['hidden_size']} {m['cell'].upper()}{output}, "
               f"{details['parameters']:,} parameters, {details['tokenizer']} tokenizer "
               f"({details['vocab_size']} tokens)")
    if records:
        best = details["best_val_loss"]
        click.echo(f"trained {details['last_step']} steps; " + (
            f"best validation loss {best}" if best is not None else "no validation set"))
    click.echo("corpus: " + ", ".join(details["corpus"]))
    if details.get("init_from"):
        base = details["init_from"]
        click.echo(f"started from: {base['name']} (weights sha256 {base['sha256'][:16]}..., "
                   f"{base['added_tokens']} token(s) added)")
    for column in details.get("labels", []):
        counts = ", ".join(f"{value}: {count:,}" for value, count in column["counts"].items())
        click.echo(f"label column {column['name']}: {counts}")
    indexed = details.get("copy_index_bytes")
    missing = ("a built-in model ships without its training text" if is_builtin(run)
               else "no copy index; resuming the run builds it")
    click.echo(f"copy meter: an index of {indexed:,} bytes of training text" if indexed is not None
               else f"copy meter: unavailable ({missing})")
    click.echo("files: " + ", ".join(details["files"]))
    if "license" in details:
        click.echo(f"sources and licence ({LICENSE}):")
        for line in details["license"].strip().splitlines():
            if line.strip() and not line.startswith("#"):
                click.echo(f"  {line}")


def _tagger_info(run: Path, details: dict[str, Any], records: list[dict[str, Any]],
                 as_json: bool) -> None:
    if records:
        scored = [r["dev_accuracy"] for r in records if r.get("dev_accuracy") is not None]
        details["last_step"] = records[-1]["step"]
        details["best_dev_accuracy"] = max(scored, default=None)
    if as_json:
        click.echo(json.dumps(details, indent=2))
        return
    m, data = details["model"], details.get("data", {})
    crf = ", CRF" if m["crf"] else ""
    click.echo(f"{run}: tagger, {m['layers']} x {m['hidden']} BiLSTM over words and a "
               f"character LSTM ({m['char_hidden']}){crf}, {details['parameters']:,} "
               f"parameters, {len(details['tags'])} tags ({data.get('column', '?')}), "
               f"{m['num_words']:,} words")
    if details.get("best_dev_accuracy") is not None:
        click.echo(f"trained {details['last_step']} steps; best dev accuracy "
                   f"{details['best_dev_accuracy']:.2%}")
    click.echo(f"trained on: {data.get('train')}; dev: {data.get('dev') or 'held out of it'}")
    if m.get("char_lm"):
        backward = f", backward {m['char_lm_backward']}" if m.get("char_lm_backward") else ""
        mode = "fine-tuned" if m.get("char_lm_finetune") else "frozen"
        click.echo(f"character LMs ({mode}): forward {m['char_lm']}{backward}")
    click.echo("tags: " + " ".join(details["tags"]))
    click.echo("files: " + ", ".join(details["files"]))


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
def plot(run: Path) -> None:
    """Redraw loss.png in RUN from its metrics.jsonl."""
    from weft.runs import METRICS, PLOT
    from weft.training.metrics import plot_metrics

    if not plot_metrics(Path(run) / METRICS, Path(run) / PLOT, title=run.name):
        raise WeftError(f"{run} has no metrics to plot yet")
    click.echo(f"wrote {Path(run) / PLOT}")


from weft.cli.chat import chat  # noqa: E402  (registered after the group exists)
from weft.cli.export import export  # noqa: E402
from weft.cli.serve import serve  # noqa: E402

cli.add_command(chat)
cli.add_command(export)
cli.add_command(serve)
cli.add_command(tag)
