"""What the example scripts share: loading a dataset, checking for matplotlib before training, saving a figure."""

import importlib.util

import gpunn


def load_dataset(name):
    """``gpunn.datasets.<name>.load_data()``, or exit with the loader's message (where to put the files)."""
    try:
        return getattr(gpunn.datasets, name).load_data()
    except gpunn.datasets.DatasetError as e:
        raise SystemExit(f"error: {e}") from None


def require_matplotlib(parser, option):
    """Stop before any training when ``option`` needs matplotlib and it is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        parser.error(f"{option} needs matplotlib: pip install 'gpunn[plot]' (or leave {option} out)")


def save_figure(fig, path):
    """Write a :mod:`gpunn.plotting` figure to ``path`` and free it."""
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=100)
    plt.close(fig)
