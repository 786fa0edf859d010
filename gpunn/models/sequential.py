"""Sequential: a stack of layers, each reading the one before -- the special case of a graph that is a chain.

    model = Sequential([Dense(64, activation="relu", input_shape=(784,)), Dense(10, activation="softmax")])

Once the input shape is known (``input_shape`` on the first layer, or the data given to
``fit``/``predict``), ``build`` wires the layers into a graph, ``Input -> layer 1 -> ... ->
layer n``, and from then on a Sequential is a :class:`gpunn.Model` like any other: one
training loop, one save format, one summary.
"""

from gpunn.layers.base import Layer, layer_config, unique_name
from gpunn.models import heads as heads_module
from gpunn.models.functional import Model
from gpunn.models.graph import Input

REMOVED_METHODS = {
    "fit_generator": "fit takes a generator or a Sequence/PyDataset itself: "
                     "model.fit(generator, steps_per_epoch=..., epochs=...)",
    "evaluate_generator": "evaluate takes a generator or a Sequence/PyDataset itself: "
                          "model.evaluate(generator, steps=...)",
    "predict_generator": "predict takes a generator or a Sequence/PyDataset itself: model.predict(generator, steps=...)",
    "predict_classes": "write model.predict(x).argmax(axis=-1) for a softmax output, "
                       "(model.predict(x) > 0.5).astype(int) for a sigmoid one",
    "predict_proba": "model.predict(x) gives the probabilities",
}


class Sequential(Model):
    """A linear stack of layers.

    Example:
        >>> model = Sequential()
        >>> model.add(Dense(64, activation="relu", input_shape=(784,)))
        >>> model.add(Dense(10, activation="softmax"))
        >>> model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        >>> history = model.fit(x_train, y_train, batch_size=128, epochs=5, validation_split=0.1)
    """

    def __init__(self, layers=None, name=None, **kwargs):
        Layer.__init__(self, name=name or unique_name("sequential"), **kwargs)
        self.layers, self.sublayers, self.nodes, self.built = [], [], [], False
        self._init_training()
        for layer in layers or []:
            self.add(layer)

    def add(self, layer):
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expects a gpunn layer; received {layer!r}")
        if any(existing.name == layer.name for existing in self.layers):
            raise ValueError(f"Sequential '{self.name}' already has a layer named '{layer.name}'; layer names must be unique")
        self.layers.append(layer)
        self.built = False
        if self.layers[0].input_shape is not None:  # the input shape is known: build now, as Keras does
            try:
                self.build()
            except ValueError:
                self.layers.pop()  # a layer that cannot take the shape it would receive is not added
                if self.layers:
                    self.build()
                raise

    def build(self, input_shape=None):
        """Wire the layers into a chain for samples of ``input_shape``, creating every layer's weights."""
        if not self.layers:
            raise ValueError(f"Sequential '{self.name}' has no layers; add some before building or training it")
        shape = input_shape or self.layers[0].input_shape
        if shape is None:
            raise ValueError(f"Sequential '{self.name}' does not know its input shape: give the first layer "
                             f"input_shape=... or call fit/predict, which infer it from the data")
        for node in self.nodes:  # a rebuild replaces the chain made before
            if node in node.layer.inbound_nodes:
                node.layer.inbound_nodes.remove(node)
        x = y = Input(shape, name=f"{self.name}_input")
        for layer in self.layers:
            y = layer(y)
        layers = self.layers
        self._wire(x, y)
        self.layers = layers  # a Sequential's layers are the ones added (Keras leaves the InputLayer out)
        if self._compile_args is not None:
            heads_module.resolve(self, self.heads)

    @property
    def input_shape(self):
        if self.built:
            return self.inputs[0].sample_shape
        return self.layers[0].input_shape if self.layers else None

    @input_shape.setter
    def input_shape(self, value):
        pass

    @property
    def output_shape(self):
        if not self.built:
            self.build()
        return self.outputs[0].sample_shape

    @property
    def output_names(self):
        return [self.layers[-1].name] if self.layers else []

    @output_names.setter
    def output_names(self, value):
        pass

    def __getattr__(self, name):
        """Only reached for a missing attribute: Keras methods that are gone say what to write instead."""
        if name in REMOVED_METHODS:
            raise AttributeError(f"{type(self).__name__}.{name} was removed from Keras (2.6) and gpunn does not have "
                                 f"it: {REMOVED_METHODS[name]}")
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    # --- saving ----------------------------------------------------------------------
    def get_config(self):
        """The architecture as JSON-friendly data: each layer's class name and config."""
        return {"name": self.name, "layers": [layer_config(layer) for layer in self.layers]}

    @classmethod
    def from_config(cls, config):
        from gpunn.saving import layer_from_config

        return cls([layer_from_config(entry) for entry in config["layers"]], name=config.get("name"))
