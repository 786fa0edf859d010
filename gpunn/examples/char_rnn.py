"""The course's character-level language model: read SEQLEN characters, predict the next one.

    python -m gpunn.examples.char_rnn                    # LSTM on the Python standard library's docstrings
    python -m gpunn.examples.char_rnn --cell simple --text my_poems.txt --epochs 20

After each epoch it writes a line of text, sampling one character at a time from
the predicted distribution sharpened by a temperature: p_i^(1/T) / sum_j p_j^(1/T)
(T < 1: safer, more repetitive; T > 1: bolder, more mistakes).
"""

import argparse
import importlib
import inspect

import numpy as np

import gpunn
from gpunn import backend
from gpunn.callbacks import Callback
from gpunn.layers import LSTM, Dense, SimpleRNN

STDLIB_MODULES = ["argparse", "bisect", "collections", "csv", "datetime", "decimal", "difflib", "fractions",
                  "functools", "heapq", "inspect", "itertools", "json", "pathlib", "random", "re", "statistics",
                  "string", "textwrap", "unittest"]


def stdlib_docstrings(max_chars):
    """English prose that every Python installation carries: its modules' docstrings."""
    docs = []
    for name in STDLIB_MODULES:
        module = importlib.import_module(name)
        docs.append(inspect.getdoc(module) or "")
        for _, member in sorted(vars(module).items()):
            if (inspect.isfunction(member) or inspect.isclass(member)) and member.__doc__:
                docs.append(inspect.getdoc(member))
    text = "\n".join(" ".join(doc.split()) for doc in docs if doc)
    return text[:max_chars]


def make_dataset(text, seqlen, step):
    """One-hot windows x (N, seqlen, vocab) and the index of the character after each window."""
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = np.array([index[c] for c in text], dtype=np.int64)
    starts = np.arange(0, len(text) - seqlen, step)
    windows = ids[starts[:, None] + np.arange(seqlen)]
    x = np.eye(len(chars), dtype=np.float32)[windows]
    return x, ids[starts + seqlen], chars


def sample(probabilities, temperature, rng):
    """Draw one index from p^(1/T), renormalized (computed in log space)."""
    logits = np.log(np.maximum(probabilities.astype(np.float64), 1e-12)) / temperature
    p = np.exp(logits - logits.max())
    return rng.choice(len(p), p=p / p.sum())


def generate(model, seed, chars, length, temperature, rng):
    index = {c: i for i, c in enumerate(chars)}
    window, out = list(seed), []
    for _ in range(length):
        x = np.eye(len(chars), dtype=np.float32)[[index[c] for c in window]][None]
        next_char = chars[sample(model.predict(x)[0], temperature, rng)]
        out.append(next_char)
        window = window[1:] + [next_char]
    return "".join(out)


class SampleText(Callback):
    """Prints a generated line after every epoch."""

    def __init__(self, text, chars, seqlen, length, temperature, seed):
        self.text, self.chars, self.seqlen, self.length, self.temperature = text, chars, seqlen, length, temperature
        self.rng = np.random.default_rng(seed)
        self.samples = []

    def on_epoch_end(self, epoch, logs=None):
        start = int(self.rng.integers(0, len(self.text) - self.seqlen))
        seed = self.text[start:start + self.seqlen]
        line = generate(self.model, seed, self.chars, self.length, self.temperature, self.rng)
        self.samples.append(line)
        print(f"  [{seed}] -> {line!r}")


def build_model(cell, units, seqlen, vocab):
    layer = LSTM if cell == "lstm" else SimpleRNN
    return gpunn.Sequential([layer(units, input_shape=(seqlen, vocab)), Dense(vocab, activation="softmax")],
                            name=f"char_{cell}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m gpunn.examples.char_rnn", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", help="a UTF-8 text file (default: the Python standard library's docstrings)")
    parser.add_argument("--cell", choices=["lstm", "simple"], default="lstm")
    parser.add_argument("--seqlen", type=int, default=10)
    parser.add_argument("--step", type=int, default=3, help="characters between the starts of two windows")
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument("--max-chars", type=int, default=100_000)
    parser.add_argument("--sample-length", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.temperature <= 0:
        parser.error("--temperature must be positive")

    gpunn.utils.set_seed(args.seed)
    if args.text:
        with open(args.text, encoding="utf-8") as f:
            text = f.read()[:args.max_chars]
    else:
        text = stdlib_docstrings(args.max_chars)
    if len(text) <= args.seqlen + 1:
        parser.error(f"the text has {len(text)} characters; it needs more than --seqlen + 1 = {args.seqlen + 1}")
    x, y, chars = make_dataset(text, args.seqlen, args.step)
    print(f"gpunn {gpunn.__version__} on {backend.current()}")
    print(f"{len(text):,} characters, {len(chars)} distinct, {len(x):,} windows of {args.seqlen}")

    model = build_model(args.cell, args.units, args.seqlen, len(chars))
    model.compile(gpunn.optimizers.RMSprop(args.learning_rate, clipnorm=5.0), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    sampler = SampleText(text, chars, args.seqlen, args.sample_length, args.temperature, args.seed)
    history = model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, callbacks=[sampler])
    return history, sampler.samples


if __name__ == "__main__":
    main()
