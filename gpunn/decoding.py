"""Decoding: turning a trained sequence-to-sequence model into output sequences, greedy or by beam search.

A decoder trained with teacher forcing gives P(y_t | x, y_<t) for every t of a target it is shown. To
translate, it is shown its own output instead: start from <start>, pick a next token, append it, ask again,
until <end> (or ``max_length`` tokens). Both searches only need one function, ``step(prefixes)``: the
probabilities (n, vocab) of the token that follows each of n prefixes (n, t). :func:`model_step` builds it
from a model called as ``model([source_ids, target_ids])`` (the RNN encoder-decoder or the Transformer):
the model is run on the whole prefix and its last position read -- simple, and cheap for short outputs.

- greedy:  y_t = argmax_w P(w | x, y_<t).  Fast, but a choice is never revisited.
- beam search keeps the B most likely prefixes at each step; a prefix that ends goes to the finished
  list. Since P(y | x) = prod_t P(y_t | x, y_<t) shrinks with every token, finished sequences are
  compared by the length-normalised log-probability (the course's, after Wu et al. 2016)::

      score(y) = (1 / T_y^alpha) sum_t log P(y_t | x, y_<t)      alpha = 0: none, alpha = 1: the mean

  With B = 1 beam search is greedy search.
"""

import numpy as np

import gpunn.backend as backend


def model_step(model, source):
    """``step(prefixes)`` for the sources ``source`` (n, L_s): prefixes (n * r, t) -> P(next token) (n * r, vocab).

    Row i of the prefixes continues source i // r: each source is repeated r times (its r beams)."""
    source = np.asarray(source)

    def step(prefixes):
        repeats = len(prefixes) // len(source)
        probs = model.predict([np.repeat(source, repeats, axis=0), np.asarray(prefixes)], verbose=0)
        return backend.to_numpy(probs)[:, -1]

    return step


def greedy_search(step, n, start, end, max_length):
    """The most likely next token each time, for n sequences at once.

    Returns (tokens, log_probs): tokens (n, <= max_length) after <start>, <end> included and repeated once
    a sequence has ended; log_probs (n,) the sum of log P(y_t) over each sequence's tokens up to its <end>.
    """
    prefixes = np.full((n, 1), start, dtype=np.int64)
    log_probs, done = np.zeros(n), np.zeros(n, bool)
    for _ in range(max_length):
        probs = step(prefixes)
        best = np.where(done, end, probs.argmax(axis=-1))
        log_probs += np.where(done, 0.0, np.log(probs[np.arange(n), best]))
        prefixes = np.concatenate([prefixes, best[:, None]], axis=1)
        done |= best == end
        if done.all():
            break
    return prefixes[:, 1:], log_probs


def beam_search(step, start, end, max_length, beam_width=3, alpha=0.7):
    """The ``beam_width`` best sequences for one source, best first, as [(tokens, score), ...].

    ``step`` takes that source's prefixes. ``tokens`` follow <start> and end with <end> (unless
    ``max_length`` stopped them); ``score`` is the length-normalised log-probability above.
    """
    if not isinstance(beam_width, (int, np.integer)) or beam_width < 1:
        raise ValueError(f"beam_search: beam_width must be a positive integer; received beam_width={beam_width!r}")
    beams = [([start], 0.0)]  # (prefix, log P(prefix)), the ones still growing
    finished = []
    for _ in range(max_length):
        log_p = np.log(step(np.array([tokens for tokens, _ in beams])))  # (beams, vocab)
        candidates = []
        for (tokens, total), row in zip(beams, log_p):
            for w in np.argsort(row)[::-1][:beam_width]:  # no beam needs more than beam_width of its words
                candidates.append((tokens + [int(w)], total + float(row[w])))
        candidates.sort(key=lambda c: c[1], reverse=True)
        beams = []
        for tokens, total in candidates[:beam_width]:  # the beam_width most likely prefixes
            (finished if tokens[-1] == end else beams).append((tokens, total))
        if not beams:
            break
    finished += beams  # cut by max_length
    scored = [(tokens[1:], total / len(tokens[1:]) ** alpha) for tokens, total in finished]
    return sorted(scored, key=lambda c: c[1], reverse=True)[:beam_width]
