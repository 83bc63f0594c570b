"""The tagger network: masks and padding, the CRF against brute force, overfitting, batching."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from weft.tagging.batching import encode, length_batches, make_batch
from weft.tagging.crf import CRF
from weft.tagging.metrics import evaluate_tags, format_report
from weft.tagging.model import BiLSTMTagger, TaggerModelConfig
from weft.tagging.vocab import UNK_ID, TaggerVocab, normalize

SENTENCES = [
    (["The", "old", "man", "the", "boats", "."], ["DET", "NOUN", "VERB", "DET", "NOUN", "PUNCT"]),
    (["Time", "flies", "."], ["NOUN", "VERB", "PUNCT"]),
    (["I", "saw", "her", "duck", "."], ["PRON", "VERB", "PRON", "NOUN", "PUNCT"]),
    (["Dogs", "bark", "loudly", "at", "1984", "cats", "!"],
     ["NOUN", "VERB", "ADV", "ADP", "NUM", "NOUN", "PUNCT"]),
]
TINY = TaggerModelConfig(word_dim=8, char_dim=8, char_hidden=8, hidden=16, layers=2,
                         dropout=0.0, word_dropout=0.0)


def _setup(crf: bool = False) -> tuple[TaggerVocab, BiLSTMTagger]:
    torch.manual_seed(0)
    vocab = TaggerVocab.build(SENTENCES)
    config = dataclasses.replace(TINY, num_words=len(vocab.words), num_chars=len(vocab.chars),
                                 num_tags=len(vocab.tags), crf=crf)
    return vocab, BiLSTMTagger(config).eval()


def test_vocab_normalizes_words_and_round_trips() -> None:
    vocab = TaggerVocab.build(SENTENCES)
    assert normalize("The") == "the" and normalize("1984") == "0000"
    assert vocab.word_id("THE") == vocab.word_id("the") != UNK_ID
    assert vocab.word_id("2001") == vocab.word_id("1984")
    assert vocab.word_id("zebra") == UNK_ID and not vocab.is_known("zebra")
    assert vocab.word_counts[vocab.word_id("the")] == 2
    again = TaggerVocab.from_dict(vocab.to_dict())
    assert again.to_dict() == vocab.to_dict()
    long_word = "x" * 100
    assert len(vocab.char_ids(long_word)) == 30


def test_batches_share_char_rows_between_equal_forms() -> None:
    vocab, _ = _setup()
    data = encode(vocab, [s for s, _ in SENTENCES], [t for _, t in SENTENCES])
    batch = make_batch(data, [0, 1])
    assert batch.words.shape == (2, 6)
    assert batch.mask.tolist()[1] == [True, True, True, False, False, False]
    # "." occurs in both sentences but is encoded once
    assert batch.forms[0, 5] == batch.forms[1, 2]
    assert batch.chars.size(0) == len(set(SENTENCES[0][0]) | set(SENTENCES[1][0]))
    batches = length_batches([5, 1, 3, 2, 4], 2)
    assert sorted(i for b in batches for i in b) == [0, 1, 2, 3, 4]
    assert batches[0] == [1, 3]  # unshuffled: shortest first


def test_word_dropout_only_hits_known_words() -> None:
    vocab, _ = _setup()
    data = encode(vocab, [s for s, _ in SENTENCES])
    counts = torch.tensor(vocab.word_counts)
    gen = torch.Generator().manual_seed(0)
    dropped = make_batch(data, [0, 1, 2, 3], counts, word_dropout=1000.0, generator=gen)
    plain = make_batch(data, [0, 1, 2, 3])
    mask = plain.mask
    assert (dropped.words[mask] == UNK_ID).all()
    assert (dropped.words[~mask] == 0).all()  # padding stays padding
    kept = make_batch(data, [0, 1, 2, 3], counts, word_dropout=0.0, generator=gen)
    assert torch.equal(kept.words, plain.words)


@pytest.mark.parametrize("crf", [False, True])
def test_padding_never_changes_a_sentence(crf: bool) -> None:
    vocab, model = _setup(crf)
    data = encode(vocab, [s for s, _ in SENTENCES])
    with torch.no_grad():
        for i in range(len(SENTENCES)):
            alone = make_batch(data, [i])
            together = make_batch(data, [3, 0, 1, 2])  # longest first, others padded
            row = [3, 0, 1, 2].index(i)
            n = len(SENTENCES[i][0])
            a, b = model.emissions(alone)[0], model.emissions(together)[row, :n]
            assert torch.allclose(a, b, atol=1e-5)
            pa, qa = model.predict(alone)
            pb, qb = model.predict(together)
            assert torch.equal(pa[0], pb[row, :n])
            assert torch.allclose(qa[0], qb[row, :n], atol=1e-5)
            assert (pb[row, n:] == 0).all() and (qb[row, n:] == 0).all()


def test_precomputed_form_table_gives_the_same_scores() -> None:
    vocab, model = _setup()
    data = encode(vocab, [s for s, _ in SENTENCES])
    batch = make_batch(data, [2, 0, 3])
    with torch.no_grad():
        table = model.encode_forms(data.form_chars, data.form_lengths, chunk=3)
        assert torch.allclose(model.emissions(batch), model.emissions(batch, table), atol=1e-5)


def _brute_force(crf: CRF, emissions: torch.Tensor, length: int) -> tuple[float, list[int]]:
    """log Z and the best path by enumerating every tag sequence."""
    crf = crf.requires_grad_(False)
    scores = {}
    for path in itertools.product(range(crf.num_tags), repeat=length):
        s = crf.start[path[0]] + crf.end[path[-1]]
        s = s + sum(emissions[t, path[t]] for t in range(length))
        s = s + sum(crf.transitions[path[t - 1], path[t]] for t in range(1, length))
        scores[path] = float(s)
    log_z = float(torch.logsumexp(torch.tensor(list(scores.values())), 0))
    crf.requires_grad_(True)
    return log_z, list(max(scores, key=lambda p: scores[p]))


def test_crf_matches_brute_force() -> None:
    torch.manual_seed(1)
    crf = CRF(3)
    with torch.no_grad():
        for param in crf.parameters():
            param.normal_()
    emissions = torch.randn(3, 4, 3)
    lengths = [4, 2, 1]
    mask = torch.arange(4).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    log_z = crf.log_partition(emissions, mask).detach()
    best = crf.decode(emissions, mask)
    marginals = crf.marginals(emissions, mask)
    tags = torch.tensor([[0, 1, 2, 1], [2, 2, 0, 0], [1, 0, 0, 0]])
    nll = crf.neg_log_likelihood(emissions, tags, mask).detach()
    expected_nll = 0.0
    for b, n in enumerate(lengths):
        z, path = _brute_force(crf, emissions[b], n)
        assert float(log_z[b]) == pytest.approx(z, abs=1e-4)
        assert best[b, :n].tolist() == path
        assert (best[b, n:] == 0).all()
        gold = tags[b, :n].tolist()
        gold_score = (crf.start[gold[0]] + crf.end[gold[-1]]
                      + sum(emissions[b, t, gold[t]] for t in range(n))
                      + sum(crf.transitions[gold[t - 1], gold[t]] for t in range(1, n)))
        expected_nll += z - float(gold_score.detach())
        # marginals: probabilities summing to one at each real position
        assert torch.allclose(marginals[b, :n].sum(1), torch.ones(n), atol=1e-5)
    assert float(nll) == pytest.approx(expected_nll, abs=1e-3)
    # the marginal of tag k at position 0 equals the brute-force sum over paths
    probs = torch.zeros(3)
    for path in itertools.product(range(3), repeat=2):
        s = (crf.start[path[0]] + crf.end[path[1]] + emissions[1, 0, path[0]]
             + emissions[1, 1, path[1]] + crf.transitions[path[0], path[1]])
        probs[path[0]] += torch.exp(s - log_z[1]).detach()
    assert torch.allclose(marginals[1, 0], probs, atol=1e-5)


@pytest.mark.parametrize("crf", [False, True])
def test_overfits_a_few_sentences(crf: bool) -> None:
    vocab, model = _setup(crf)
    model.train()
    data = encode(vocab, [s for s, _ in SENTENCES], [t for _, t in SENTENCES])
    batch = make_batch(data, range(len(SENTENCES)))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(60):
        optimizer.zero_grad()
        model.loss(batch).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        predicted = model.decode(batch)
    assert batch.tags is not None
    assert torch.equal(predicted[batch.mask], batch.tags[batch.mask])


def test_metrics() -> None:
    words = [["a", "b", "c"], ["d"]]
    gold = [["X", "Y", "X"], ["Y"]]
    pred = [["X", "X", "X"], ["Y"]]
    m = evaluate_tags(words, gold, pred, lambda w: w in {"a", "b"})
    assert m["accuracy"] == 0.75 and m["tokens"] == 4
    assert m["seen_accuracy"] == 0.5 and m["unseen_accuracy"] == 1.0
    assert m["per_tag"]["X"]["precision"] == pytest.approx(2 / 3)
    assert m["per_tag"]["X"]["recall"] == 1.0
    assert m["per_tag"]["Y"]["recall"] == 0.5
    assert m["confusions"] == [{"gold": "Y", "predicted": "X", "count": 1}]
    assert "accuracy        75.00%" in format_report(m)


def test_crf_marginals_are_distributions_on_a_very_long_sentence() -> None:
    torch.manual_seed(0)
    crf = CRF(17)
    with torch.no_grad():
        for parameter in (crf.transitions, crf.start, crf.end):
            parameter.normal_()
    emissions = torch.randn(1, 20_000, 17) * 3
    sums = crf.marginals(emissions, torch.ones(1, 20_000, dtype=torch.bool)).sum(-1)
    # In float32 log Z (~10^5 here) left rows summing to 0.90-1.15.
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-4)
