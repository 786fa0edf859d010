import math

import numpy as np
import pytest

from gpunn import optimizers, schedules


def run(opt, steps=3, w0=(1.0, -2.0), grads=((0.5, -1.0), (0.1, 0.3), (-0.2, 0.4))):
    w = np.array(w0)
    for g in grads[:steps]:
        opt.apply([w], [np.array(g)])
    return w


def reference(update, steps=3, w0=(1.0, -2.0), grads=((0.5, -1.0), (0.1, 0.3), (-0.2, 0.4))):
    """The textbook loop, written scalar by scalar."""
    w, state = list(w0), [{} for _ in w0]
    for t, g in enumerate(grads[:steps], start=1):
        for i in range(len(w)):
            w[i] = update(w[i], g[i], state[i], t)
    return np.array(w)


def test_sgd_and_momentum_and_nesterov():
    np.testing.assert_allclose(run(optimizers.SGD(0.1)), reference(lambda w, g, s, t: w - 0.1 * g))

    def momentum(w, g, s, t, nesterov=False):
        s["v"] = 0.9 * s.get("v", 0.0) - 0.1 * g
        return w + (0.9 * s["v"] - 0.1 * g if nesterov else s["v"])

    np.testing.assert_allclose(run(optimizers.SGD(0.1, momentum=0.9)), reference(momentum))
    np.testing.assert_allclose(run(optimizers.SGD(0.1, momentum=0.9, nesterov=True)),
                               reference(lambda *a: momentum(*a, nesterov=True)))


def test_adagrad_rmsprop_adam():
    def adagrad(w, g, s, t):
        s["a"] = s.get("a", 0.1) + g * g
        return w - 0.01 * g / (math.sqrt(s["a"]) + 1e-7)

    def rmsprop(w, g, s, t):
        s["s"] = 0.9 * s.get("s", 0.0) + 0.1 * g * g
        return w - 0.01 * g / (math.sqrt(s["s"]) + 1e-7)

    def adam(w, g, s, t):
        s["m"] = 0.9 * s.get("m", 0.0) + 0.1 * g
        s["v"] = 0.999 * s.get("v", 0.0) + 0.001 * g * g
        m_hat, v_hat = s["m"] / (1 - 0.9 ** t), s["v"] / (1 - 0.999 ** t)
        return w - 0.01 * m_hat / (math.sqrt(v_hat) + 1e-7)

    np.testing.assert_allclose(run(optimizers.Adagrad(0.01)), reference(adagrad))
    np.testing.assert_allclose(run(optimizers.RMSprop(0.01)), reference(rmsprop))
    np.testing.assert_allclose(run(optimizers.Adam(0.01)), reference(adam))


def test_rmsprop_momentum_and_centered():
    def rmsprop(w, g, s, t, momentum=0.0, centered=False):
        s["s"] = 0.9 * s.get("s", 0.0) + 0.1 * g * g
        s["mg"] = 0.9 * s.get("mg", 0.0) + 0.1 * g
        step = 0.01 * g / (math.sqrt(s["s"] - (s["mg"] ** 2 if centered else 0.0)) + 1e-7)
        s["v"] = momentum * s.get("v", 0.0) + step
        return w - s["v"]

    np.testing.assert_allclose(run(optimizers.RMSprop(0.01, momentum=0.9)), reference(lambda *a: rmsprop(*a, 0.9)))
    np.testing.assert_allclose(run(optimizers.RMSprop(0.01, centered=True)),
                               reference(lambda *a: rmsprop(*a, centered=True)))
    both = run(optimizers.RMSprop(0.01, momentum=0.5, centered=True))
    np.testing.assert_allclose(both, reference(lambda *a: rmsprop(*a, 0.5, True)))
    # Keras 3.15 (float64) on the same steps; eps sits inside its square root, hence the tolerance.
    np.testing.assert_allclose(both, [0.9440193022568385, -1.968585888450637], rtol=1e-5)


def test_nadam_and_adadelta_as_keras():
    def nadam(w, g, s, t):
        u = [0.9 * (1 - 0.5 * 0.96 ** k) for k in range(1, t + 2)]
        s["m"] = 0.9 * s.get("m", 0.0) + 0.1 * g
        s["v"] = 0.999 * s.get("v", 0.0) + 0.001 * g * g
        m_hat = u[t] * s["m"] / (1 - np.prod(u)) + (1 - u[t - 1]) * g / (1 - np.prod(u[:t]))
        return w - 0.01 * m_hat / (math.sqrt(s["v"] / (1 - 0.999 ** t)) + 1e-7)

    def adadelta(w, g, s, t):
        s["g2"] = 0.95 * s.get("g2", 0.0) + 0.05 * g * g
        delta = -math.sqrt(s.get("d2", 0.0) + 1e-7) / math.sqrt(s["g2"] + 1e-7) * g
        s["d2"] = 0.95 * s.get("d2", 0.0) + 0.05 * delta * delta
        return w + 1.0 * delta

    np.testing.assert_allclose(run(optimizers.Nadam(0.01)), reference(nadam))
    np.testing.assert_allclose(run(optimizers.Adadelta(1.0)), reference(adadelta))
    # Keras 3.15, float64, the same three steps: gpunn writes these two exactly as Keras does.
    np.testing.assert_allclose(run(optimizers.Nadam(0.01)), [0.989703860651837, -1.994984221388918], rtol=1e-12)
    np.testing.assert_allclose(run(optimizers.Adadelta(1.0)), [0.9989522228439066, -1.9999434186636642], rtol=1e-12)


def test_nadam_schedule_resumes_from_the_step_count():
    """A loaded Nadam knows only its step count: the schedule's product is rebuilt from it."""
    straight = optimizers.Nadam(0.01)
    w = run(straight)
    resumed = optimizers.Nadam(0.01)
    w2 = run(resumed, steps=2)
    resumed._schedule = (0, 1.0)  # as after loading
    resumed.apply([w2], [np.array((-0.2, 0.4))])
    np.testing.assert_array_equal(w, w2)


def test_clipping():
    w = np.zeros(2)
    optimizers.SGD(1.0, clipvalue=0.5).apply([w], [np.array([2.0, -0.1])])
    np.testing.assert_allclose(w, [-0.5, 0.1])
    w = np.zeros(2)
    optimizers.SGD(1.0, clipnorm=1.0).apply([w], [np.array([3.0, 4.0])])
    np.testing.assert_allclose(w, [-0.6, -0.8])
    w1, w2 = np.zeros(1), np.zeros(1)
    optimizers.SGD(1.0, global_clipnorm=1.0).apply([w1, w2], [np.array([3.0]), np.array([4.0])])
    np.testing.assert_allclose([w1[0], w2[0]], [-0.6, -0.8])


def test_schedules_follow_the_course():
    assert schedules.InverseTimeDecay(0.2, decay_steps=10, decay_rate=1.0)(20) == pytest.approx(0.2 / 3)
    exp = schedules.ExponentialDecay(1.0, decay_steps=10, decay_rate=0.95, staircase=True)
    assert exp(19) == pytest.approx(0.95) and exp(20) == pytest.approx(0.95 ** 2)
    assert schedules.InverseSqrtDecay(1.0, decay_steps=1)(3) == pytest.approx(0.5)
    opt = optimizers.SGD(schedules.InverseTimeDecay(1.0, 1, 1.0))
    w = run(opt, steps=2, w0=(0.0,), grads=((1.0,), (1.0,)))
    np.testing.assert_allclose(w, [-(1.0 + 0.5)])
    assert opt.iterations == 2 and opt.current_learning_rate() == pytest.approx(1 / 3)


def test_cosine_decay_matches_keras():
    cos = schedules.CosineDecay(2.0, decay_steps=100, alpha=0.1)
    assert cos(0) == 2.0 and cos(50) == pytest.approx(2.0 * (0.9 * 0.5 + 0.1)) and cos(100) == cos(500) == pytest.approx(0.2)
    warm = schedules.CosineDecay(0.0, decay_steps=10, warmup_target=1.0, warmup_steps=4)
    assert warm(2) == pytest.approx(0.5) and warm(4) == 1.0 and warm(14) == pytest.approx(0.0, abs=1e-12)
    assert schedules.get(warm.get_config())(7) == warm(7)
    with pytest.raises(ValueError, match="alpha must be in"):
        schedules.CosineDecay(1.0, 10, alpha=2.0)
    keras = pytest.importorskip("keras")
    theirs = keras.optimizers.schedules.CosineDecay(0.01, 40, alpha=0.05, warmup_target=0.1, warmup_steps=7)
    ours = schedules.CosineDecay(0.01, 40, alpha=0.05, warmup_target=0.1, warmup_steps=7)
    for step in (0, 3, 7, 20, 46, 60):
        assert ours(step) == pytest.approx(float(theirs(step)), rel=1e-6)


def test_string_aliases_and_errors():
    for name in ("sgd", "adam", "rmsprop", "adagrad", "nadam", "adadelta"):
        assert optimizers.get(name).name == name
    with pytest.raises(ValueError, match="valid optimizers are: sgd, adagrad, rmsprop, adam"):
        optimizers.get("lbfgs")
    with pytest.raises(ValueError, match="learning_rate must be a positive number"):
        optimizers.Adam(learning_rate=-1)
    with pytest.raises(ValueError, match="clipnorm must be positive"):
        optimizers.SGD(clipnorm=0)


UPDATES = {
    "sgd_update": (0, dict(lr=0.1)),
    "sgd_momentum_update": (1, dict(lr=0.1, momentum=0.9, nesterov=True)),
    "adagrad_update": (1, dict(lr=0.01, epsilon=1e-7)),
    "rmsprop_update": (1, dict(lr=0.01, rho=0.9, epsilon=1e-7)),
    "adam_update": (2, dict(lr=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-7, t=3)),
}


@pytest.mark.parametrize("name", sorted(UPDATES))
@pytest.mark.parametrize("shape", [(1,), (257,), (3, 5, 7), (10007,)])
def test_fused_kernels_match_twins(name, shape, kernel_device):
    """Each CUDA update equals its NumPy twin, on sizes that are not multiples of the block."""
    from gpunn.backend import kernels
    from gpunn.ops import optimizers as ops

    dev = kernel_device
    rng = np.random.default_rng(3)
    n_slots, kwargs = UPDATES[name]
    host = [rng.standard_normal(shape).astype(np.float32) for _ in range(2)]
    host += [np.abs(rng.standard_normal(shape)).astype(np.float32) for _ in range(n_slots)]
    on = [dev.asarray(a.copy()) for a in host]
    assert kernels.takes(*on)
    getattr(ops, f"{name}_gpu")(on[0], on[1], *on[2:], **kwargs)
    getattr(ops, f"{name}_cpu")(host[0], host[1], *host[2:], **kwargs)
    for d, h in zip(on, host):
        np.testing.assert_allclose(dev.to_numpy(d), h, rtol=2e-5, atol=1e-6)
    strided = dev.asarray(np.zeros((4, 6), np.float32))[:, ::2]
    assert not kernels.takes(strided, strided)  # non-contiguous views take the twin


def test_slots_are_kept_by_key():
    opt = optimizers.Adam(0.1)
    w1, w2 = np.zeros(2), np.zeros(3)
    opt.apply([w1, w2], [np.ones(2), np.ones(3)], keys=["a", "b"])
    opt.apply([w2], [np.ones(3)], keys=["b"])  # 'a' frozen for a step: 'b' keeps its own averages
    np.testing.assert_allclose(opt.slots["b"]["m"], 0.9 * 0.1 + 0.1)
    np.testing.assert_allclose(opt.slots["a"]["m"], 0.1)
    with pytest.raises(ValueError, match=r"slot 'm' of weight 'a' has shape \(2,\); received a weight of shape \(3,\)"):
        opt.apply([w2], [np.ones(3)], keys=["a"])
    with pytest.raises(ValueError, match="expected as many grads and keys as weights; received 1 weights, 1 grads "
                                         "and 2 keys"):
        opt.apply([w1], [np.ones(2)], keys=["a", "b"])


SCHEDULED = {  # the *_scheduled updates: the rate (and Adam's bias corrections) read from hyper in device memory
    "sgd_update": (0, dict()),
    "sgd_momentum_update": (1, dict(momentum=0.9, nesterov=True)),
    "adagrad_update": (1, dict(epsilon=1e-7)),
    "rmsprop_update": (1, dict(rho=0.9, epsilon=1e-7)),
    "adam_update": (2, dict(beta_1=0.9, beta_2=0.999, epsilon=1e-7)),
}


@pytest.mark.parametrize("name", sorted(SCHEDULED))
@pytest.mark.parametrize("shape", [(1,), (257,), (10007,)])
def test_scheduled_kernels_match_twins_and_the_eager_update(name, shape, kernel_device):
    """optimizer_schedule writes hyper for step t from the step count and the rate in device memory; each scheduled
    kernel, reading it, equals its twin, and both equal the eager update of step t, bit for bit on the host."""
    from gpunn.ops import optimizers as ops

    dev = kernel_device
    rng = np.random.default_rng(4)
    n_slots, kwargs = SCHEDULED[name]
    host = [rng.standard_normal(shape).astype(np.float32) for _ in range(2)]
    host += [np.abs(rng.standard_normal(shape)).astype(np.float32) for _ in range(n_slots)]
    betas = (kwargs.get("beta_1", 0.0), kwargs.get("beta_2", 0.0))
    hyper, step, rate = dev.asarray(np.full(3, np.nan, np.float32)), dev.asarray(np.array([2])), \
        dev.asarray(np.array([0.01], np.float32))
    ops.optimizer_schedule(hyper, step, rate, *betas)  # step 3
    np.testing.assert_array_equal(dev.to_numpy(step), [3])
    np.testing.assert_array_equal(dev.to_numpy(hyper), np.float32([0.01, 1 - betas[0] ** 3, 1 - betas[1] ** 3]))
    on = [dev.asarray(a.copy()) for a in host]
    getattr(ops, f"{name}_scheduled_gpu")(on[0], on[1], *on[2:], hyper, **kwargs)
    twin = [a.copy() for a in host]
    getattr(ops, f"{name}_scheduled_cpu")(twin[0], twin[1], *twin[2:], dev.to_numpy(hyper), **kwargs)
    eager = [dev.asarray(a.copy()) for a in host]
    eager_kwargs = {**kwargs, "lr": 0.01, **({"t": 3} if name == "adam_update" else {})}
    getattr(ops, f"{name}_gpu")(eager[0], eager[1], *eager[2:], **eager_kwargs)
    for d, t, e in zip(on, twin, eager):
        np.testing.assert_allclose(dev.to_numpy(d), t, rtol=2e-5, atol=1e-6)
        # on a GPU, CUDA's pow may round the bias corrections' last bit otherwise than the host's
        np.testing.assert_allclose(dev.to_numpy(d), dev.to_numpy(e), rtol=0 if dev.xp is np else 1e-6, atol=0)
