"""Train a small ResNet on Fashion-MNIST (or MNIST): residual blocks, written with the Functional API.

    python -m gpunn.examples.resnet                         # Fashion-MNIST, 10 epochs, batch 64
    python -m gpunn.examples.resnet --epochs 1 --limit 5000 --plot history.png

A residual block adds its input back before the last activation, the course's
a[l+2] = g(z[l+2] + a[l]): the block only has to learn a correction to the identity, and
the gradient reaches early layers through the shortcut undiminished. Where a block halves
the image and doubles the channels, the shortcut becomes a 1x1 convolution with stride 2
(a projection) so that the two sides of the addition have one shape.

Adam's rate follows half a cosine from --learning-rate down to zero over the whole run
(CosineDecay): large steps early, and small ones at the end, where a constant rate would
leave the weights rattling around the minimum.
"""

import argparse
import math

import gpunn
from gpunn import Input, Model, backend
from gpunn.examples.common import require_matplotlib, save_figure
from gpunn.examples.lenet import EpochTimer, load
from gpunn.layers import Activation, Add, BatchNormalization, Conv2D, Dense, GlobalAveragePooling2D
from gpunn.plotting import plot_history


def conv_bn(x, filters, kernel_size=3, strides=1):
    """Conv -> BatchNorm: z[l] normalised (the convolution's bias would only be cancelled by the norm's shift).

    momentum=0.9 (Keras's default is 0.99): the moving averages that replace the batch statistics at test
    time then settle within a few dozen steps, so that even a short try (--limit) evaluates sensibly.
    """
    x = Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False)(x)
    return BatchNormalization(momentum=0.9)(x)


def residual_block(x, filters, strides=1):
    """a[l+2] = relu(z[l+2] + shortcut(a[l])): identity shortcut, or a 1x1 projection where the shape changes."""
    shortcut = x
    if strides != 1 or x.shape[1] != filters:
        shortcut = conv_bn(x, filters, kernel_size=1, strides=strides)  # the projection shortcut
    y = Activation("relu")(conv_bn(x, filters, strides=strides))
    y = conv_bn(y, filters)
    return Activation("relu")(Add()([y, shortcut]))


def small_resnet(input_shape=(1, 28, 28), classes=10, widths=(16, 32, 64)):
    """A stem, then one residual block per width, each after the first halving the image; 78,426 parameters."""
    x_in = Input(shape=input_shape)
    x = Activation("relu")(conv_bn(x_in, widths[0]))
    for i, filters in enumerate(widths):
        x = residual_block(x, filters, strides=1 if i == 0 else 2)
    out = Dense(classes, activation="softmax")(GlobalAveragePooling2D()(x))
    return Model(x_in, out, name="small_resnet")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m gpunn.examples.resnet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["mnist", "fashion_mnist"], default="fashion_mnist")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="Adam's rate at the start")
    parser.add_argument("--backend", choices=backend.BACKENDS, help="overrides GPUNN_BACKEND")
    parser.add_argument("--limit", type=int, help="use only the first N training and test images (a quick try)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", metavar="PNG", help="save the loss/accuracy curves to this file")
    args = parser.parse_args(argv)
    if args.plot:
        require_matplotlib(parser, "--plot")
    if args.backend:
        backend.set_backend(args.backend)
    gpunn.utils.set_seed(args.seed)
    print(f"gpunn {gpunn.__version__} on {backend.current()}")
    (x_train, y_train), (x_test, y_test) = load(args.dataset, args.limit)
    print(f"{args.dataset}: {len(x_train)} training and {len(x_test)} test images")

    model = small_resnet()
    model.summary()
    steps = math.ceil(len(x_train) / args.batch_size) * args.epochs
    adam = gpunn.optimizers.Adam(gpunn.schedules.CosineDecay(args.learning_rate, decay_steps=steps))
    model.compile(optimizer=adam, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    timer = EpochTimer()
    history = model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
                        validation_data=(x_test, y_test), callbacks=[timer])
    for epoch, seconds in enumerate(timer.times, start=1):
        print(f"epoch {epoch}: {seconds:.2f} s")
    loss, accuracy = model.evaluate(x_test, y_test, batch_size=500)
    print(f"test accuracy: {accuracy:.4f} (loss {loss:.4f})")
    if args.plot:
        save_figure(plot_history(history), args.plot)
        print(f"curves saved to {args.plot}")
    return accuracy


if __name__ == "__main__":
    main()
