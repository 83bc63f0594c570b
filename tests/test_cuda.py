"""Every CUDA path, for real: skipped without a CUDA GPU (benchmarks/gpu_check.py runs these).

Training per cell and precision (autocast around cuDNN, GradScaler for fp16, fused AdamW),
resume on the GPU and on the CPU from a GPU run, and a CPU run resumed on the GPU; generation
on the device (float32, tokens chosen on the device, one host copy per chunk); the tagger;
one request served with ``--device cuda``.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

import weft
from tests.conftest import TINY
from weft.cli.main import cli
from weft.config import GenerationConfig
from weft.generation import generate
from weft.language_model import LanguageModel
from weft.runs import LAST_STATE
from weft.training.checkpoint import load_state_file

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def _train(corpus: Path, out: Path, **options: Any) -> LanguageModel:
    model = weft.train(corpus, out=out, **{**TINY, **options})
    assert model is not None
    return model


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_training_steps_on_cuda(corpus: Path, tmp_path: Path, cell: str,
                                precision: str) -> None:
    model = _train(corpus, tmp_path / "run", cell=cell, precision=precision, device="cuda",
                   max_steps=12)
    assert model.device.type == "cuda"
    state = load_state_file(tmp_path / "run" / LAST_STATE)
    assert state["trainer"]["step"] == 12 and state["trainer"]["skipped_steps"] == 0
    assert ("scaler" in state) == (precision == "fp16")
    result = model.evaluate("The quick brown fox jumps over the lazy dog.")
    assert 0 < result.loss < 5
    assert len(model.generate("The ", max_new_tokens=16, seed=0)[0]) == 16


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_a_cuda_run_resumes_on_cuda_and_on_the_cpu(corpus: Path, tmp_path: Path,
                                                   precision: str) -> None:
    first = tmp_path / "first"
    _train(corpus, first, precision=precision, device="cuda", max_steps=6)
    on_cpu = tmp_path / "cpu"
    shutil.copytree(first, on_cpu)
    gpu = weft.resume(first, max_steps=12, device="cuda", quiet=True)
    cpu = weft.resume(on_cpu, max_steps=12, device="cpu", quiet=True)
    assert gpu is not None and cpu is not None
    for run in (first, on_cpu):
        assert load_state_file(run / LAST_STATE)["trainer"]["step"] == 12
    assert len(cpu.generate("The ", max_new_tokens=10, seed=0)[0]) == 10
    assert weft.load(first, device="cpu").evaluate("The quick brown fox.").loss > 0


def test_a_cpu_run_resumes_on_cuda_in_fp16(corpus: Path, tmp_path: Path) -> None:
    """The optimizer saved on the CPU (unfused) continues fused on the GPU, under the scaler."""
    import json

    run = tmp_path / "run"
    _train(corpus, run, precision="fp32", device="cpu", max_steps=6)
    config = json.loads((run / "config.json").read_text())
    config["train"]["precision"] = "fp16"  # as if asked for on a GPU machine
    (run / "config.json").write_text(json.dumps(config))
    model = weft.resume(run, max_steps=12, device="cuda", quiet=True)
    assert model is not None and model.device.type == "cuda"
    state = load_state_file(run / LAST_STATE)
    assert state["trainer"]["step"] == 12 and state["trainer"]["skipped_steps"] == 0
    assert all(group["fused"] for group in state["optimizer"]["param_groups"])


def test_generation_on_cuda_matches_the_cpu_and_syncs_once_per_chunk(
        corpus: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    _train(corpus, run, precision="fp32", device="cpu", max_steps=30)
    cpu, gpu = weft.load(run, device="cpu"), weft.load(run, device="cuda")
    ids = torch.as_tensor(cpu.tokenizer.encode("The quick brown fox"))[None]
    # cuDNN may run float32 RNNs with TF32 tensor cores (torch.backends.cudnn.allow_tf32).
    torch.testing.assert_close(gpu.module(ids.cuda()).logits.cpu(), cpu.module(ids).logits,
                               rtol=2e-2, atol=2e-2)
    # Greedy: tokens chosen on the device in chunks are those of per-token stepping.
    config = GenerationConfig(max_new_tokens=64, temperature=0.0, stop=("lazy",))
    chunked = generate(gpu.module, gpu.tokenizer, "The ", config)
    assert chunked == generate(gpu.module, gpu.tokenizer, "The ", config, chunked=False)
    assert len(generate(gpu.module, gpu.tokenizer, "The ", config, reference=True)[0]) > 0
    # Host syncs grow by one per 8 tokens (each chunk's copy to the host), not one per token:
    # the difference between 128 and 64 tokens isolates them from the fixed ones (the prompt,
    # the first token).
    short, long = _syncs_while_generating(gpu, 64), _syncs_while_generating(gpu, 128)
    assert long - short <= 64 // 8 + 1, (short, long)


def _syncs_while_generating(model: LanguageModel, tokens: int) -> int:
    """Host syncs counted by CUDA's sync debug mode while sampling 4 sequences, streamed."""
    streamed: list[str] = []
    config = GenerationConfig(max_new_tokens=tokens, temperature=0.8, top_k=10, top_p=0.95,
                              repetition_penalty=1.1, seed=1, num_return_sequences=4)
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            texts = generate(model.module, model.tokenizer, "The ", config,
                             on_text=lambda i, piece: streamed.append(piece) if i == 0 else None)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert "".join(streamed) == texts[0] and [len(t) for t in texts] == [tokens] * 4
    return sum("synchroniz" in str(w.message) for w in caught)


def test_the_tagger_trains_and_tags_on_cuda(tmp_path: Path) -> None:
    from weft.tagging.api import load_tagger

    train = tmp_path / "train.txt"
    train.write_text("\n".join(["The/DET dog/NOUN barks/VERB ./PUNCT",
                                "A/DET cat/NOUN sleeps/VERB ./PUNCT"] * 6) + "\n")
    out = tmp_path / "tagger"
    result = CliRunner().invoke(cli, [
        "tag", "train", str(train), "--out", str(out), "--max-steps", "20", "--device", "cuda",
        "--hidden", "24", "--word-dim", "16", "--char-dim", "8", "--char-hidden", "8",
        "--batch-size", "4", "--eval-every", "10", "--quiet"])
    assert result.exit_code == 0, result.output
    tagger = load_tagger(out, device="cuda")
    assert [word for word, _ in tagger.tag("The dog sleeps.")] == ["The", "dog", "sleeps", "."]
    assert load_tagger(out, device="cpu").tag("The dog sleeps.") == tagger.tag("The dog sleeps.")


def test_one_request_served_on_cuda(corpus: Path, tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from weft.serving import create_app

    served = tmp_path / "served"
    _train(corpus, served / "tiny", device="cuda", max_steps=10)
    with TestClient(create_app(served, device="cuda")) as client:
        response = client.post("/api/generate", json={"model": "tiny", "prompt": "The",
                                                     "max_new_tokens": 20, "seed": 0})
    assert response.status_code == 200, response.text
    assert len(response.json()["texts"][0]) == 20
