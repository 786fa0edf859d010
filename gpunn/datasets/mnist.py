"""MNIST: 70,000 handwritten digits, 28x28 grayscale, 10 classes (LeCun, Cortes, Burges)."""

from gpunn.datasets.core import load_idx_dataset

MIRRORS = [
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
]

FILES = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}


def load_data():
    """``(x_train, y_train), (x_test, y_test)``: uint8 images (n, 28, 28) and uint8 labels (n,), as in Keras."""
    return load_idx_dataset("mnist", FILES, MIRRORS)
