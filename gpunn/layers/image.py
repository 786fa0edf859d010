"""Images channels-first or channels-last (Keras's ``data_format``), and the one place gpunn turns one into the other.

gpunn's image layers compute on channels-first arrays, (N, C, H, W): one channel's
pixels are contiguous, as im2col wants them. A layer made with
``data_format="channels_last"`` takes and gives (N, H, W, C), Keras's default. It
transposes at its door -- ``x.transpose(0, 3, 1, 2)`` on the way in, back on the way
out, and the same for the gradients in backward -- so the math is written once,
channels-first. A chain of channels-last layers pays for one copy: each layer's
way out is a view that the next layer's way in turns back into the contiguous array.
The same holds in 1-D, (N, C, L) <-> (N, L, C).
"""

import gpunn.backend as backend
from gpunn import config
from gpunn.layers.base import Layer, check_rank


class ImageLayer(Layer):
    """What Conv2D, Conv1D, the pooling layers and ZeroPadding2D share: a data format.

    A subclass writes ``forward_channels_first`` and ``backward_channels_first`` on
    channels-first arrays, and its shapes channels-first in ``build_channels_first`` and
    ``output_shape_channels_first``; this class turns the layer's own format into that and back.

    Args:
        data_format: 'channels_first' (N, C, H, W) or 'channels_last' (N, H, W, C); None: the
            default of :mod:`gpunn.config` (channels-first unless set otherwise).
    """

    spatial_axes = ("H", "W")
    default_data_format = None  # None: gpunn.config.image_data_format()

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        data_format = data_format or self.default_data_format or config.image_data_format()
        self.data_format = config.check_data_format(data_format, f"Layer '{self.name}'")
        self.channels = None  # the input channels a layer with weights was built for
        if self.data_format == "channels_first" and self.input_shape is not None:
            self.refuse_channels_last_shape(self.input_shape)

    # --- layouts and shapes ---------------------------------------------------------
    @property
    def channels_last(self):
        return self.data_format == "channels_last"

    def layout(self, batch=False, data_format=None):
        """'(C, H, W)' or '(H, W, C)' for the layer's format (or ``data_format``), with N in front when ``batch``."""
        last = (data_format or self.data_format) == "channels_last"
        axes = self.spatial_axes + ("C",) if last else ("C",) + self.spatial_axes
        return "(" + ", ".join((("N",) if batch else ()) + axes) + ")"

    def core_shape(self, shape):
        """A sample shape in the layer's format, channels-first."""
        return tuple(shape) if not self.channels_last else (shape[-1],) + tuple(shape[:-1])

    def own_shape(self, shape):
        """A channels-first sample shape, in the layer's format."""
        return tuple(shape) if not self.channels_last or len(shape) < 2 else tuple(shape[1:]) + (shape[0],)

    def refuse_channels_last_shape(self, shape):
        """(28, 28, 1) or (32, 32, 3) under channels-first: 28 or 32 channels of 1 or 3 pixels is surely a mistake."""
        if len(shape) == len(self.spatial_axes) + 1 and shape[-1] in (1, 3) and (
                shape[0] is None or shape[0] >= 4 * shape[-1]):
            first = (shape[-1],) + tuple(shape[:-1])
            raise ValueError(f"Layer '{self.name}': input_shape={tuple(shape)} looks channels-last "
                             f"{self.layout(data_format='channels_last')}, but the layer is channels-first "
                             f"{self.layout()}, gpunn's default. Either give it data_format='channels_last' (or call "
                             f"gpunn.config.set_image_data_format('channels_last') before building the model), or "
                             f"declare input_shape={first} and feed x.transpose({self.to_first_axes()})")

    def to_first_axes(self):
        """The transpose that makes a channels-last batch channels-first: '0, 3, 1, 2' (images), '0, 2, 1' (1-D)."""
        n = len(self.spatial_axes)
        return ", ".join(str(a) for a in (0, n + 1, *range(1, n + 1)))

    # --- the door -------------------------------------------------------------------
    def to_core(self, x):
        """A batch in the layer's format, channels-first (contiguous)."""
        if not self.channels_last:
            return x
        n = x.ndim - 2
        return backend.get_array_module(x).ascontiguousarray(x.transpose(0, n + 1, *range(1, n + 1)))

    def from_core(self, x):
        """A channels-first batch, in the layer's format (a view)."""
        if not self.channels_last:
            return x
        n = x.ndim - 2
        return x.transpose(0, *range(2, n + 2), 1)

    def check_input(self, x):
        """x must be (N, ...) in the layer's layout, with the channels the layer was built for."""
        check_rank(self, x, len(self.spatial_axes) + 2, self.layout(batch=True))
        if self.input_shape is not None and None in self.input_shape:
            self.compute_output_shape(tuple(x.shape[1:]))  # sizes known only now must still fit the windows
        axis, other = (x.ndim - 1, 1) if self.channels_last else (1, x.ndim - 1)
        if self.channels is None or x.shape[axis] == self.channels:
            return
        hint = ""
        if x.shape[other] == self.channels:
            fix = "channels_first" if self.channels_last else "channels_last"
            hint = (f" This looks {fix.replace('_', '-')} {self.layout(True, fix)}: give the layer data_format='{fix}'"
                    + ("" if self.channels_last else f", or feed x.transpose({self.to_first_axes()})"))
        raise ValueError(f"Layer '{self.name}' expects {self.channels} input channels on axis {axis} of "
                         f"{self.layout(batch=True)}; received an array of shape {tuple(x.shape)}.{hint}")

    def build(self, input_shape):
        if len(input_shape) != len(self.spatial_axes) + 1:
            raise ValueError(f"Layer '{self.name}' expects samples of shape {self.layout()}; received input_shape="
                             f"{tuple(input_shape)}")
        self.compute_output_shape(input_shape)  # fails early when the window does not fit
        super().build(input_shape)
        self.build_channels_first(self.core_shape(input_shape))

    def build_channels_first(self, input_shape):
        """Create the weights for channels-first samples of ``input_shape`` (none by default)."""

    def compute_output_shape(self, input_shape):
        return self.own_shape(self.output_shape_channels_first(self.core_shape(input_shape)))

    def forward(self, x, training=False):
        self.check_input(x)
        return self.from_core(self.forward_channels_first(self.to_core(x), training))

    def backward(self, dy):
        dx = self.backward_channels_first(self.to_core(dy))
        return None if dx is None else self.from_core(dx)

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}

    @classmethod
    def from_config(cls, config):
        return cls(**{"data_format": "channels_first", **config})  # files from before data_format: channels-first
