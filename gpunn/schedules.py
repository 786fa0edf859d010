"""Learning-rate decay schedules: the rate as a function of the training step.

A schedule is passed as an optimizer's ``learning_rate``; the optimizer calls
it with its step counter (``optimizer.iterations``, one step per batch). The
course decays per *epoch*: set ``decay_steps`` to the number of batches per
epoch (ceil(m / batch_size)) and ``step / decay_steps`` is the epoch number.

- InverseTimeDecay:  lr = lr0 / (1 + decay_rate * t)       (the course's 1 / (1 + decay_rate * epoch_num))
- ExponentialDecay:  lr = lr0 * decay_rate ** t             (the course's 0.95 ** epoch_num)
- InverseSqrtDecay:  lr = lr0 / sqrt(1 + t)                 (the course's k / sqrt(epoch_num))

with t = step / decay_steps, rounded down when ``staircase=True``.

- CosineDecay:  lr = lr0 * ((1 - alpha) * (1 + cos(pi * t)) / 2 + alpha), t = min(step / decay_steps, 1):
  half a cosine from lr0 down to alpha * lr0 over the whole run, optionally after a linear warm-up
  (Keras's CosineDecay; decay_steps = batches per epoch * epochs).
"""

import math


class LearningRateSchedule:
    name = None

    def __init__(self, initial_learning_rate, decay_steps, staircase=False):
        if decay_steps <= 0:
            raise ValueError(f"{type(self).__name__}: decay_steps must be positive; received decay_steps={decay_steps!r}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = decay_steps
        self.staircase = staircase

    def t(self, step):
        t = step / self.decay_steps
        return math.floor(t) if self.staircase else t

    def __call__(self, step):
        raise NotImplementedError

    def get_config(self):
        return {"name": self.name, **vars(self)}


class InverseTimeDecay(LearningRateSchedule):
    name = "inverse_time_decay"

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False):
        super().__init__(initial_learning_rate, decay_steps, staircase)
        self.decay_rate = float(decay_rate)

    def __call__(self, step):
        return self.initial_learning_rate / (1 + self.decay_rate * self.t(step))


class ExponentialDecay(LearningRateSchedule):
    name = "exponential_decay"

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False):
        super().__init__(initial_learning_rate, decay_steps, staircase)
        self.decay_rate = float(decay_rate)

    def __call__(self, step):
        return self.initial_learning_rate * self.decay_rate ** self.t(step)


class InverseSqrtDecay(LearningRateSchedule):
    name = "inverse_sqrt_decay"

    def __call__(self, step):
        return self.initial_learning_rate / math.sqrt(1 + self.t(step))


class CosineDecay(LearningRateSchedule):
    """Keras's CosineDecay: ``warmup_steps`` rising linearly from ``initial_learning_rate`` to ``warmup_target``
    (when one is given), then half a cosine from there down to ``alpha`` times it over ``decay_steps``."""

    name = "cosine_decay"

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, warmup_target=None, warmup_steps=0):
        super().__init__(initial_learning_rate, decay_steps)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"CosineDecay: alpha must be in [0, 1]; received alpha={alpha!r}")
        if warmup_steps < 0:
            raise ValueError(f"CosineDecay: warmup_steps must be >= 0; received warmup_steps={warmup_steps!r}")
        self.alpha = float(alpha)
        self.warmup_target = None if warmup_target is None else float(warmup_target)
        self.warmup_steps = warmup_steps
        del self.staircase  # Keras's CosineDecay has no staircase form; get_config lists its own arguments

    def __call__(self, step):
        peak = self.initial_learning_rate if self.warmup_target is None else self.warmup_target
        if step < self.warmup_steps:
            return self.initial_learning_rate + (peak - self.initial_learning_rate) * step / self.warmup_steps
        t = min(step - self.warmup_steps, self.decay_steps) / self.decay_steps
        return peak * ((1 - self.alpha) * 0.5 * (1 + math.cos(math.pi * t)) + self.alpha)


SCHEDULES = {cls.name: cls for cls in (InverseTimeDecay, ExponentialDecay, InverseSqrtDecay, CosineDecay)}


def get(config):
    config = dict(config)
    return SCHEDULES[config.pop("name")](**config)
