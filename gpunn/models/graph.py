"""The symbolic graph of a functional model: ``Input``, symbolic tensors, and the calls between them.

    x_in = Input(shape=(1, 28, 28))     # a symbolic tensor: a shape, no values
    y = Conv2D(32, 3)(x_in)             # calling a layer on it builds the layer and records a Node
    model = Model(x_in, y)              # the nodes between the inputs and the outputs, in order

A **Node** is one call of a layer: the layer, its arguments (by parameter name, with
symbolic tensors where arrays will go) and the symbolic tensors it returns. Nothing
is computed when the graph is built: only shapes, which every layer works out in
``compute_output_shape``. :func:`trace` walks back from the outputs to the inputs
and returns the nodes in an order where every node comes after the nodes it reads.

Shared layers: a layer called twice has two nodes and one set of weights. Each call
leaves its forward cache in the layer (``self.x``...), so the model keeps a
:func:`snapshot` of the layer's state after each node's forward pass and puts it
back (:func:`restore`) before that node's backward pass. That is why a layer's
``forward`` must keep its cache in attributes it assigns, as every gpunn layer does.
"""

import inspect
import itertools

import numpy as np

from gpunn.activations import ActivationFunction
from gpunn.layers.base import Layer


class SymbolicTensor:
    """What ``Input`` and a layer called on symbolic tensors return: a shape (batch axis None) and where it comes from.

    ``node`` is the call that produced it and ``index`` which of that call's outputs it is.
    """

    _ids = itertools.count()

    def __init__(self, shape, node, index, dtype="float32"):
        self.shape = (None,) + tuple(shape)
        self.node, self.index, self.dtype = node, index, dtype
        self.id = next(self._ids)

    @property
    def sample_shape(self):
        """The shape of one sample: ``shape`` without its batch axis."""
        return self.shape[1:]

    @property
    def name(self):
        layer = self.node.layer
        return layer.name if len(self.node.outputs) == 1 else f"{layer.name}:{self.index}"

    def __repr__(self):
        return f"<SymbolicTensor shape={self.shape} from '{self.name}'>"

    def __array__(self, *args, **kwargs):
        raise TypeError(f"{self!r} is symbolic: it has a shape but no values. Build a Model from it "
                        f"(gpunn.Model(inputs, outputs)) and call the model on arrays")


class InputLayer(Layer):
    """The layer behind ``Input``: it has no weights and no computation; its one node makes the input tensor."""

    def __init__(self, shape, name=None, dtype="float32"):
        super().__init__(input_shape=None, name=name)
        self.shape = tuple(None if d is None else int(d) for d in shape)
        self.input_shape, self.dtype, self.built = self.shape, dtype, True
        node = Node(self, {}, [self.shape])
        self.tensor = node.outputs[0]

    def get_config(self):
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


def Input(shape, name=None, dtype="float32"):  # noqa: N802 -- Keras's spelling
    """A symbolic input: ``Input(shape=(1, 28, 28))`` for samples of that shape (the batch axis is left out).

    A ``None`` in ``shape`` is a size that may change from batch to batch (a sequence length).
    """
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not all(d is None or (isinstance(d, (int, np.integer)) and d > 0)
                                                       for d in shape):
        raise ValueError(f"Input: shape must be a tuple of positive sizes (or None), without the batch axis; "
                         f"received shape={shape!r}")
    return InputLayer(shape, name=name, dtype=dtype).tensor


class Node:
    """One call of ``layer``: ``arguments`` by parameter name (symbolic tensors where arrays go), ``outputs``."""

    def __init__(self, layer, arguments, output_shapes):
        self.layer, self.arguments = layer, arguments
        self.inputs = list(tensors_in(arguments))
        self.outputs = [SymbolicTensor(shape, self, i) for i, shape in enumerate(output_shapes)]
        layer.inbound_nodes.append(self)

    def __repr__(self):
        return f"<Node of '{self.layer.name}'>"


def tensors_in(structure):
    """The symbolic tensors inside nested lists, tuples and dicts, in order."""
    if isinstance(structure, SymbolicTensor):
        yield structure
    elif isinstance(structure, (list, tuple)):
        for item in structure:
            yield from tensors_in(item)
    elif isinstance(structure, dict):
        for item in structure.values():
            yield from tensors_in(item)


def substitute(structure, value_of):
    """The same nesting with each symbolic tensor replaced by ``value_of(tensor)`` (None stays None)."""
    if isinstance(structure, SymbolicTensor):
        return value_of(structure)
    if isinstance(structure, (list, tuple)):
        return type(structure)(substitute(item, value_of) for item in structure)
    if isinstance(structure, dict):
        return {key: substitute(item, value_of) for key, item in structure.items()}
    return structure


def is_symbolic(structure):
    return next(tensors_in(structure), None) is not None


def bind(layer, args, kwargs):
    """The call's arguments by parameter name of ``layer.forward`` (``training`` left out)."""
    try:
        bound = inspect.signature(layer.forward).bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(f"Layer '{layer.name}' ({type(layer).__name__}) cannot be called this way: {e}") from None
    return {name: value for name, value in bound.arguments.items() if name != "training"}


def call_symbolic(layer, args, kwargs):
    """``layer(...)`` on symbolic tensors: build the layer for their shapes and record the call as a Node."""
    arguments = bind(layer, args, kwargs)
    shapes = substitute(arguments, lambda t: t.sample_shape)
    first = next(iter(shapes.values()))
    if not layer.built:
        layer.build_for(shapes)
    elif isinstance(first, tuple) and isinstance(layer.input_shape, tuple) and not fits(layer.input_shape, first):
        raise ValueError(f"Layer '{layer.name}' was built for samples of shape {tuple(layer.input_shape)} but "
                         f"receives samples of shape {first}")
    output = layer.output_shape_for(shapes)
    node = Node(layer, arguments, output if isinstance(output, list) else [output])
    return node.outputs if isinstance(output, list) else node.outputs[0]


def fits(expected, given):
    """Whether samples of shape ``given`` fit where ``expected`` is declared (None: any size)."""
    return len(expected) == len(given) and all(e is None or g is None or e == g for e, g in zip(expected, given))


def trace(inputs, outputs):
    """The nodes between ``inputs`` and ``outputs``, each after the nodes it reads; clear errors for bad graphs."""
    order, state = [], {}  # node -> 'visiting' or 'done'

    def visit(node, path):
        if state.get(node) == "done":
            return
        if state.get(node) == "visiting":  # symbolic calls cannot make one, but a hand-made graph could
            raise ValueError(f"the graph has a cycle through layer '{node.layer.name}'")
        state[node] = "visiting"
        if isinstance(node.layer, InputLayer) and not any(node.outputs[0] is t for t in inputs):
            raise ValueError(f"output '{path[0].name}' depends on input '{node.layer.name}', which is not among the "
                             f"model's inputs {[t.name for t in inputs]}: pass it in Model(inputs=[...])")
        for tensor in node.inputs:
            visit(tensor.node, path)
        state[node] = "done"
        order.append(node)

    for tensor in outputs:
        visit(tensor.node, [tensor])
    used = {id(t) for node in order for t in node.inputs} | {id(t) for t in outputs}
    unused = [t.name for t in inputs if id(t) not in used]
    if unused:
        raise ValueError(f"input(s) {unused} are not used to compute any output; leave them out of Model(inputs=...)")
    return order


# --- per-call state of shared layers -----------------------------------------------------------


def _stateful_parts(obj, seen):
    """``obj`` and every layer and activation it holds (sublayers, wrapped layers, a nested model's layers)."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    yield obj
    for value in vars(obj).values():
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(item, (Layer, ActivationFunction)):
                yield from _stateful_parts(item, seen)


def snapshot(layer):
    """What ``layer`` (and everything it holds) stored in its attributes: to put back with :func:`restore`."""
    return [(part, dict(vars(part))) for part in _stateful_parts(layer, set())]


def restore(saved):
    for part, attributes in saved:
        vars(part).clear()
        vars(part).update(attributes)
