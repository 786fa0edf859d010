"""compile(jit_compile=True): the training step captured as a CUDA graph (gpunn/backend/graphs.py,
gpunn/models/captured.py), on the stand-in, whose capture runs nothing and whose replays run what was
recorded -- as a GPU does -- and which refuses what a GPU refuses during a capture."""

import numpy as np
import pytest

import gpunn
import gpunn.backend as backend
from gpunn.backend import graphs, kernels
from gpunn.layers import Dense, Dropout, Flatten
from tests import test_cupy_standin

cupy = test_cupy_standin.cupy  # the fixture: the stand-in as CuPy, in this process

rng = np.random.default_rng(11)
X = rng.random((300, 1, 28, 28), dtype=np.float32)
Y = rng.integers(0, 10, 300)
IDS = rng.integers(1, 20, (48, 7)).astype(np.float32)
IDS[::3, 5:] = 0  # padding: the masks go through the captured step too
LABELS = rng.integers(0, 3, 48)


def capture(cupy, work):
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream, cupy.cuda.using_allocator(cupy.cuda.MemoryPool().malloc):
        stream.begin_capture()
        try:
            result = work()
        finally:
            graph = stream.end_capture()
    return graph, result


def test_a_capture_runs_nothing_and_each_replay_runs_it_all(cupy):
    a = cupy.asarray(np.arange(6, dtype=np.float32))
    w = cupy.ones(6, dtype=np.float32)

    def work():
        b = a * 2 + 1  # new arrays: from the graph's pool
        w[...] += b
        kernels.launch("optimizers", "sgd_update", 6, (w, b, np.int64(6), np.float32(0.5)))
        return b, w.sum()

    graph, (b, total) = capture(cupy, work)
    np.testing.assert_array_equal(w.get(), 1)  # nothing ran
    assert np.isnan(b.get()).all() and np.isnan(total.get())  # what the capture made holds garbage until a replay
    with cupy._standin.counting() as counted:
        graph.launch()
    assert counted.launches == counted.replays == 1 and counted.allocations == 0
    np.testing.assert_array_equal(w.get(), 1 + 0.5 * (2 * np.arange(6) + 1))
    a[...] = 10  # a replay reads the buffers as they are then, with the scalars as they were captured
    graph.launch()
    np.testing.assert_array_equal(b.get(), 21)
    assert float(total.get()) == pytest.approx(float(w.get().sum()))


@pytest.mark.parametrize("what, message", [
    (lambda cupy, a: float(a.sum()), "read back to the host"),
    (lambda cupy, a: cupy.asarray(np.ones(3)), "copy from the host"),
    (lambda cupy, a: a.reshape(2, 3) @ a.reshape(3, 2), "cuBLAS"),
    (lambda cupy, a: backend.random((3,)), None),
])
def test_a_capture_refuses_what_a_gpu_refuses(cupy, what, message):
    from cupy._core import CaptureError

    a = cupy.asarray(np.arange(6, dtype=np.float32))
    with pytest.raises(CaptureError, match=message or "random draw"):
        capture(cupy, lambda: what(cupy, a))
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream, pytest.raises(CaptureError, match="default memory pool"):  # no pool of its own
        stream.begin_capture()
        try:
            a + 1
        finally:
            stream.end_capture()


def test_block_counters_grow_without_freeing_and_are_never_made_during_a_capture(cupy, monkeypatch):
    """A graph captured earlier keeps the counters it was given: a larger array replaces them, the old one is kept.
    During a capture nothing runs, so new counters could not be zeroed: that is refused."""
    small = kernels.block_counters(1)
    big = kernels.block_counters(small.size + 1)
    assert big.size > small.size and any(c is small for c in kernels._outgrown)
    assert kernels.block_counters(5) is big and not big.get().any()
    monkeypatch.setattr(graphs, "_capturing", True)
    with pytest.raises(RuntimeError, match="during a CUDA graph capture"):
        kernels.block_counters(big.size + 1)


def lenet(jit, optimizer="adam"):
    from gpunn.examples.lenet import lenet5

    gpunn.utils.set_seed(0)
    model = lenet5()
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=jit)
    return model


def fit_both(n, optimizer="adam", same_product=False, monkeypatch=None):
    """[(history, weights, model)] of LeNet-5 fitted on n samples (batches of 32, 2 epochs) eagerly, then with
    jit_compile=True.
    ``same_product``: the eager run takes the graph's matrix product too (gpunn's kernel; cuBLAS rounds otherwise)."""
    runs = []
    for jit in (False, True):
        with monkeypatch.context() as patch:
            if same_product and not jit:
                patch.setattr(graphs, "in_graph", lambda: True)
            model = lenet(jit, gpunn.optimizers.get(optimizer if isinstance(optimizer, str) else optimizer.get_config()))
            history = model.fit(X[:n], Y[:n], batch_size=32, epochs=2, verbose=0)
        runs.append((history.history, model.get_weights(), model))
    assert runs[1][2]._captured and runs[0][2]._captured is None
    return runs


@pytest.mark.parametrize("optimizer", ["adam", gpunn.optimizers.SGD(0.05, momentum=0.9)], ids=["adam", "momentum"])
def test_replaying_the_graph_trains_as_the_eager_step_bit_for_bit(cupy, optimizer, monkeypatch):
    (eager, eager_w, _), (jit, jit_w, _) = fit_both(96, optimizer, same_product=True, monkeypatch=monkeypatch)
    assert eager == jit
    for a, b in zip(eager_w, jit_w):
        np.testing.assert_array_equal(a, b)


def test_fit_with_jit_compile_trains_as_fit_without_it(cupy, monkeypatch):
    """Eager steps on cuBLAS, the captured one on gpunn's product; 100 samples: a last batch of 4, run eagerly."""
    (eager, eager_w, _), (jit, jit_w, _) = fit_both(100, monkeypatch=monkeypatch)
    for name in eager:
        np.testing.assert_allclose(jit[name], eager[name], rtol=1e-4)
    for a, b in zip(eager_w, jit_w):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_a_full_batch_is_one_replay(cupy):
    """Arrays on the device: the graph gathers each batch itself, at its position in the epoch's order, and Adam
    reads its step count and rate from device memory: the host launches the graph, nothing else."""
    model = lenet(True)
    model.fit(X[:64], Y[:64], batch_size=32, epochs=1, verbose=0)  # captured at the first batch, replayed at the second
    from gpunn.models.totals import Totals

    step, totals = model._captured, Totals(model)
    assert step.arrays is not None
    step.start_order(None, 0)  # the epoch is over: from the first batch again
    with cupy._standin.counting() as counted:
        step.replay(totals)
    assert counted.replays == 1 and counted.gemms == 0 and counted.syncs == 0 and counted.uploads == 0, counted
    assert counted.allocations == 0 and counted.launches == 1, counted  # the update is in the graph too
    with cupy._standin.counting() as epoch:
        model.fit(X[:160], Y[:160], batch_size=32, epochs=1, verbose=0)  # new data: captured again, then 4 replays
    assert epoch.replays == 4, epoch
    x, y = backend.to_device(X[:160]), backend.to_device(Y[:160])
    for batch_size, replays in ((32, 4), (32, 5), (16, 9), (16, 10)):  # the same device arrays: the graph is kept
        with cupy._standin.counting() as epoch:  # until the batch size changes
            model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
        assert epoch.replays == replays, (batch_size, epoch)


def test_weights_set_between_fits_are_the_ones_trained(cupy, monkeypatch):
    """set_weights, then freezing a layer and compiling again: the graph is captured again, on the new weights."""
    runs = []
    for jit in (False, True):
        with monkeypatch.context() as patch:
            if not jit:  # the graph's matrix product for the eager run too
                patch.setattr(graphs, "in_graph", lambda: True)
            model = lenet(jit)
            model.fit(X[:64], Y[:64], batch_size=32, epochs=1, verbose=0)
            model.set_weights([w * 0.5 for w in model.get_weights()])
            model.fit(X[:64], Y[:64], batch_size=32, epochs=1, verbose=0)
            model.layers[0].trainable = False
            model.compile(model.optimizer, "sparse_categorical_crossentropy", jit_compile=jit)
            model.fit(X[:64], Y[:64], batch_size=32, epochs=1, verbose=0)
        runs.append(model.get_weights())
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_random_draws_in_a_captured_step_are_refused_before_any_weight_changes(cupy):
    gpunn.utils.set_seed(0)
    model = gpunn.Sequential([Flatten(input_shape=(1, 28, 28)), Dense(16, activation="relu"), Dropout(0.5),
                              Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", jit_compile=True)
    before = model.get_weights()
    with pytest.raises(ValueError, match="jit_compile=False"):
        model.fit(X[:64], Y[:64], batch_size=64, epochs=1, verbose=0)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_jit_compile_runs_eagerly_on_numpy_and_checks_its_value():
    if backend.is_gpu():
        pytest.skip("the NumPy backend's behaviour")
    eager, jit = lenet(False), lenet(True)
    for model in (eager, jit):
        model.fit(X[:100], Y[:100], batch_size=32, epochs=1, verbose=0)
    for a, b in zip(eager.get_weights(), jit.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="jit_compile must be True, False or 'auto'; received 'yes'"):
        jit.compile("adam", "mse", jit_compile="yes")


def fit_sequences(make, jit, monkeypatch, same_product=True):
    """(history, weights, model) of a small sequence model fitted on padded ids, eagerly or with jit_compile."""
    with monkeypatch.context() as patch:
        if same_product and not jit:
            patch.setattr(graphs, "in_graph", lambda: True)
        gpunn.utils.set_seed(0)
        model = make()
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=jit)
        history = model.fit(IDS, LABELS, batch_size=16, epochs=2, verbose=0)
    return history.history, model.get_weights(), model


@pytest.mark.parametrize("cell", ["LSTM", "GRU", "SimpleRNN"])
def test_a_recurrent_step_is_captured_time_loop_and_all(cupy, cell, monkeypatch):
    from gpunn import layers

    def make():
        return gpunn.Sequential([layers.Embedding(20, 8, mask_zero=True, input_shape=(7,)), getattr(layers, cell)(6),
                                 Dense(3, activation="softmax")])

    (eager, eager_w, _), (jit, jit_w, model) = (fit_sequences(make, jit, monkeypatch) for jit in (False, True))
    assert model._captured and eager == jit
    for a, b in zip(eager_w, jit_w):
        np.testing.assert_array_equal(a, b)


def test_a_step_that_cannot_be_captured_says_so_once_and_trains_eagerly(cupy, monkeypatch):
    from gpunn.layers import Embedding, GlobalAveragePooling1D, MultiHeadAttention

    def make():  # attention's products still go to cuBLAS, which a capture refuses
        ids = gpunn.Input((7,))
        h = Embedding(20, 8)(ids)
        return gpunn.Model(ids, Dense(3, activation="softmax")(GlobalAveragePooling1D()(MultiHeadAttention(2, 4)(h, h))))

    eager, eager_w, _ = fit_sequences(make, False, monkeypatch, same_product=False)
    with pytest.warns(UserWarning, match="could not be captured as a CUDA graph .*cuBLAS.*; it runs eagerly") as caught:
        jit, jit_w, model = fit_sequences(make, True, monkeypatch)
    assert len(caught) == 1 and model._captured is False
    for name in eager:
        np.testing.assert_allclose(jit[name], eager[name], rtol=1e-4)
    for a, b in zip(eager_w, jit_w):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


@pytest.mark.gpu
def test_on_the_gpu_jit_compile_trains_as_the_eager_step(monkeypatch):
    """The same as above on real CuPy when there is a GPU (CUDA graph capture, the graph's own memory pool, replays
    on the current stream), on the stand-in otherwise; the product is gpunn's on both sides."""
    backend.set_backend("cupy")
    (eager, eager_w, _), (jit, jit_w, model) = fit_both(96, same_product=True, monkeypatch=monkeypatch)
    for name in eager:
        np.testing.assert_allclose(jit[name], eager[name], rtol=1e-6)
    for a, b in zip(eager_w, jit_w):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


class Batches(gpunn.utils.PyDataset):
    """Three batches of 32, as a generator-style dataset: the captured step copies each one in."""

    def __len__(self):
        return 3

    def __getitem__(self, i):
        return X[32 * i:32 * i + 32], Y[32 * i:32 * i + 32]


def test_batches_from_a_dataset_are_copied_in_and_replayed(cupy, monkeypatch):
    runs = []
    for jit in (False, True):
        with monkeypatch.context() as patch:
            if not jit:
                patch.setattr(graphs, "in_graph", lambda: True)
            model = lenet(jit)
            with cupy._standin.counting() as counted:
                history = model.fit(Batches(), epochs=2, verbose=0)
        runs.append((history.history, model.get_weights()))
    assert model._captured.arrays is None and counted.replays == 2 * 3 - 1  # the first batch ran in the warm-up
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("optimizer, in_graph", [
    (gpunn.optimizers.Adam(gpunn.schedules.ExponentialDecay(1e-3, 2, 0.5)), True),  # a new rate every step
    (gpunn.optimizers.RMSprop(1e-3), True),
    (gpunn.optimizers.Nadam(1e-3), False),  # no scheduled kernel: the update runs after the replay
    (gpunn.optimizers.Adam(1e-3, clipnorm=1.0), False),
], ids=["adam-schedule", "rmsprop", "nadam", "adam-clipnorm"])
def test_the_update_runs_in_the_graph_where_it_has_its_kernels(cupy, optimizer, in_graph, monkeypatch):
    (eager, eager_w, _), (jit, jit_w, model) = fit_both(96, optimizer, same_product=True, monkeypatch=monkeypatch)
    assert (model._captured.schedule is not None) == in_graph
    assert model.optimizer.iterations == 6
    assert eager == jit
    for a, b in zip(eager_w, jit_w):
        np.testing.assert_array_equal(a, b)


def test_moving_statistics_count_the_first_batch_once(cupy, monkeypatch):
    """The warm-ups run the first batch's step twice for real: batch normalization's moving averages are put back
    in between, so that they end as the eager ones do."""
    from gpunn.layers import BatchNormalization

    def make():
        return gpunn.Sequential([Flatten(input_shape=(1, 28, 28)), Dense(16), BatchNormalization(), Dense(10,
                                 activation="softmax")])

    runs = []
    for jit in (False, True):
        with monkeypatch.context() as patch:
            if not jit:
                patch.setattr(graphs, "in_graph", lambda: True)
            gpunn.utils.set_seed(0)
            model = make()
            model.compile("adam", "sparse_categorical_crossentropy", jit_compile=jit)
            model.fit(X[:96], Y[:96], batch_size=32, epochs=2, verbose=0)
        runs.append(model.get_weights())
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
