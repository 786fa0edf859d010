"""LeNet-5 training on the CPU: gpunn, PyTorch and Keras (torch backend) side by side, interleaved.

Each framework lives in a process of its own, so that one's threads, caches and allocator do not
slow the next, and so that its peak memory can be read on its own (VmHWM). The parent asks each
process in turn for one round -- ``steps`` training steps on the same images, through the
framework's own ``fit`` (a plain loop for PyTorch) -- so that a busy moment of the machine falls on
all of them alike. It reports the minimum and the median of the rounds: on a shared machine the
minimum is the least disturbed measurement.

Before the first timed round each framework trains one untimed round and must have learnt
(training loss below 2.0; chance is 2.30), and must train a model of the same 61,706 parameters.
"""

import multiprocessing
import statistics
import time

import numpy as np

from benchmarks.common import rss_mib

PARAMETERS = 61_706  # LeNet-5 as gpunn.examples.lenet builds it


def gpunn_round(x, y, batch_size):
    import gpunn
    from gpunn.examples.lenet import lenet5

    gpunn.utils.set_seed(0)
    model = lenet5()
    model.compile("adam", "sparse_categorical_crossentropy")
    assert model.count_params() == PARAMETERS

    def train():
        return model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0).history["loss"][-1]

    return train


def torch_round(x, y, batch_size):
    import torch

    from benchmarks.bench_lenet import torch_lenet

    torch.manual_seed(0)
    model = torch_lenet(torch)
    assert sum(p.numel() for p in model.parameters()) == PARAMETERS
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def train():
        for start in range(0, len(tx), batch_size):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(tx[start:start + batch_size]), ty[start:start + batch_size])
            loss.backward()
            opt.step()
        return loss.item()

    return train


def keras_round(x, y, batch_size):
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    keras.utils.set_random_seed(0)
    keras.config.set_image_data_format("channels_first")
    model = keras.Sequential([
        keras.Input((1, 28, 28)),
        keras.layers.Conv2D(6, 5, padding="same", activation="relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(16, 5, activation="relu"), keras.layers.MaxPooling2D(2), keras.layers.Flatten(),
        keras.layers.Dense(120, activation="relu"), keras.layers.Dense(84, activation="relu"),
        keras.layers.Dense(10, activation="softmax")])
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    assert model.count_params() == PARAMETERS

    def train():
        return model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0).history["loss"][-1]

    return train


FRAMEWORKS = {"gpunn": gpunn_round, "torch": torch_round, "keras": keras_round}


def worker(conn, framework, x, y, batch_size):
    """Build, check, then train one round per request; answer the seconds, and at the end the peak memory."""
    try:
        base = rss_mib()
        train = FRAMEWORKS[framework](x, y, batch_size)
        loss = train()  # the untimed round: builds everything, and must have learnt
        if not loss < 2.0:
            raise AssertionError(f"{framework} did not learn: loss {loss:.3f} after {len(x) // batch_size} steps")
        conn.send(("ready", loss))
        while conn.recv() == "round":
            start = time.perf_counter()
            train()
            conn.send(time.perf_counter() - start)
        conn.send(rss_mib("VmHWM") - base)
    except ImportError as error:
        conn.send(("missing", str(error)))
    except Exception as error:  # the parent reports it, and the other frameworks still run
        conn.send(("failed", f"{type(error).__name__}: {error}"))


def side_by_side(x, y, batch_size, steps, rounds, frameworks=("gpunn", "torch", "keras")):
    """{framework: (min s, median s, peak MiB) or a string saying why it did not run} for one batch size."""
    context = multiprocessing.get_context("spawn")
    n = steps * batch_size
    x, y = np.ascontiguousarray(x[:n]), np.ascontiguousarray(y[:n])
    running, results = {}, {}
    for name in frameworks:
        parent, child = context.Pipe()
        process = context.Process(target=worker, args=(child, name, x, y, batch_size), daemon=True)
        process.start()
        status, detail = parent.recv()
        if status == "ready":
            running[name] = (parent, process, [])
        else:
            results[name] = f"{status}: {detail}"
            process.join()
    for _ in range(rounds):
        for name, (conn, _, times) in running.items():
            conn.send("round")
            answer = conn.recv()
            if not isinstance(answer, float):
                raise RuntimeError(f"{name} failed in a timed round: {answer}")
            times.append(answer)
    for name, (conn, process, times) in running.items():
        conn.send("stop")
        results[name] = (min(times), statistics.median(times), conn.recv())
        process.join()
    return results
