"""gpunn.text: the vocabulary, skip-gram pairs against hand-computed ones (and Keras's where Keras is
installed), the sampling table's formula, nearest words and analogies on vectors made by hand, the PCA
projection; and the word2vec example learning its analogies (on the backend the suite runs on)."""

import importlib
import os

import numpy as np
import pytest

from gpunn.text import (
    Vocabulary,
    analogy,
    make_sampling_table,
    most_similar,
    pca,
    skipgrams,
    tokenize,
)
from tests.conftest import dev


def keras_sequence():
    """Keras 3's legacy ``skipgrams`` and ``make_sampling_table``, or a skip when Keras is missing."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        return importlib.import_module("keras.src.legacy.preprocessing.sequence")
    except Exception as e:  # noqa: BLE001 -- no Keras, or no backend for it
        pytest.skip(f"Keras's legacy preprocessing is not importable: {e}")


def test_tokenize_lowercases_and_drops_punctuation():
    assert tokenize("The King's crown, the QUEEN's throne!") == ["the", "king's", "crown", "the", "queen's", "throne"]
    with pytest.raises(TypeError, match="tokenize expects a string; received list"):
        tokenize(["a"])


def test_vocabulary_numbers_words_as_keras_does():
    vocabulary = Vocabulary(tokenize("b a c a b a d"))
    assert list(vocabulary) == ["", "[UNK]", "a", "b", "c", "d"]  # a x3, b x2, then c and d as first seen
    assert len(vocabulary) == 6 and vocabulary["c"] == 4
    np.testing.assert_array_equal(vocabulary.encode(["d", "zebra", "a"]), [5, 1, 2])
    assert vocabulary.decode([2, 3, 0]) == ["a", "b", ""]
    assert list(Vocabulary(["b", "a", "a"], max_tokens=3)) == ["", "[UNK]", "a"]
    with pytest.raises(KeyError, match="'zebra' is not in the vocabulary"):
        vocabulary["zebra"]
    with pytest.raises(TypeError, match="received a string"):
        Vocabulary("a b c")
    with pytest.raises(ValueError, match="max_tokens=1"):
        Vocabulary(["a"], max_tokens=1)


def test_skipgrams_positive_pairs_by_hand():
    couples, labels = skipgrams([1, 2, 3], 4, window_size=1, negative_samples=0, shuffle=False)
    assert couples == [[1, 2], [2, 1], [2, 3], [3, 2]] and labels == [1, 1, 1, 1]
    couples, _ = skipgrams([1, 0, 2, 3], 4, window_size=2, negative_samples=0, shuffle=False)
    assert couples == [[1, 2], [2, 1], [2, 3], [3, 2]]  # 0 is padding: never a target nor a context


def test_skipgrams_negatives_count_labels_and_seed():
    sequence, vocabulary_size = [1, 2, 3, 4, 5], 9
    positives, _ = skipgrams(sequence, vocabulary_size, window_size=2, negative_samples=0, shuffle=False)
    assert len(positives) == 14  # 2 + 3 + 4 + 3 + 2 neighbours
    couples, labels = skipgrams(sequence, vocabulary_size, window_size=2, negative_samples=1.5, shuffle=False, seed=1)
    assert couples[:14] == positives and labels == [1] * 14 + [0] * 21  # int(14 * 1.5) negatives after them
    negatives = np.array(couples[14:])
    targets = [c[0] for c in positives]
    assert sorted(negatives[:, 0].tolist()[:14]) == sorted(targets)  # one pass through the shuffled targets...
    assert set(negatives[:, 0].tolist()) <= set(targets)  # ...cycled
    assert negatives[:, 1].min() >= 1 and negatives[:, 1].max() < vocabulary_size
    shuffled, shuffled_labels = skipgrams(sequence, vocabulary_size, window_size=2, negative_samples=1.5, seed=1)
    assert sorted(zip(map(tuple, shuffled), shuffled_labels)) == sorted(zip(map(tuple, couples), labels))
    assert shuffled != couples  # mixed: the labels went along with their couples
    assert skipgrams(sequence, vocabulary_size, seed=7) == skipgrams(sequence, vocabulary_size, seed=7)
    assert skipgrams(sequence, vocabulary_size, seed=7) != skipgrams(sequence, vocabulary_size, seed=8)


def test_skipgrams_positives_match_keras():
    sequence = keras_sequence()
    ids = np.random.default_rng(0).integers(0, 12, 60).tolist()
    for window in (1, 2, 4):
        ours = skipgrams(ids, 12, window_size=window, negative_samples=0, shuffle=False)
        assert ours == sequence.skipgrams(ids, 12, window_size=window, negative_samples=0, shuffle=False)


def test_sampling_table_formula_and_use():
    table = make_sampling_table(2000)
    for rank in (1, 10, 1000):
        zipf_inverse_frequency = rank * (np.log(rank) + 0.577) + 0.5 - 1 / (12 * rank)
        assert table[rank] == pytest.approx(min(1.0, np.sqrt(1e-5 * zipf_inverse_frequency)))
    assert table[0] == table[1] and np.all(np.diff(table) >= 0)  # frequent (low rank) words are dropped more
    assert make_sampling_table(3, sampling_factor=2.0).tolist() == [1.0, 1.0, 1.0]
    sequence = [1, 2, 3, 2, 1]
    assert skipgrams(sequence, 4, sampling_table=np.zeros(4), seed=0) == ([], [])
    kept = skipgrams(sequence, 4, negative_samples=0, shuffle=False, sampling_table=np.ones(4), seed=0)
    assert kept == skipgrams(sequence, 4, negative_samples=0, shuffle=False)


def test_sampling_table_matches_keras():
    sequence = keras_sequence()
    for size, factor in [(1000, 1e-5), (50, 1e-3)]:
        np.testing.assert_allclose(make_sampling_table(size, factor), sequence.make_sampling_table(size, factor))


@pytest.mark.parametrize("call, message", [
    (lambda: skipgrams([1, 5], 5), r"ids in \[0, 5\); received ids from 1 to 5"),
    (lambda: skipgrams([[1, 2]], 5), r"one sequence of integer word ids; received an array of shape \(1, 2\)"),
    (lambda: skipgrams([1.5], 5), "dtype float64"),
    (lambda: skipgrams([1, 2], 1), "vocabulary_size must be an integer >= 2; received 1"),
    (lambda: skipgrams([1, 2], 5, window_size=0), "window_size must be a positive integer; received 0"),
    (lambda: skipgrams([1, 2], 5, negative_samples=-1), "negative_samples must be >= 0; received -1"),
    (lambda: make_sampling_table(0), "size must be a positive integer; received size=0"),
])
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# Gender along the first axis, royalty along the second: woman - man + king = queen exactly.
WORDS = ["", "[UNK]", "man", "woman", "king", "queen", "apple"]
VECTORS = np.array([[0, 0, 0], [0, 0, 0.5], [1, 0, 1], [-1, 0, 1], [1, 1, 1], [-1, 1, 1], [0, 0, -1]], np.float32)


def test_most_similar_by_cosine_similarity():
    # cos(king, .): man 2/sqrt(6), [UNK] 1/sqrt(3), queen 1/3, woman 0, apple -1/sqrt(3); king and "" left out
    expected = [("man", 2 / np.sqrt(6)), ("[UNK]", 1 / np.sqrt(3)), ("queen", 1 / 3), ("woman", 0.0),
                ("apple", -1 / np.sqrt(3))]
    for vectors in (VECTORS, dev(VECTORS)):
        result = most_similar(vectors, WORDS, "king", k=10)
        assert [w for w, _ in result] == [w for w, _ in expected]
        np.testing.assert_allclose([s for _, s in result], [s for _, s in expected], atol=1e-6)
    assert [w for w, _ in most_similar(VECTORS, WORDS, "king", k=2)] == ["man", "[UNK]"]


def test_analogy_is_a_minus_b_plus_c():
    # man : woman :: king : ?  Unit vectors first: woman/sqrt2 - man/sqrt2 + king/sqrt3 = (-sqrt2 + 1/sqrt3, 1/sqrt3,
    # 1/sqrt3), nearest queen; then [UNK] and apple, at equal and opposite angles; a, b, c and "" left out.
    query = VECTORS[3] / np.sqrt(2) - VECTORS[2] / np.sqrt(2) + VECTORS[4] / np.sqrt(3)
    cosine = VECTORS @ query / np.maximum(np.linalg.norm(VECTORS, axis=1), 1e-12) / np.linalg.norm(query)
    for vocabulary in (WORDS, Vocabulary(["man", "woman", "king", "queen", "apple"])):
        result = analogy(VECTORS, vocabulary, "woman", "man", "king", k=3)
        assert [w for w, _ in result] == ["queen", "[UNK]", "apple"]
        np.testing.assert_allclose([s for _, s in result], cosine[[5, 1, 6]], atol=1e-6)
    assert cosine[5] > 0.98 and cosine[1] == pytest.approx(-cosine[6])
    (word, _), = analogy(VECTORS, WORDS, "woman", "man", "king")
    assert word == "queen"


def test_unknown_words_and_mismatched_embeddings_are_named():
    with pytest.raises(KeyError, match="most_similar: 'prince' is not in the vocabulary"):
        most_similar(VECTORS, WORDS, "prince")
    with pytest.raises(KeyError, match="analogy: 'princess' is not in the vocabulary"):
        analogy(VECTORS, WORDS, "woman", "man", "princess")
    with pytest.raises(ValueError, match=r"most_similar expects embeddings of shape \(6, n\).*received shape \(7, 3\)"):
        most_similar(VECTORS, WORDS[:6], "king")


def test_pca_keeps_the_two_directions_of_largest_variance():
    rng = np.random.default_rng(0)
    rotation, _ = np.linalg.qr(rng.standard_normal((5, 5)))  # five orthonormal directions
    spread = rng.standard_normal((200, 5)) * [10.0, 3.0, 0.1, 0.1, 0.1]
    x = 7.0 + spread @ rotation.T
    points = pca(dev(x))
    assert points.shape == (200, 2)
    centred = x - x.mean(axis=0)
    _, eigenvectors = np.linalg.eigh(centred.T @ centred)  # the covariance's eigenvectors, largest last
    for k in range(2):  # coordinate k: along the k-th largest eigenvector, and about the planted spread
        along = centred @ eigenvectors[:, -1 - k]
        np.testing.assert_allclose(points[:, k], along * np.sign(along @ points[:, k]), atol=1e-9)
        assert abs(np.corrcoef(points[:, k], spread[:, k])[0, 1]) > 0.99
    assert points[:, 0].var() > points[:, 1].var() > 5
    np.testing.assert_array_equal(pca(x[:, ::-1].copy()), pca(x[:, ::-1].copy()))
    with pytest.raises(ValueError, match=r"pca expects a 2-D array with at least 2 rows and columns; received shape "
                                         r"\(5,\)"):
        pca(np.ones(5))


def test_word2vec_example_learns_its_analogies(tmp_path):
    import gpunn
    from gpunn.examples.word2vec import ANALOGIES, synthetic_corpus, train

    sentences = synthetic_corpus(500, seed=0)
    model, vocabulary, history = train(sentences, dim=8, epochs=4, learning_rate=0.02, verbose=0)
    loss = history.history["loss"]
    assert loss[-1] < 0.5 and loss[-1] < loss[0]  # chance is log 2 = 0.69
    embeddings = model.get_layer("target_embedding").get_weights()[0]
    answers = [analogy(embeddings, vocabulary, a, b, c, k=1)[0][0] for a, b, c, _ in ANALOGIES]
    assert sum(got == want for got, (*_, want) in zip(answers, ANALOGIES)) >= 5, answers
    ranked = [w for w, _ in most_similar(embeddings, vocabulary, "king", k=len(vocabulary))]
    assert ranked.index("queen") < ranked.index("girl") and ranked.index("queen") < ranked.index("boy")
    model.save(tmp_path / "word2vec.npz")  # the two-input model comes back with its vectors
    loaded = gpunn.load_model(tmp_path / "word2vec.npz")
    np.testing.assert_array_equal(loaded.get_layer("target_embedding").get_weights()[0], embeddings)


def test_word2vec_script_prints_neighbours_and_analogies(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from gpunn.examples.word2vec import ANALOGIES, main

    _, vocabulary, right = main(["--sentences", "1000", "--epochs", "3", "--plot",
                                 str(tmp_path / "words.png")])
    out = capsys.readouterr().out
    assert "nearest king: " in out and "man is to woman as king is to " in out
    assert f"{right} of {len(ANALOGIES)} analogies right" in out and right >= 5
    assert (tmp_path / "words.png").stat().st_size > 0 and "queen" in list(vocabulary)
