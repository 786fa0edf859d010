import gzip
import hashlib
import http.server
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from gpunn.datasets import DatasetError, core, fashion_mnist, mnist, toy

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def idx_bytes(array):
    codes = {np.dtype(np.uint8): 0x08}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_dataset(folder, n_train=6, n_test=4, seed=0):
    """Four small gzipped IDX files like MNIST's; returns {filename: Checksums} and the arrays."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    sums = {}
    for name, a in arrays.items():
        data = gzip.compress(idx_bytes(a))
        (folder / name).write_bytes(data)
        sums[name] = core.Checksums(hashlib.sha256(data).hexdigest(), hashlib.sha256(idx_bytes(a)).hexdigest())
    return sums, arrays


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUNN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "data"


def test_reads_idx_from_gpunn_data_dir(data_dir):
    sums, arrays = write_dataset(data_dir / "mnist")
    (x, y), (xt, yt) = core.load_idx_dataset("mnist", sums, mirrors=[])
    np.testing.assert_array_equal(x, arrays["train-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(yt, arrays["t10k-labels-idx1-ubyte.gz"])
    assert x.dtype == np.uint8 and x.shape == (6, 28, 28) and y.shape == (6,)


def test_search_order(data_dir, tmp_path):
    dirs = core.search_dirs("mnist")
    assert dirs == [data_dir / "mnist", tmp_path / "home" / ".gpunn" / "datasets" / "mnist",
                    Path("/usr/share/datasets/mnist")]


def test_truncated_and_corrupt_files_are_reported_as_such(data_dir):
    sums, _ = write_dataset(data_dir / "mnist")
    path = data_dir / "mnist" / "train-images-idx3-ubyte.gz"
    full = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(full[:-100]))
    with pytest.raises(DatasetError, match="is truncated: an IDX array of shape"):
        core.load_idx_dataset("mnist", sums, mirrors=[])
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(DatasetError, match="corrupt or truncated"):
        core.load_idx_dataset("mnist", sums, mirrors=[])
    path.write_bytes(gzip.compress(b"PK\x03\x04 not idx at all"))
    with pytest.raises(DatasetError, match="not an IDX file"):
        core.load_idx_dataset("mnist", sums, mirrors=[])


@pytest.fixture
def http_server(tmp_path):
    """A static file server on 127.0.0.1 standing in for the public mirror."""
    root = tmp_path / "mirror"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_downloads_verifies_and_caches(data_dir, http_server):
    root, url = http_server
    sums, arrays = write_dataset(root)
    dead_mirror = "http://127.0.0.1:9/"  # nothing listens there: the next mirror is tried
    (x, _), _ = core.load_idx_dataset("mnist", sums, mirrors=[dead_mirror, url])
    np.testing.assert_array_equal(x, arrays["train-images-idx3-ubyte.gz"])
    saved = sorted(p.name for p in (data_dir / "mnist").iterdir())
    assert saved == sorted(sums)  # no temporary files left behind
    for f in root.iterdir():
        f.unlink()
    core.load_idx_dataset("mnist", sums, mirrors=[url])  # served from the cache now


def test_checksum_mismatch_deletes_and_raises(data_dir, http_server):
    root, url = http_server
    sums, _ = write_dataset(root)
    bad = dict(sums, **{"train-labels-idx1-ubyte.gz": core.Checksums("0" * 64, "0" * 64)})
    with pytest.raises(DatasetError, match="expected 0000.*deleted"):
        core.load_idx_dataset("mnist", bad, mirrors=[url])
    assert not (data_dir / "mnist" / "train-labels-idx1-ubyte.gz").exists()
    assert not [p for p in (data_dir / "mnist").iterdir() if p.name.endswith(".part")]


def test_no_network_says_where_to_put_the_files(data_dir):
    with pytest.raises(DatasetError, match=r"(?s)could not be downloaded.*GPUNN_DATA_DIR.*" + str(data_dir / "mnist")):
        core.load_idx_dataset("mnist", mnist.FILES, mirrors=["http://127.0.0.1:9/"])


@pytest.mark.skipif(not (SHARED / "fashion-mnist").is_dir(), reason="Fashion-MNIST files not present")
def test_real_fashion_mnist_trains_an_mlp(monkeypatch):
    from gpunn import Sequential
    from gpunn.layers import Dense, Flatten
    from gpunn.utils import set_seed

    monkeypatch.setenv("GPUNN_DATA_DIR", str(SHARED))
    (x, y), (xt, yt) = fashion_mnist.load_data()
    assert x.shape == (60000, 28, 28) and xt.shape == (10000, 28, 28) and y.max() == 9
    set_seed(0)
    model = Sequential([Flatten(input_shape=(28, 28)), Dense(128, activation="relu"), Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:5000] / 255.0, y[:5000], batch_size=64, epochs=2, verbose=0)
    _, accuracy = model.evaluate(xt[:2000] / 255.0, yt[:2000])
    assert accuracy > 0.75


@pytest.mark.skipif(not (SHARED / "mnist-t10k").is_dir(), reason="MNIST test files not present")
def test_real_mnist_test_set_checksums():
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert core.sha256(SHARED / "mnist-t10k" / name) == mnist.FILES[name].download


def test_local_files_are_checked_by_their_content(data_dir):
    """Compressed again, the right data passes; another file under the right name does not."""
    sums, arrays = write_dataset(data_dir / "mnist")
    images = data_dir / "mnist" / "train-images-idx3-ubyte.gz"
    images.write_bytes(gzip.compress(gzip.decompress(images.read_bytes()), compresslevel=1, mtime=1))
    assert core.sha256(images) != sums[images.name].download
    np.testing.assert_array_equal(core.load_idx_dataset("mnist", sums, mirrors=[])[0][0], arrays[images.name])
    labels = data_dir / "mnist" / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(idx_bytes(np.zeros(6, dtype=np.uint8))))
    with pytest.raises(DatasetError, match=f"{labels} is not the expected file: its decompressed content has SHA-256 "
                                           f"[0-9a-f]{{64}}, expected {sums[labels.name].content}.*Delete it"):
        core.load_idx_dataset("mnist", sums, mirrors=[])


@pytest.mark.skipif(not (SHARED / "mnist").is_dir() or not (SHARED / "fashion-mnist").is_dir(),
                    reason="MNIST and Fashion-MNIST files not present")
def test_real_mnist_compressed_again_passes_and_a_fashion_file_in_its_folder_does_not(data_dir):
    folder = data_dir / "mnist"
    folder.mkdir(parents=True)
    for name in mnist.FILES:
        (folder / name).symlink_to(SHARED / "mnist" / name)
    (x, y), _ = mnist.load_data()  # the shared copies were compressed again: only their content matches
    assert x.shape == (60000, 28, 28) and np.bincount(y)[0] == 5923
    labels = folder / "train-labels-idx1-ubyte.gz"
    labels.unlink()
    labels.symlink_to(SHARED / "fashion-mnist" / labels.name)
    with pytest.raises(DatasetError, match=f"{labels} is not the expected file"):
        mnist.load_data()


@pytest.mark.parametrize("make", [toy.make_moons, toy.make_circles, toy.make_flower])
def test_toy_datasets_shapes_balance_and_seed(make):
    x, y = make(301, seed=5)
    assert x.shape == (301, 2) and x.dtype == np.float32 and y.shape == (301,) and y.dtype == np.int64
    assert set(np.unique(y)) == {0, 1} and 0.3 < y.mean() < 0.7
    x2, y2 = make(301, seed=5)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(x, make(301, seed=6)[0])


def test_toy_circles_are_two_radii_and_moons_not_linearly_separable():
    x, y = toy.make_circles(200, noise=0.0, factor=0.4)
    radius = np.linalg.norm(x, axis=1)
    np.testing.assert_allclose(radius[y == 0], 1.0, atol=1e-6)
    np.testing.assert_allclose(radius[y == 1], 0.4, atol=1e-6)
    # the best least-squares line misclassifies some moons: they need a hidden layer
    xm, ym = toy.make_moons(400, noise=0.0)
    a = np.c_[xm, np.ones(len(xm))]
    w = np.linalg.lstsq(a, 2.0 * ym - 1, rcond=None)[0]
    assert ((a @ w > 0) == ym).mean() < 0.95


def test_toy_bad_arguments_are_named():
    with pytest.raises(ValueError, match="make_moons: n_samples"):
        toy.make_moons(1)
    with pytest.raises(ValueError, match="make_circles: factor"):
        toy.make_circles(10, factor=1.5)
    with pytest.raises(ValueError, match="make_flower: noise"):
        toy.make_flower(10, noise=-1)
