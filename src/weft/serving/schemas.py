"""Request and response shapes of the JSON API (they make the OpenAPI schema at /openapi.json).

Generation parameters have the names and meanings of the ``weft generate`` flags (dashes become
underscores); one left out takes the run's default from its ``generation.json``. Server limits
(see :class:`weft.serving.limits.Limits`) are checked in the routes, since they are set when
the server starts.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    # A misspelled parameter is an error, not silently ignored.
    model_config = ConfigDict(extra="forbid")


class GenerateRequest(_Strict):
    model: str = Field(description="Run name, as listed by GET /api/models.")
    prompt: str = Field("", description="Text to continue.")
    max_new_tokens: int | None = Field(None, ge=0, description="[default: from the run]")
    # Bounds keep sampling finite in float32: extreme values overflow logits to inf, then NaN
    # (weft.serving.app also refuses temperatures between 0 and MIN_TEMPERATURE).
    temperature: float | None = Field(None, ge=0, le=1e3, allow_inf_nan=False,
                                      description="0 means greedy.")
    top_k: int | None = Field(None, ge=0, description="Sample from the k likeliest; 0 disables.")
    top_p: float | None = Field(None, ge=1e-6, le=1, allow_inf_nan=False,
                                description="Nucleus mass; 1 disables.")
    repetition_penalty: float | None = Field(None, ge=1e-3, le=1e3, allow_inf_nan=False,
                                             description="> 1 discourages repeats.")
    num_return_sequences: int | None = Field(None, ge=1, description="How many texts.")
    stop: list[str] | None = Field(None, description="End a text at any of these strings.")
    seed: int | None = Field(None, ge=-(2**63), le=2**64 - 1,
                             description="Makes sampling repeatable.")
    quantize: Literal["auto", "none", "int8"] | None = Field(
        None, description="auto: int8 where it is faster on this CPU; none: float32 (exact); "
                          "int8: int8 weight products, logits about 1% off float32.")
    labels: dict[str, str] | None = Field(
        None, description="Label values to generate under, e.g. {\"label\": \"4\"} (runs "
                          "trained with --label-column); columns left out are drawn as the "
                          "training data had them.")
    copy_meter: bool = Field(False, description="Report each text's longest span copied "
                                                "verbatim from the training corpus.")
    max_copy: int | None = Field(
        None, ge=1, description="Generate a text again (up to 10 tries, then cut it) while it "
                                "copies this many characters or more from the corpus; streamed, "
                                "a token that would complete a copy is drawn again.")
    stream: bool = Field(False, description="Send the text as server-sent events as it comes.")


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class GenerateResponse(BaseModel):
    model: str
    prompt: str = Field(description="The prompt as the model saw it: cleaned like its "
                                    "training text (e.g. lowercased).")
    texts: list[str] = Field(description="Continuations, without the prompt.")
    finish_reasons: list[str] = Field(
        description="Per text: stop (the end token or a stop string), length (max_new_tokens) "
                    "or cancelled.")
    labels: list[dict[str, str]] = Field(
        default_factory=list, description="The label values of each text (empty objects for a "
                                          "run without label columns).")
    longest_copy: list[dict[str, Any] | None] = Field(
        default_factory=list, description="With copy_meter or max_copy: per text, its longest "
                                          "copied span (chars, offset in the corpus, text).")
    tries: list[int] = Field(default_factory=list,
                             description="Generations each text took (max_copy).")
    cut: list[bool] = Field(default_factory=list,
                            description="Texts cut before a copy after the last try (max_copy).")
    usage: Usage
    elapsed: float = Field(description="Seconds spent generating.")
    cancelled: bool = False


class TagRequest(_Strict):
    model: str = Field(description="Name of a tagger run.")
    text: str = Field(description="Raw text: split into sentences and words, then tagged.")


class TaggedSpan(BaseModel):
    text: str
    type: str
    start: int = Field(description="Character offset of the span's first character in the text.")
    end: int = Field(description="Character offset just after the span's last character.")
    tokens: list[int] = Field(description="Token range [first, last + 1) in the sentence.")


class TaggedSentence(BaseModel):
    words: list[str]
    tags: list[str]
    spans: list[TaggedSpan] | None = Field(
        default=None, description="A span (named-entity) tagger's spans; absent for other taggers.")


class TagResponse(BaseModel):
    model: str
    sentences: list[TaggedSentence]


class ModelSummary(BaseModel):
    name: str
    kind: str = Field(description="language-model or tagger.")
    ready: bool = Field(description="Has every file it needs to be served (config.json, "
                                    "model.safetensors, and tokenizer.json or, for a tagger, "
                                    "vocab.json).")
    not_ready: str | None = Field(None, description="Why it is not ready (null when it is), "
                                                    "e.g. 'missing tokenizer.json'.")
    loaded: bool
    steps: int | None = None
    best_val_loss: float | None = None
    generation: dict[str, Any] = Field(description="The run's generation defaults.")
    labels: list[dict[str, Any]] = Field(
        default_factory=list, description="Label columns: name and counts of each value.")
    config: dict[str, Any] = Field(description="The run's config.json.")


class ModelList(BaseModel):
    models: list[ModelSummary]
    limits: dict[str, Any]


class Metrics(BaseModel):
    name: str
    records: list[dict[str, Any]] = Field(
        description="metrics.jsonl records: step, epoch, tokens, elapsed, lr, train_loss, "
                    "val_loss.")


class Health(BaseModel):
    status: str
    active: int = Field(description="Rows in use now (a sequence, or a tagging, is a row).")
    waiting: int = Field(description="Rows of requests waiting to join.")
    batch_rows: int = Field(description="Rows in the running batches.")
    completed: int
    cancelled: int = Field(description="Generations stopped early (the client went away).")
    rejected: int = Field(description="Requests turned away as busy (503).")
    threads: int = Field(description="PyTorch CPU threads of this process.")


class ErrorResponse(BaseModel):
    detail: str
