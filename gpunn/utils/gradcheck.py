"""Gradient checking: compare backpropagation with centered differences.

For every parameter theta_i (and every input value), the course's check is::

    dtheta_approx_i = (J(theta + eps e_i) - J(theta - eps e_i)) / (2 eps)
    difference      = ||dtheta_approx - dtheta|| / (||dtheta_approx|| + ||dtheta||)

In float64 a correct backward pass gives a difference around 1e-7 or below;
1e-3 and above means a bug. The check runs on a float64 copy of the layer or
model, so the original is untouched.
"""

import copy

import numpy as np

import gpunn.backend as backend


def gradcheck(target, x, y=None, eps=1e-5, training=True, seed=0):
    """Check the backward pass of a layer or a model against centered differences.

    Args:
        target: a built or unbuilt layer, or a model (Sequential or Model; one input).
        x: an input batch, or a list of them (a merge layer, a model with several inputs).
        y: targets: the model's compiled loss is then J. Without y, J = sum(output * R)
            for a fixed random R, which checks every path through the layer.
        eps: the finite-difference step.
        training: run the forward pass in training mode (dropout, batch statistics).
            The random generator is re-seeded before every forward pass, so dropout
            draws the same mask each time.
        seed: the seed used for those draws and for R.

    Returns:
        ``{'<layer>/<weight>': difference, ..., 'input': difference}`` ('input_0', 'input_1'... for a list of
        inputs, as a merge layer or a model with several inputs takes).
    """
    from gpunn.models import Model

    target = copy.deepcopy(target)
    several = isinstance(x, (list, tuple))  # a merge layer's or a multi-input model's list of inputs
    xs = [_float64(backend.to_device(np.asarray(backend.to_numpy(a)))) for a in (x if several else [x])]
    x = xs if several else xs[0]
    if not target.built:
        if hasattr(target, "add"):  # a Sequential waiting for its input shape
            target.build(tuple(xs[0].shape[1:]))
        else:
            target(x)  # a layer builds on its first call
    if isinstance(target, Model):
        layers = target.sublayers
        if y is not None:
            if target._compile_args is None:
                raise ValueError("gradcheck with y needs a compiled model (its loss defines J)")
            ys = [_float64(backend.to_device(np.asarray(backend.to_numpy(a)))) for a in
                  (y if isinstance(y, (list, tuple)) else [y])]
            y = ys if isinstance(y, (list, tuple)) else ys[0]
    else:
        layers = [target]
    for layer in layers:
        layer.cast(np.float64)

    def cost():
        backend.seed(seed)
        out = target.forward(x, training=training)
        if y is not None:
            return target.compute_loss(out, y), out
        return sum((o * r).sum() for o, r in zip(_as_list(out), projection)), out

    projection = None
    if y is None:
        backend.seed(seed)
        out = target.forward(x, training=training)
        rng = np.random.default_rng(seed)
        projection = [backend.to_device(rng.standard_normal(o.shape)) for o in _as_list(out)]

    _, out = cost()
    dout = target.loss_gradient() if y is not None else (projection if isinstance(out, list) else projection[0])
    dx = target.backward(dout)

    tensors = {f"{layer.name}/{key}": (getattr(owner, n), owner.grads[n]) for layer in layers
               for key, (owner, n) in zip(layer.weight_keys(), layer.weight_refs()) if n in owner.trainable_names}
    for i, (a, d) in enumerate(zip(xs, dx if several else [dx])):
        if a.dtype.kind == "f":
            tensors["input" if not several else f"input_{i}"] = (a, d)
    return {name: _difference(_numerical_gradient(cost, a, eps), grad) for name, (a, grad) in tensors.items()}


def _float64(a):
    return a.astype(np.float64) if a.dtype.kind == "f" else a


def _as_list(out):
    return out if isinstance(out, list) else [out]


def _numerical_gradient(cost, a, eps):
    """Centered differences of cost() with respect to each element of ``a`` (modified in place, then restored)."""
    grad = np.zeros(a.shape)
    for i in np.ndindex(*a.shape):
        old = a[i].copy()
        a[i] = old + eps
        plus = float(cost()[0])
        a[i] = old - eps
        minus = float(cost()[0])
        a[i] = old
        grad[i] = (plus - minus) / (2 * eps)
    return grad


VANISHING = 1e-8


def _difference(approx, grad):
    """||approx - grad|| / (||approx|| + ||grad||); the plain ||approx - grad|| when both are
    below VANISHING -- a gradient that is truly 0 (attention's key bias: softmax ignores a shift
    shared by a whole row) leaves only rounding noise, whose ratio means nothing."""
    grad = backend.to_numpy(grad).astype(np.float64).reshape(approx.shape)
    denominator = np.linalg.norm(approx) + np.linalg.norm(grad)
    if denominator < VANISHING:
        return float(np.linalg.norm(approx - grad))
    return float(np.linalg.norm(approx - grad) / denominator)
