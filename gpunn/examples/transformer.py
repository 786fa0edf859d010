"""A small Transformer encoder classifier: each 28x28 image is read as a sequence of 28 rows.

    python -m gpunn.examples.transformer                         # Fashion-MNIST, a few minutes on a laptop CPU
    python -m gpunn.examples.transformer --dataset mnist --heatmap attention.png

rows (28 x 28) -> Dense(d) -> PositionalEncoding -> TransformerEncoder -> GlobalAveragePooling1D -> Dense(10)
After training it prints the test accuracy and saves, with matplotlib, the attention
weights of the encoder's heads for one test image: which rows each row looked at.
"""

import argparse

import numpy as np

import gpunn
from gpunn import backend
from gpunn.examples.common import load_dataset, require_matplotlib, save_figure
from gpunn.layers import Dense, GlobalAveragePooling1D, PositionalEncoding, TransformerEncoder
from gpunn.plotting import plot_attention


def build_model(depth, heads, ff_dim, dropout):
    return gpunn.Sequential([
        Dense(depth, input_shape=(28, 28)),
        PositionalEncoding(),
        TransformerEncoder(num_heads=heads, key_dim=depth // heads, ff_dim=ff_dim, dropout=dropout),
        GlobalAveragePooling1D(),
        Dense(10, activation="softmax"),
    ], name="row_transformer")


def attention_map(model, image):
    """The encoder's attention weights (heads, 28, 28) for one image (inference, no dropout)."""
    x = backend.to_device(image[None])
    for layer in model.layers[:2]:
        x = layer.forward(x)
    attention = model.layers[2].attention
    _, scores = attention(x, return_attention_scores=True)
    return backend.to_numpy(scores[0])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m gpunn.examples.transformer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["fashion_mnist", "mnist"], default="fashion_mnist")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--limit", type=int, default=20000, help="training images used (0: all)")
    parser.add_argument("--depth", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--ff-dim", type=int, default=128)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--heatmap", default="attention.png", metavar="PNG",
                        help="where to save the attention weights (needs matplotlib; '' for none)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.depth % args.heads:
        parser.error(f"--depth {args.depth} must be a multiple of --heads {args.heads}")
    if args.heatmap:
        require_matplotlib(parser, "--heatmap")

    gpunn.utils.set_seed(args.seed)
    (x, y), (xt, yt) = load_dataset(args.dataset)
    if args.limit:
        x, y = x[:args.limit], y[:args.limit]
    x, xt = (x / 255.0).astype(np.float32), (xt / 255.0).astype(np.float32)
    print(f"gpunn {gpunn.__version__} on {backend.current()}; {len(x)} training images")
    model = build_model(args.depth, args.heads, args.ff_dim, args.dropout)
    model.summary()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, validation_data=(xt, yt))
    loss, accuracy = model.evaluate(xt, yt, batch_size=500)
    print(f"test accuracy: {accuracy:.4f} (loss {loss:.4f})")
    if args.heatmap:
        save_figure(plot_attention(attention_map(model, xt[0]), image=xt[0], xlabel="key row", ylabel="query row"),
                    args.heatmap)
        print(f"attention weights of test image 0 saved to {args.heatmap}")
    return accuracy


if __name__ == "__main__":
    main()
