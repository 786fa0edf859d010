"""Words as vectors: a vocabulary, skip-gram pairs with negative sampling, and questions to the vectors.

A word is an id, the id a row of an embedding matrix E (vocabulary size, n). One-hot vectors make
every two words equally far apart (their dot product is 0); learned rows put words used alike
close together, which these tools measure:

    cosine similarity   sim(u, v) = u . v / (|u| |v|)
    most_similar        the k words whose rows have the largest sim with a word's row
    analogy(a, b, c)    the words closest to e_a - e_b + e_c: "b is to a as c is to ?"
                        (the course's "man is to woman as king is to ?" is analogy("woman", "man", "king"))
    pca                 the rows seen along their two directions of largest variance, to plot

The pairs to learn from (Mikolov et al., 2013): every word w_c of the text and each word w_o within
``window_size`` of it make a positive pair, label 1; for each, ``negative_samples`` pairs (w_c, w_k) with
w_k drawn at random make negatives, label 0. A model scoring a pair as sigma(u_o . v_c) then maximises

    log sigma(u_o . v_c) + sum_k log sigma(-u_k . v_c)

which is binary cross-entropy on those labels.
"""

import re
from collections import Counter

import numpy as np

from gpunn import backend

PADDING, OOV = "", "[UNK]"


def tokenize(text):
    """Lower-case words, punctuation dropped: "The King's crown." -> ["the", "king's", "crown"]."""
    if not isinstance(text, str):
        raise TypeError(f"tokenize expects a string; received {type(text).__name__}")
    return re.findall(r"\w+(?:'\w+)*", text.lower())


class Vocabulary:
    """Words and their ids, as Keras's ``TextVectorization`` numbers them.

    Id 0 is the padding (the empty word ""), id 1 the out-of-vocabulary word "[UNK]", then the words from
    the most frequent down (ties in order of first appearance), at most ``max_tokens`` ids in all.
    Iterating gives the words in id order, so ``list(vocabulary)`` is Keras's ``get_vocabulary()``.

        >>> vocabulary = Vocabulary(tokenize("the cat saw the dog"))
        >>> list(vocabulary), vocabulary.encode(["the", "dog", "owl"])
        (['', '[UNK]', 'the', 'cat', 'saw', 'dog'], array([2, 5, 1]))
    """

    def __init__(self, tokens, max_tokens=None):
        if isinstance(tokens, str):
            raise TypeError("Vocabulary expects a list of words (tokenize(text) gives one); received a string")
        if max_tokens is not None and (not isinstance(max_tokens, (int, np.integer)) or max_tokens < 2):
            raise ValueError(f"Vocabulary: max_tokens must be an integer >= 2 (padding and [UNK] take two ids) or "
                             f"None; received max_tokens={max_tokens!r}")
        self.counts = Counter(tokens)
        ranked = sorted(self.counts, key=self.counts.get, reverse=True)  # a stable sort keeps first-seen order
        self.words = [PADDING, OOV] + [w for w in ranked if w not in (PADDING, OOV)]
        self.words = self.words[:max_tokens]
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self):
        return len(self.words)

    def __iter__(self):
        return iter(self.words)

    def __getitem__(self, word):
        """The id of a word in the vocabulary; an unknown word is an error naming it (``encode`` maps it to 1)."""
        if word not in self.index:
            raise KeyError(f"'{word}' is not in the vocabulary ({len(self)} words)")
        return self.index[word]

    def encode(self, tokens):
        """Words -> ids (int64), unknown words -> 1."""
        return np.array([self.index.get(w, 1) for w in tokens], dtype=np.int64)

    def decode(self, ids):
        """Ids -> words."""
        return [self.words[int(i)] for i in ids]


def make_sampling_table(size, sampling_factor=1e-5):
    """p[r], the probability of keeping a word of frequency rank r as a skip-gram target (Keras's formula).

    word2vec keeps a word of frequency f with probability min(1, sqrt(t / f)), t = ``sampling_factor``:
    "the" is mostly dropped, rare words always kept. The frequency of rank r is taken from Zipf's law,
    f(r) ~ 1 / (r (ln r + gamma) + 1/2 - 1/(12 r)), gamma = 0.577 (rank 0, the padding, counts as rank 1).
    """
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"make_sampling_table: size must be a positive integer; received size={size!r}")
    rank = np.maximum(np.arange(size), 1).astype(np.float64)
    inverse_frequency = rank * (np.log(rank) + 0.577) + 0.5 - 1.0 / (12.0 * rank)
    return np.minimum(1.0, np.sqrt(sampling_factor * inverse_frequency))


def skipgrams(sequence, vocabulary_size, window_size=4, negative_samples=1.0, shuffle=True, seed=None,
              sampling_table=None):
    """Skip-gram pairs of one sequence of word ids, as Keras's ``skipgrams``: (couples, labels).

    Positives: (w_i, w_j) for every |i - j| <= ``window_size``, j != i, label 1, in the order of i then j
    (id 0, the padding, is never a target nor a context). With a ``sampling_table``, each target is first
    kept with probability ``sampling_table[w_i]``. Negatives: int(positives * ``negative_samples``) pairs
    (target, k), label 0, the targets a shuffle of the positives' (cycled), k uniform over 1 ... vocabulary
    size - 1 -- as in Keras, k may by chance be a true context. ``shuffle`` mixes the pairs (labels along).

    Unlike Keras, which draws from Python's global ``random``, every draw here comes from one
    ``np.random.default_rng(seed)``: a seed makes the whole result reproducible.

    Returns:
        couples: a list of [target, context] id pairs; labels: a list of 0 and 1, one per couple.
    """
    ids = np.asarray(sequence)
    if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
        raise ValueError(f"skipgrams expects one sequence of integer word ids; received an array of shape "
                         f"{ids.shape} and dtype {ids.dtype}")
    if not isinstance(vocabulary_size, (int, np.integer)) or vocabulary_size < 2:
        raise ValueError(f"skipgrams: vocabulary_size must be an integer >= 2; received {vocabulary_size!r}")
    if ids.size and (ids.min() < 0 or ids.max() >= vocabulary_size):
        raise ValueError(f"skipgrams expects ids in [0, {vocabulary_size}); received ids from {ids.min()} to "
                         f"{ids.max()}")
    if not isinstance(window_size, (int, np.integer)) or window_size < 1:
        raise ValueError(f"skipgrams: window_size must be a positive integer; received {window_size!r}")
    if not negative_samples >= 0:
        raise ValueError(f"skipgrams: negative_samples must be >= 0; received {negative_samples!r}")
    rng = np.random.default_rng(seed)
    n = len(ids)
    targets = ids != 0
    if sampling_table is not None:
        targets &= rng.random(n) < np.asarray(sampling_table)[ids]
    # Row i holds the positions i - w ... i + w except i: every context of target i, in order.
    offsets = np.array([d for d in range(-window_size, window_size + 1) if d != 0])
    j = np.arange(n)[:, None] + offsets
    inside = (j >= 0) & (j < n)
    context = np.where(inside, ids[np.clip(j, 0, max(n - 1, 0))], 0)
    keep = targets[:, None] & inside & (context != 0)
    positives = np.stack([np.broadcast_to(ids[:, None], j.shape)[keep], context[keep]], axis=1)
    count = int(len(positives) * negative_samples)
    negatives = np.stack([np.resize(rng.permutation(positives[:, 0]), count),
                          rng.integers(1, vocabulary_size, count)], axis=1)
    couples = np.concatenate([positives, negatives.astype(positives.dtype)])
    labels = np.concatenate([np.ones(len(positives), np.int64), np.zeros(count, np.int64)])
    if shuffle:
        order = rng.permutation(len(couples))
        couples, labels = couples[order], labels[order]
    return couples.tolist(), labels.tolist()


def _rows(function, embeddings, vocabulary):
    """The embeddings as unit rows on the host, and word -> id, after checking they fit together."""
    words = list(vocabulary)
    e = backend.to_numpy(embeddings)
    if e.ndim != 2 or len(e) != len(words):
        raise ValueError(f"{function} expects embeddings of shape ({len(words)}, n), one row per word of the "
                         f"vocabulary; received shape {e.shape}")
    e = e.astype(np.float64)
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12), words, {w: i for i, w in enumerate(words)}


def _nearest(unit, words, query, exclude, k):
    """The k words with the largest cosine similarity to ``query``, leaving out the ids in ``exclude``."""
    similarity = unit @ (query / max(np.linalg.norm(query), 1e-12))
    similarity[list(exclude)] = -np.inf
    best = np.argsort(-similarity, kind="stable")[:k]
    return [(words[i], float(similarity[i])) for i in best if np.isfinite(similarity[i])]


def _ids(function, index, *words):
    for word in words:
        if word not in index:
            raise KeyError(f"{function}: '{word}' is not in the vocabulary ({len(index)} words)")
    return [index[w] for w in words]


def most_similar(embeddings, vocabulary, word, k=5):
    """The ``k`` words nearest ``word`` by cosine similarity, as (word, similarity) pairs, best first.

    ``embeddings`` has one row per word of ``vocabulary`` (a :class:`Vocabulary` or a list of words in id
    order); the word itself and the padding "" are left out.
    """
    unit, words, index = _rows("most_similar", embeddings, vocabulary)
    (i,) = _ids("most_similar", index, word)
    return _nearest(unit, words, unit[i], {i} | ({index[PADDING]} if PADDING in index else set()), k)


def analogy(embeddings, vocabulary, a, b, c, k=1):
    """The ``k`` words nearest e_a - e_b + e_c by cosine similarity (a, b, c and the padding left out).

    "b is to a as c is to ?": the course's "man is to woman as king is to ?" is
    ``analogy(E, vocabulary, "woman", "man", "king")``, e_woman - e_man + e_king, answered by "queen" when
    the difference woman - man (gender) is the same as queen - king. Each e is first scaled to length 1,
    so a frequent word's longer vector does not outweigh the others (3CosAdd, Levy and Goldberg, 2014).
    """
    unit, words, index = _rows("analogy", embeddings, vocabulary)
    ia, ib, ic = _ids("analogy", index, a, b, c)
    exclude = {ia, ib, ic} | ({index[PADDING]} if PADDING in index else set())
    return _nearest(unit, words, unit[ia] - unit[ib] + unit[ic], exclude, k)


def pca(vectors, n_components=2):
    """Rows seen along their ``n_components`` directions of largest variance (principal components, by SVD).

    Centre the rows, X = U S V^T; the directions are V's first columns and the coordinates X V = U S.
    Each direction's sign is chosen so its largest entry is positive (SVD leaves it free): same picture
    every run.
    """
    x = backend.to_numpy(vectors).astype(np.float64)
    if x.ndim != 2 or not 1 <= n_components <= min(x.shape):
        raise ValueError(f"pca expects a 2-D array with at least {n_components} rows and columns; received shape "
                         f"{x.shape}")
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    directions = vt[:n_components]
    directions *= np.sign(directions[np.arange(n_components), np.abs(directions).argmax(axis=1)])[:, None]
    return x @ directions.T
