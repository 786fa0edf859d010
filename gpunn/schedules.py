"""Learning-rate decay schedules: the rate as a function of the training step.

A schedule is passed as an optimizer's ``learning_rate``; the optimizer calls
it with its step counter (``optimizer.iterations``, one step per batch). The
course decays per *epoch*: set ``decay_steps`` to the number of batches per
epoch (ceil(m / batch_size)) and ``step / decay_steps`` is the epoch number.

- InverseTimeDecay:  lr = lr0 / (1 + decay_rate * t)       (the course's 1 / (1 + decay_rate * epoch_num))
- ExponentialDecay:  lr = lr0 * decay_rate ** t             (the course's 0.95 ** epoch_num)
- InverseSqrtDecay:  lr = lr0 / sqrt(1 + t)                 (the course's k / sqrt(epoch_num))

with t = step / decay_steps, rounded down when ``staircase=True``.
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


SCHEDULES = {cls.name: cls for cls in (InverseTimeDecay, ExponentialDecay, InverseSqrtDecay)}


def get(config):
    config = dict(config)
    return SCHEDULES[config.pop("name")](**config)
