"""Fashion-MNIST: 70,000 28x28 grayscale images of clothes in 10 classes (Zalando), a drop-in for MNIST."""

from gpunn.datasets.core import Checksums, load_idx_dataset

MIRRORS = [
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
]

# SHA-256 of each .gz as the mirrors serve it, and of its decompressed IDX content.
FILES = {
    "train-images-idx3-ubyte.gz": Checksums("b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
                                           "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    "train-labels-idx1-ubyte.gz": Checksums("0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
                                           "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    "t10k-images-idx3-ubyte.gz": Checksums("cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
                                          "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    "t10k-labels-idx1-ubyte.gz": Checksums("8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
                                          "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
}

CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def load_data():
    """``(x_train, y_train), (x_test, y_test)``: uint8 images (n, 28, 28) and uint8 labels (n,), as in Keras."""
    return load_idx_dataset("fashion-mnist", FILES, MIRRORS)
