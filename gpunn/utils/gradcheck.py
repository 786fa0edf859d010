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
        x: an input batch.
        y: targets: the model's compiled loss is then J. Without y, J = sum(output * R)
            for a fixed random R, which checks every path through the layer.
        eps: the finite-difference step.
        training: run the forward pass in training mode (dropout, batch statistics).
            The random generator is re-seeded before every forward pass, so dropout
            draws the same mask each time.
        seed: the seed used for those draws and for R.

    Returns:
        ``{'<layer>/<weight>': difference, ..., 'input': difference}``.
    """
    from gpunn.models import Model

    target = copy.deepcopy(target)
    is_model = isinstance(target, Model)
    x = backend.to_device(np.asarray(backend.to_numpy(x)))
    if x.dtype.kind == "f":
        x = x.astype(np.float64)
    if is_model:
        if not target.built:
            target.build(tuple(x.shape[1:]))
        layers = target.sublayers
        if y is not None:
            if target._compile_args is None:
                raise ValueError("gradcheck with y needs a compiled model (its loss defines J)")
            y = backend.to_device(np.asarray(backend.to_numpy(y)))
            if y.dtype.kind == "f":
                y = y.astype(np.float64)
    else:
        if not target.built:
            target.build(tuple(x.shape[1:]))
        layers = [target]
    for layer in layers:
        layer.cast(np.float64)

    def cost():
        backend.seed(seed)
        out = target.forward(x, training=training)
        if y is not None:
            return target.compute_loss(out, y), out
        return (out * projection).sum(), out

    projection = None
    if y is None:
        backend.seed(seed)
        out = target.forward(x, training=training)
        projection = backend.to_device(np.random.default_rng(seed).standard_normal(out.shape))

    cost()
    dout = target.loss_gradient() if y is not None else projection
    dx = target.backward(dout)

    tensors = {f"{layer.name}/{key}": (getattr(owner, n), owner.grads[n]) for layer in layers
               for key, (owner, n) in zip(layer.weight_keys(), layer.weight_refs()) if n in owner.trainable_names}
    if x.dtype.kind == "f":
        tensors["input"] = (x, dx)
    return {name: _difference(_numerical_gradient(cost, a, eps), grad) for name, (a, grad) in tensors.items()}


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
