"""Model: layers wired into a graph -- ResNet's shortcuts, Inception's branches, Siamese twins, several heads.

    x_in = Input(shape=(1, 28, 28))
    y = Conv2D(32, 3, padding="same", activation="relu")(x_in)
    shortcut = Conv2D(32, 1)(x_in)                             # a second path from the same input
    y = Activation("relu")(Add()([y, shortcut]))               # a[l+2] = g(z[l+2] + a[l])
    model = Model(inputs=x_in, outputs=Dense(10, activation="softmax")(Flatten()(y)))

Forward runs the nodes of :mod:`gpunn.models.graph` in order, each layer on the arrays its
inputs hold. Backward runs them in reverse, the chain rule node by node:

- a tensor read by several layers (fan-out) receives the **sum** of their gradients;
- a layer called several times (shared) gets the **sum** over its calls of each weight's
  gradient, and each call's backward pass sees that call's own forward cache (see graph.py).

A Model is itself a layer: called on symbolic tensors it becomes one node of a bigger
graph (a Siamese network calls one encoder model on two inputs). Training, evaluation
and prediction are in :mod:`gpunn.models.training`; :class:`gpunn.Sequential` is the
special case of a chain.
"""

import gpunn.backend as backend
from gpunn.layers import masking
from gpunn.layers.base import Layer, unique_name
from gpunn.models import graph
from gpunn.models.graph import InputLayer, SymbolicTensor, restore, snapshot, substitute
from gpunn.models.summary import summary as print_summary
from gpunn.models.training import Trainer


class Model(Trainer, Layer):
    """A model from its inputs and outputs: ``Model(inputs, outputs, name=None)``.

    ``inputs`` and ``outputs`` are a symbolic tensor, a list of them or a dict of them by name;
    data and targets are then given in the same form (an array, a list, a dict).
    """

    def __init__(self, inputs, outputs, name=None, **kwargs):
        Layer.__init__(self, name=name or unique_name("functional"), **kwargs)
        self._init_training()
        self._wire(inputs, outputs)

    def _wire(self, inputs, outputs):
        """Trace the graph between ``inputs`` and ``outputs``: the nodes in order, the layers, what is shared."""
        self._input_form, self.inputs = _flatten("inputs", inputs)
        self._output_form, self.outputs = _flatten("outputs", outputs)
        self.nodes = graph.trace(self.inputs, self.outputs)
        self.layers = list(dict.fromkeys(node.layer for node in self.nodes))
        names = [layer.name for layer in self.layers]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"Model '{self.name}': layer name(s) {repeated} are used by more than one layer; layer "
                             f"names must be unique in a model (name=... on the layer)")
        self.sublayers = [layer for layer in self.layers if not isinstance(layer, InputLayer)]
        counts = {}
        for node in self.nodes:
            counts[node.layer] = counts.get(node.layer, 0) + 1
        self.shared = {layer for layer, n in counts.items() if n > 1}
        self.input_names = list(self._input_form) if isinstance(self._input_form, dict) else \
            [t.node.layer.name for t in self.inputs]
        self.output_names = list(self._output_form) if isinstance(self._output_form, dict) else \
            [t.node.layer.name for t in self.outputs]
        self.built = True

    # --- shapes ----------------------------------------------------------------------------
    @property
    def input_shape(self):
        shapes = [t.sample_shape for t in self.inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @input_shape.setter
    def input_shape(self, value):  # Layer.__init__ sets it; a Model's comes from its inputs
        pass

    @property
    def output_shape(self):
        shapes = [t.sample_shape for t in self.outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    def build_for(self, shapes):
        given = [tuple(s) for s in _as_list(next(iter(shapes.values())))]
        expected = [tuple(t.sample_shape) for t in self.inputs]
        fits = len(given) == len(expected) and all(len(g) == len(e) and all(a is None or b is None or a == b
                                                                            for a, b in zip(g, e))
                                                   for g, e in zip(given, expected))
        if not fits:
            raise ValueError(f"Model '{self.name}' takes samples of shape(s) {expected}; it was called on {given}")

    def output_shape_for(self, shapes):
        shapes = [t.sample_shape for t in self.outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    # --- forward and backward ---------------------------------------------------------------
    def forward(self, inputs, mask=None, training=False):
        """The outputs for ``inputs`` (an array, or a list or dict of them for several inputs).

        Each tensor's mask travels beside its values (see :mod:`gpunn.layers.masking`); ``mask``
        holds the inputs' masks when this model is a layer of a bigger one. The outputs' masks are
        left in ``output_masks`` for the loss and the metrics."""
        values = {t.id: x for t, x in zip(self.inputs, self._flatten_data(inputs, "inputs"))}
        masks = {t.id: m for t, m in zip(self.inputs, [None] * len(self.inputs) if mask is None else
                                         self._flatten_data(mask, "inputs", allow_none=True))}
        saved = {}
        for node in self.nodes:
            if isinstance(node.layer, InputLayer):
                continue
            arguments = substitute(node.arguments, lambda t: values[t.id])
            given, first_mask = masking.masks_to_give(node.layer, node.arguments,
                                                      lambda a: substitute(a, lambda t: masks.get(t.id)),
                                                      lambda a: substitute(a, lambda t: values[t.id]))
            out = node.layer.forward(**arguments, **given, training=training)
            outs = out if len(node.outputs) > 1 else [out]
            out_masks = masking.output_masks(node.layer, next(iter(arguments.values())), first_mask, len(outs))
            for tensor, value, out_mask in zip(node.outputs, outs, out_masks):
                values[tensor.id], masks[tensor.id] = value, out_mask
            if node.layer in self.shared:
                saved[node] = snapshot(node.layer)
        self._values, self._saved = values, saved  # assigned, not updated: a shared model keeps one set per call
        self.output_masks = [masks[t.id] for t in self.outputs]
        return self._pack([values[t.id] for t in self.outputs])

    def compute_mask(self, x, mask):
        """As a layer of a bigger model: its outputs' masks, from the forward pass just run."""
        return self.output_masks if len(self.outputs) > 1 else self.output_masks[0]

    def backward(self, dy):
        """Backpropagate dL/d(outputs) through the graph (weight penalties included); returns dL/d(inputs).

        A layer no loss reaches (under an output without a loss) is left without gradients, and the
        optimizer leaves its weights alone."""
        for owner, n in self.weight_refs():
            owner.grads.pop(n, None)
        dx = self._backward(dy)
        for layer in self.sublayers:
            layer.add_regularization_grads()
        return dx

    def backward_call(self, dy, arguments):
        """As one node of a bigger graph: the gradients of this call's argument (penalties are the outer model's)."""
        return {next(iter(arguments)): self._backward(dy)}

    def _backward(self, dy):
        grads = {}

        def receive(tensor, d):
            grads[tensor.id] = d if tensor.id not in grads else grads[tensor.id] + d

        for tensor, d in zip(self.outputs, self._flatten_data(dy, "gradients", allow_none=True)):
            if d is not None:
                receive(tensor, d)
        totals = {}  # (owner, weight) -> the sum over a shared layer's calls
        for node in reversed(self.nodes):
            if isinstance(node.layer, InputLayer) or not any(t.id in grads for t in node.outputs):
                continue
            douts = [grads[t.id] if t.id in grads else backend.get_array_module(self._values[t.id]).zeros_like(
                self._values[t.id]) for t in node.outputs]
            layer = node.layer
            if layer in self.shared:
                restore(self._saved[node])
            layer.needs_input_grad = self.needs_input_grad or any(not _is_input(t) for t in node.inputs)
            arg_grads = layer.backward_call(douts if len(douts) > 1 else douts[0], node.arguments)
            if layer in self.shared:
                for owner, n in layer.weight_refs():
                    if n in owner.grads:
                        key = (id(owner), n)
                        totals[key] = (owner, n, owner.grads[n] + totals[key][2] if key in totals else owner.grads[n])
            for name, structure in node.arguments.items():
                _pair(structure, arg_grads.get(name), receive)
        for owner, n, total in totals.values():
            owner.grads[n] = total
        return self._pack([grads.get(t.id) for t in self.inputs], inputs=True)

    # --- the data's form: an array, a list or a dict ---------------------------------------------
    def _flatten_data(self, data, what, allow_none=False):
        """``data`` as a list in the order of the model's inputs (or outputs), from an array, a list or a dict."""
        tensors = self.inputs if what == "inputs" else self.outputs
        names = self.input_names if what == "inputs" else self.output_names
        if isinstance(data, dict):
            missing = [n for n in names if n not in data]
            if missing and not allow_none:
                raise ValueError(f"Model '{self.name}': {what} given as a dict need the keys {names}; missing {missing}")
            return [data.get(n) for n in names]
        if isinstance(data, (list, tuple)) and all(d is None or hasattr(d, "shape") for d in data) and (
                len(tensors) > 1 or len(data) == 1):
            if len(data) != len(tensors):
                raise ValueError(f"Model '{self.name}' has {len(tensors)} {what} {names}; received a list of {len(data)}")
            return list(data)
        if len(tensors) != 1:
            raise ValueError(f"Model '{self.name}' has {len(tensors)} {what} {names}: give a list or a dict of "
                             f"{len(tensors)} arrays")
        return [data]

    def _pack(self, values, inputs=False):
        """Values in the order of the model's outputs (or inputs) given back in the form they were declared in."""
        form = self._input_form if inputs else self._output_form
        if isinstance(form, dict):
            return dict(zip(form, values))
        return list(values) if isinstance(form, list) else values[0]

    # --- layers and weights -----------------------------------------------------------------------
    def get_layer(self, name=None, index=None):
        """A layer of the model by name, or by position in :attr:`layers`."""
        if index is not None:
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"Model '{self.name}' has no layer named {name!r}; its layers: "
                         f"{[layer.name for layer in self.layers]}")

    def weight_keys(self):
        """'<layer>/<weight>' for every weight, through nested models ('encoder/dense/kernel')."""
        return [f"{layer.name}/{key}" for layer in self.sublayers for key in layer.weight_keys()]

    def _trainable_refs(self):
        return [ref for layer in self.sublayers if self.trainable for ref in layer._trainable_refs()]

    @property
    def trainable_keys(self):
        return [f"{layer.name}/{key}" for layer in self.sublayers if self.trainable for key in layer.trainable_keys]

    # --- saving ---------------------------------------------------------------------------------
    def save(self, path, include_optimizer=True):
        """Write architecture, weights, compile settings, epoch counter and optimizer state to one file.

        Reopen with :func:`gpunn.load_model`, on either backend.
        """
        from gpunn import saving

        saving.save_model(self, path, include_optimizer)

    def save_weights(self, path):
        from gpunn import saving

        saving.save_weights(self, path)

    def load_weights(self, path):
        """Load weights saved by :meth:`save_weights` or :meth:`save`, checked layer by layer."""
        from gpunn import saving

        saving.load_weights(self, path)

    def summary(self, print_fn=print):
        """A table of the layers, their output shapes, parameter counts and (for a graph) what each is connected to."""
        print_summary(self, print_fn)

    # --- configuration ------------------------------------------------------------------------------
    def get_config(self):
        """The graph as JSON-friendly data: every layer's config, then every call in order (see gpunn.saving)."""
        from gpunn.models.serial import graph_config

        return graph_config(self)

    @classmethod
    def from_config(cls, config):
        from gpunn.models.serial import graph_from_config

        return graph_from_config(cls, config)


def _flatten(what, structure):
    """(the form to give data back in, the symbolic tensors in order) for Model(inputs=..., outputs=...)."""
    if isinstance(structure, SymbolicTensor):
        return None, [structure]
    if isinstance(structure, dict) and all(isinstance(t, SymbolicTensor) for t in structure.values()) and structure:
        return {k: None for k in structure}, list(structure.values())
    if isinstance(structure, (list, tuple)) and structure and all(isinstance(t, SymbolicTensor) for t in structure):
        return [None] * len(structure), list(structure)
    raise TypeError(f"Model({what}=...) takes symbolic tensors (from Input(...) and layers called on them): one, a "
                    f"list or a dict of them; received {structure!r}")


def _is_input(tensor):
    return isinstance(tensor.node.layer, InputLayer)


def _as_list(value):
    return value if isinstance(value, list) and value and isinstance(value[0], (tuple, list)) else [value]


def _pair(structure, grad, receive):
    """Hand each symbolic tensor in ``structure`` its gradient from the same place in ``grad``."""
    if grad is None:
        return
    if isinstance(structure, SymbolicTensor):
        receive(structure, grad)
    elif isinstance(structure, (list, tuple)):
        for item, g in zip(structure, grad):
            _pair(item, g, receive)
    elif isinstance(structure, dict):
        for key, item in structure.items():
            _pair(item, grad.get(key), receive)

