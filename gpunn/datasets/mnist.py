"""MNIST: 70,000 handwritten digits, 28x28 grayscale, 10 classes (LeCun, Cortes, Burges)."""

from gpunn.datasets.core import Checksums, load_idx_dataset

MIRRORS = [
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
]

# SHA-256 of each .gz as the mirrors serve it, and of its decompressed IDX content.
FILES = {
    "train-images-idx3-ubyte.gz": Checksums("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                                           "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    "train-labels-idx1-ubyte.gz": Checksums("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                                           "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    "t10k-images-idx3-ubyte.gz": Checksums("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                                          "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    "t10k-labels-idx1-ubyte.gz": Checksums("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                                          "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
}


def load_data():
    """``(x_train, y_train), (x_test, y_test)``: uint8 images (n, 28, 28) and uint8 labels (n,), as in Keras."""
    return load_idx_dataset("mnist", FILES, MIRRORS)
