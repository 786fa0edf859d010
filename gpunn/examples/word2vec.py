"""Word embeddings learned by skip-gram with negative sampling, on a text generated with known structure.

    python -m gpunn.examples.word2vec                     # 5,000 sentences, 16-d vectors, 5 epochs
    python -m gpunn.examples.word2vec --plot words.png    # and the vectors projected on a plane

The text is made up, so that what the vectors should learn is known and can be checked. People vary in
three ways, each told by its own words: gender ("he", "she" ...), rank ("throne" for a king, "farm" for a
man) and age ("wise", "young"); places by their nation ("french", "croissants") and kind (a country's
"borders", a city's "streets"). A word is known by the company it keeps: "king" and "queen" share their
rank and age words, so their vectors end up close, and e_woman - e_man = e_queen - e_king (the gender
difference) makes the analogies work. Then it prints each word's neighbours and answers the analogies.

The model is the course's: a target id and a context id, each looked up in its own embedding (v_c and u_o),
scored sigma(u_o . v_c) and trained with binary cross-entropy on skip-gram pairs, positives and negatives.
"""

import argparse

import numpy as np

import gpunn
from gpunn import backend
from gpunn.layers import Activation, Dot, Embedding, Reshape
from gpunn.text import Vocabulary, analogy, most_similar, skipgrams, tokenize

# word: (gender, rank, age)
PEOPLE = {"king": ("male", "royal", "adult"), "queen": ("female", "royal", "adult"),
          "prince": ("male", "royal", "young"), "princess": ("female", "royal", "young"),
          "man": ("male", "common", "adult"), "woman": ("female", "common", "adult"),
          "boy": ("male", "common", "young"), "girl": ("female", "common", "young")}
# word: (nation, kind)
PLACES = {"france": ("french", "country"), "paris": ("french", "city"), "italy": ("italian", "country"),
          "rome": ("italian", "city"), "spain": ("spanish", "country"), "madrid": ("spanish", "city"),
          "japan": ("japanese", "country"), "tokyo": ("japanese", "city")}
CLUES = {"male": ["he", "his", "him"], "female": ["she", "her", "hers"],
         "royal": ["throne", "crown", "palace", "rules", "kingdom"], "common": ["farm", "works", "village", "field",
                                                                            "cottage"],
         "adult": ["wise", "married", "grown", "tall"], "young": ["young", "small", "plays", "school"],
         "french": ["french", "croissants", "seine"], "italian": ["italian", "pasta", "tiber"],
         "spanish": ["spanish", "paella", "flamenco"], "japanese": ["japanese", "sushi", "kimono"],
         "country": ["country", "borders", "nation", "provinces"], "city": ["city", "streets", "downtown", "metro"]}
# How many clue words of each attribute a sentence carries: fewer for gender, so that rank and age weigh more
# and the nearest neighbour of "king" is "queen" (same rank and age) rather than "prince" or "man".
CLUES_PER_ATTRIBUTE = {"person": (1, 2, 2), "place": (2, 2)}
FILLERS = ["the", "a", "and", "of", "in", "is"]
# (a, b, c, answer): e_a - e_b + e_c is nearest e_answer ("b is to a as c is to answer").
ANALOGIES = [("woman", "man", "king", "queen"), ("girl", "boy", "prince", "princess"),
             ("queen", "woman", "man", "king"), ("prince", "king", "woman", "girl"),
             ("paris", "france", "italy", "rome"), ("tokyo", "japan", "spain", "madrid")]


def synthetic_corpus(n_sentences, seed=0):
    """``n_sentences`` sentences of a person or a place among clue words of its attributes, with fillers."""
    rng = np.random.default_rng(seed)
    subjects = list(PEOPLE) + list(PLACES)
    sentences = []
    for subject in rng.choice(subjects, n_sentences):
        kind, attributes = ("person", PEOPLE[subject]) if subject in PEOPLE else ("place", PLACES[subject])
        words = [str(w) for attribute, count in zip(attributes, CLUES_PER_ATTRIBUTE[kind])
                 for w in rng.choice(CLUES[attribute], count, replace=False)]
        words += [str(w) for w in rng.choice(FILLERS, 2)]
        words = [words[i] for i in rng.permutation(len(words))]
        at = int(rng.integers(0, len(words) + 1))
        sentences.append(" ".join(["the"] + words[:at] + [str(subject)] + words[at:]) + ".")
    return sentences


def skipgram_dataset(sentences, vocabulary, window_size=3, negative_samples=2.0, seed=0):
    """Skip-gram pairs of every sentence (windows stay within a sentence), shuffled: ([targets, contexts], labels)."""
    rng = np.random.default_rng(seed)
    couples, labels = [], []
    for sentence in sentences:
        c, label = skipgrams(vocabulary.encode(tokenize(sentence)), len(vocabulary), window_size, negative_samples,
                             shuffle=False, seed=rng)
        couples += c
        labels += label
    order = rng.permutation(len(couples))
    pairs = np.array(couples, dtype=np.int64).reshape(-1, 2)[order]
    return [pairs[:, :1], pairs[:, 1:]], np.array(labels, dtype=np.float32)[order]


def word2vec(vocabulary_size, dim):
    """sigma(u_o . v_c): target id -> v_c, context id -> u_o (two embeddings), their dot product, a sigmoid."""
    target, context = gpunn.Input(shape=(1,), name="target"), gpunn.Input(shape=(1,), name="context")
    v_c = Reshape((dim,))(Embedding(vocabulary_size, dim, name="target_embedding")(target))
    u_o = Reshape((dim,))(Embedding(vocabulary_size, dim, name="context_embedding")(context))
    score = Activation("sigmoid")(Dot(axes=1)([v_c, u_o]))
    return gpunn.Model([target, context], score, name="word2vec")


def train(sentences, dim=16, epochs=5, window_size=3, negative_samples=2.0, batch_size=256, learning_rate=0.01,
          seed=0, verbose="auto"):
    """Build the vocabulary and the pairs, train word2vec; return (model, vocabulary, history)."""
    gpunn.utils.set_seed(seed)
    vocabulary = Vocabulary([w for s in sentences for w in tokenize(s)])
    x, y = skipgram_dataset(sentences, vocabulary, window_size, negative_samples, seed)
    model = word2vec(len(vocabulary), dim)
    model.compile(gpunn.optimizers.Adam(learning_rate), "binary_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=verbose)
    return model, vocabulary, history


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m gpunn.examples.word2vec", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=5_000)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--window", type=int, default=3)
    parser.add_argument("--negatives", type=float, default=2.0, help="negative pairs per positive pair")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", help="save the 2-D projection of the vectors to this file (needs matplotlib)")
    args = parser.parse_args(argv)
    if args.plot:
        from gpunn.examples.common import require_matplotlib
        require_matplotlib(parser, "--plot")

    sentences = synthetic_corpus(args.sentences, args.seed)
    print(f"gpunn {gpunn.__version__} on {backend.current()}; e.g. {sentences[0]!r}")
    model, vocabulary, _ = train(sentences, args.dim, args.epochs, args.window, args.negatives, seed=args.seed)
    embeddings = model.get_layer("target_embedding").get_weights()[0]
    for word in ["king", "woman", "paris"]:
        print(f"nearest {word}: " + ", ".join(f"{w} {s:.2f}" for w, s in most_similar(embeddings, vocabulary, word, 3)))
    right = 0
    for a, b, c, answer in ANALOGIES:
        (guess, score), = analogy(embeddings, vocabulary, a, b, c)
        right += guess == answer
        print(f"{b} is to {a} as {c} is to {guess} ({score:.2f}; expected {answer})")
    print(f"{right} of {len(ANALOGIES)} analogies right")
    if args.plot:
        from gpunn.examples.common import save_figure
        from gpunn.plotting import plot_embeddings
        save_figure(plot_embeddings(embeddings, vocabulary, list(PEOPLE) + list(PLACES)), args.plot)
    return embeddings, vocabulary, right


if __name__ == "__main__":
    main()
