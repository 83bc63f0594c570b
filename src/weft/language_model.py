"""A trained language model loaded from its run directory: generate, stream, evaluate, describe.

``weft.load(run_dir)`` returns one for a language-model run (see api.py); what the directory
holds is runs.py's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from weft.config import GenerationConfig
from weft.data.corpus_index import CorpusIndex, open_index
from weft.data.labels import Labels, LabelSet, load_labels
from weft.device import resolve_device, run_precision
from weft.errors import WeftError
from weft.models.rnn_lm import RNNLanguageModel
from weft.runs import (
    TOKENIZER,
    load_weights,
    read_generation_defaults,
    read_run_config,
    run_config,
    trained_weights,
)
from weft.tokenizers import Tokenizer, load_tokenizer
from weft.typed_settings import from_fields

if TYPE_CHECKING:
    from weft.generation import Completion
    from weft.generation.generate import OnText
    from weft.generation.samples import Sample


class LanguageModel:
    """A trained language model loaded from its run directory."""

    def __init__(self, run_dir: str | Path, device: str = "auto") -> None:
        self.run_dir = Path(run_dir)
        raw = read_run_config(self.run_dir)
        self.config = run_config(raw, self.run_dir)
        self.tokenizer: Tokenizer = load_tokenizer(self.run_dir / TOKENIZER)
        self.labels: LabelSet = load_labels(self.run_dir)
        self.device = resolve_device(device)
        self.precision = run_precision(self.config.train.precision, self.device)
        self.module = RNNLanguageModel(self.config.model)
        load_weights(self.module, trained_weights(self.run_dir))
        self.module.to(self.device).eval()
        self.generation_defaults = read_generation_defaults(self.run_dir)

    def prepare_prompt(self, text: str) -> str:
        """Clean text the way the training corpus was (lowercase, Unicode form)."""
        from weft.data.prepare import clean_like_training

        return clean_like_training(text, self.config.data)

    def generation_config(self, **overrides: Any) -> GenerationConfig:
        """The run's generation defaults with ``overrides`` (None: unchanged), each checked:
        an unknown name or a value of the wrong type is a one-line :class:`WeftError`."""
        values = {k: v for k, v in overrides.items() if v is not None}
        names = [f.name for f in dataclasses.fields(GenerationConfig)]
        for name in values:
            if name not in names:
                raise WeftError(f"unknown generation option {name!r}; options: "
                                f"{', '.join(names)}")
        if isinstance(values.get("stop"), str):
            values["stop"] = (values["stop"],)  # one stop string, not one per character
        config = from_fields(GenerationConfig,
                             {**dataclasses.asdict(self.generation_defaults), **values})
        config.validate()
        return config

    def generate(self, prompt: str = "", *, labels: Labels | None = None,
                 **options: Any) -> list[Completion]:
        """Continuations of ``prompt``; options are :class:`GenerationConfig` fields. Each is a
        ``str`` whose ``finish_reason`` says why it ended ("stop" or "length").

        ``labels`` (e.g. ``{"label": "4"}``) picks label values of a run trained with label
        columns; columns left out are drawn as often as the training data had them.
        """
        return [s.text for s in self.samples(prompt, labels=labels, **options)]

    def samples(self, prompt: str = "", *, labels: Labels | None = None,
                copy_meter: bool = True, max_copy: int | None = None,
                on_text: OnText | None = None, threads: int | None = None,
                should_stop: Callable[[], bool] | None = None,
                **options: Any) -> list[Sample]:
        """Like :meth:`generate`, as :class:`~weft.generation.samples.Sample` objects: text,
        labels and ``longest_copy`` (the longest span found verbatim in the training corpus;
        None for runs without a copy index). ``max_copy=N`` generates a text again (a bounded
        number of times, then cuts it) until no span of N characters or more is copied.
        ``on_text(i, chunk)`` receives text as it is generated; a streamed text cannot be
        generated again, so under ``max_copy`` it ends before a copy instead (``cut``)."""
        from weft.generation.samples import generate_samples

        return generate_samples(self.module, self.tokenizer, self.labels,
                                self.prepare_prompt(prompt), self.generation_config(**options),
                                labels=labels, index=self.copy_index, copy_meter=copy_meter,
                                max_copy=max_copy, on_text=on_text, should_stop=should_stop,
                                threads=threads)

    @cached_property
    def copy_index(self) -> CorpusIndex | None:
        """The memory-mapped index of the training text (None for runs trained without)."""
        return open_index(self.run_dir)

    def stream(self, prompt: str = "", *, labels: Labels | None = None,
               **options: Any) -> Iterator[str]:
        """Text of one sequence, piece by piece as it is generated."""
        import queue
        import threading

        for name, alone, use in (
                ("num_return_sequences", 1, "samples(on_text=...) writes several"),
                ("copy_meter", False, "samples(...) measures copies")):
            if options.pop(name, alone) != alone:
                raise WeftError(f"stream() yields the text of one sequence, without {name}; "
                                f"{use}")

        chunks: queue.Queue[str | None] = queue.Queue()
        errors: list[BaseException] = []
        abandoned = threading.Event()

        def work() -> None:
            try:
                self.samples(prompt, labels=labels, num_return_sequences=1, copy_meter=False,
                             on_text=lambda i, text: chunks.put(text),
                             should_stop=abandoned.is_set, **options)
            except BaseException as exc:  # handed to the consumer below
                errors.append(exc)
            finally:
                chunks.put(None)

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        try:
            while (chunk := chunks.get()) is not None:
                yield chunk
        finally:
            # Also when the caller stops early (break, close, garbage collection): generation
            # stops at the next token instead of running on in the thread.
            abandoned.set()
            thread.join()
        if errors:
            raise errors[0]

    def evaluate(self, text_or_path: str | Path, *, batch_size: int = 32,
                 seq_len: int = 256) -> Any:
        """Loss, bits per character and perplexity on a text or a file."""
        from weft.data.prepare import load_text
        from weft.tokenizers import EncodeReport
        from weft.training.evaluate import stream_loss, summarize

        if isinstance(text_or_path, Path):
            if self.config.data.record_mode:
                return self._evaluate_records(text_or_path, batch_size)
            # The file is read and cleaned as the training corpus was (Gutenberg, case, form).
            text, _ = load_text([text_or_path], self.config.data)
        else:
            text = self.prepare_prompt(str(text_or_path))
        report = EncodeReport()
        ids = self.tokenizer.encode(text, report)
        if len(ids) < 2:
            raise WeftError("the evaluation text needs at least two tokens")
        nats, count = stream_loss(self.module, ids, batch_size=batch_size, seq_len=seq_len,
                                  precision=self.precision)
        # Characters covered by the predicted tokens: all but the first token's.
        first = len(self.tokenizer.decode(ids[:1]))
        return summarize(nats, count, max(len(text) - first, 1), sum(report.unknown.values()))

    def _evaluate_records(self, path: Path, batch_size: int) -> Any:
        """A record run is measured on records read like its training data (CSV column or
        lines), each scored from <bos> to <eos> with a fresh state."""
        from weft.data.prepare import load_labelled_records
        from weft.data.records import RecordBatches
        from weft.tokenizers import EncodeReport
        from weft.training.classify import label_accuracies
        from weft.training.evaluate import summarize
        from weft.training.records_task import records_loss

        data = self.config.data
        records, rows, _, _ = load_labelled_records([path], data)
        report = EncodeReport()
        batches = RecordBatches.from_texts(
            records, self.tokenizer, batch_size=batch_size, max_len=data.max_record_len,
            long_records=data.long_records, shuffle=False, report=report,
            prefixes=self.labels.prefixes(self.tokenizer, rows) if rows else None)
        nats, count = records_loss(self.module, batches, self.precision)
        result = summarize(nats, count, batches.num_chars, sum(report.unknown.values()))
        if rows:
            accuracies = label_accuracies(self.module, self.tokenizer, self.labels, batches,
                                          rows, self.precision)
            result = dataclasses.replace(result, labels=[a.to_dict() for a in accuracies])
        return result

    def export_web(self, site: str | Path, *, weights: str = "float16",
                   force: bool = False) -> Path:
        """Write this model as a static web page that runs it (:mod:`weft.export.web`)."""
        from weft.export.web import export_web

        return export_web(self, site, weights=weights, force=force)

    def info(self) -> dict[str, Any]:
        params = sum(p.numel() for p in self.module.parameters())
        return {"run_dir": str(self.run_dir), "kind": self.config.kind,
                "parameters": params, "vocab_size": self.tokenizer.vocab_size,
                "tokenizer": self.tokenizer.type_name, **self.config.to_dict(),
                **({"labels": self.labels.to_dict()["columns"]} if self.labels.columns else {}),
                "copy_index_bytes": self.copy_index.size if self.copy_index else None}
