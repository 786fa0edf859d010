"""Finding, downloading and reading IDX datasets (MNIST and its drop-in twins).

Files are looked for, in order, in

1. ``$GPUNN_DATA_DIR/<name>/``
2. ``~/.gpunn/datasets/<name>/``
3. ``/usr/share/datasets/<name>/`` (where Debian's ``dataset-fashion-mnist`` installs)

and, when absent everywhere, downloaded from the public mirrors into the first
of the two writable places (``$GPUNN_DATA_DIR`` when set, else
``~/.gpunn/datasets``). Every download is checked against its SHA-256 and
written atomically (a temporary file, then a rename), so an interrupted or
tampered download never leaves a file that looks complete. Every file read,
found or downloaded, is checked by the SHA-256 of its decompressed content:
a copy compressed again still passes, another dataset's file does not.

IDX format (LeCun): a 4-byte magic number ``0x0000 <type> <ndim>``, ``ndim``
big-endian uint32 sizes, then the values, row-major. Images are uint8 of
shape (n, 28, 28), labels uint8 of shape (n,).
"""

import gzip
import hashlib
import os
import struct
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DatasetError(RuntimeError):
    """A dataset file is missing, corrupt, truncated, or could not be downloaded."""


class Checksums(NamedTuple):
    """The SHA-256 of a dataset file: as the mirrors serve it (.gz), and of its decompressed IDX content."""

    download: str
    content: str


def search_dirs(name):
    """The folders searched for dataset ``name``, in order."""
    dirs = []
    if os.environ.get("GPUNN_DATA_DIR"):
        dirs.append(Path(os.environ["GPUNN_DATA_DIR"]).expanduser() / name)
    dirs.append(Path.home() / ".gpunn" / "datasets" / name)
    dirs.append(Path("/usr/share/datasets") / name)
    return dirs


def read_idx(path, content_sha256=None):
    """Read an IDX file (``.gz`` or plain) into a NumPy array, checking its header, size and (if given) content."""
    path = Path(path)
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"{path} is corrupt or truncated ({e}); delete it so that gpunn downloads it again") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise DatasetError(f"{path} is not an IDX file (bad magic number {data[:4].hex()}); delete it and download it again")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path} is truncated: its header needs {header} bytes, the file has {len(data)}")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_TYPES[data[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise DatasetError(f"{path} is {'truncated' if len(data) < expected else 'too long'}: an IDX array of shape "
                           f"{shape} needs {expected} bytes, the file has {len(data)}; delete it and download it again")
    actual = hashlib.sha256(data).hexdigest()
    if content_sha256 is not None and actual != content_sha256:
        raise DatasetError(f"{path} is not the expected file: its decompressed content has SHA-256 {actual}, expected "
                           f"{content_sha256} (another dataset's file in this folder, or a damaged copy). Delete it, and "
                           f"gpunn downloads the right one, or replace it with the file of that name from a mirror")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(url, path, expected_sha256, timeout=60):
    """Download ``url`` to ``path`` atomically, checking its SHA-256; a mismatch deletes it and raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        actual = sha256(tmp)
        if actual != expected_sha256:
            raise DatasetError(f"{url} downloaded with SHA-256 {actual}, expected {expected_sha256}; "
                               f"the file was deleted (a bad mirror or a corrupted transfer)")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def fetch(name, filename, expected_sha256, mirrors):
    """The path of ``filename`` of dataset ``name``: found locally, or downloaded from ``mirrors``."""
    for folder in search_dirs(name):
        for candidate in (folder / filename, folder / filename.removesuffix(".gz")):
            if candidate.is_file():
                return candidate
    target = search_dirs(name)[0] / filename
    errors = []
    for mirror in mirrors:
        try:
            return download(mirror + filename, target, expected_sha256)
        except (urllib.error.URLError, OSError) as e:
            errors.append(f"{mirror}: {getattr(e, 'reason', e)}")
    places = "\n  ".join(str(d) for d in search_dirs(name))
    raise DatasetError(
        f"Dataset '{name}': {filename} was not found and could not be downloaded.\n"
        f"Tried:\n  " + "\n  ".join(errors) + "\n"
        f"Put the file (from any MNIST mirror) in one of these folders, or point GPUNN_DATA_DIR at a folder "
        f"holding a '{name}/' subfolder:\n  {places}"
    )


def load_idx_dataset(name, files, mirrors):
    """``(x_train, y_train), (x_test, y_test)`` from the four IDX files in ``files`` {filename: Checksums}."""
    train_x, train_y, test_x, test_y = (read_idx(fetch(name, f, sums.download, mirrors), sums.content)
                                        for f, sums in files.items())
    for x, y, split in ((train_x, train_y, "train"), (test_x, test_y, "test")):
        if len(x) != len(y):
            raise DatasetError(f"Dataset '{name}' {split} split has {len(x)} images but {len(y)} labels")
    return (train_x, train_y), (test_x, test_y)
