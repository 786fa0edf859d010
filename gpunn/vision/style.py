"""Neural style transfer (Gatys, Ecker and Bethge, 2015): optimise an image, not the weights.

A trained convolutional network (here :func:`gpunn.vision.small_vgg`) describes an image at two levels.
Its activations a at one layer say *what is where* -- the content. The correlations between its
channels, the Gram matrix of a layer (n_C channels of n_H x n_W values, A = a as an n_C x n_H n_W
matrix), say *which features come together*, wherever they are -- the style::

    G = A A^T,  G[k, k'] = sum over positions of a_k a_k'

Starting from the content image (plus noise), gradient descent moves the pixels of a generated image G
to lower J(G) = alpha J_content(C, G) + beta J_style(S, G), with the course's costs::

    J_content = 1/(4 n_H n_W n_C) sum (a_C - a_G)^2
    J_style   = sum over style layers l of lambda_l / (2 n_H n_W n_C)^2 sum_kk' (G_S - G_G)^2

Their gradients with respect to the generated image's activations, which the network's backward pass
carries down to its pixels (:func:`gpunn.utils.value_and_input_gradient`)::

    dJ_content/da_G = (a_G - a_C) / (2 n_H n_W n_C)          dJ_style/dA_G = 4 (G_G - G_S) A_G / (2 n_H n_W n_C)^2

Activations are channels-first, (N, n_C, n_H, n_W); each cost is summed over the N images.
"""

import numpy as np

import gpunn.backend as backend
from gpunn import optimizers
from gpunn.layers.base import on_backend
from gpunn.models import Model
from gpunn.utils.input_gradient import value_and_input_gradient


def _as_matrices(a):
    """(N, n_C, n_H, n_W) -> (N, n_C, n_H n_W), and the course's n_H n_W n_C."""
    if a.ndim != 4:
        raise ValueError(f"expected activations (N, n_C, n_H, n_W) of a convolution (channels-first); received an "
                         f"array of shape {tuple(a.shape)}")
    return a.reshape(a.shape[0], a.shape[1], -1), a[0].size


def gram_matrix(a):
    """G = A A^T for each image of a batch of activations (N, n_C, n_H, n_W): (N, n_C, n_C)."""
    matrix, _ = _as_matrices(a)
    return matrix @ matrix.transpose(0, 2, 1)


def content_cost(a_content, a_generated):
    """(J_content, dJ_content/da_generated) for two activations of one layer (above)."""
    size = a_generated[0].size
    diff = a_generated - a_content
    return (diff * diff).sum() / (4 * size), diff / (2 * size)


def style_cost(a_style, a_generated):
    """(J_style of one layer, its gradient with respect to a_generated) (above)."""
    matrix, size = _as_matrices(a_generated)
    g_diff = gram_matrix(a_generated) - gram_matrix(a_style)
    scale = 1.0 / (2 * size) ** 2
    return (g_diff * g_diff).sum() * scale, (4 * scale * g_diff @ matrix).reshape(a_generated.shape)


def style_transfer(model, content_image, style_image, content_layer, style_layers, optimizer="adam", steps=200,
                   alpha=10.0, beta=40.0, noise=0.2):
    """The image that has the content of ``content_image`` and the style of ``style_image``, and the cost per step.

    Args:
        model: a trained convolutional network (channels-first), e.g. ``gpunn.vision.small_vgg()``.
        content_image, style_image: (C, H, W) or (1, C, H, W), values in [0, 1]; they may differ in size
            when the model takes images of any size.
        content_layer: the name of the layer whose activations are the content.
        style_layers: names of layers, each weighed lambda_l = 1/L, or a dict {name: lambda_l}.
        optimizer: any gpunn optimizer, or its name (a learning rate around 0.01-0.05 suits pixels in [0, 1]).
        steps: gradient steps on the image.
        alpha, beta: the weights of the content and style costs (the course's 10 and 40).
        noise: the generated image starts as the content image plus uniform noise in [-noise, noise].

    Returns:
        (the generated image, as NumPy in the content image's shape, clipped to [0, 1]; J after each step).
    """
    weights = style_layers if isinstance(style_layers, dict) else {n: 1 / len(style_layers) for n in style_layers}
    names = [content_layer, *weights]
    extractor = Model(model.inputs[0], [model.get_layer(n).output for n in names], name=f"{model.name}_features")
    shape = np.shape(content_image)

    def batch(image):
        image = on_backend(np.asarray(image, dtype=np.float32))
        return image.reshape((1,) * (4 - image.ndim) + image.shape)

    content, style = batch(content_image), batch(style_image)
    a_content = extractor.forward(content)[0]
    a_styles = extractor.forward(style)[1:]
    xp = backend.xp
    generated = xp.clip(content + noise * (2 * backend.random(content.shape) - 1), 0, 1).astype(np.float32)

    def objective(outputs):
        j_content, d_content = content_cost(a_content, outputs[0])
        total, grads = alpha * j_content, [alpha * d_content]
        for a_style, a_generated, lam in zip(a_styles, outputs[1:], weights.values()):
            j_style, d_style = style_cost(a_style, a_generated)
            total, grads = total + beta * lam * j_style, grads + [beta * lam * d_style]
        return total, grads

    optimizer = optimizers.get(optimizer)
    costs = []
    for _ in range(steps):
        cost, d_image = value_and_input_gradient(extractor, generated, objective)
        optimizer.apply([generated], [d_image], ["generated_image"])
        xp.clip(generated, 0, 1, out=generated)
        costs.append(cost)
    costs = backend.to_numpy(xp.stack(costs)).tolist() if costs else []  # one copy to the host, at the end
    return backend.to_numpy(generated).reshape(shape), costs
