"""A small VGG-style network trained on Fashion-MNIST: the feature extractor of style transfer, shipped with gpunn.

No pretrained VGG-19 can be downloaded here, so gpunn trains its own, in VGG's pattern: blocks of
3x3 convolutions ('same' padding, ReLU) each closed by a 2x2 max pooling, the channels doubling from
block to block; a global average pooling and a softmax read the classes. Being convolutional up to
that pooling, it takes images of any size, ``Input(shape=(1, None, None))``. Layers are named as in
Keras's VGG16 (``block1_conv1`` ... ``predictions``), so style and content layers are picked by name::

    vgg = gpunn.vision.small_vgg()                  # the shipped weights, as keras.applications.VGG16()
    features = gpunn.Model(vgg.inputs, [vgg.get_layer(n).output for n in ("block1_conv1", "block2_conv1")])

The shipped file, ``small_vgg_fashion_mnist.npz`` beside this module (a whole gpunn model: the
architecture, the weights and the compile settings, no optimizer state; ``gpunn.load_model`` opens it),
was made by this module's script, on NumPy with 2 CPU cores shared with other jobs::

    python -m gpunn.vision.small_vgg --epochs 3 --seed 0    # 60,000 training images, Adam 1e-3, batch 128

which printed: 587 s; 80.2% accuracy on the 10,000 test images, 33,194 parameters, 140 KB. (Short of a
good Fashion-MNIST classifier -- more epochs would help -- but its features serve style transfer.)
"""

import argparse
import time
from pathlib import Path

import numpy as np

import gpunn
from gpunn import backend
from gpunn.layers import Conv2D, Dense, GlobalAveragePooling2D, MaxPool2D

WEIGHTS = Path(__file__).with_name("small_vgg_fashion_mnist.npz")


def small_vgg(weights="fashion_mnist", blocks=((16,), (32, 32), (64,)), classes=10):
    """The small VGG: blocks of 3x3 convolutions, a 2x2 max pooling after each but the last, then global pooling
    and softmax.

    Args:
        weights: 'fashion_mnist' (the shipped, trained weights) or None (a fresh, untrained network).
        blocks: the channels of each convolution, block by block (the shipped weights are for the default:
            one convolution at full size, where it costs the most, two at half size, one at a quarter).
        classes: the size of the softmax.
    """
    if weights == "fashion_mnist":
        return gpunn.load_model(WEIGHTS)
    if weights is not None:
        raise ValueError(f"small_vgg: weights must be 'fashion_mnist' or None; received weights={weights!r}")
    x = x_in = gpunn.Input(shape=(1, None, None), name="image")
    for b, block in enumerate(blocks, start=1):
        for c, filters in enumerate(block, start=1):
            x = Conv2D(filters, 3, padding="same", activation="relu", name=f"block{b}_conv{c}")(x)
        if b < len(blocks):
            x = MaxPool2D(2, name=f"block{b}_pool")(x)
    x = GlobalAveragePooling2D(name="avg_pool")(x)
    return gpunn.Model(x_in, Dense(classes, activation="softmax", name="predictions")(x), name="small_vgg")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m gpunn.vision.small_vgg", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--limit", type=int, help="train on the first N images only (a quick try)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(WEIGHTS), help="where to write the model (default: the shipped file)")
    args = parser.parse_args(argv)
    gpunn.utils.set_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = gpunn.datasets.fashion_mnist.load_data()
    x_train, y_train = x_train[:args.limit], y_train[:args.limit]
    x_train, x_test = ((x.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32) for x in (x_train, x_test))
    print(f"gpunn {gpunn.__version__} on {backend.current()}: {len(x_train)} training images")
    model = small_vgg(weights=None)
    model.summary()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, verbose=2)
    _, accuracy = model.evaluate(x_test, y_test, batch_size=500)
    model.save(args.out, include_optimizer=False)
    print(f"{time.perf_counter() - start:.0f} s; test accuracy {accuracy:.2%}; {model.count_params():,} parameters; "
          f"{Path(args.out).stat().st_size / 1000:.0f} KB written to {args.out}")
    return accuracy


if __name__ == "__main__":
    main()
