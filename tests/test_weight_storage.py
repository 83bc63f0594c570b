"""Weights stored in bf16 (a shipped model halved): written with a fresh checksum, read back
as float32 by every loader, and scoring like the float32 model."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from tools.train_base_model import export

import weft
from weft import builtin
from weft.errors import WeftError
from weft.io import DamagedFileError, load_tensors, sha256_file
from weft.models.rnn_lm import RNNLanguageModel
from weft.runs import WEIGHTS, load_weight_tensors, store_weights
from weft.training.init_from import load_base, load_base_weights

ENGLISH = Path(builtin.__file__).parent / "english"
SENTENCE = "It was a fine morning, and the children ran down to the river to play.\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Copies of builtin:english: its own float32 weights, and the same stored in bf16."""
    root = tmp_path_factory.mktemp("storage")
    float32, bf16 = root / "float32", root / "bf16"
    shutil.copytree(ENGLISH, float32)
    store_weights(float32 / WEIGHTS, float32 / WEIGHTS, "float32")  # whatever ships
    shutil.copytree(float32, bf16)
    store_weights(bf16 / WEIGHTS, bf16 / WEIGHTS, "bf16")
    return float32, bf16


def test_bf16_storage_halves_the_file_and_keeps_its_checksum(runs: tuple[Path, Path]) -> None:
    float32, bf16 = runs
    assert (bf16 / WEIGHTS).stat().st_size < 0.51 * (float32 / WEIGHTS).stat().st_size
    stored, metadata = load_tensors(bf16 / WEIGHTS)  # checks the new SHA-256
    assert {t.dtype for t in stored.values()} == {torch.bfloat16}
    assert metadata["format"] == "pt"
    with (bf16 / WEIGHTS).open("r+b") as handle:  # the checksum covers the bf16 data
        data = bytearray(handle.read())
    data[-1] ^= 1
    damaged = bf16.parent / "damaged.safetensors"
    damaged.write_bytes(bytes(data))
    with pytest.raises(DamagedFileError, match="checksum"):
        load_weight_tensors(damaged)


def test_loading_upcasts_to_the_float32_of_the_rounded_weights(runs: tuple[Path, Path]) -> None:
    float32, bf16 = runs
    original, _ = load_tensors(float32 / WEIGHTS)
    loaded = load_weight_tensors(bf16 / WEIGHTS)
    for key, value in original.items():
        assert loaded[key].dtype == torch.float32
        assert torch.equal(loaded[key], value.to(torch.bfloat16).float())


def test_a_bf16_stored_model_loads_as_float32_and_scores_like_it(
        runs: tuple[Path, Path]) -> None:
    float32, bf16 = runs
    reference = weft.load(float32, device="cpu")
    model = weft.load(bf16, device="cpu")
    assert {p.dtype for p in model.module.parameters()} == {torch.float32}
    ids = torch.as_tensor(model.tokenizer.encode(SENTENCE)).long()[None]
    expected, got = _log_probs(reference.module, ids), _log_probs(model.module, ids)
    # bf16 keeps 8 significant bits (a relative rounding below 2^-8). Measured: probabilities
    # move by under 0.01, the text's own tokens' log-probabilities by under 0.03.
    assert (got.exp() - expected.exp()).abs().max() < 0.03
    target = ids[0, 1:, None]
    assert (got[0, :-1].gather(1, target) - expected[0, :-1].gather(1, target)).abs().max() < 0.1
    assert abs(model.evaluate(SENTENCE).bits_per_char
               - reference.evaluate(SENTENCE).bits_per_char) < 0.01


def _log_probs(module: RNNLanguageModel, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        logits = module(ids).logits
    assert logits is not None
    return torch.log_softmax(logits.float(), -1)


def test_fine_tuning_starts_from_a_bf16_stored_base_in_float32(runs: tuple[Path, Path]) -> None:
    _, bf16 = runs
    base = load_base(bf16)
    config = dataclasses.replace(base.config.model, vocab_size=base.tokenizer.vocab_size + 3)
    model = RNNLanguageModel(config)
    load_base_weights(model, base)
    weights = model.state_dict()
    stored = load_weight_tensors(bf16 / WEIGHTS)
    assert torch.equal(weights["rnn.weight_hh_l0"], stored["rnn.weight_hh_l0"])
    assert weights["head.bias"].dtype == torch.float32
    assert torch.allclose(weights["head.bias"][-1], stored["head.bias"].mean())  # float32 mean


def test_storing_back_as_float32_and_bad_names(runs: tuple[Path, Path], tmp_path: Path) -> None:
    _, bf16 = runs
    store_weights(bf16 / WEIGHTS, tmp_path / WEIGHTS, "float32")
    widened, _ = load_tensors(tmp_path / WEIGHTS)
    assert torch.equal(widened["head.bias"], load_weight_tensors(bf16 / WEIGHTS)["head.bias"])
    with pytest.raises(WeftError, match="float32, bf16"):
        store_weights(bf16 / WEIGHTS, tmp_path / WEIGHTS, "int4")


@pytest.mark.parametrize("storage", ["bf16", "float32"])
def test_the_base_model_export_stores_weights_as_asked_under_a_true_manifest(
        runs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        storage: str) -> None:
    float32, _ = runs
    target = tmp_path / "english"
    export(float32, target, "a test", storage=storage)
    stored, _ = load_tensors(target / WEIGHTS)
    assert {t.dtype for t in stored.values()} == {
        torch.bfloat16 if storage == "bf16" else torch.float32}
    if storage == "float32":
        assert sha256_file(target / WEIGHTS) == sha256_file(float32 / WEIGHTS)
    manifest = json.loads((target / "MANIFEST.json").read_text())["sha256"]
    assert manifest[WEIGHTS] == sha256_file(target / WEIGHTS)
    monkeypatch.setattr(builtin, "_HERE", tmp_path)  # the manifest check builtin: names get
    assert builtin.builtin_dir("builtin:english") == target
    head = weft.load("builtin:english", device="cpu").module.head
    assert head is not None and head.weight.dtype == torch.float32
