"""Property-based tests: arbitrary input gives a correct result or a clear WeftError, never a crash.

Covered here: the character tokenizer, corpus decoding and reading, the JSON and tensor files of
a run directory, and the training-state format.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from weft.config import DataConfig
from weft.data.corpus import decode_text
from weft.data.prepare import load_text
from weft.errors import WeftError
from weft.io import DamagedFileError, load_tensors, read_json, save_tensors
from weft.tokenizers import CharTokenizer, load_tokenizer
from weft.training.checkpoint import flatten, load_state_file, save_state_file, unflatten

FUZZ = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
# Every code point, lone surrogates included (they reach weft through surrogateescape).
ANY_TEXT = st.text(st.characters(codec=None, categories=None), max_size=200)


@FUZZ
@given(ANY_TEXT)
def test_char_tokenizer_round_trips_any_text(text: str) -> None:
    tokenizer = CharTokenizer.train([text])
    ids = tokenizer.encode(text)
    assert ids.dtype.kind == "u" and len(ids) == len(text)
    assert tokenizer.decode(ids) == text
    again = load_via_dict(tokenizer)
    assert again.decode(again.encode(text)) == text


def load_via_dict(tokenizer: CharTokenizer) -> CharTokenizer:
    return CharTokenizer.from_dict(json.loads(json.dumps(tokenizer.to_dict())))


@FUZZ
@given(ANY_TEXT, ANY_TEXT)
def test_unseen_characters_become_unknown_and_keep_their_place(seen: str, text: str) -> None:
    tokenizer = CharTokenizer.train([seen])
    decoded = tokenizer.decode(tokenizer.encode(text))
    assert len(decoded) == len(text)
    assert all(d == c if c in seen else d == "\ufffd" for d, c in zip(decoded, text, strict=True))


@FUZZ
@given(st.lists(st.integers(-5, 70_000), max_size=20))
def test_decoding_bad_ids_is_an_error_not_garbage(ids: list[int]) -> None:
    tokenizer = CharTokenizer.train(["abc"])
    if all(0 <= i < tokenizer.vocab_size for i in ids):
        assert len(tokenizer.decode(ids)) <= len(ids)
    else:
        with pytest.raises(ValueError, match="out of range"):
            tokenizer.decode(ids)


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_decode_to_clean_text_or_a_clear_error(data: bytes) -> None:
    try:
        text = decode_text(data, "input.txt")
    except WeftError as exc:
        assert "input.txt" in str(exc)
        return
    assert "\r" not in text and not text.startswith("\ufeff")
    assert text == data.decode("utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")


@FUZZ
@given(st.lists(ANY_TEXT.filter(lambda t: "\x00" not in t), min_size=1, max_size=3),
       st.sampled_from(["\n", "\r\n", "\r"]))
def test_reading_files_with_any_line_endings(tmp_path_factory: pytest.TempPathFactory,
                                             lines: list[str], newline: str) -> None:
    text = newline.join(lines)
    # Lone surrogates cannot be written as UTF-8: such files are not valid text anyway.
    assume(all(not 0xD800 <= ord(c) <= 0xDFFF for c in text))
    path = tmp_path_factory.mktemp("fuzz") / "c.txt"
    path.write_bytes(text.encode("utf-8"))
    try:
        result = load_text([path], DataConfig())[0]
    except WeftError as exc:
        assert any(w in str(exc) for w in ("empty", "binary"))
        return
    expected = text.replace("\r\n", "\n").replace("\r", "\n")
    assert result == expected + ("" if expected.endswith("\n") else "\n")


def test_binary_and_utf16_files_are_refused_with_advice(tmp_path: Path) -> None:
    utf16 = tmp_path / "utf16.txt"
    utf16.write_bytes("Hello there, this is text.\n".encode("utf-16-le") * 20)
    with pytest.raises(WeftError, match=r"binary.*utf-16"):
        load_text([utf16], DataConfig())[0]
    controls = tmp_path / "controls.bin"
    controls.write_bytes(bytes(range(1, 32)) * 50)
    with pytest.raises(WeftError, match="binary"):
        load_text([controls], DataConfig())[0]


def test_empty_and_huge_lines(tmp_path: Path) -> None:
    huge = tmp_path / "huge.txt"
    huge.write_text("ab" * 1_000_000, encoding="utf-8")  # one 2 MB line
    text = load_text([huge], DataConfig())[0]
    ids = CharTokenizer.train([text]).encode(text)
    assert len(ids) == 2_000_001
    empty_lines = tmp_path / "blank.txt"
    empty_lines.write_text("\n" * 100, encoding="utf-8")
    with pytest.raises(WeftError, match="empty"):
        load_text([empty_lines], DataConfig())[0]


@FUZZ
@given(st.binary(max_size=200))
def test_any_bytes_as_a_json_file(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("json") / "tokenizer.json"
    path.write_bytes(data)
    for read in (read_json, load_tokenizer):
        with contextlib.suppress(WeftError):
            read(path)


@FUZZ
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5)
                    | st.floats(allow_nan=False),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=4) | st.integers(), inner, max_size=3),
                    max_leaves=10))
def test_any_json_tokenizer_description_loads_or_is_reported(
    tmp_path_factory: pytest.TempPathFactory, value: Any
) -> None:
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    path.write_text(json.dumps({"type": "char", "chars": value, "specials": value}))
    with contextlib.suppress(WeftError):
        load_tokenizer(path)


TENSORS = st.builds(
    lambda shape, dtype, seed: torch.from_numpy(
        np.random.default_rng(seed).normal(size=shape)).to(dtype),
    st.lists(st.integers(0, 4), max_size=3), st.sampled_from([torch.float32, torch.bfloat16,
                                                              torch.int64, torch.uint8]),
    st.integers(0, 1000))
STATES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**62, 2**62) | st.floats() | st.text(max_size=5)
    | TENSORS,
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=4) | st.integers(), inner, max_size=3),
    max_leaves=12)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, float):
        return isinstance(b, float) and (a == b or (math.isnan(a) and math.isnan(b)))
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict):
        return (isinstance(b, dict) and list(a) == list(b)
                and all(_same(a[k], b[k]) for k in a))
    return type(a) is type(b) and a == b


@FUZZ
@given(STATES)
def test_training_state_format_round_trips(state: Any) -> None:
    tensors: dict[str, torch.Tensor] = {}
    assert _same(unflatten(json.loads(json.dumps(flatten(state, tensors))), tensors), state)


@FUZZ
@given(st.integers(0, 10**9), st.integers(0, 255), st.booleans())
def test_any_damage_to_a_state_file_is_detected(tmp_path_factory: pytest.TempPathFactory,
                                                position: int, value: int,
                                                truncate: bool) -> None:
    path = tmp_path_factory.mktemp("state") / "last.safetensors"
    state = {"model": {"w": torch.arange(64, dtype=torch.float32)}, "trainer": {"step": 7}}
    save_state_file(path, state)
    data = bytearray(path.read_bytes())
    position %= len(data)
    if truncate:
        data = data[:position]
    else:
        assume(data[position] != value)
        data[position] = value
    path.write_bytes(bytes(data))
    try:
        loaded = load_state_file(path)
    except DamagedFileError:
        return
    # Only harmless damage goes unnoticed (e.g. one JSON space changed to another blank).
    assert _same(loaded, state)


@FUZZ
@given(st.binary(max_size=400))
def test_any_bytes_as_a_tensor_file(tmp_path_factory: pytest.TempPathFactory,
                                    data: bytes) -> None:
    path = tmp_path_factory.mktemp("st") / "model.safetensors"
    save_tensors(path, {"x": torch.ones(3)})
    path.write_bytes(data)
    with pytest.raises(DamagedFileError):
        load_tensors(path)
