"""Choosing the generation path per machine (weft.generation.plan): explicit choices win, the
CPU decides the int8 product, a short measurement decides the rest and is kept on disk."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from weft.cli.main import cli
from weft.config import GenerationConfig, ModelConfig
from weft.errors import WeftError
from weft.generation import generate
from weft.generation import plan as plan_module
from weft.generation.plan import CpuFacts, GenerationPlan, choose_plan, int8_kernel
from weft.generation.quantized import FbgemmLinear, Int8Stepper, fbgemm_available
from weft.models.rnn_lm import RNNLanguageModel
from weft.tokenizers import CharTokenizer

needs_fbgemm = pytest.mark.skipif(not fbgemm_available(), reason="this PyTorch has no FBGEMM")


def _model(hidden: int, cell: str = "lstm") -> RNNLanguageModel:
    torch.manual_seed(0)
    return RNNLanguageModel(ModelConfig(cell=cell, vocab_size=20, hidden_size=hidden,
                                        embedding_dim=8, layers=1)).eval()


def _no_measuring(*args: object, **kwargs: object) -> list[float]:
    raise AssertionError("measured although it should not have")


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WEFT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(plan_module, "_memo", {})
    return tmp_path / "generation-paths.json"


def test_the_cpu_decides_the_int8_product(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plan_module, "int_mm_available", lambda: True)
    monkeypatch.setattr(plan_module, "fbgemm_available", lambda: True)
    vnni = frozenset({"avx512_vnni"})
    assert int8_kernel(CpuFacts("x", "AVX512", vnni)) == "int_mm"
    assert int8_kernel(CpuFacts("x", "AVX512", frozenset({"amx_int8"}))) == "int_mm"
    # No VNNI, or AVX-512 capped to AVX2 (ATEN_CPU_CAPABILITY=avx2): oneDNN's int8 is slow.
    assert int8_kernel(CpuFacts("x", "AVX512", frozenset())) == "fbgemm"
    assert int8_kernel(CpuFacts("x", "AVX2", vnni)) == "fbgemm"
    monkeypatch.setattr(plan_module, "fbgemm_available", lambda: False)
    assert int8_kernel(CpuFacts("x", "AVX2", frozenset())) == "int_mm"
    monkeypatch.setattr(plan_module, "int_mm_available", lambda: False)
    assert int8_kernel(CpuFacts("x", "AVX2", frozenset())) is None


def test_explicit_choices_are_kept_without_measuring(fresh_cache: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plan_module, "measure", _no_measuring)
    model = _model(512)
    plan = choose_plan(model, GenerationConfig(quantize="none"), threads=3)
    assert (plan.quantize, plan.threads, plan.compile) == ("none", 3, False)
    plan = choose_plan(model, GenerationConfig(quantize="int8"), threads=1)
    assert (plan.quantize, plan.threads) == ("int8", 1)
    assert plan.kernel == int8_kernel(plan_module.cpu_facts())
    assert "as asked" in plan.explain()
    assert not fresh_cache.exists()


def test_a_small_model_stays_float32_unmeasured(fresh_cache: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plan_module, "measure", _no_measuring)
    torch.set_num_threads(2)
    plan = choose_plan(_model(32), GenerationConfig())
    assert (plan.quantize, plan.threads) == ("none", 2)  # the policy before measuring existed
    assert "small model" in plan.explain()


def test_measured_once_then_read_from_the_cache(fresh_cache: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    torch.set_num_threads(2)
    calls = []

    def fake_measure(model: RNNLanguageModel, kernel: str | None,
                     candidates: list[tuple[str, int | None]], streams: int) -> list[float]:
        calls.append((candidates, streams))
        return [3000.0 if c == ("int8", 1) else 1000.0 for c in candidates]

    monkeypatch.setattr(plan_module, "measure", fake_measure)
    model = _model(512)  # 4.7 MB of float32 weights: worth measuring
    plan = choose_plan(model, GenerationConfig())
    assert (plan.quantize, plan.threads) == ("int8", 1)
    assert calls == [([("none", 1), ("none", 2), ("int8", 1), ("int8", 2)], 1)]
    assert "measured" in plan.explain() and "3,000 tokens/s" in plan.explain()
    kept = json.loads(fresh_cache.read_text())
    assert len(kept) == 1 and "lstm 1x512" in next(iter(kept))
    # Another process (no memo) reads the file; another batch size is measured on its own.
    monkeypatch.setattr(plan_module, "_memo", {})
    assert choose_plan(model, GenerationConfig()).label() == plan.label()
    assert len(calls) == 1
    many = choose_plan(model, GenerationConfig(num_return_sequences=16))
    assert calls[-1] == ([("none", None), ("int8", None)], 64) and many.threads is None


def test_a_damaged_cache_is_measured_again(fresh_cache: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    fresh_cache.write_text("{not json")
    monkeypatch.setattr(plan_module, "measure",
                        lambda model, kernel, candidates, streams: [1.0] * len(candidates))
    assert choose_plan(_model(512), GenerationConfig(), threads=1).quantize == "none"
    assert json.loads(fresh_cache.read_text())


def test_a_real_measurement_is_quick_and_picks_a_candidate(fresh_cache: Path) -> None:
    speeds = plan_module.measure(_model(512), int8_kernel(plan_module.cpu_facts()),
                                 [("none", 1), ("int8", 1)], streams=1)
    assert len(speeds) == 2 and all(s > 0 for s in speeds)


@needs_fbgemm
def test_compile_is_dropped_for_fbgemm_int8(fresh_cache: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plan_module, "int8_kernel", lambda facts: "fbgemm")
    plan = choose_plan(_model(32), GenerationConfig(quantize="int8", compile=True), threads=1)
    assert (plan.quantize, plan.kernel, plan.compile) == ("int8", "fbgemm", False)
    assert "cannot be traced" in plan.explain()


@needs_fbgemm
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_fbgemm_generation_runs_and_follows_float32(cell: str) -> None:
    model = _model(48, cell)
    tokenizer = CharTokenizer.train(["abcdefghijklmnopqrs"])
    config = GenerationConfig(max_new_tokens=40, temperature=0, num_return_sequences=2, seed=1)
    plan = GenerationPlan("int8", "fbgemm", False, 1)
    texts = generate(model, tokenizer, "abc", config, plan=plan)
    assert len(texts) == 2 and all(len(t) == 40 for t in texts)
    assert isinstance(Int8Stepper(model, "fbgemm").head, FbgemmLinear)


@needs_fbgemm
def test_an_fbgemm_row_does_not_depend_on_the_rest_of_its_batch() -> None:
    """FBGEMM picks the activation range per call; a served batch must still give each row
    what it gives alone (a small-valued row beside one that spans [-1, 1])."""
    torch.manual_seed(0)
    product = FbgemmLinear(torch.randn(24, 16), torch.randn(24))
    quiet = 0.05 * torch.rand(1, 16)
    loud = torch.linspace(-1, 1, 16)[None]
    alone = product(quiet)
    torch.testing.assert_close(product(torch.cat([quiet, loud]))[:1], alone, rtol=0, atol=0)
    torch.testing.assert_close(product(torch.cat([loud, quiet, quiet]))[1:], alone.expand(2, -1),
                               rtol=0, atol=0)
    assert alone.shape == (1, 24)


def test_an_unknown_int8_product_is_refused() -> None:
    with pytest.raises(WeftError, match="unknown int8 kernel"):
        Int8Stepper(_model(32), "no-such-kernel")


def test_generate_explain_says_which_path(tiny_run: Path) -> None:
    result = CliRunner().invoke(cli, ["generate", str(tiny_run), "--max-new-tokens", "5",
                                      "--explain", "--seed", "1", "--quantize", "auto"])
    assert result.exit_code == 0, result.output
    assert "generation path: float32" in result.output
    assert "small model" in result.output
    result = CliRunner().invoke(cli, ["generate", str(tiny_run), "--max-new-tokens", "5",
                                      "--explain", "--quantize", "int8", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "generation path: int8" in result.output and "1 thread" in result.output


def _int8_measures_faster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plan_module, "measure", lambda model, kernel, candidates, streams: [
        2.0 if quantize == "int8" else 1.0 for quantize, _ in candidates])


def test_generate_and_the_served_batch_take_the_chosen_path(
        fresh_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from weft.generation.batch import BatchedGenerator

    generate_module = importlib.import_module("weft.generation.generate")  # not the function

    _int8_measures_faster(monkeypatch)
    built: list[str] = []
    real = generate_module.Int8Stepper

    def spy(model: RNNLanguageModel, kernel: str = "int_mm") -> Int8Stepper:
        built.append(kernel)
        return real(model, kernel)

    monkeypatch.setattr(generate_module, "Int8Stepper", spy)
    model = _model(512)
    tokenizer = CharTokenizer.train(["abcdefghijklmnopqrs"])
    texts = generate(model, tokenizer, "ab", GenerationConfig(max_new_tokens=3, seed=0))
    assert len(texts[0]) == 3
    assert built == [int8_kernel(plan_module.cpu_facts())]
    batch = BatchedGenerator(model, tokenizer)  # the server's batch: quantize auto
    assert isinstance(batch.stepper, Int8Stepper) and batch.stepper.kernel == built[0]
    batch.close()
    exact = BatchedGenerator(model, tokenizer, quantize="none")
    assert not isinstance(exact.stepper, Int8Stepper)
    exact.close()


def test_a_measurement_from_a_busy_machine_is_taken_again_when_quieter(
        fresh_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_measure(model: RNNLanguageModel, kernel: str | None,
                     candidates: list[tuple[str, int | None]], streams: int) -> list[float]:
        calls.append(streams)
        return [1.0] * len(candidates)

    monkeypatch.setattr(plan_module, "measure", fake_measure)
    cores = plan_module.os.cpu_count() or 1
    model = _model(512)
    for load, measured in ((cores + 5.0, 1), (cores + 5.0, 1), (0.1, 2), (cores + 5.0, 2)):
        monkeypatch.setattr(plan_module, "_load", lambda value=load: value)
        monkeypatch.setattr(plan_module, "_memo", {})  # a new process each time
        choose_plan(model, GenerationConfig(), threads=1)
        assert len(calls) == measured
