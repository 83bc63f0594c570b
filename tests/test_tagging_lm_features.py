"""Character-LM features for the tagger: which LM position belongs to which word (both
directions, punctuation, multi-byte characters), the cache against a fresh pass, a tagger with
them trained, saved, loaded, resumed exactly and fine-tuned, and the one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from weft.api import resume_tagger, train_tagger
from weft.config import DataConfig, ModelConfig, RunConfig
from weft.errors import WeftError
from weft.io import atomic_write_json
from weft.models.rnn_lm import RNNLanguageModel
from weft.runs import save_weights
from weft.tagging import lm_features
from weft.tagging.api import load_tagger
from weft.tagging.lm_features import CharLMFeatures, DirectionLM, open_lm
from weft.tokenizers import save_tokenizer
from weft.tokenizers.byte import ByteTokenizer
from weft.tokenizers.char import CharTokenizer

from .conftest import interrupted_at

WORDS = ["Café", "naïve", ",", "“x”", "日本", "."]
TRAIN = ["The/DET dog/NOUN barks/VERB ./PUNCT", "A/DET cat/NOUN sleeps/VERB ./PUNCT",
         "The/DET old/ADJ café/NOUN sleeps/VERB !/PUNCT", "I/PRON see/VERB a/DET dog/NOUN ./PUNCT"
         ] * 3
TINY = dict(word_dim=8, char_dim=6, char_hidden=6, hidden=12, layers=1, batch_size=4, lr=0.02,
            warmup_steps=2, eval_every=4, seed=5, threads=1, dropout=0.1, patience=0,
            plateau_patience=0)


def make_lm(folder: Path, level: str = "byte", seed: int = 0, extra: dict | None = None,
            tied: bool = False) -> Path:
    """A tiny untrained LM run directory (random weights are as good as trained ones here)."""
    torch.manual_seed(seed)
    tokenizer = ByteTokenizer() if level == "byte" else CharTokenizer(set("".join(WORDS)) | {" "})
    config = RunConfig(model=ModelConfig(vocab_size=tokenizer.vocab_size, embedding_dim=5,
                                         hidden_size=7 if not tied else 5, layers=2,
                                         adaptive_softmax="off", tie_weights=tied),
                       data=DataConfig(level=level))
    folder.mkdir(parents=True)
    atomic_write_json(folder / "config.json", config.to_dict() | (extra or {}))
    save_tokenizer(tokenizer, folder / "tokenizer.json")
    save_weights(RNNLanguageModel(config.model), folder / "model.safetensors")
    return folder


def top_outputs(direction: DirectionLM, text: str) -> torch.Tensor:
    """The LM's top-layer output at every token of ``text``, run by hand."""
    ids = torch.as_tensor(direction.tokenizer.encode(text), dtype=torch.long)
    with torch.no_grad():
        out, _ = direction.lm.rnn(direction.lm.embed(ids.unsqueeze(0)))
    return out[0]


def units(text: str, level: str) -> int:
    return len(text.encode("utf-8")) if level == "byte" else len(text)


@pytest.mark.parametrize("level", ["byte", "char"])
def test_each_word_gets_the_state_after_it_forward_and_before_it_backward(
        tmp_path: Path, level: str) -> None:
    forward = DirectionLM(open_lm(str(make_lm(tmp_path / "f", level, 1)), "--char-lm", False),
                          backward=False)
    backward = DirectionLM(open_lm(str(make_lm(tmp_path / "b", level, 2)), "--char-lm-backward",
                                   True), backward=True)
    lms = CharLMFeatures(forward, backward).eval()
    feats = lms.compute(lms.encode([WORDS]))[0].float()
    assert feats.shape == (len(WORDS), 14)
    text = " ".join(WORDS)
    ahead = top_outputs(forward, "\n" + text + " ")
    behind = top_outputs(backward, "\n" + text[::-1] + " ")
    start = 0
    for i, word in enumerate(WORDS):
        end = start + len(word)
        # forward: after reading the character that follows the word (a space)
        after = units("\n" + text[:end], level)
        assert ("\n" + text + " ")[len("\n" + text[:end])] == " "
        assert torch.allclose(feats[i, :7], ahead[after], atol=2e-3)
        # backward: after reading the character before the word's first one, in reversed text
        reversed_prefix = "\n" + text[::-1][: len(text) - start]
        assert torch.allclose(feats[i, 7:], behind[units(reversed_prefix, level)], atol=2e-3)
        assert (text[::-1] + " ")[len(text) - start] == " "
        start = end + 1


def test_the_cache_equals_a_fresh_pass_alone_windowed_and_with_gradients(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lms, _ = lm_features.build_features([("--char-lm", str(make_lm(tmp_path / "f"))),
                                         ("--char-lm-backward", str(make_lm(tmp_path / "b")))])
    lms.eval()
    sentences = [WORDS, ["a"], ["The", "dog", "barks", "."] * 5, WORDS[::-1]]
    inputs = lms.encode(sentences)
    cached = lms.compute(inputs)
    assert all(c.dtype == torch.float16 and len(c) == len(s)
               for c, s in zip(cached, sentences, strict=True))
    for i in range(len(sentences)):  # batching and padding change nothing
        assert torch.allclose(lms.compute([inputs[i]])[0].float(), cached[i].float(), atol=1e-3)
    monkeypatch.setattr(lm_features, "WINDOW", 5)  # long texts are read in windows
    windowed = lms.compute(inputs)
    assert all(torch.allclose(a.float(), b.float(), atol=1e-3)
               for a, b in zip(windowed, cached, strict=True))
    graded = lms.features(inputs, 20)  # the fine-tuning path, with gradients
    assert graded.requires_grad
    for i, c in enumerate(cached):
        assert torch.allclose(graded[i, : len(c)].detach(), c.float(), atol=1e-3)


def _metrics(run: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if "time" not in k and k != "elapsed"}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lmtag")
    (root / "train.txt").write_text("\n".join(TRAIN) + "\n", encoding="utf-8")
    make_lm(root / "fwd", seed=3)
    make_lm(root / "bwd", seed=4)
    return root


@pytest.mark.parametrize("finetune", [False, True])
def test_a_tagger_with_lm_features_trains_saves_loads_and_resumes_exactly(
        data: Path, tmp_path: Path, finetune: bool) -> None:
    options = dict(TINY, char_lm=str(data / "fwd"), char_lm_backward=str(data / "bwd"),
                   char_lm_finetune=finetune, max_steps=12)
    whole = tmp_path / "whole"
    tagger = train_tagger(data / "train.txt", whole, quiet=True, **options)
    model = json.loads((whole / "config.json").read_text())["model"]
    assert model["char_lm"] == str(data / "fwd") and model["lm_dim"] == 14
    assert len(model["char_lm_sha256"]) == 64 and model["char_lm_finetune"] == finetune
    out = tagger.tag_sentences([["The", "café", "sleeps", "."]], probabilities=True)[0]
    assert len(out.tags) == 4 and load_tagger(whole).tag_sentences(
        [["The", "café", "sleeps", "."]], probabilities=True)[0].probabilities == out.probabilities
    assert (whole / "char-lm-forward" / "tokenizer.json").exists() == finetune
    # interrupted at step 6 and resumed: the same losses and dev figures as the whole run
    part = tmp_path / "part"
    with interrupted_at(6):
        train_tagger(data / "train.txt", part, quiet=True, **options)
    resume_tagger(part, quiet=True)
    assert _metrics(part) == _metrics(whole) and len(_metrics(whole)) == 3
    assert load_tagger(part).tag(["A", "dog", "barks"]) == tagger.tag(["A", "dog", "barks"])


def test_a_fine_tuned_tagger_keeps_its_own_lm(data: Path, tmp_path: Path) -> None:
    lm = make_lm(tmp_path / "lm", tied=True)  # its output layer shares the embedding's weights
    run = tmp_path / "run"
    tagger = train_tagger(data / "train.txt", run, quiet=True, **TINY, char_lm=str(lm),
                          char_lm_finetune=True, max_steps=4)
    from weft.io import load_tensors

    tensors, _ = load_tensors(run / "model.safetensors")
    original, _ = load_tensors(lm / "model.safetensors")
    key = "rnn.weight_hh_l0"
    assert not torch.equal(tensors[f"char_lm.forward_lm.lm.{key}"], original[key])  # trained
    assert "char_lm.forward_lm.lm.embedding.weight" in tensors
    assert not [k for k in tensors if ".head." in k]  # the LM's output layer makes no features
    shutil.rmtree(lm)  # the run no longer needs the LM run
    assert load_tagger(run).tag(["A", "dog"]) == tagger.tag(["A", "dog"])


def test_lm_errors_are_one_line(data: Path, tmp_path: Path) -> None:
    from weft.tokenizers.word import WordTokenizer

    save_tokenizer(WordTokenizer(["the"], ["<unk>"]), make_lm(tmp_path / "words") /
                   "tokenizer.json")
    tagger_run = tmp_path / "tagger"
    train_tagger(data / "train.txt", tagger_run, quiet=True, **TINY, max_steps=2)
    reversed_lm = make_lm(tmp_path / "rev", extra={"reversed": True})
    for source, message in [
        (tmp_path / "missing", "is not a weft language model run directory"),
        (tmp_path / "words", "is a word-level language model; word features need a byte- or "),
        (tagger_run, "is a tagger run; it needs a byte- or character-level"),
        (reversed_lm, "was trained on reversed text: give it as --char-lm-backward"),
    ]:
        with pytest.raises(WeftError, match=message) as info:
            train_tagger(data / "train.txt", tmp_path / "x", quiet=True, **TINY, max_steps=1,
                         char_lm=str(source))
        assert "\n" not in str(info.value)
    # a resume with another LM, or after the LM file changed
    run = tmp_path / "run"
    lm = tmp_path / "lm"
    shutil.copytree(data / "fwd", lm)
    train_tagger(data / "train.txt", run, quiet=True, **TINY, max_steps=2, char_lm=str(lm))
    with pytest.raises(WeftError, match=r"trained with --char-lm .*lm; --resume continues it"):
        resume_tagger(run, quiet=True, char_lm=str(data / "bwd"), max_steps=4)
    make_lm(tmp_path / "other", seed=9)
    shutil.copy(tmp_path / "other" / "model.safetensors", lm / "model.safetensors")
    with pytest.raises(WeftError, match="has changed since this run started"):
        resume_tagger(run, quiet=True, max_steps=4)
    with pytest.raises(WeftError, match="has changed since this tagger was trained"):
        load_tagger(run)


def test_a_frozen_lm_runs_once_per_sentence_for_the_runs_life(
        data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    computed: list[int] = []
    original = CharLMFeatures.compute

    def counting(self: CharLMFeatures, inputs: list) -> list[torch.Tensor]:
        computed.append(len(inputs))
        return original(self, inputs)

    def never(*args: object) -> None:
        raise AssertionError("a frozen LM's features are cached, not run per batch")

    monkeypatch.setattr(CharLMFeatures, "compute", counting)
    monkeypatch.setattr(CharLMFeatures, "features", never)
    train_tagger(data / "train.txt", tmp_path / "run", quiet=True, **TINY, epochs=4,
                 char_lm=str(data / "fwd"))
    # the training and the held-out dev sentences, once each, over 4 epochs and 4 evaluations
    assert computed == [len(TRAIN) - 1, 1]


def test_the_cli_serve_and_python_api_run_the_lm_for_new_text(data: Path, tmp_path: Path
                                                              ) -> None:
    from click.testing import CliRunner

    import weft
    from weft.cli.main import cli

    def invoke(*args: str, input: str | None = None) -> tuple[int, str]:
        result = CliRunner().invoke(cli, list(args), input=input)
        return result.exit_code, result.output

    run = tmp_path / "run"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    code, output = invoke("tag", "train", str(data / "train.txt"), "--out", str(run),
                          "--char-lm", str(data / "fwd"), "--max-steps", "8", "--quiet", *flags)
    assert code == 0, output
    code, output = invoke("tag", "eval", str(run), str(data / "train.txt"), "--json")
    assert code == 0 and json.loads(output)["tokens"] == sum(len(s.split()) for s in TRAIN)
    code, output = invoke("info", str(run))
    assert code == 0 and f"character LMs (frozen): forward {data / 'fwd'}\n" in output
    code, output = invoke("tag", "predict", str(run), input="The café sleeps. A dog barks!\n")
    assert code == 0 and output.splitlines()[0].startswith("The/")
    tagger = weft.load(run)
    assert [w for w, _ in tagger.tag("The café sleeps.")] == ["The", "café", "sleeps", "."]
    assert output.splitlines()[0] == str(tagger.tag_text("The café sleeps.")[0])
    pytest.importorskip("fastapi")
    from weft.serving.routes import tag_sentences

    assert tag_sentences(tagger, "A dog barks!")[0].words == ["A", "dog", "barks", "!"]
    code, output = invoke("tag", "train", "--resume", str(run), "--char-lm", str(data / "bwd"),
                          "--max-steps", "10")
    assert code == 2 and "--resume continues it with the same" in output
    assert len(output.strip().splitlines()) == 1
