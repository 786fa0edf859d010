"""Optimizers: how the gradients dW move the weights W.

Every optimizer updates the weights *in place*; its running averages (the
"slots": velocity, squared-gradient average...) are created on a weight's first
step with its shape and kept in ``self.slots[key]``, under the weight's name
('dense/kernel', as the model passes it). So freezing, unfreezing and
recompiling with the same optimizer never hands one weight another's averages.

The equations, with g = dW and lr = learning rate at this step:

- SGD:       W -= lr g
  momentum:  v = momentum v - lr g;  W += v
  Nesterov:  v = momentum v - lr g;  W += momentum v - lr g
- Adagrad:   s += g^2;                            W -= lr g / (sqrt(s) + eps)
- RMSprop:   s = rho s + (1 - rho) g^2;           W -= lr g / (sqrt(s) + eps)
  centered:  mg = rho mg + (1 - rho) g;           W -= lr g / (sqrt(s - mg^2) + eps)
  momentum:  v = momentum v + lr g / (...);       W -= v
- Adam:      m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
             m_hat = m / (1 - b1^t);  v_hat = v / (1 - b2^t)   (bias correction, t = step number from 1)
             W -= lr m_hat / (sqrt(v_hat) + eps)
- Nadam:     Adam whose m_hat looks one step ahead (Nesterov), with Keras's warming momentum schedule:
             m_hat = u_{t+1} m / (1 - u_1...u_{t+1}) + (1 - u_t) g / (1 - u_1...u_t),  u_t = b1 (1 - 0.5 * 0.96^t)
- Adadelta:  s = rho s + (1 - rho) g^2;  dW = -sqrt(d + eps) / sqrt(s + eps) g;  d = rho d + (1 - rho) dW^2
             W += lr dW                                         (no units to tune: lr = 1 in Zeiler's paper)

Where eps goes: gpunn writes the course's sqrt(s) + eps. Keras puts it elsewhere, so
with the same eps the first steps (while s is still tiny) differ slightly:

- Adagrad and RMSprop:  Keras W -= lr g / sqrt(s + eps) (inside the root; RMSprop's centered
  and momentum variants too: sqrt(s - mg^2 + eps)).
- Adam:  Keras W -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps), the "epsilon hat" of
  Kingma and Ba: gpunn's eps times sqrt(1 - b2^t).
- Nadam and Adadelta are written exactly as Keras writes them.

Once s (or v) is much larger than eps^2 the updates agree to rounding.

Each update runs as one fused CUDA kernel on the GPU -- one for all the weights of a
model, whose weights and gradients are each one buffer (see :mod:`gpunn.utils.flat`); the
equations are written out in :mod:`gpunn.ops.optimizers`, whose NumPy twins run on the CPU.

The course writes momentum as v = beta v + (1 - beta) dW, W -= alpha v: the
same method with the learning rate scaled by (1 - beta).

Gradient clipping (the course's remedy for exploding gradients) happens
before the update: ``clipvalue`` clips each element to [-c, c]; ``clipnorm``
rescales each weight's gradient whose L2 norm exceeds c to norm c;
``global_clipnorm`` does the same with the norm of all gradients together.
"""

import copy
import warnings

import numpy as np

import gpunn.backend as backend
from gpunn import schedules
from gpunn.ops import optimizers as ops
from gpunn.utils.registry import from_identifier


class Optimizer:
    name = None
    data_parallel = None  # gpunn.distributed.DistributedOptimizer sets the hooks fit calls to train data-parallel

    def __init__(self, learning_rate=0.001, clipnorm=None, clipvalue=None, global_clipnorm=None, lr=None):
        if lr is not None:  # Keras 2's spelling, still on many slides
            warnings.warn(f"{type(self).__name__}(lr=...) is the old Keras spelling; use learning_rate=...",
                          DeprecationWarning, stacklevel=3)
            learning_rate = lr
        if not callable(learning_rate) and not (isinstance(learning_rate, (int, float)) and learning_rate > 0):
            raise ValueError(f"{type(self).__name__}: learning_rate must be a positive number or a schedule; "
                             f"received learning_rate={learning_rate!r}")
        for arg, value in (("clipnorm", clipnorm), ("clipvalue", clipvalue), ("global_clipnorm", global_clipnorm)):
            if value is not None and value <= 0:
                raise ValueError(f"{type(self).__name__}: {arg} must be positive; received {arg}={value!r}")
        self.learning_rate = learning_rate
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        self.iterations = 0
        self.slots = {}
        self._flat_slots = None  # (keys, {name: buffer}, [{name: view}] per key) of the last flat update

    def __deepcopy__(self, memo):
        """A copy with copies of the running averages, each an array of its own: its flat buffers are made again."""
        copied = object.__new__(type(self))
        memo[id(self)] = copied
        for name, value in vars(self).items():
            setattr(copied, name, None if name == "_flat_slots" else copy.deepcopy(value, memo))
        return copied

    def current_learning_rate(self):
        """The rate of the coming step: a constant, or the schedule evaluated at ``iterations``."""
        lr = self.learning_rate
        return float(lr(self.iterations)) if callable(lr) else float(lr)

    def apply(self, weights, grads, keys=None, flat=None):
        """One step: update each array of ``weights`` in place from ``grads``.

        ``keys`` name the weights, one each (a model passes '<layer>/<weight>'); without them,
        weights are known by their position in the list -- enough while the list never changes.
        ``flat``: the buffers (W, dW) of which ``weights`` and ``grads`` are the pieces, in order (a
        model's :class:`gpunn.utils.flat.FlatWeights`). The update, element-wise, is then made once
        over W -- one kernel launch on a GPU, however many weights -- with the running averages in
        buffers laid out alike (``slots[key]`` are views of them).
        """
        keys = list(range(len(weights)) if keys is None else keys)
        if not len(keys) == len(weights) == len(grads):
            raise ValueError(f"{type(self).__name__}.apply: expected as many grads and keys as weights; received "
                             f"{len(weights)} weights, {len(grads)} grads and {len(keys)} keys")
        clipped = self.clip(grads)
        lr = self.current_learning_rate()
        self.iterations += 1
        if flat is not None and all(c is g for c, g in zip(clipped, grads)):  # clipping makes new arrays
            self.update(*flat, self.flat_slots(keys, weights, flat[0]), lr)
            return
        for key, w, g in zip(keys, weights, clipped):
            self.update(w, g, self.slots_for(key, w), lr)

    def flat_slots(self, keys, weights, flat):
        """The running averages of ``weights`` (the pieces of buffer ``flat``, in order) as buffers laid out like
        ``flat``, with ``slots[key]`` views of them. Averages kept from before (or loaded) are copied in."""
        state = self._flat_slots
        if state is not None and state[0] == keys and all(b.dtype == flat.dtype and b.size == flat.size
                                                          for b in state[1].values()) and all(
                self.slots.get(key, {}).get(name) is view for key, views in zip(keys, state[2])
                for name, view in views.items()):
            return state[1]
        buffers = self.create_slots(flat)
        offsets = np.cumsum([0] + [w.size for w in weights]).tolist()
        pieces = []
        for key, w, lo, hi in zip(keys, weights, offsets, offsets[1:]):
            old = self.slots_for(key, w) if key in self.slots else {}
            views = {name: buffer[lo:hi].reshape(w.shape) for name, buffer in buffers.items()}
            for name, view in views.items():
                if name in old:
                    view[...] = old[name]
            self.slots[key] = views
            pieces.append(views)
        self._flat_slots = (list(keys), buffers, pieces)
        return buffers

    def slots_for(self, key, w):
        """The running averages of weight ``key``: created at its first step, then checked against its shape."""
        if key not in self.slots:
            self.slots[key] = self.create_slots(w)
        for name, slot in self.slots[key].items():
            if slot.shape != w.shape:
                raise ValueError(f"{type(self).__name__}: slot '{name}' of weight '{key}' has shape {slot.shape}; "
                                 f"received a weight of shape {w.shape} under that name (a new model compiled with "
                                 f"an optimizer already used? give each model its own optimizer)")
        return self.slots[key]

    def clip(self, grads):
        if not grads:
            return grads
        xp = backend.get_array_module(grads[0])
        if self.clipvalue is not None:
            grads = [xp.clip(g, -self.clipvalue, self.clipvalue) for g in grads]
        if self.clipnorm is not None:
            grads = [g * _shrink(xp.sqrt((g * g).sum()), self.clipnorm) for g in grads]
        if self.global_clipnorm is not None:
            norm = xp.sqrt(sum((g * g).sum() for g in grads))
            grads = [g * _shrink(norm, self.global_clipnorm) for g in grads]
        return grads

    def create_slots(self, w):
        """The running averages for one weight (none for plain SGD)."""
        return {}

    def update(self, w, g, slots, lr):
        raise NotImplementedError

    # A training step captured as a CUDA graph (gpunn.models.captured) runs the update inside the graph, where a
    # kernel's arguments are frozen: the rate and Adam's bias corrections are read from ``hyper`` in device memory
    # instead, [lr, 1 - beta_1^t, 1 - beta_2^t], written for each step by gpunn.ops.optimizers.optimizer_schedule.
    scheduled = False  # whether update_scheduled exists (else the update runs outside the graph)
    schedule_betas = (0.0, 0.0)  # Adam's (beta_1, beta_2), for its bias corrections; 0: none

    def update_scheduled(self, w, g, slots, hyper):
        raise NotImplementedError

    def get_config(self):
        lr = self.learning_rate
        return {"name": self.name, "learning_rate": lr.get_config() if callable(lr) else lr,
                "clipnorm": self.clipnorm, "clipvalue": self.clipvalue, "global_clipnorm": self.global_clipnorm}


def _shrink(norm, max_norm):
    """max_norm / norm where the norm is too large, else 1 (stays on the device)."""
    xp = backend.get_array_module(norm)
    return xp.minimum(1.0, max_norm / xp.maximum(norm, 1e-12)).astype(norm.dtype)


class SGD(Optimizer):
    name = "sgd"

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        if not 0 <= momentum < 1:
            raise ValueError(f"SGD: momentum must be in [0, 1); received momentum={momentum!r}")
        self.momentum, self.nesterov = float(momentum), nesterov

    def create_slots(self, w):
        return {"velocity": backend.get_array_module(w).zeros_like(w)} if self.momentum else {}

    def update(self, w, g, slots, lr):
        if self.momentum:
            ops.sgd_momentum_update(w, g, slots["velocity"], lr, self.momentum, self.nesterov)
        else:
            ops.sgd_update(w, g, lr)

    scheduled = True

    def update_scheduled(self, w, g, slots, hyper):
        if self.momentum:
            ops.sgd_momentum_update_scheduled(w, g, slots["velocity"], hyper, self.momentum, self.nesterov)
        else:
            ops.sgd_update_scheduled(w, g, hyper)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adagrad(Optimizer):
    name = "adagrad"

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.initial_accumulator_value, self.epsilon = float(initial_accumulator_value), float(epsilon)

    def create_slots(self, w):
        return {"accumulator": backend.get_array_module(w).full_like(w, self.initial_accumulator_value)}

    def update(self, w, g, slots, lr):
        ops.adagrad_update(w, g, slots["accumulator"], lr, self.epsilon)

    scheduled = True

    def update_scheduled(self, w, g, slots, hyper):
        ops.adagrad_update_scheduled(w, g, slots["accumulator"], hyper, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


class RMSprop(Optimizer):
    name = "rmsprop"

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        if not 0 <= momentum < 1:
            raise ValueError(f"RMSprop: momentum must be in [0, 1); received momentum={momentum!r}")
        self.rho, self.momentum, self.epsilon, self.centered = float(rho), float(momentum), float(epsilon), centered

    def create_slots(self, w):
        xp = backend.get_array_module(w)
        slots = {"mean_square": xp.zeros_like(w)}
        if self.centered:
            slots["average_gradient"] = xp.zeros_like(w)
        if self.momentum:
            slots["momentum"] = xp.zeros_like(w)
        return slots

    def update(self, w, g, slots, lr):
        if not self.centered and not self.momentum:
            ops.rmsprop_update(w, g, slots["mean_square"], lr, self.rho, self.epsilon)
        else:
            ops.rmsprop_centered_momentum_update(w, g, slots["mean_square"], slots.get("average_gradient"),
                                                 slots.get("momentum"), lr, self.rho, self.momentum, self.epsilon)

    @property
    def scheduled(self):  # the plain update has a kernel; the centered and momentum ones not yet
        return not self.centered and not self.momentum

    def update_scheduled(self, w, g, slots, hyper):
        ops.rmsprop_update_scheduled(w, g, slots["mean_square"], hyper, self.rho, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon,
                "centered": self.centered}


class Adam(Optimizer):
    name = "adam"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def create_slots(self, w):
        xp = backend.get_array_module(w)
        return {"m": xp.zeros_like(w), "v": xp.zeros_like(w)}

    def update(self, w, g, slots, lr):
        ops.adam_update(w, g, slots["m"], slots["v"], lr, self.beta_1, self.beta_2, self.epsilon, self.iterations)

    scheduled = True

    @property
    def schedule_betas(self):
        return self.beta_1, self.beta_2

    def update_scheduled(self, w, g, slots, hyper):
        ops.adam_update_scheduled(w, g, slots["m"], slots["v"], hyper, self.beta_1, self.beta_2, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}


class Nadam(Optimizer):
    name = "nadam"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)
        self._schedule = (0, 1.0)  # (t, u_1 u_2 ... u_t), advanced step by step

    def momentum_product(self, t):
        """u_1 u_2 ... u_t of the momentum schedule u_k = beta_1 (1 - 0.5 * 0.96^k)."""
        done, product = self._schedule if self._schedule[0] <= t else (0, 1.0)
        for k in range(done + 1, t + 1):  # one step per call in training; all of them once after loading
            product *= self.beta_1 * (1 - 0.5 * 0.96 ** k)
        self._schedule = (t, product)
        return product

    def create_slots(self, w):
        xp = backend.get_array_module(w)
        return {"m": xp.zeros_like(w), "v": xp.zeros_like(w)}

    def update(self, w, g, slots, lr):
        t = self.iterations
        ops.nadam_update(w, g, slots["m"], slots["v"], lr, self.beta_1, self.beta_2, self.epsilon, t,
                         self.momentum_product(t))

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}


class Adadelta(Optimizer):
    name = "adadelta"

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.rho, self.epsilon = float(rho), float(epsilon)

    def create_slots(self, w):
        xp = backend.get_array_module(w)
        return {"accumulated_grad": xp.zeros_like(w), "accumulated_delta": xp.zeros_like(w)}

    def update(self, w, g, slots, lr):
        ops.adadelta_update(w, g, slots["accumulated_grad"], slots["accumulated_delta"], lr, self.rho, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}


OPTIMIZERS = {cls.name: cls for cls in (SGD, Adagrad, RMSprop, Adam, Nadam, Adadelta)}


def get(identifier):
    """An optimizer from a name ('adam'), a config dict, or an instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, dict) and isinstance(identifier.get("learning_rate"), dict):
        identifier = {**identifier, "learning_rate": schedules.get(identifier["learning_rate"])}
    return from_identifier(identifier, OPTIMIZERS, "optimizer")
