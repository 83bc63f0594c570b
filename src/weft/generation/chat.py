"""An interactive story: the user and the model write in turns, the model's state carried along.

:class:`ChatSession` keeps the recurrent state and the next-token logits between turns, so each
turn continues the text so far without reading it again. A turn feeds the user's text (cleaned
like the training text) through the model, then samples the model's reply one token at a time
until ``max_new_tokens``, the end of a record (``<eos>``), a stop string, or ``should_stop()``
(Ctrl-C in ``weft chat``): the state then is the state after the last token kept, so stopping a
reply never breaks the session. Every turn remembers the state before it, which makes undo
exact. The settings (temperature, top-k, ...) can change between turns.

The reply's text goes through the generation loop's
:class:`~weft.generation.generate.TextState`, so it streams as ``weft generate`` does: text
that may be the start of a stop string is held back until it is known not to be, and a stop
string ends the reply without being shown. The model has read it, though, so the transcript
keeps it (``Turn.ending``). With ``max_copy`` a token that would complete a copy from the
corpus is drawn again (:mod:`weft.generation.copy_guard`); only if every draw would is the
token taken back (state and all), so the reply ends before the copy and the story holds
nothing the user was not shown.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from weft.config import GenerationConfig
from weft.data.corpus_index import Copy
from weft.data.labels import Labels
from weft.errors import WeftError
from weft.generation.copy_guard import CopyGuard
from weft.generation.generate import TextState, start_ids
from weft.generation.samples import check_max_copy, with_seed
from weft.generation.sampling import next_tokens
from weft.models.rnn_lm import State

if TYPE_CHECKING:
    from weft.language_model import LanguageModel



def _copy_limit(value: str) -> int | None:
    return None if value == "off" else int(value)


# Settings a session may change with `/set NAME VALUE`, and how each is read.
SETTINGS: dict[str, Callable[[str], Any]] = {
    "temperature": float, "top_k": int, "top_p": float, "repetition_penalty": float,
    "max_new_tokens": int, "seed": int, "max_copy": _copy_limit,
}


@dataclass
class Turn:
    user: str  # the text the user added (as the model saw it)
    reply: str  # what the model wrote, as shown (up to a stop string)
    stopped: bool  # the reply was cut short (Ctrl-C)
    # Where the session stood before this turn, for undo:
    state: State | None
    logits: torch.Tensor
    length: int
    ending: str = ""  # the stop string that ended the reply (and the rest of its token)
    cut: bool = False  # the reply ended before a copy of max_copy characters


class ChatSession:
    """One story written in turns with a loaded :class:`~weft.language_model.LanguageModel`."""

    def __init__(self, model: LanguageModel, settings: GenerationConfig,
                 labels: Labels | None = None, max_copy: int | None = None) -> None:
        self.lm = model
        check_max_copy(max_copy, model.copy_index)
        self.max_copy = max_copy
        self.settings = with_seed(settings)
        seed = self.settings.seed if self.settings.seed is not None else 0
        model.labels.check(dict(labels or {}))  # a run without label columns takes none
        self.labels = (model.labels.sample(dict(labels or {}), 1, seed)[0]
                       if model.labels.columns else {})
        self.device = model.module.device
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.turns: list[Turn] = []
        self.reset()

    def reset(self) -> None:
        """Start the story again (same labels), from ``<bos>`` or a line break."""
        tokenizer = self.lm.tokenizer
        prime = start_ids(tokenizer, "").tolist()
        if self.labels:
            prime[1:1] = self.lm.labels.ids(tokenizer, self.labels)
        self.ids: list[int] = []
        self.state: State | None = None
        self.turns = []
        self._feed(prime)

    @torch.no_grad()
    def _feed(self, ids: list[int]) -> None:
        if not ids:
            return
        tensor = torch.tensor([ids], dtype=torch.long, device=self.device)
        logits, _, self.state = self.lm.module(tensor, self.state)
        self.logits = logits[:, -1, :].float()
        self.ids += ids

    def change(self, name: str, value: str) -> None:
        """``/set name value``: a generation setting for the next turns (checked)."""
        if name not in SETTINGS:
            raise WeftError(f"unknown setting {name!r}; settings: {', '.join(SETTINGS)}")
        try:
            parsed = SETTINGS[name](value)
        except ValueError:
            also = " or off" if name == "max_copy" else ""
            raise WeftError(f"{name} takes a number{also}, not {value!r}") from None
        if name == "max_copy":
            check_max_copy(parsed, self.lm.copy_index)
            self.max_copy = parsed
            return
        settings = dataclasses.replace(self.settings, **{name: parsed})
        settings.validate()
        self.settings = settings
        if name == "seed":
            self.generator.manual_seed(parsed)

    @torch.no_grad()
    def turn(self, user: str, on_text: Callable[[str], None] | None = None,
             should_stop: Callable[[], bool] | None = None) -> Turn:
        """Add ``user``'s text to the story and let the model continue it."""
        tokenizer = self.lm.tokenizer
        text = self.lm.prepare_prompt(user)
        before = Turn(text, "", False, self.state, self.logits, len(self.ids))
        if text:
            self._feed(tokenizer.encode(text).astype("int64").tolist())
        index = self.lm.copy_index
        guard = (CopyGuard(index, self.max_copy)
                 if index is not None and self.max_copy is not None else None)
        written = TextState(tokenizer, self.settings.stop, self.ids[-8:], guard)
        banned = torch.zeros(self.logits.size(-1), dtype=torch.bool, device=self.device)
        banned[tokenizer.never_generate] = True
        seen = None
        if self.settings.repetition_penalty != 1.0:
            seen = torch.zeros_like(banned)[None, :]
            seen[0, self.ids] = True
        stopped = False
        for _ in range(self.settings.max_new_tokens):
            if should_stop is not None and should_stop():
                stopped = True
                break
            def draw(logits: torch.Tensor) -> int:
                return int(next_tokens(logits, self.settings, seen=seen, banned=banned,
                                       generator=self.generator)[0])

            # Under max_copy a token that would complete a copy is drawn again (copy_guard.py).
            token = written.redraw(draw(self.logits), self.logits, draw, banned,
                                   tokenizer.eos_id)
            if token == tokenizer.eos_id:
                break
            kept, before_token = len(written.text), (self.state, self.logits)
            self._feed([token])
            if seen is not None:
                seen[0, token] = True
            written.push(token, tokenizer.eos_id)
            if guard is not None and guard.cut:
                # Every draw completed a copy: take the token back, so the story (state and
                # text) ends before it. Its text is not shown yet. (A byte-level model
                # keeps any bytes of a character not yet complete before it: no text.)
                self.state, self.logits = before_token
                del self.ids[-1:]
                written.text = written.text[:kept]
                break
            if on_text is not None and (chunk := written.flush(final=False)):
                on_text(chunk)
            if written.done:
                break
        written.finish()  # a partial character, and text held back that was no stop string
        if on_text is not None and (chunk := written.flush(final=True)):
            on_text(chunk)
        turn = dataclasses.replace(before, reply=written.text, stopped=stopped,
                                   ending=written.ending, cut=guard is not None and guard.cut)
        self.turns.append(turn)
        return turn

    def undo(self) -> Turn | None:
        """Take back the last turn (the user's text and the reply); None when there is none."""
        if not self.turns:
            return None
        last = self.turns.pop()
        self.state, self.logits = last.state, last.logits
        del self.ids[last.length:]
        return last

    def transcript(self) -> str:
        """The story so far, as the model read it: every turn's text and reply (with the stop
        string that ended it), in order."""
        return "".join(turn.user + turn.reply + turn.ending for turn in self.turns)

    def copy_meter(self) -> tuple[Copy, Copy] | None:
        """Longest copies from the corpus in the last reply and in all the model wrote; None
        without a copy index."""
        index = self.lm.copy_index
        if index is None:
            return None
        last = self.turns[-1].reply if self.turns else ""
        longest = max((index.longest_copy(t.reply) for t in self.turns),
                      key=lambda c: c.chars, default=index.longest_copy(""))
        return index.longest_copy(last), longest
