"""A run directory loads, resumes and generates on any device, whatever it was trained on.

A run trained on a GPU in fp16 or bf16 is simulated on the CPU: its files are those of a CPU
run with what a CUDA run writes differently put in (the precision in config.json, a fused
AdamW's parameter groups, CUDA random states, a GradScaler's state). tests/test_cuda.py runs
the real thing where a GPU exists.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import weft
from tests.conftest import TINY
from weft.cli.main import cli
from weft.device import cpu_supports_bf16, run_precision
from weft.runs import LAST_STATE
from weft.training.checkpoint import load_state_file, save_state_file


def _as_if_trained_on_cuda(run: Path, precision: str) -> None:
    """Rewrite a CPU run's files into what a CUDA run in ``precision`` would have written."""
    config_path = run / "config.json"
    config = json.loads(config_path.read_text())
    config["train"]["precision"] = precision
    config["train"]["device"] = "cuda"
    config_path.write_text(json.dumps(config))
    state = load_state_file(run / LAST_STATE)
    for group in state["optimizer"]["param_groups"]:
        group["fused"] = True  # the trainer asks for fused AdamW on CUDA
    for rank in state["ranks"]:
        rank["rng"]["cuda"] = [torch.zeros(16, dtype=torch.uint8)]
    state["scaler"] = {"scale": 1024.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                       "growth_interval": 2000, "_growth_tracker": 7}
    save_state_file(run / LAST_STATE, state)


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("portable")
    corpus = root / "corpus.txt"
    corpus.write_text("The quick brown fox jumps over the lazy dog.\n" * 40, encoding="utf-8")
    out = root / "run"
    weft.train(corpus, out=out, max_steps=4, device="cpu", **TINY)
    return out


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_a_gpu_run_loads_and_generates_on_the_cpu(cpu_run: Path, tmp_path: Path,
                                                  precision: str) -> None:
    run = tmp_path / "run"
    shutil.copytree(cpu_run, run)
    _as_if_trained_on_cuda(run, precision)
    model = weft.load(run, device="cpu")
    assert model.device.type == "cpu"
    text = model.generate("The ", max_new_tokens=20, seed=0)[0]
    assert len(text) == 20
    assert model.evaluate("The quick brown fox.").loss > 0
    runner = CliRunner()
    for args in (["generate", str(run), "--max-new-tokens", "5", "--device", "cpu"],
                 ["info", str(run)]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_a_gpu_run_resumes_on_the_cpu(cpu_run: Path, tmp_path: Path, precision: str) -> None:
    run = tmp_path / "run"
    shutil.copytree(cpu_run, run)
    _as_if_trained_on_cuda(run, precision)
    model = weft.resume(run, max_steps=6, device="cpu", quiet=True)
    assert model is not None
    state = load_state_file(run / LAST_STATE)
    assert state["trainer"]["step"] == 6
    # The CPU trainer's own optimizer settings (fused AdamW there too).
    assert all(group["fused"] is True for group in state["optimizer"]["param_groups"])
    assert len(model.generate("The ", max_new_tokens=10, seed=0)[0]) == 10


def test_precision_on_another_device() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert run_precision("fp16", cuda) == torch.float16
    # bf16 asked for is honoured where the CPU has bf16 instructions; elsewhere (AVX2 only)
    # oneDNN has no bf16 LSTM, so a saved bf16 run takes the CPU's own choice: float32.
    expected = torch.bfloat16 if cpu_supports_bf16() else None
    assert run_precision("bf16", cpu) == expected
    assert run_precision("fp32", cuda) is None
    # fp16 needs CUDA; elsewhere the device's own choice (float32 on a CPU without bf16).
    assert run_precision("fp16", cpu) == run_precision("auto", cpu)


def test_bf16_on_a_cpu_without_bf16_instructions(monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """An AVX2-only CPU: oneDNN has no bf16 LSTM there, so a new run asking for bf16 gets a
    clear error, and a saved bf16 run (trained on a GPU) evaluates and resumes in float32."""
    import weft.device as device_module
    from weft.errors import WeftError

    monkeypatch.setattr(device_module, "cpu_supports_bf16", lambda: False)
    cpu = torch.device("cpu")
    with pytest.raises(WeftError, match="--precision bf16 needs a CUDA GPU or a CPU with "
                                        "AVX512-BF16"):
        device_module.resolve_precision("bf16", cpu)
    assert device_module.resolve_precision("auto", cpu) is None
    assert run_precision("bf16", cpu) is None
    with caplog.at_level("WARNING"):
        assert device_module.training_precision("bf16", cpu, resume=True) is None
    assert "trained in bf16, which cpu cannot run; it continues in fp32" in caplog.text


def test_a_saved_state_keeps_the_running_optimizer_settings(cpu_run: Path) -> None:
    """Optimizer groups saved without the fused kernel (weft before fused AdamW on the CPU,
    or another device) loaded into an optimizer built as the trainer builds it keep its fused
    setting, which GradScaler's fp16 step on CUDA relies on (a fused step takes the scaler's
    arguments)."""
    from weft.models.rnn_lm import RNNLanguageModel
    from weft.runs import read_run_config, run_config
    from weft.training.checkpoint import restore_optimizer

    config = run_config(read_run_config(cpu_run), cpu_run)
    model = RNNLanguageModel(config.model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for group in optimizer.param_groups:
        group["fused"] = True  # what the trainer builds on CUDA and on the CPU
    state = load_state_file(cpu_run / LAST_STATE)
    for group in state["optimizer"]["param_groups"]:
        group["fused"] = None  # as saved without the fused kernel
    restore_optimizer(optimizer, state["optimizer"])
    assert all(group["fused"] is True for group in optimizer.param_groups)
    assert len(optimizer.state) == len(state["optimizer"]["state"])
