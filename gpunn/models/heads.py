"""What ``compile`` sets up for each output of a model: its loss, the loss's weight, its metrics.

A model with several outputs (multi-task learning: a class and a box; style transfer: several
feature maps) minimises one number, the weighted sum of its outputs' losses::

    J = sum_o  w_o * J_o(y_pred_o, y_true_o)  + weight penalties,       dJ/dy_pred_o = w_o * dJ_o/dy_pred_o

``loss`` and ``metrics`` are given as in Keras: one for every output, a list in the order of the
outputs, or a dict by output name (``None`` for an output trained by nothing). The History then
names each part after its output: ``loss``, ``dense_1_loss``, ``dense_1_accuracy``, ``val_...``.

When an output comes straight from a layer whose activation is softmax (or sigmoid) and its
loss is the matching cross-entropy, the two are fused: the loss reads the logits and its
gradient dZ = (A - Y) / m goes directly to that layer (see :mod:`gpunn.losses`).
"""

from gpunn import losses as losses_module
from gpunn import metrics as metrics_module


class Head:
    """One output's share of training: ``loss`` (or None), ``weight``, ``metrics`` [(name, metric)], ``fused``."""

    def __init__(self, name, loss, weight, metric_specs):
        self.name, self.loss, self.weight, self.metric_specs = name, loss, float(weight), metric_specs
        self.metrics, self.fused = [], None

    def __repr__(self):
        return f"<Head '{self.name}': {self.loss.name if self.loss else None} x {self.weight}>"


def per_output(model, what, value, default=None):
    """``value`` (one for all, a list in output order, or a dict by output name) as one entry per output."""
    names = model.output_names
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ValueError(f"compile: {what} names output(s) {unknown}, but the outputs of model '{model.name}' are "
                             f"{names}")
        return [value.get(n, default) for n in names]
    if isinstance(value, (list, tuple)) and len(names) > 1 and (what != "metrics" or any(
            isinstance(v, (list, tuple)) or v is None for v in value)):
        if len(value) != len(names):
            raise ValueError(f"compile: {what} is a list of {len(value)}, but model '{model.name}' has {len(names)} "
                             f"outputs {names}: give one per output, or a dict by output name")
        return list(value)
    return [value] * len(names)


def make_heads(model, loss, loss_weights, metrics):
    """The :class:`Head` of every output, every name checked now rather than mid-training."""
    if loss is None:
        raise ValueError("compile needs a loss, e.g. loss='categorical_crossentropy'; valid losses are: "
                         + ", ".join(losses_module.LOSSES))
    losses = [None if spec is None else losses_module.get(spec) for spec in per_output(model, "loss", loss)]
    if all(loss is None for loss in losses):
        raise ValueError(f"compile: no output of model '{model.name}' has a loss; give at least one")
    weights = per_output(model, "loss_weights", 1.0 if loss_weights is None else loss_weights, default=1.0)
    specs = per_output(model, "metrics", metrics or [], default=[])
    heads = []
    for name, loss_o, weight, spec in zip(model.output_names, losses, weights, specs):
        spec = [] if spec is None else [spec] if isinstance(spec, str) else list(spec)
        for metric in spec:  # an unknown metric fails here
            metrics_module.get(metric, loss_o or losses_module.get("mse"), (2,))
        heads.append(Head(name, loss_o, weight, spec))
    return heads


def resolve(model, heads):
    """Once the output shapes are known: each head's metric objects, and which losses fuse with their activation."""
    consumed = {id(t) for node in model.nodes for t in node.inputs}
    for head, tensor in zip(heads, model.outputs):
        stand_in = head.loss or losses_module.get("mse")
        head.metrics = [metrics_module.get(m, stand_in, tensor.sample_shape) for m in head.metric_specs]
        if head.fused is not None:
            head.fused.fused = False
        head.fused = None
        node = tensor.node
        activation = getattr(node.layer, "activation", None)
        if (head.loss is not None and activation is not None and activation.name == head.loss.fuses_with
                and len(node.outputs) == 1 and node.layer not in model.shared and id(tensor) not in consumed):
            activation.fused = True  # the loss sends dL/dZ, which the activation passes through unchanged
            head.fused = activation


def log_names(model, heads):
    """The names of what an epoch reports, in Keras's order: the loss, each output's loss, each output's metrics."""
    if len(heads) == 1:
        return ["loss"] + [name for name, _ in heads[0].metrics]
    return (["loss"] + [f"{h.name}_loss" for h in heads if h.loss is not None]
            + [f"{h.name}_{name}" for h in heads for name, _ in h.metrics])
