"""Layers that wrap another layer: Bidirectional and TimeDistributed."""

import gpunn.backend as backend
from gpunn.layers.base import Layer, as_layer, check_rank, layer_config

MERGE_MODES = ("concat", "sum", "mul", "ave")


class Bidirectional(Layer):
    """Runs a recurrent layer forwards and a copy of it backwards, and merges the two outputs.

    With return_sequences, the backward run's outputs are put back in time order
    before merging, so output t sees the whole sequence: x_1..x_t from the
    forward run and x_t..x_T from the backward one.

    Args:
        layer: a SimpleRNN, GRU or LSTM.
        merge_mode: 'concat' (default), 'sum', 'mul' or 'ave'.
    """

    supports_masking = True  # the output keeps the input's mask (gpunn.layers.masking)

    def __init__(self, layer, merge_mode="concat", **kwargs):
        layer = as_layer(layer)
        if merge_mode not in MERGE_MODES:
            raise ValueError(f"Bidirectional: merge_mode must be one of {', '.join(MERGE_MODES)}; "
                             f"received merge_mode={merge_mode!r}")
        if getattr(layer, "return_state", False):
            raise ValueError("Bidirectional does not support return_state=True in gpunn")
        kwargs.setdefault("input_shape", layer.input_shape)
        super().__init__(**kwargs)
        self.merge_mode = merge_mode
        config = layer.get_config()
        config.pop("input_shape", None)
        self.forward_layer = type(layer)(**{**config, "name": f"forward_{layer.name}"})
        self.backward_layer = type(layer)(**{**config, "name": f"backward_{layer.name}",
                                             "go_backwards": not layer.go_backwards})
        self.sublayers = [self.forward_layer, self.backward_layer]

    def build(self, input_shape):
        super().build(input_shape)
        for layer in self.sublayers:
            layer.build(input_shape)

    def compute_output_shape(self, input_shape):
        shape = self.forward_layer.compute_output_shape(input_shape)
        return shape[:-1] + (2 * shape[-1],) if self.merge_mode == "concat" else shape

    def compute_mask(self, x, mask):
        return self.forward_layer.compute_mask(x, mask)

    def forward(self, x, mask=None, training=False):
        """Both runs skip the padded steps ``mask`` marks (the backward run reads them in reverse)."""
        xp = backend.get_array_module(x)
        self.y_fwd = self.forward_layer.forward(x, mask=mask, training=training)
        self.y_bwd = self.backward_layer.forward(x, mask=mask, training=training)
        if self.forward_layer.return_sequences:
            self.y_bwd = self.y_bwd[:, ::-1]
        if self.merge_mode == "concat":
            return xp.concatenate([self.y_fwd, self.y_bwd], axis=-1)
        if self.merge_mode == "sum":
            return self.y_fwd + self.y_bwd
        if self.merge_mode == "mul":
            return self.y_fwd * self.y_bwd
        return 0.5 * (self.y_fwd + self.y_bwd)

    def backward(self, dy):
        if self.merge_mode == "concat":
            n = self.y_fwd.shape[-1]
            d_fwd, d_bwd = dy[..., :n], dy[..., n:]
        elif self.merge_mode == "sum":
            d_fwd = d_bwd = dy
        elif self.merge_mode == "mul":
            d_fwd, d_bwd = dy * self.y_bwd, dy * self.y_fwd
        else:
            d_fwd = d_bwd = 0.5 * dy
        if self.forward_layer.return_sequences:
            d_bwd = d_bwd[:, ::-1]
        return self.forward_layer.backward(d_fwd) + self.backward_layer.backward(d_bwd)

    def get_config(self):
        config = {k: v for k, v in self.forward_layer.get_config().items() if k not in ("name", "input_shape")}
        config["name"] = self.forward_layer.name.removeprefix("forward_")
        return {**super().get_config(), "merge_mode": self.merge_mode,
                "layer": {"class_name": type(self.forward_layer).__name__, "config": config}}


class TimeDistributed(Layer):
    """Applies the same layer to every time step: (B, T, ...) -> (B, T, ...'), one set of weights.

    The batch and time axes are merged, (B*T, ...), the layer runs once, and the
    result is split again -- so the weight gradients sum over time as they should.
    """

    supports_masking = True  # the output keeps the input's mask (gpunn.layers.masking)

    def __init__(self, layer, **kwargs):
        super().__init__(**kwargs)
        self.layer = as_layer(layer)
        self.sublayers = [self.layer]

    def build(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(f"Layer '{self.name}' expects samples of shape (time, ...); received {tuple(input_shape)}")
        super().build(input_shape)
        self.layer.build(tuple(input_shape[1:]))

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + tuple(self.layer.compute_output_shape(tuple(input_shape[1:])))

    def forward(self, x, training=False):
        check_rank(self, x, len(self.input_shape) + 1, "(batch, time, ...)")
        self.bt = x.shape[:2]
        y = self.layer.forward(x.reshape((-1,) + x.shape[2:]), training=training)
        return y.reshape(self.bt + y.shape[1:])

    def backward(self, dy):
        dx = self.layer.backward(dy.reshape((-1,) + dy.shape[2:]))
        return None if dx is None else dx.reshape(self.bt + dx.shape[1:])

    def get_config(self):
        return {**super().get_config(), "layer": layer_config(self.layer)}
