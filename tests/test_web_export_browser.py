"""The exported web page in real headless Chromium: it loads from a static server, streams
text, writes what PyTorch writes greedily, scores the next token as PyTorch does, repeats a
seeded sample, honours stop strings, and its stop button stops the worker.

Skipped when Debian's chromium (or Playwright) is absent, like the playground's browser test.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import weft
from weft.generation.generate import start_ids

from .web_fixtures import StaticServer, open_page, page_generate, train_tiny

# Largest difference of any next-token log-probability from PyTorch's float32 model, per
# weight format (docs/web-export.md gives the measured values; these bounds leave room).
LOGPROB_TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "int8": 1e-1}
RUNS: dict[str, dict[str, Any]] = {
    "char-rnn-tied": dict(cell="rnn", layers=2, hidden_size=32, embedding_dim=32,
                          tie_weights=True),
    # Trained longer: it must write multi-byte characters for the streaming test.
    "byte-gru": dict(level="byte", cell="gru", layers=2, max_steps=200, lr=1e-2),
    "byte-onehot-lstm": dict(level="byte", embedding_dim=0, layers=2),
    "char-adaptive": dict(adaptive_softmax="on"),
    "word-lstm": dict(level="word", max_steps=100, lr=1e-2),
    "bpe-gru": dict(level="bpe", bpe_vocab_size=300, cell="gru", max_steps=100, lr=1e-2),
}
# Texts whose token ids the page must give exactly as Python does.
ENCODED = {
    "word-lstm": ["Don't stop... U.S. 3.14 well-known \"fox\"!\n\nThe lazy dog — 日本語",
                  "The quick brown fox jumps over the lazy dog."],
    "bpe-gru": ["Größe, café 日本語 the  fox\n\n  jumps!! 123 it's", "The quick brown fox"],
}
LABEL_TEXTS = {"pos": "I love this so much", "neg": "I hate it a lot"}
PROMPTS = {"char": "The qu", "byte": "Größe, c", "word": "The quick", "bpe": "Größe, c"}


@pytest.fixture(scope="module")
def sites(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[str, dict[str, Path]]]:
    """Every run (the shared tiny char LSTM and the ones above) exported in every weight
    format under one served folder: ``{name}-{format}``."""
    root = tmp_path_factory.mktemp("web")
    runs = {"char-lstm": tiny_run}
    for name, options in RUNS.items():
        runs[name] = train_tiny(root / "runs", name, **options)
    csv = root / "labelled.csv"
    rows = [f'{i},"{LABEL_TEXTS[label]} {topic}",{label},{topic}'
            for i, (label, topic) in enumerate([("pos", "cats"), ("neg", "dogs"),
                                                ("pos", "dogs")] * 60)]
    csv.write_text("id,text,label,topic\n" + "\n".join(rows) + "\n", encoding="utf-8")
    runs["labels"] = train_tiny(root / "runs", "labels", corpus=csv, csv_column="text",
                                label_columns=["label", "topic"], max_steps=150, lr=1e-2)
    served = root / "served"
    for name, run in runs.items():
        model = weft.load(run, device="cpu")
        for fmt in ("float32", "float16", "int8"):
            model.export_web(served / f"{name}-{fmt}", weights=fmt)
    with StaticServer(served) as server:
        yield server.url, runs


def prompt_for(run: Path) -> str:
    return PROMPTS[weft.load(run, device="cpu").config.data.level]


def pytorch_logprobs(run: Path, prompt: str) -> np.ndarray:
    model = weft.load(run, device="cpu")
    ids = start_ids(model.tokenizer, model.prepare_prompt(prompt))
    with torch.no_grad():
        logits = model.module(torch.as_tensor(ids)[None, :]).logits
    assert logits is not None
    return torch.log_softmax(logits[0, -1].double(), dim=-1).numpy()


@pytest.mark.parametrize("name", ["char-lstm", *RUNS])
def test_the_page_writes_what_pytorch_writes_greedily(browser: Any, sites: Any,
                                                      name: str) -> None:
    url, runs = sites
    prompt = prompt_for(runs[name])
    expected = weft.load(runs[name], device="cpu").generate(
        prompt, temperature=0, max_new_tokens=80, quantize="none")[0]
    for fmt in ("float32", "float16"):
        page, problems = open_page(browser, f"{url}/{name}-{fmt}/")
        assert page_generate(page, prompt, max_new_tokens=80) == expected, fmt
        assert page.text_content("#out-prompt") == prompt
        assert "done: 80 tokens" in (page.text_content("#status") or "")
        assert problems == []
        page.close()


@pytest.mark.parametrize("name", ["char-lstm", *RUNS])
def test_next_token_logprobs_match_pytorch(browser: Any, sites: Any, name: str) -> None:
    url, runs = sites
    prompt = prompt_for(runs[name])
    expected = pytorch_logprobs(runs[name], prompt)
    # The WebAssembly SIMD products, and for float32 also the plain JavaScript ones.
    for fmt, kernel in [*((fmt, "wasm-simd") for fmt in LOGPROB_TOLERANCE), ("float32", "js")]:
        tolerance = LOGPROB_TOLERANCE[fmt]
        page, _ = open_page(browser, f"{url}/{name}-{fmt}/?kernel={kernel}")
        got = np.array(page.evaluate("(p) => weftPage.logprobs(p)", prompt))
        assert page.evaluate("weftPage.kernel") == kernel
        page.close()
        finite = np.isfinite(expected)
        assert (np.isfinite(got) == finite).all()
        difference = float(np.abs(got[finite] - expected[finite]).max())
        print(f"web export {name} {fmt} {kernel}: largest log-prob difference {difference:.2e}")
        assert difference < tolerance, (fmt, difference)


def test_bytes_stream_as_whole_characters(browser: Any, sites: Any) -> None:
    url, runs = sites
    page, problems = open_page(browser, f"{url}/byte-gru-float32/")
    # Record every piece the page shows: none may hold half a character (U+FFFD).
    page.evaluate("""() => {
        window.pieces = [];
        new MutationObserver(() => window.pieces.push(
            document.querySelector('#out-text').textContent)).observe(
            document.querySelector('#out-text'), {childList: true, characterData: true,
                                                   subtree: true});
    }""")
    text = page_generate(page, "日本", max_new_tokens=60)
    expected = weft.load(runs["byte-gru"], device="cpu").generate(
        "日本", temperature=0, max_new_tokens=60, quantize="none")[0]
    assert text == expected and any(ord(ch) > 127 for ch in text)
    pieces = page.evaluate("window.pieces")
    assert len(pieces) >= 1 and all("\ufffd" not in piece for piece in pieces)
    assert problems == []
    page.close()


def test_seeds_repeat_and_stop_strings_end_the_text(browser: Any, sites: Any) -> None:
    url, runs = sites
    page, problems = open_page(browser, f"{url}/char-lstm-float16/")
    sampled = dict(temperature=1.2, top_k=20, top_p=0.95, repetition_penalty=1.3,
                   max_new_tokens=60)
    first = page_generate(page, "The", seed=7, **sampled)
    assert page_generate(page, "The", seed=7, **sampled) == first
    assert page_generate(page, "The", seed=8, **sampled) != first
    # Greedy text cut at a stop string, as weft generate cuts it.
    model = weft.load(runs["char-lstm"], device="cpu")
    greedy = model.generate("The", temperature=0, max_new_tokens=60, quantize="none")[0]
    stop = greedy[20:23]
    expected = model.generate("The", temperature=0, max_new_tokens=60, quantize="none",
                              stop=[stop])[0]
    assert page_generate(page, "The", stops=stop, max_new_tokens=60) == expected
    assert len(expected) < len(greedy) and "ended by the model or a stop string" in (
        page.text_content("#status") or "")
    assert problems == []
    page.close()


def test_the_stop_button_stops_the_worker(browser: Any, sites: Any) -> None:
    url, _ = sites
    page, problems = open_page(browser, f"{url}/char-lstm-float16/")
    page.fill("#prompt", "The")
    page.fill("#max_new_tokens", "100000000")
    page.click("#run")
    page.wait_for_function("document.querySelector('#out-text').textContent.length > 20")
    page.click("#stop")
    page.wait_for_function("document.querySelector('#status').textContent === 'stopped'")
    shown = page.text_content("#out-text") or ""
    page.wait_for_timeout(300)  # a worker still running would keep writing
    assert page.text_content("#out-text") == shown
    page.wait_for_function("!document.querySelector('#run').disabled")
    assert not page.is_enabled("#stop")
    # A fresh worker generates again, from Ctrl+Enter in the prompt too.
    assert len(page_generate(page, "The", max_new_tokens=10)) > 0
    page.eval_on_selector("#status", "e => e.textContent = ''")
    page.press("#prompt", "Control+Enter")
    page.wait_for_function("document.querySelector('#status').textContent.startsWith('done')")
    assert problems == []
    page.close()


def test_labels_are_chosen_in_drop_downs(browser: Any, sites: Any) -> None:
    url, runs = sites
    model = weft.load(runs["labels"], device="cpu")
    page, problems = open_page(browser, f"{url}/labels-float16/")
    assert page.locator("#labels select").count() == 2
    assert page.locator("#label-0 option").all_text_contents()[1:] == ["pos", "neg"]
    texts = {}
    for label in ("pos", "neg"):
        page.select_option("#label-0", label)
        page.select_option("#label-1", "cats")
        texts[label] = page_generate(page, "I", max_new_tokens=40)
        assert texts[label] == model.generate("I", labels={"label": label, "topic": "cats"},
                                              temperature=0, max_new_tokens=40,
                                              quantize="none")[0]
        assert f"label={label} topic=cats" in (page.text_content("#status") or "")
    assert texts["pos"] != texts["neg"]
    # Its next-token log-probabilities under labels, as PyTorch scores them.
    got = np.array(page.evaluate("(a) => weftPage.logprobs(a[0], a[1])", ["I ", ["neg", "dogs"]]))
    ids = start_ids(model.tokenizer, "I ")
    prefix = model.labels.ids(model.tokenizer, {"label": "neg", "topic": "dogs"})
    primed = torch.as_tensor([[int(ids[0]), *prefix, *map(int, ids[1:])]])
    with torch.no_grad():
        logits = model.module(primed).logits
    assert logits is not None
    expected = torch.log_softmax(logits[0, -1].double(), dim=-1).numpy()
    finite = np.isfinite(expected)
    assert float(np.abs(got[finite] - expected[finite]).max()) < LOGPROB_TOLERANCE["float16"]
    # A column left to chance is drawn from the seed: the same seed, the same labels and text.
    page.select_option("#label-0", "")
    first = page_generate(page, "I", seed=3, temperature=1, max_new_tokens=30)
    drawn = re.findall(r"label=\w+", page.text_content("#status") or "")
    assert page_generate(page, "I", seed=3, temperature=1, max_new_tokens=30) == first
    assert re.findall(r"label=\w+", page.text_content("#status") or "") == drawn
    assert len(drawn) == 1
    assert problems == []
    page.close()


@pytest.mark.parametrize("name", list(ENCODED))
def test_word_and_bpe_prompts_encode_as_in_python(browser: Any, sites: Any, name: str) -> None:
    url, runs = sites
    tokenizer = weft.load(runs[name], device="cpu").tokenizer
    page, problems = open_page(browser, f"{url}/{name}-float16/")
    for text in ENCODED[name]:
        assert page.evaluate("(t) => weftPage.encode(t)", text) == tokenizer.encode(text).tolist()
    assert problems == []
    page.close()


def test_a_page_opened_as_a_file_says_to_serve_it(browser: Any, tiny_run: Path,
                                                  tmp_path: Path) -> None:
    site = weft.load(tiny_run, device="cpu").export_web(tmp_path / "site")
    page = browser.new_page()
    page.goto((site / "index.html").as_uri())
    page.wait_for_selector("#error", state="visible")
    assert "python -m http.server" in (page.text_content("#error") or "")
    assert page.is_disabled("#run")
    page.close()
