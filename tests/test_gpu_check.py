"""benchmarks/gpu_check.py at tiny sizes (``--dry-run``), so that the GPU check never rots
while it waits for a GPU: every part runs and records what it measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from benchmarks import gpu_check

from weft.device import precision_runs_on


def test_the_dry_run_runs_every_part(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "gpu_check.json"
    result = gpu_check.main(["--dry-run", "--out", str(out)])
    assert json.loads(out.read_text()) == result
    for part in ("tests", "training", "generation", "quality"):
        assert "error" not in result[part] and "skipped" not in result[part], result[part]
    tests = result["tests"]
    assert tests["exit_code"] == 0 and tests["tests_failed"] == 0
    # Without a GPU every CUDA test is collected and skipped; with one, they all pass.
    counted = "tests_passed" if torch.cuda.is_available() else "tests_skipped"
    assert tests[counted] >= 10
    training = result["training"]
    assert training["fp32"]["tokens_per_s"] > 0
    if precision_runs_on("bf16", torch.device("cuda" if torch.cuda.is_available() else "cpu")):
        assert training["bf16"]["tokens_per_s"] > 0
    else:  # an AVX2-only CPU: no bf16 recurrent kernels
        assert "AVX512-BF16" in training["bf16"]["skipped"]
    assert training["model_flops_per_token"] > 0
    for streams in ("1_streams", "64_streams"):
        row = result["generation"][streams]
        assert row["weft_tokens_per_s"] > 0 and row["naive_nn_lstm_tokens_per_s"] > 0
    assert result["quality"]["tiny"]["held_out_nats_per_char"] > 0
    assert result["quality"]["best"] == "tiny"
    printed = capsys.readouterr().out
    assert "CUDA tests:" in printed and "held_out" not in printed and "nats/char" in printed


def test_without_a_gpu_the_full_check_refuses_to_start(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit, match="no CUDA GPU"):
        gpu_check.main(["--out", str(tmp_path / "x.json")])
