"""Small 2-D datasets made on the spot, the ones the course draws decision boundaries on.

Each returns ``(x, y)``: x float32 of shape (n_samples, 2) -- samples in rows,
as every gpunn model takes them (the course's X is ``x.T``, samples in
columns) -- and y int64 labels of shape (n_samples,). The same ``seed`` gives
the same data.

    >>> x, y = make_moons(300, noise=0.2, seed=3)
"""

import numpy as np


def _check(n_samples, noise, name):
    if not isinstance(n_samples, (int, np.integer)) or n_samples < 2:
        raise ValueError(f"{name}: n_samples must be an integer >= 2; received n_samples={n_samples!r}")
    if noise < 0:
        raise ValueError(f"{name}: noise must be >= 0; received noise={noise!r}")


def _shuffled(points, labels, rng):
    order = rng.permutation(len(points))
    return points[order].astype(np.float32), labels[order].astype(np.int64)


def make_moons(n_samples=300, noise=0.2, seed=0):
    """Two interleaved half circles, class 0 on top, class 1 below and shifted right."""
    _check(n_samples, noise, "make_moons")
    rng = np.random.default_rng(seed)
    n0 = n_samples // 2
    t0, t1 = np.linspace(0, np.pi, n0), np.linspace(0, np.pi, n_samples - n0)
    points = np.concatenate([np.stack([np.cos(t0), np.sin(t0)], 1),
                             np.stack([1 - np.cos(t1), 0.5 - np.sin(t1)], 1)])
    points = points + noise * rng.standard_normal(points.shape)
    return _shuffled(points, np.repeat([0, 1], [n0, n_samples - n0]), rng)


def make_circles(n_samples=300, noise=0.05, factor=0.5, seed=0):
    """A circle of class 0 around a smaller one (radius ``factor``) of class 1: no line separates them."""
    _check(n_samples, noise, "make_circles")
    if not 0 < factor < 1:
        raise ValueError(f"make_circles: factor must be in (0, 1); received factor={factor!r}")
    rng = np.random.default_rng(seed)
    n0 = n_samples // 2
    t0 = np.linspace(0, 2 * np.pi, n0, endpoint=False)
    t1 = np.linspace(0, 2 * np.pi, n_samples - n0, endpoint=False)
    points = np.concatenate([np.stack([np.cos(t0), np.sin(t0)], 1),
                             factor * np.stack([np.cos(t1), np.sin(t1)], 1)])
    points = points + noise * rng.standard_normal(points.shape)
    return _shuffled(points, np.repeat([0, 1], [n0, n_samples - n0]), rng)


def make_flower(n_samples=400, petals=4, noise=0.2, seed=0):
    """The course's "planar" flower: 2 * petals petals, alternately class 0 and class 1.

    A point at angle t lies at distance |r| from the centre, r = petals * sin(petals * t)
    (a rose curve); the sign of r -- which petal it is on -- decides its class. ``noise``
    jitters the angle and the distance before the point is placed.
    """
    _check(n_samples, noise, "make_flower")
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 2 * np.pi, n_samples)
    r = petals * np.sin(petals * t)
    labels = r > 0
    t = t + noise * rng.standard_normal(n_samples)
    distance = np.abs(r) + noise * rng.standard_normal(n_samples)
    return _shuffled(np.stack([distance * np.sin(t), distance * np.cos(t)], 1), labels, rng)
