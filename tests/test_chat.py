"""`weft chat`: a story written in turns, driven through its input."""

from __future__ import annotations

import os
import shutil
import signal
import threading
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import weft
from weft.cli.chat import _ctrl_c_stops
from weft.cli.main import cli
from weft.config import GenerationConfig
from weft.errors import WeftError
from weft.generation.chat import ChatSession
from weft.runs import COPY_INDEX


def test_chat_is_driven_through_its_input(tiny_run: Path, tmp_path: Path) -> None:
    saved = tmp_path / "story.txt"
    lines = ["The quick", "/set temperature 0", "/settings", " brown", "/undo", "/copy",
             "/set top_k lots", "/bogus", f"/save {saved}", "/help", "/quit", "never read"]
    result = CliRunner().invoke(cli, ["chat", str(tiny_run), "--max-new-tokens", "12",
                                      "--seed", "1"], input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "temperature = 0.0" in out
    assert "undone: ' brown" in out
    assert "last reply: longest copy " in out and "whole story: longest copy " in out
    assert "error: top_k takes a number, not 'lots'" in out
    assert "error: unknown command /bogus" in out
    assert "/undo" in out  # the help text
    story = saved.read_text(encoding="utf-8")
    assert story.startswith("The quick") and " brown" not in story  # the undone turn is gone
    assert "> " + story[len("The quick"):] + "\n" in out  # the reply, as it was shown


def test_end_of_input_leaves(tiny_run: Path) -> None:
    result = CliRunner().invoke(cli, ["chat", str(tiny_run), "--max-new-tokens", "5"],
                                input="The\n")
    assert result.exit_code == 0, result.output


def test_turns_continue_the_state_and_undo_restores_it(tiny_run: Path) -> None:
    model = weft.load(tiny_run, device="cpu")
    session = ChatSession(model, GenerationConfig(temperature=0, max_new_tokens=15, seed=0))
    first = session.turn("The quick")
    logits = session.logits.clone()
    second = session.turn(" over")
    # Carrying the state gives what one greedy generation over the whole text gives.
    whole = model.generate("The quick" + first.reply + " over", temperature=0,
                           max_new_tokens=15)[0]
    assert second.reply == whole
    assert session.undo() is second
    assert torch.equal(session.logits, logits)
    assert session.transcript() == "The quick" + first.reply
    assert session.turn(" over").reply == second.reply  # the same state again


def test_stopping_a_reply_keeps_the_session(tiny_run: Path) -> None:
    model = weft.load(tiny_run, device="cpu")
    session = ChatSession(model, GenerationConfig(max_new_tokens=50, seed=0))
    calls = iter(range(100))
    turn = session.turn("The", should_stop=lambda: next(calls) >= 3)
    assert turn.stopped and len(turn.reply) <= 3
    assert not session.turn(" lazy").stopped


def test_ctrl_c_while_writing_sets_the_flag_instead_of_raising() -> None:
    flag = threading.Event()
    with _ctrl_c_stops(flag):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(100):  # the handler runs between bytecodes, soon after the signal
            if flag.is_set():
                break
    assert flag.is_set()


def test_a_stop_string_is_held_back_never_shown_in_part(copier: Path) -> None:
    """The copier writes its pangram: a reply stops at "lazy" without showing any of it, and
    text held back because it began like a stop string is shown once it is not one."""
    model = weft.load(copier, device="cpu")
    settings = GenerationConfig(temperature=0, max_new_tokens=60, seed=0,
                                stop=("lazy", "fox leaps"))
    session = ChatSession(model, settings)
    shown: list[str] = []
    turn = session.turn("The quick", on_text=shown.append)
    assert "".join(shown) == turn.reply == " brown fox jumps over the "
    assert turn.ending.startswith("lazy")
    for i in range(1, len(shown) + 1):  # no moment showed the start of "lazy"
        assert not "".join(shown[:i]).endswith(("l", "la", "laz"))
    assert "fox jumps" in turn.reply  # held back while it could be "fox leaps", then shown
    assert session.transcript() == "The quick" + turn.reply + turn.ending
    result = CliRunner().invoke(cli, ["chat", str(copier), "--temperature", "0", "--stop",
                                      "lazy", "--max-new-tokens", "60"],
                                input="The quick\n/quit\n")
    assert result.exit_code == 0, result.output
    assert ">  brown fox jumps over the \n" in result.output and "lazy" not in result.output


def test_max_copy_draws_a_copying_token_again_or_takes_it_back(
        copier: Path, tiny_run: Path, tmp_path: Path) -> None:
    model = weft.load(copier, device="cpu")
    index = model.copy_index
    assert index is not None
    greedy = GenerationConfig(temperature=0, max_new_tokens=60, seed=0)
    free = ChatSession(model, greedy).turn("The quick").reply
    assert index.longest_copy(free).chars >= 12  # the copier copies
    session = ChatSession(model, greedy, max_copy=12)
    shown: list[str] = []
    turn = session.turn("The quick", on_text=shown.append)
    assert not turn.cut and "".join(shown) == turn.reply and len(turn.reply) == 60
    assert 0 < index.longest_copy(turn.reply).chars < 12
    # The story holds what was shown, and the state is the state after exactly that text.
    assert session.transcript() == "The quick" + turn.reply
    fresh = ChatSession(model, GenerationConfig(seed=0))
    fresh._feed(model.tokenizer.encode("The quick" + turn.reply).tolist())
    assert fresh.ids == session.ids and torch.allclose(fresh.logits, session.logits)
    # Every character is a copy of 1: no draw avoids it, so the token is taken back.
    session.change("max_copy", "1")
    before = list(session.ids)
    cut = session.turn("")
    assert cut.cut and cut.reply == "" and session.ids == before
    session.change("max_copy", "off")
    assert not session.turn("").cut
    result = CliRunner().invoke(cli, ["chat", str(copier), "--temperature", "0",
                                      "--max-copy", "1"],
                                input="The quick\n/settings\n/set max_copy 3x\n/quit\n")
    assert result.exit_code == 0, result.output
    assert "[ended before a copy from the corpus]" in result.output
    assert "max_copy = 1" in result.output and "max_copy takes a number or off" in result.output
    old = tmp_path / "old"  # a run trained before the copy meter
    shutil.copytree(tiny_run, old, ignore=shutil.ignore_patterns(COPY_INDEX))
    result = CliRunner().invoke(cli, ["chat", str(old), "--max-copy", "5"], input="")
    assert result.exit_code == 2 and "copy meter is unavailable" in result.output


def test_set_refuses_values_that_would_break_the_session(tiny_run: Path) -> None:
    session = ChatSession(weft.load(tiny_run, device="cpu"), GenerationConfig(seed=0))
    for name, value, message in [("temperature", "nan", "finite"),
                                 ("seed", str(2**64), "64-bit"),
                                 ("repetition_penalty", "inf", "finite")]:
        with pytest.raises(WeftError, match=message):
            session.change(name, value)
    assert session.turn("The").reply is not None  # the session goes on


def test_a_label_on_a_run_without_label_columns_is_refused(tiny_run: Path) -> None:
    result = CliRunner().invoke(cli, ["chat", str(tiny_run), "--label", "label=9"],
                                input="hi\n")
    assert result.exit_code == 2 and "unknown label column 'label'" in result.output
