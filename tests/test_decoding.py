"""Greedy and beam search over "models" whose next-token probabilities are a table we choose: the searches'
answers are checked against every possible sequence, enumerated."""

import itertools

import numpy as np
import pytest

from gpunn.decoding import beam_search, greedy_search

START, END = 0, 1  # tokens 2, 3: the "words"


def markov(table):
    """A decoder whose next token depends on the last one only: step(prefixes) = table[last token]."""
    table = np.asarray(table, float)
    return lambda prefixes: table[np.asarray(prefixes)[:, -1]]


def random_table(seed, vocab=4):
    return np.random.default_rng(seed).dirichlet(np.ones(vocab), size=vocab)


def every_sequence(table, max_length, alpha):
    """All outputs of up to max_length tokens (ending at the first <end>, or cut), with their scores, best first."""
    scored = []
    for length in range(1, max_length + 1):
        for tokens in itertools.product(range(len(table)), repeat=length):
            if END in tokens[:-1] or (length < max_length and tokens[-1] != END):
                continue
            path = (START,) + tokens
            log_p = sum(np.log(table[a, b]) for a, b in zip(path, path[1:]))
            scored.append((list(tokens), log_p / length ** alpha))
    return sorted(scored, key=lambda c: c[1], reverse=True)


@pytest.mark.parametrize("alpha", [0.0, 0.7, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_beam_wide_enough_returns_the_k_best_sequences_with_their_scores_in_order(seed, alpha):
    table = random_table(seed)
    everything = every_sequence(table, 3, alpha)
    beams = beam_search(markov(table), START, END, max_length=3, beam_width=64, alpha=alpha)  # 64 > 4^3: exact
    exact = {tuple(tokens): score for tokens, score in everything}
    assert len(beams) == len(exact) and {tuple(tokens) for tokens, _ in beams} == set(exact)
    np.testing.assert_allclose([s for _, s in beams], [s for _, s in everything], rtol=1e-12)  # in order (ties tie)
    np.testing.assert_allclose([s for _, s in beams], [exact[tuple(tokens)] for tokens, _ in beams], rtol=1e-12)


@pytest.mark.parametrize("beam_width", [2, 3, 5])
@pytest.mark.parametrize("seed", range(4))
def test_narrow_beams_give_k_sequences_best_first_with_their_true_scores(seed, beam_width):
    table = random_table(seed + 10, vocab=5)
    exact = dict((tuple(t), s) for t, s in every_sequence(table, 4, 0.7))
    beams = beam_search(markov(table), START, END, max_length=4, beam_width=beam_width, alpha=0.7)
    scores = [s for _, s in beams]
    assert len(beams) == beam_width and scores == sorted(scores, reverse=True)
    for tokens, score in beams:
        assert score == pytest.approx(exact[tuple(tokens)], rel=1e-12)
    greedy, log_p = greedy_search(markov(table), 1, START, END, max_length=4)
    n = list(greedy[0]).index(END) + 1 if END in greedy[0] else 4
    assert scores[0] >= log_p[0] / n ** 0.7 - 1e-12  # the beam's best is at least as good as greedy's


@pytest.mark.parametrize("seed", range(6))
def test_beam_width_one_is_greedy(seed):
    table = random_table(seed + 20, vocab=5)
    (tokens, score), = beam_search(markov(table), START, END, max_length=6, beam_width=1, alpha=0.0)
    greedy, log_p = greedy_search(markov(table), 1, START, END, max_length=6)
    assert list(greedy[0][:len(tokens)]) == tokens and (len(tokens) == len(greedy[0]) or greedy[0][len(tokens)] == END)
    assert score == pytest.approx(log_p[0], rel=1e-12)


def test_beam_search_finds_the_sequence_greedy_misses():
    """<start> -> a (0.6) or b (0.4); a -> <end> 0.4, a 0.3, b 0.3; b -> <end> 0.9.
    Greedy takes a then <end>: 0.6 * 0.4 = 0.24. The better answer starts with the less likely b: 0.4 * 0.9 = 0.36."""
    a, b = 2, 3
    table = np.zeros((4, 4))
    table[START, [a, b]] = 0.6, 0.4
    table[a, [END, a, b]] = 0.4, 0.3, 0.3
    table[b, [END, a]] = 0.9, 0.1
    greedy, log_p = greedy_search(markov(table), 1, START, END, max_length=3)
    assert list(greedy[0]) == [a, END] and np.exp(log_p[0]) == pytest.approx(0.24)
    beams = beam_search(markov(table + 1e-300), START, END, max_length=3, beam_width=2, alpha=0.0)
    assert beams[0][0] == [b, END] and np.exp(beams[0][1]) == pytest.approx(0.36)
    assert beams[1][0] == [a, END] and np.exp(beams[1][1]) == pytest.approx(0.24)


def test_greedy_decodes_a_batch_and_stops_each_sequence_at_its_end():
    tables = np.full((2, 4, 4), 0.1)
    tables[0, START, 3] = tables[0, 3, END] = 0.7  # source 0: word 3, then <end>
    tables[1, START, 2] = tables[1, 2, 3] = tables[1, 3, END] = 0.7  # source 1: words 2, 3, then <end>
    tables[:, END, END] = 0.7
    step = lambda prefixes: tables[[0, 1], np.asarray(prefixes)[:, -1]]  # noqa: E731 - row i continues source i
    tokens, log_p = greedy_search(step, 2, START, END, max_length=5)
    assert tokens.tolist() == [[3, END, END], [2, 3, END]]  # <end> repeated once a sequence has ended
    np.testing.assert_allclose(np.exp(log_p), [0.7 ** 2, 0.7 ** 3])


def test_bad_beam_width():
    with pytest.raises(ValueError, match=r"beam_search: beam_width must be a positive integer; received beam_width=0"):
        beam_search(markov(random_table(0)), START, END, 3, beam_width=0)
