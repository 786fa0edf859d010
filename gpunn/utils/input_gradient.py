"""The gradient with respect to a model's *input*: how the output would change if the pixels changed.

Training asks for dJ/dW and moves the weights; a saliency map (which pixels decide the class?) and
style transfer (which image has these features?) ask for dJ/dx instead and leave the weights alone.
The backward pass computes both anyway, layer by layer down to the input::

    outputs = model.forward(x)          J, dJ/doutputs = objective(outputs)
    dJ/dx   = model.backward(dJ/doutputs)
"""

from gpunn.layers.base import on_backend


def value_and_input_gradient(model, x, objective, training=False):
    """(J, dJ/dx) for J = objective(model(x)), a model's or a layer's; the weights are not changed.

    Args:
        model: a model (several outputs: ``objective`` receives and returns lists) or a layer.
        x: the input batch (NumPy arrays are moved to the backend), or a list of them for several inputs.
        objective: ``outputs -> (J, dJ/doutputs)``, e.g. a class score and its one-hot gradient, or a cost and
            its gradient (:func:`gpunn.vision.content_cost`).
        training: run the forward pass in training mode (dropout, batch statistics); inference by default.

    Returns:
        J as ``objective`` returned it, and dJ/dx on the backend, shaped as x.

    Example (the gradient of the class-3 probability with respect to every pixel):
        >>> def class_3(y):
        ...     one_hot = backend.xp.zeros_like(y); one_hot[:, 3] = 1
        ...     return y[:, 3].sum(), one_hot
        >>> score, dx = value_and_input_gradient(model, x, class_3)
    """
    outputs = model.forward(on_backend(x), training=training)
    value, d_outputs = objective(outputs)
    return value, model.backward(d_outputs)
