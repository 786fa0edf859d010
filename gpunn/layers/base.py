"""The Layer base class: the life of every gpunn layer.

1. ``__init__`` checks and stores the hyper-parameters (nothing is allocated);
2. ``build(input_shape)`` creates the weights once the input's shape is known
   (``input_shape`` is the shape of one sample, without the batch axis);
3. ``forward(x, training)`` computes the output and keeps in ``self`` what the
   backward pass will need (the "cache" of the course);
4. ``backward(dy)`` receives dL/dy, fills ``self.grads[name]`` = dL/dW for each
   weight, and returns dL/dx for the layer below. It never modifies ``dy`` (nor,
   with ``return_state``, the states' gradients), nor the ``x`` it cached.

In a model, padded time steps are masked (:mod:`gpunn.layers.masking`): a layer's
``forward`` that takes ``mask`` receives its input's mask, and ``compute_mask`` gives
its output's.

Weights are plain attributes (``self.kernel``, ``self.bias``) registered with
:meth:`add_weight`. A wrapper layer (``Bidirectional``, ``TimeDistributed``)
lists the layers it holds in ``self.sublayers``. An optimizer, a checkpoint or
``gradcheck`` finds every weight, the sublayers' too, through :meth:`weight_refs`.
"""

import itertools
import re
from collections import defaultdict

import numpy as np

import gpunn.backend as backend
from gpunn import initializers, regularizers

_name_counters = defaultdict(itertools.count)


def unique_name(base):
    """'dense', then 'dense_1', 'dense_2'...: Keras's default names, one counter per base name."""
    count = next(_name_counters[base])
    return base if count == 0 else f"{base}_{count}"


def _snake_case(name):
    """Keras's default layer names: 'Conv2D' -> 'conv2d', 'SimpleRNN' -> 'simple_rnn'."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


class Layer:
    """Base class of all layers.

    ``supports_masking``: the layer works time step by time step, so its output keeps its
    input's mask (see :meth:`compute_mask`).

    ``needs_input_grad`` is set to False by the model on its first layer during
    training: nothing uses dL/dX of the data, so a layer may skip computing it
    (Conv2D does: it saves a matrix product and a col2im per step).

    Args:
        input_shape: shape of one sample (no batch axis), for the first layer of a model.
        input_dim: the older Keras spelling of ``input_shape=(input_dim,)``.
        name: a unique name; by default the class name in snake case plus a counter.
        trainable: when False the optimizer leaves this layer's weights alone (from the next training step on).
    """

    supports_masking = False

    def __init__(self, input_shape=None, name=None, trainable=True, input_dim=None):
        if input_dim is not None:
            if input_shape is not None:
                raise ValueError(f"{type(self).__name__}: give input_shape or input_dim, not both; received "
                                 f"input_shape={input_shape!r} and input_dim={input_dim!r}")
            input_shape = (input_dim,)
        self.name = unique_name(_snake_case(type(self).__name__)) if name is None else name
        self.trainable = trainable
        self.input_shape = None if input_shape is None else tuple(None if d is None else int(d)  # None: any size
                                                                  for d in np.atleast_1d(input_shape))
        self.built = False
        self.needs_input_grad = True
        self.weight_names = []  # in creation order
        self.trainable_names = []
        self.sublayers = []
        self.regularizers = {}
        self.grads = {}
        self.grad_targets = {}  # where the trainer would like dL/dW written (see grad_out)
        self.inbound_nodes = []  # the calls of this layer in functional graphs (gpunn.models.graph)

    # --- lifecycle -------------------------------------------------------------
    def build(self, input_shape):
        """Create the weights for samples of ``input_shape``; layers without weights need not override."""
        self.input_shape = tuple(input_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        """The shape of one output sample; by default the same as the input's."""
        return tuple(input_shape)

    def forward(self, x, training=False):
        raise NotImplementedError

    def compute_mask(self, x, mask):
        """The mask of the output, from the first argument ``x`` and its ``mask`` (None: every step is real).

        By default the input's mask when the layer ``supports_masking``, else None: a layer that
        mixes time steps (Flatten) or drops the time axis no longer has padded steps."""
        return mask if self.supports_masking else None

    def backward(self, dy):
        raise NotImplementedError

    def validate_input(self, x):
        """Check the values of data fed to this layer (ids in range...); by default nothing to check.

        Models call it once per dataset, before the first batch, rather than on every
        forward pass: a check reads the values back from the device, which would make
        the GPU wait at every step."""

    def __call__(self, *args, training=False, **kwargs):
        """``layer(x)`` as in Keras: on arrays, build the layer if needed and run it; on symbolic tensors
        (from ``gpunn.Input``), record the call in a graph for ``gpunn.Model`` (see gpunn.models.graph).

        Host data (a NumPy array, a list) is moved to the backend first, as Keras converts
        its inputs; ``forward`` itself takes arrays already on the backend."""
        from gpunn.models import graph  # the graph needs the layers: imported when first called

        if graph.is_symbolic((args, kwargs)):
            return graph.call_symbolic(self, args, kwargs)
        arguments = {name: on_backend(value) for name, value in graph.bind(self, args, kwargs).items()}
        if not self.built:
            self.build_for(shapes_of(arguments))
        self.validate_input(next(iter(arguments.values())))
        return self.forward(**arguments, training=training)

    # --- calls in a graph: several arguments, several outputs ---------------------------------------
    # A call's arguments are named after the parameters of ``forward`` (``x``; ``inputs`` for a merge
    # layer; ``query``, ``value``... for attention), in shapes for these hooks, in arrays for forward.

    def build_for(self, shapes):
        """Build for a call whose arguments have these sample shapes; by default for the first argument's."""
        self.build(next(iter(shapes.values())))

    def output_shape_for(self, shapes):
        """The sample shape a call returns (a list of them for several outputs); by default from the first argument."""
        return self.compute_output_shape(next(iter(shapes.values())))

    def backward_call(self, dy, arguments):
        """{argument name: its gradient} for one call (``dy``: a list for several outputs). By default
        :meth:`backward` gives the first argument's; layers with several tensor arguments say more."""
        return {next(iter(arguments)): self.backward(dy)}

    @property
    def output(self):
        """The symbolic output of this layer's one call in a graph (Keras's ``layer.output``)."""
        outputs = self._only_call("output").outputs
        return outputs[0] if len(outputs) == 1 else outputs

    @property
    def input(self):
        """The symbolic input of this layer's one call in a graph (Keras's ``layer.input``)."""
        inputs = self._only_call("input").inputs
        return inputs[0] if len(inputs) == 1 else inputs

    def _only_call(self, what):
        if len(self.inbound_nodes) != 1:
            fix = "call it on an Input first" if not self.inbound_nodes else "keep the tensors its calls returned"
            raise AttributeError(f"Layer '{self.name}' has {len(self.inbound_nodes)} calls in graphs, so "
                                 f"layer.{what} is not one tensor: {fix}")
        return self.inbound_nodes[0]

    # --- weights ---------------------------------------------------------------
    def add_weight(self, name, shape, initializer="zeros", regularizer=None, trainable=True, dtype=np.float32):
        """Create ``self.<name>`` on the active backend and register it."""
        value = initializers.get(initializer)(shape, dtype)
        setattr(self, name, backend.to_device(value))
        self.weight_names.append(name)
        if trainable:
            self.trainable_names.append(name)
        regularizer = regularizers.get(regularizer)
        if regularizer is not None:
            self.regularizers[name] = regularizer
        return getattr(self, name)

    def weight_refs(self):
        """(layer, weight name) for every weight, this layer's then its sublayers', in a fixed order."""
        refs = [(self, n) for n in self.weight_names]
        for layer in self.sublayers:
            refs += layer.weight_refs()
        return refs

    def weight_keys(self):
        """Names for :meth:`weight_refs`: 'kernel', or 'forward_lstm/kernel' for a sublayer's."""
        return [self._key(owner, n) for owner, n in self.weight_refs()]

    def _key(self, owner, n):
        return n if owner is self else f"{owner.name}/{n}"

    def _trainable_refs(self):
        if not self.trainable:
            return []
        return [(owner, n) for owner, n in self.weight_refs() if owner.trainable and n in owner.trainable_names]

    @property
    def trainable_weights(self):
        """The arrays the optimizer updates (empty when ``trainable`` is False)."""
        return [getattr(owner, n) for owner, n in self._trainable_refs()]

    @property
    def trainable_keys(self):
        """The names of :attr:`trainable_weights`, as in :meth:`weight_keys`."""
        return [self._key(owner, n) for owner, n in self._trainable_refs()]

    def grad_out(self, name):
        """Where backward may write dL/d(weight ``name``): the trainer's buffer for it (a view of every gradient in
        one piece, :class:`gpunn.utils.flat.FlatWeights`), or None for a new array. The offer is taken once, so
        a layer called twice in a step writes its second gradient elsewhere. (So ``layer.grads`` of a trained
        model are views of that buffer, overwritten by the next step: copy them to keep them.)"""
        return self.grad_targets.pop(name, None)

    @property
    def trainable_grads(self):
        return [owner.grads[n] for owner, n in self._trainable_refs()]

    def get_weights(self):
        """Copies of all weights as NumPy arrays, in the order of :meth:`weight_refs`.

        Copies, as in Keras: a snapshot (``best = model.get_weights()``) stays as it was while training goes on.
        """
        return [host_copy(getattr(owner, n)) for owner, n in self.weight_refs()]

    def set_weights(self, weights):
        """Replace the weights by copies of NumPy arrays of the same shapes (as from :meth:`get_weights`)."""
        weights, refs = list(weights), self.weight_refs()
        if len(weights) != len(refs):
            raise ValueError(f"Layer '{self.name}' has {len(refs)} weights {self.weight_keys()}; "
                             f"received {len(weights)} arrays")
        for (owner, n), key, w in zip(refs, self.weight_keys(), weights):
            old = getattr(owner, n)
            w = np.asarray(w)
            if w.shape != old.shape:
                raise ValueError(f"Layer '{self.name}' weight '{key}' has shape {old.shape}; received shape {w.shape}")
        for (owner, n), w in zip(refs, weights):
            setattr(owner, n, backend.xp.array(w, dtype=getattr(owner, n).dtype))  # a copy: training leaves w alone

    def count_params(self):
        return int(sum(getattr(owner, n).size for owner, n in self.weight_refs()))

    def cast(self, dtype):
        """Convert every weight to ``dtype`` (float64 for gradient checking)."""
        for owner, n in self.weight_refs():
            setattr(owner, n, getattr(owner, n).astype(dtype))
        return self

    # --- regularization ------------------------------------------------------
    def regularization_loss(self):
        """Sum of this layer's (and its sublayers') weight penalties (0 when none)."""
        own = sum(reg(getattr(self, n)) for n, reg in self.regularizers.items())
        return own + sum(layer.regularization_loss() for layer in self.sublayers)

    def add_regularization_grads(self):
        """dW += d penalty / dW, called after backward."""
        for n, reg in self.regularizers.items():
            if n in self.grads:  # a layer no loss reached has no gradient to add to
                self.grads[n] = self.grads[n] + reg.gradient(getattr(self, n))
        for layer in self.sublayers:
            layer.add_regularization_grads()

    # --- configuration ---------------------------------------------------------
    def get_config(self):
        """The constructor arguments that rebuild this layer (JSON-friendly)."""
        config = {"name": self.name, "trainable": self.trainable}
        if self.input_shape is not None:
            config["input_shape"] = list(self.input_shape)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} '{self.name}'>"


def on_backend(x):
    """A call's argument on the active backend: NumPy arrays and lists of numbers are moved there, lists of
    arrays array by array; device arrays, and anything else (None, True, 'causal'), stay as they are."""
    if isinstance(x, np.ndarray):
        return backend.to_device(x)
    if isinstance(x, (list, tuple)) and x:
        if all(v is None or hasattr(v, "shape") for v in x):
            return type(x)(on_backend(v) for v in x)
        if all(isinstance(v, (int, float, list, tuple, np.number)) for v in x):
            return backend.to_device(np.asarray(x))
    return x


def shapes_of(arguments):
    """A call's arguments with each array replaced by the shape of one sample (``shape[1:]``)."""
    def shape(value):
        if hasattr(value, "shape") and not isinstance(value, np.generic):
            return tuple(value.shape[1:])
        if isinstance(value, (list, tuple)):
            return [shape(v) for v in value]
        return value

    return {name: shape(value) for name, value in arguments.items()}


def host_copy(a):
    """A NumPy copy of ``a``: CuPy's transfer to the host already copies; a NumPy array is copied here."""
    return a.copy() if isinstance(a, np.ndarray) else backend.to_numpy(a)


def check_rank(layer, x, rank, what):
    """Raise a clear error unless ``x`` has ``rank`` dimensions (batch included)."""
    if x.ndim != rank:
        raise ValueError(f"Layer '{layer.name}' expects {rank}-D input {what}; received an array of shape {tuple(x.shape)}")


def layer_config(layer):
    """How a layer is written into a model's architecture: its class name and constructor arguments."""
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def as_layer(obj):
    """A layer from itself or from its :func:`layer_config` form (as wrappers receive it when a model loads)."""
    if isinstance(obj, Layer):
        return obj
    from gpunn.saving import layer_from_config  # saving imports the layers: import it when needed

    return layer_from_config(obj)


def config_of(obj):
    """A JSON-friendly form of an initializer/regularizer given as a name, a dict or an object."""
    return obj if obj is None or isinstance(obj, (str, dict)) else obj.get_config()
