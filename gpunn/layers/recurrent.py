"""Recurrent layers: SimpleRNN, GRU and LSTM, trained by backpropagation through time.

Inputs are (batch, time, features). Inside, sequences are time-major
(T, B, ...) so that step t is one contiguous block. Every cell splits its gate
pre-activations the same way::

    z_t = x_t W + b  +  h_{t-1} U          (G*units columns: G = 1, 3 or 4 gates)
          '-- input part --'   '- recurrent -'

The input part of all T steps is one matrix product before the loop; the loop
then does one product h_{t-1} U per step. Backward runs the loop in reverse
(BPTT), collecting dL/dz_t for every step; then, again in single products over
all steps::

    dW = X^T dZ        db = sum dZ        dX = dZ W^T        dU = H_prev^T dZ_rec

Gradient clipping (``clipnorm``/``clipvalue`` on the optimizer) tames the
exploding gradients that long products of U bring.

Masks (padded batches, :mod:`gpunn.layers.masking`): at a padded step the state is carried
over unchanged, as in Keras::

    h_t = m_t * cell(x_t, h_{t-1}) + (1 - m_t) * h_{t-1}         (m_t = 1 for a real step, 0 for padding)

so the last output is the state after the last real step. Backward, the cell of a padded step
receives no gradient and dh_t passes to h_{t-1} untouched: padding contributes exactly nothing.
Each step then costs a few more element-wise operations on the device (a ``where`` per state
forward, and a split of dh per state backward), and no read back to the host.
"""

import numpy as np

import gpunn.backend as backend
from gpunn import activations
from gpunn.layers.base import Layer, check_rank, config_of
from gpunn.ops.gemm import product
from gpunn.ops.lstm import lstm_step_backward, lstm_step_forward


def sigmoid(xp, z):
    return 0.5 * (1 + xp.tanh(0.5 * z))


def plus(d, passed):
    """d, plus the gradient that passed by a padded step (None without a mask)."""
    return d if passed is None else d + passed


class RNN(Layer):
    """What SimpleRNN, GRU and LSTM share: the loop over time, its outputs and its weight gradients.

    Args:
        units: the size H of the hidden state.
        return_sequences: output every h_t, (B, T, H), rather than the last, (B, H).
        return_state: also return the final state(s): ``[output, h_T]`` (LSTM: ``[output, h_T, c_T]``) --
            an encoder's state for a decoder; backward then takes ``[dy, dh_T, ...]``.
        go_backwards: read the sequence from its end (outputs come in that order).
        unroll, input_length: accepted as in Keras; gpunn always loops.
    """

    supports_masking = True
    gates = 1  # how many blocks of `units` columns the kernels have
    state_count = 1

    def __init__(self, units, return_sequences=False, return_state=False, go_backwards=False, unroll=False,
                 input_length=None, kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, **kwargs):
        if input_length is not None:
            if not isinstance(input_length, (int, np.integer)) or input_length < 1:
                raise ValueError(f"{type(self).__name__}: input_length must be a positive integer; "
                                 f"received input_length={input_length!r}")
            if "input_shape" not in kwargs and "input_dim" in kwargs:
                kwargs["input_shape"] = (input_length, kwargs.pop("input_dim"))
        super().__init__(**kwargs)
        if not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError(f"Layer '{self.name}': units must be a positive integer; received units={units!r}")
        if not isinstance(unroll, bool):
            raise ValueError(f"Layer '{self.name}': unroll must be True or False; received unroll={unroll!r}")
        if input_length is not None and self.input_shape is not None and self.input_shape[0] != input_length:
            raise ValueError(f"Layer '{self.name}': input_length={input_length} contradicts input_shape={self.input_shape}")
        self.units, self.return_sequences, self.return_state = int(units), return_sequences, return_state
        self.go_backwards, self.unroll, self.input_length = go_backwards, unroll, input_length
        self.kernel_initializer, self.recurrent_initializer = kernel_initializer, recurrent_initializer
        self.bias_initializer, self.kernel_regularizer = bias_initializer, kernel_regularizer

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"Layer '{self.name}' expects samples of shape (time, features); received input_shape="
                             f"{tuple(input_shape)} (a batch of sequences is (batch, time, features))")
        super().build(input_shape)
        n = self.gates * self.units
        self.add_weight("kernel", (input_shape[-1], n), self.kernel_initializer, self.kernel_regularizer)
        self.add_weight("recurrent_kernel", (self.units, n), self.recurrent_initializer)
        self.add_weight("bias", self.bias_shape(), self.bias_initializer)

    def bias_shape(self):
        return (self.gates * self.units,)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units) if self.return_sequences else (self.units,)

    def output_shape_for(self, shapes):
        out = self.compute_output_shape(shapes["x"])
        return [out] + [(self.units,)] * self.state_count if self.return_state else out

    def compute_mask(self, x, mask):
        """The outputs keep the steps' mask; the last state alone (or the states) has none."""
        return mask if self.return_sequences else None

    # --- the loop ---------------------------------------------------------------------
    def forward(self, x, initial_state=None, mask=None, training=False):
        """The loop over time from ``initial_state`` (h_0, or [h_0, c_0] for an LSTM; zeros by default):
        a decoder starts from its encoder's final state. ``mask`` (batch, time): False at padded steps."""
        check_rank(self, x, 3, "(batch, time, features)")
        if x.shape[-1] != self.kernel.shape[0]:
            raise ValueError(f"Layer '{self.name}' expects {self.kernel.shape[0]} features per time step; received "
                             f"an array of shape {tuple(x.shape)}")
        xp = backend.get_array_module(x)
        xs = x.transpose(1, 0, 2)[::-1] if self.go_backwards else x.transpose(1, 0, 2)
        self.xs = xp.ascontiguousarray(xs)
        self.step_mask = None if mask is None else self._step_mask(mask, x, xp)
        self.initial = self._initial_states(initial_state, xp, len(x), x.dtype)
        steps, batch, features = self.xs.shape  # every step's input part at once: (T, B, G*H)
        zx = product(self.xs.reshape(-1, features), self.kernel).reshape(steps, batch, -1) + self.input_bias()
        hs = self.run(zx, self.initial)  # (T, B, H)
        self.h_prev = xp.concatenate([self.initial[0][None], hs[:-1]])  # h_{t-1} for every t
        output = hs.transpose(1, 0, 2) if self.return_sequences else hs[-1]
        return [output, *self.final_states()] if self.return_state else output

    def _step_mask(self, mask, x, xp):
        """(time, batch, 1) booleans in the order the loop reads the steps."""
        if tuple(mask.shape) != tuple(x.shape[:2]):
            raise ValueError(f"Layer '{self.name}' takes a mask of shape (batch, time) = {tuple(x.shape[:2])}; "
                             f"received {tuple(mask.shape)}")
        steps = mask.T[::-1] if self.go_backwards else mask.T
        return xp.ascontiguousarray(steps.astype(bool)[..., None])

    def carry(self, t, new, old):
        """The state after step t: ``new`` at real steps, ``old`` carried over at padded ones."""
        return new if self.step_mask is None else backend.get_array_module(new).where(self.step_mask[t], new, old)

    def split(self, t, d):
        """dL/d(state after step t) split into (what the cell of step t receives, what passes by it to
        step t-1: None without a mask)."""
        if self.step_mask is None:
            return d, None
        cell = backend.get_array_module(d).where(self.step_mask[t], d, 0)
        return cell, d - cell

    def _initial_states(self, initial_state, xp, batch, dtype):
        if initial_state is None:
            return [xp.zeros((batch, self.units), dtype=dtype) for _ in range(self.state_count)]
        states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
        expected = "[h_0, c_0]" if self.state_count == 2 else "h_0"
        if len(states) != self.state_count or any(tuple(h.shape) != (batch, self.units) for h in states):
            raise ValueError(f"Layer '{self.name}' takes initial_state={expected}, each of shape (batch, units) = "
                             f"{(batch, self.units)}; received {[tuple(h.shape) for h in states]}")
        return [h.astype(dtype, copy=False) for h in states]

    def backward_call(self, dy, arguments):
        grads = {"x": self.backward(dy)}
        given = arguments.get("initial_state")
        if given is not None:
            grads["initial_state"] = self.initial_state_grads if isinstance(given, (list, tuple)) else \
                self.initial_state_grads[0]
        return grads

    def backward(self, dy):
        dstates = []
        if self.return_state:
            dy, *dstates = dy
        xp = backend.get_array_module(dy)
        if self.return_sequences:
            dhs = xp.ascontiguousarray(dy.transpose(1, 0, 2))
        else:
            dhs = xp.zeros(self.xs.shape[:2] + (self.units,), dtype=dy.dtype)
            dhs[-1] = dy
        dzx, dzh, self.initial_state_grads = self.run_backward(dhs, dstates)  # and dL/d(initial state)
        flat = self.xs.reshape(-1, self.xs.shape[-1])
        self.grads["kernel"] = product(flat.T, dzx.reshape(-1, dzx.shape[-1]))
        self.grads["recurrent_kernel"] = self.recurrent_gradient(dzh)
        self.grads["bias"] = self.bias_gradient(dzx, dzh)
        dxs = product(dzx.reshape(-1, dzx.shape[-1]), self.kernel.T).reshape(self.xs.shape)
        if self.go_backwards:
            dxs = dxs[::-1]
        return dxs.transpose(1, 0, 2)

    # --- what the cells may override -----------------------------------------------------
    def input_bias(self):
        return self.bias

    def recurrent_gradient(self, dzh):
        return product(self.h_prev.reshape(-1, self.units).T, dzh.reshape(-1, dzh.shape[-1]))

    def bias_gradient(self, dzx, dzh):
        return dzx.sum(axis=(0, 1))

    def final_states(self):
        return [self.hs[-1]]

    def get_config(self):
        return {**super().get_config(), "units": self.units, "return_sequences": self.return_sequences,
                "return_state": self.return_state, "go_backwards": self.go_backwards, "unroll": self.unroll,
                "kernel_initializer": config_of(self.kernel_initializer),
                "recurrent_initializer": config_of(self.recurrent_initializer),
                "bias_initializer": config_of(self.bias_initializer),
                "kernel_regularizer": config_of(self.kernel_regularizer)}


class SimpleRNN(RNN):
    """The course's basic RNN cell:  h_t = g(x_t W + h_{t-1} U + b),  g = tanh by default.

    BPTT, from dh_t = dL/dh_t (from the output) + dL/dh_t (through step t+1)::

        dz_t = dh_t * g'(z_t)          dh_{t-1} (through the recurrence) = dz_t U^T
    """

    def __init__(self, units, activation="tanh", **kwargs):
        super().__init__(units, **kwargs)
        self.activation = activations.get(activation)

    def run(self, zx, initial):
        xp = backend.get_array_module(zx)
        self.zs = xp.empty_like(zx)
        self.hs = xp.empty_like(zx)
        h = initial[0]
        for t in range(len(zx)):
            self.zs[t] = zx[t] + product(h, self.recurrent_kernel)
            h = self.hs[t] = self.carry(t, self.activation.forward(self.zs[t]), h)
        return self.hs

    def run_backward(self, dhs, dstates):
        xp = backend.get_array_module(dhs)
        dz = xp.empty_like(dhs)
        dh_next = dstates[0] if dstates else xp.zeros_like(dhs[0])
        for t in reversed(range(len(dhs))):
            self.activation.forward(self.zs[t])  # re-caches step t for g'(z_t)
            dh, passed = self.split(t, dhs[t] + dh_next)
            dz[t] = self.activation.derivative(dh)
            dh_next = plus(product(dz[t], self.recurrent_kernel.T), passed)
        return dz, dz, [dh_next]

    def get_config(self):
        return {**super().get_config(), "activation": self.activation.get_config()}


class LSTM(RNN):
    """Long short-term memory (gate order i, f, g, o as in Keras), one fused CUDA kernel per step on a GPU.

    The step itself (gates, c_t = f c_{t-1} + i g, h_t = o tanh(c_t), and its backward)
    is :mod:`gpunn.ops.lstm`, where the NumPy twin spells out the equations.

    Args:
        unit_forget_bias: start the forget gate's bias at 1, so that early on the cell remembers.
    """

    gates = 4
    state_count = 2

    def __init__(self, units, unit_forget_bias=True, **kwargs):
        super().__init__(units, **kwargs)
        self.unit_forget_bias = unit_forget_bias

    def build(self, input_shape):
        super().build(input_shape)
        if self.unit_forget_bias:
            self.bias[self.units:2 * self.units] += 1.0

    def run(self, zx, initial):
        xp = backend.get_array_module(zx)
        steps, batch = zx.shape[:2]
        self.gate_values = xp.empty_like(zx)
        self.cs = xp.empty((steps, batch, self.units), dtype=zx.dtype)
        self.hs = xp.empty_like(self.cs)
        h, c = (xp.ascontiguousarray(state) for state in initial)
        for t in range(steps):
            lstm_step_forward(zx[t], product(h, self.recurrent_kernel), c, self.gate_values[t], self.cs[t], self.hs[t])
            if self.step_mask is not None:
                self.hs[t], self.cs[t] = self.carry(t, self.hs[t], h), self.carry(t, self.cs[t], c)
            h, c = self.hs[t], self.cs[t]
        return self.hs

    def run_backward(self, dhs, dstates):
        xp = backend.get_array_module(dhs)
        dz = xp.empty_like(self.gate_values)
        dh_rec = dstates[0] if dstates else xp.zeros_like(dhs[0])
        dc_next = dstates[1] if len(dstates) > 1 else xp.zeros_like(dhs[0])  # the caller's dc_T: read, never written
        dc_buffers = (xp.empty_like(dc_next), xp.empty_like(dc_next))  # dL/dc_{t-1}, written in turn
        c0 = xp.ascontiguousarray(self.initial[1])
        no_grad = None if self.step_mask is None else xp.zeros_like(dc_next)  # the cell gets dh in one piece
        for step, t in enumerate(reversed(range(len(dhs)))):
            c_prev = self.cs[t - 1] if t else c0
            dc_prev = dc_buffers[step % 2]
            if self.step_mask is None:  # the kernel adds the output's dh_t and step t+1's itself
                lstm_step_backward(dhs[t], dh_rec, dc_next, self.gate_values[t], c_prev, self.cs[t], dz[t], dc_prev)
                dh_passed = dc_passed = None
            else:
                (dh, dh_passed), (dc, dc_passed) = self.split(t, dhs[t] + dh_rec), self.split(t, dc_next)
                lstm_step_backward(dh, no_grad, dc, self.gate_values[t], c_prev, self.cs[t], dz[t], dc_prev)
            dh_rec, dc_next = plus(product(dz[t], self.recurrent_kernel.T), dh_passed), plus(dc_prev, dc_passed)
        return dz, dz, [dh_rec, dc_next]  # after the loop, dc_next is dL/dc_0

    def final_states(self):
        return [self.hs[-1], self.cs[-1]]

    def get_config(self):
        return {**super().get_config(), "unit_forget_bias": self.unit_forget_bias}


class GRU(RNN):
    """Gated recurrent unit (gate order z, r, h as in Keras)::

        z = sigmoid(x W_z + h_{t-1} U_z + b_z)          update gate
        r = sigmoid(x W_r + h_{t-1} U_r + b_r)          reset gate
        reset_after=False (the course's, the original GRU):  hh = tanh(x W_h + (r * h_{t-1}) U_h + b_h)
        reset_after=True  (cuDNN's, Keras's default):        hh = tanh(x W_h + b_h + r * (h_{t-1} U_h + b'_h))
        h_t = z * h_{t-1} + (1 - z) * hh

    With reset_after=True the bias has shape (2, 3*units): input and recurrent biases.
    """

    gates = 3

    def __init__(self, units, reset_after=True, **kwargs):
        super().__init__(units, **kwargs)
        self.reset_after = reset_after

    def bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def input_bias(self):
        return self.bias[0] if self.reset_after else self.bias

    def run(self, zx, initial):
        xp = backend.get_array_module(zx)
        n = self.units
        u = self.recurrent_kernel
        self.zr = xp.empty(zx.shape[:2] + (2 * n,), dtype=zx.dtype)  # z and r
        self.hh = xp.empty(zx.shape[:2] + (n,), dtype=zx.dtype)
        self.rec_h = xp.empty_like(self.hh)  # h U_h + b'_h (reset_after) or (r * h) itself (before)
        self.hs = xp.empty_like(self.hh)
        h = initial[0]
        for t in range(len(zx)):
            zh = product(h, u if self.reset_after else u[:, :2 * n])
            if self.reset_after:
                zh = zh + self.bias[1]
            self.zr[t] = sigmoid(xp, zx[t, :, :2 * n] + zh[:, :2 * n])
            r = self.zr[t, :, n:]
            if self.reset_after:
                self.rec_h[t] = zh[:, 2 * n:]
                self.hh[t] = xp.tanh(zx[t, :, 2 * n:] + r * self.rec_h[t])
            else:
                self.rec_h[t] = r * h
                self.hh[t] = xp.tanh(zx[t, :, 2 * n:] + product(self.rec_h[t], u[:, 2 * n:]))
            z = self.zr[t, :, :n]
            h = self.hs[t] = self.carry(t, z * h + (1 - z) * self.hh[t], h)
        return self.hs

    def run_backward(self, dhs, dstates):
        xp = backend.get_array_module(dhs)
        n = self.units
        u = self.recurrent_kernel
        dzx = xp.empty(dhs.shape[:2] + (3 * n,), dtype=dhs.dtype)
        dzh = xp.empty_like(dzx)  # what multiplies U: [dz, dr, dh] (reset_after) or [dz, dr, dh] with (r*h) for h
        dh_next = dstates[0] if dstates else xp.zeros_like(dhs[0])
        for t in reversed(range(len(dhs))):
            z, r, hh, h_prev = self.zr[t, :, :n], self.zr[t, :, n:], self.hh[t], self.h_prev[t]
            dh, passed = self.split(t, dhs[t] + dh_next)
            d_hh = dh * (1 - z) * (1 - hh * hh)  # through hh's tanh
            d_z = dh * (h_prev - hh) * z * (1 - z)
            if self.reset_after:
                d_r = d_hh * self.rec_h[t] * r * (1 - r)
                dzh[t, :, 2 * n:] = d_hh * r
            else:
                d_rh = product(d_hh, u[:, 2 * n:].T)  # dL/d(r * h_prev)
                d_r = d_rh * h_prev * r * (1 - r)
                dzh[t, :, 2 * n:] = d_hh
            dzx[t, :, :n], dzx[t, :, n:2 * n], dzx[t, :, 2 * n:] = d_z, d_r, d_hh
            dzh[t, :, :2 * n] = dzx[t, :, :2 * n]
            dh_next = plus(dh * z + product(dzh[t], u.T) if self.reset_after else (
                dh * z + d_rh * r + product(dzh[t, :, :2 * n], u[:, :2 * n].T)), passed)
        return dzx, dzh, [dh_next]

    def recurrent_gradient(self, dzh):
        if self.reset_after:
            return super().recurrent_gradient(dzh)
        n = self.units
        flat = dzh.reshape(-1, 3 * n)
        gates_zr = product(self.h_prev.reshape(-1, n).T, flat[:, :2 * n])
        gate_h = product(self.rec_h.reshape(-1, n).T, flat[:, 2 * n:])  # (r * h_prev)^T dpre_h
        return backend.get_array_module(dzh).concatenate([gates_zr, gate_h], axis=1)

    def bias_gradient(self, dzx, dzh):
        if self.reset_after:
            return backend.get_array_module(dzx).stack([dzx.sum(axis=(0, 1)), dzh.sum(axis=(0, 1))])
        return dzx.sum(axis=(0, 1))

    def get_config(self):
        return {**super().get_config(), "reset_after": self.reset_after}
