"""Neural machine translation of dates, the course's: human-written dates to ISO dates, character by character.

    python -m gpunn.examples.translate                       # both models, the full bar (long on a CPU)
    python -m gpunn.examples.translate --model rnn --plot attention.png
    python -m gpunn.examples.translate --limit 2000 --epochs 1  # a quick try

    "3 may 1979", "thursday may 3 1979", "05/03/79", "may 3, 1979" ...  ->  "1979-05-03"

The pairs are generated here (seeded, no download). Two models learn the translation with teacher forcing
(the decoder reads the true previous character, "<start>1979-05-0", and predicts the next, "1979-05-03<end>"):

- an RNN encoder-decoder: characters -> Embedding -> Bidirectional LSTM (the encoder's outputs h_j); the
  decoder's LSTM states s_t query them with Bahdanau's additive attention, a_tj = softmax_j(w_v^T tanh(W_q s_t +
  W_k h_j)), and [s_t, sum_j a_tj h_j] -> Dense(tanh) -> softmax over the output characters;
- a Transformer: a TransformerEncoder over the source, a TransformerDecoder (causal self-attention,
  cross-attention to the encoder) over the target.

Each is then asked to translate 1,000 held-out dates by greedy decoding (:mod:`gpunn.decoding`), feeding its
own output back; the score is the exact match of the whole date. ``--plot`` saves the RNN's attention weights
for one date: which source characters each output character looked at.
"""

import argparse
import datetime
import time

import numpy as np

import gpunn
from gpunn import Input, Model, backend
from gpunn.decoding import beam_search, greedy_search, model_step
from gpunn.examples.common import require_matplotlib, save_figure
from gpunn.layers import (LSTM, AdditiveAttention, Bidirectional, Concatenate, Dense, Embedding, PositionalEncoding,
                          TransformerDecoder, TransformerEncoder)

MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december"]
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]

# How people write a date d (all lower case, as the course's data).
FORMATS = [
    lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}",                                   # 3 may 1979
    lambda d: f"{d.day:02d} {MONTHS[d.month - 1][:3]} {d.year}",                           # 03 may 1979
    lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}",                                  # may 3, 1979
    lambda d: f"{DAYS[d.weekday()]} {MONTHS[d.month - 1]} {d.day} {d.year}",               # thursday may 3 1979
    lambda d: f"{DAYS[d.weekday()]}, {d.day} {MONTHS[d.month - 1]} {d.year}",              # thursday, 3 may 1979
    lambda d: f"{DAYS[d.weekday()][:3]} {MONTHS[d.month - 1][:3]} {d.day} {d.year}",       # thu may 3 1979
    lambda d: f"{d.month:02d}/{d.day:02d}/{d.year % 100:02d}",                             # 05/03/79
    lambda d: f"{d.month}/{d.day}/{d.year}",                                               # 5/3/1979
    lambda d: f"{d.day:02d}.{d.month:02d}.{d.year % 100:02d}",                             # 03.05.79
    lambda d: f"{d.day} {MONTHS[d.month - 1][:3]} {d.year % 100:02d}",                     # 3 may 79
]
FIRST, LAST = datetime.date(1950, 1, 1), datetime.date(2049, 12, 31)  # so a two-digit year names one year

SOURCE_CHARS = " ,./0123456789abcdefghijklmnopqrstuvwxyz"  # id 0 is padding, then these
PAD, START, END = 0, 1, 2
TARGET_CHARS = "-0123456789"  # ids 3, 4, ... after <pad>, <start>, <end>
SOURCE_LENGTH, TARGET_LENGTH = 30, len("1979-05-03") + 1  # the target with its <end>


def date_pairs(n, seed):
    """n (human, machine) pairs of distinct random dates between 1950 and 2049, each in a random format."""
    rng = np.random.default_rng(seed)
    days = rng.choice((LAST - FIRST).days + 1, size=n, replace=False)
    dates = [FIRST + datetime.timedelta(days=int(k)) for k in days]
    return [(FORMATS[rng.integers(len(FORMATS))](d), d.isoformat()) for d in dates]


def encode_source(texts):
    """Character ids (n, SOURCE_LENGTH), 0 after each text (the padding that Embedding(mask_zero=True) masks)."""
    ids = np.zeros((len(texts), SOURCE_LENGTH), np.int64)
    for i, text in enumerate(texts):
        ids[i, :len(text)] = [SOURCE_CHARS.index(c) + 1 for c in text]
    return ids


def encode_target(texts):
    """Teacher forcing: the decoder reads <start> + target and predicts target + <end>, (n, TARGET_LENGTH) each."""
    ids = np.array([[TARGET_CHARS.index(c) + 3 for c in text] for text in texts], np.int64)
    column = np.full((len(texts), 1), 0, np.int64)
    return np.concatenate([column + START, ids], axis=1), np.concatenate([ids, column + END], axis=1)


def decode_target(tokens):
    """The characters before the first <end>."""
    chars = []
    for t in tokens:
        if t == END:
            break
        chars.append(TARGET_CHARS[t - 3] if t >= 3 else "?")
    return "".join(chars)


def rnn_model(embed, units, attention_units):
    """The RNN encoder-decoder with Bahdanau attention; also a model that returns the attention weights."""
    source, target = Input((None,), name="source"), Input((None,), name="target")
    encoded = Bidirectional(LSTM(units, return_sequences=True), name="encoder")(
        Embedding(len(SOURCE_CHARS) + 1, embed, mask_zero=True, name="source_embedding")(source))
    states = LSTM(2 * units, return_sequences=True, name="decoder")(
        Embedding(len(TARGET_CHARS) + 3, embed, name="target_embedding")(target))
    context, weights = AdditiveAttention(units=attention_units, name="attention")([states, encoded],
                                                                                return_attention_scores=True)
    hidden = Dense(2 * units, activation="tanh", name="attentional")(Concatenate()([states, context]))
    probs = Dense(len(TARGET_CHARS) + 3, activation="softmax", name="next_char")(hidden)
    return Model([source, target], probs, name="rnn_translator"), Model([source, target], weights)


def transformer_model(depth, heads, ff_dim, dropout):
    """A one-block Transformer: encoder over the source, decoder over the target and the encoder's outputs."""
    source, target = Input((None,), name="source"), Input((None,), name="target")
    encoded = TransformerEncoder(heads, depth // heads, ff_dim, dropout=dropout, name="encoder")(PositionalEncoding()(
        Embedding(len(SOURCE_CHARS) + 1, depth, mask_zero=True, name="source_embedding")(source)))
    decoded = TransformerDecoder(heads, depth // heads, ff_dim, dropout=dropout, name="decoder")(PositionalEncoding()(
        Embedding(len(TARGET_CHARS) + 3, depth, name="target_embedding")(target)), encoded)
    probs = Dense(len(TARGET_CHARS) + 3, activation="softmax", name="next_char")(decoded)
    return Model([source, target], probs, name="transformer_translator")


def translate(model, texts, batch_size=1000):
    """Greedy translations of ``texts``."""
    out = []
    for i in range(0, len(texts), batch_size):
        part = encode_source(texts[i:i + batch_size])
        tokens, _ = greedy_search(model_step(model, part), len(part), START, END, TARGET_LENGTH)
        out += [decode_target(t) for t in tokens]
    return out


def exact_match(model, pairs):
    return float(np.mean([guess == iso for guess, (_, iso) in zip(translate(model, [h for h, _ in pairs]), pairs)]))


def train(model, train_pairs, args, epochs, decay):
    """Teacher forcing with Adam, the rate multiplied by ``decay`` over the whole run; returns the seconds it took."""
    source = encode_source([h for h, _ in train_pairs])
    target_in, target_out = encode_target([m for _, m in train_pairs])
    steps = epochs * -(-len(source) // args.batch_size)
    rate = gpunn.schedules.ExponentialDecay(args.learning_rate, steps, decay)
    model.compile(gpunn.optimizers.Adam(rate), "sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit([source, target_in], target_out, batch_size=args.batch_size, epochs=epochs, verbose=args.verbose)
    return time.perf_counter() - start


def show(model, pairs, beam_width):
    """A few held-out dates: the greedy translation, and beam search's best sequences with their scores."""
    for human, iso in pairs:
        beams = beam_search(model_step(model, encode_source([human])), START, END, TARGET_LENGTH, beam_width)
        best = ", ".join(f"{decode_target(tokens)} ({score:.3f})" for tokens, score in beams)
        print(f"  {human:>30} -> {translate(model, [human])[0]}  (truth {iso}; beams: {best})")


def plot_date(attention_model, model, human, path):
    """The RNN's attention weights while translating ``human``: output characters against source characters."""
    from gpunn.plotting import plot_attention

    guess = translate(model, [human])[0]
    target_in, _ = encode_target([guess])
    weights = backend.to_numpy(attention_model.predict([encode_source([human]), target_in], verbose=0))[0]
    fig = plot_attention(weights[:, :len(human)], xlabel="source character", ylabel="output character",
                         xticklabels=list(human), yticklabels=list(guess) + ["<end>"])
    save_figure(fig, path)
    print(f"attention weights for {human!r} saved to {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m gpunn.examples.translate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["rnn", "transformer", "both"], default="both")
    parser.add_argument("--limit", type=int, default=30000, help="training pairs")
    parser.add_argument("--test", type=int, default=1000, help="held-out dates to translate")
    parser.add_argument("--epochs", type=int, default=None, help="for both models (default: 8 RNN, 10 Transformer)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--units", type=int, default=64, help="the RNN encoder's LSTM units (decoder: twice)")
    parser.add_argument("--depth", type=int, default=64, help="the Transformer's model width")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--ff-dim", type=int, default=128)
    parser.add_argument("--beam-width", type=int, default=3)
    parser.add_argument("--plot", default="", metavar="PNG", help="save the RNN's attention heatmap (matplotlib)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=2)
    args = parser.parse_args(argv)
    if args.plot:
        require_matplotlib(parser, "--plot")
    gpunn.utils.set_seed(args.seed)
    pairs = date_pairs(args.limit + args.test, args.seed)
    train_pairs, test_pairs = pairs[:args.limit], pairs[args.limit:]
    print(f"gpunn {gpunn.__version__} on {backend.current()}; {len(train_pairs)} training pairs, "
          f"{len(test_pairs)} held out")
    results = {}
    for name in (["rnn", "transformer"] if args.model == "both" else [args.model]):
        gpunn.utils.set_seed(args.seed)  # each model starts as it would alone: --model both = the two runs
        if name == "rnn":
            model, attention_model = rnn_model(embed=32, units=args.units, attention_units=args.units)
        else:
            model = transformer_model(args.depth, args.heads, args.ff_dim, dropout=0.0)
        # The Transformer's loss still jumps about at the end of a run at 3e-3: its rate decays to 1/20.
        seconds = train(model, train_pairs, args, args.epochs or {"rnn": 8, "transformer": 10}[name],
                        decay={"rnn": 1.0, "transformer": 0.05}[name])
        results[name] = exact_match(model, test_pairs)
        print(f"{name}: exact match {results[name]:.4f} on {len(test_pairs)} held-out dates "
              f"({model.count_params():,} parameters, trained in {seconds:.0f} s)")
        show(model, test_pairs[:5], args.beam_width)
        if name == "rnn" and args.plot:
            plot_date(attention_model, model, test_pairs[0][0], args.plot)
    return results


if __name__ == "__main__":
    main()
