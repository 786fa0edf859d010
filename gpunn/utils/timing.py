"""Timing on either backend, measured the way the GPU needs it.

A CuPy call returns as soon as its kernel is *queued*; the GPU works on
asynchronously. Reading a wall clock around it measures Python, not the GPU.
So on the GPU we record two CUDA events around the work and ask the device how
far apart they were; on the CPU a wall clock is the truth.

    >>> seconds = time_fn(lambda: model.predict(x), warmup=3, repeat=20)   # the median
    >>> for row in profile_layers(model, x, y): print(row)                # where a step's time goes
"""

import statistics
import time

import gpunn.backend as backend


def elapsed(fn):
    """``(fn(), seconds)``: CUDA events around ``fn`` on the GPU, ``perf_counter`` on the CPU."""
    if backend.is_gpu():
        start, stop = backend.xp.cuda.Event(), backend.xp.cuda.Event()
        start.record()
        result = fn()
        stop.record()
        stop.synchronize()
        return result, backend.xp.cuda.get_elapsed_time(start, stop) / 1e3
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


def time_fn(fn, warmup=3, repeat=20):
    """Median seconds of ``fn()`` over ``repeat`` calls, after ``warmup`` calls (compiling, caches)."""
    for _ in range(warmup):
        fn()
    return statistics.median(elapsed(fn)[1] for _ in range(repeat))


def profile_layers(model, x, y, warmup=2, repeat=10):
    """Where one training step of a compiled ``model`` spends its time, layer by layer.

    Runs the step as ``fit`` does -- forward with ``training=True``, the loss, its
    gradient, backward (without dL/dx of the data) -- timing every piece separately, ``repeat`` times after
    ``warmup`` steps. Weights are not updated. Returns one dict per row, forward
    order, with the median milliseconds: ``{"layer", "type", "output_shape",
    "forward_ms", "backward_ms"}``; the loss is the last row.
    """
    if model.loss is None:
        raise RuntimeError("profile_layers times the loss too: call model.compile(optimizer=..., loss=...) first")
    x, y = model._check_data(x, y)
    x, y = backend.to_device(x), backend.to_device(y)
    model.layers[0].needs_input_grad = False  # as in train_step: nothing uses dL/dx of the data
    names = [layer.name for layer in model.layers] + ["loss"]
    forward = {name: [] for name in names}
    backward = {name: [] for name in names}
    shapes = {}
    for step in range(warmup + repeat):
        keep = step >= warmup
        a = x
        for layer in model.layers:
            a, seconds = elapsed(lambda: layer.forward(a, training=True))
            shapes[layer.name] = tuple(a.shape)
            if keep:
                forward[layer.name].append(seconds)
        _, seconds = elapsed(lambda: model.compute_loss(a, y))
        da, seconds_grad = elapsed(model.loss_gradient)
        if keep:
            forward["loss"].append(seconds)
            backward["loss"].append(seconds_grad)
        for layer in reversed(model.layers):
            da, seconds = elapsed(lambda: layer.backward(da))
            if keep:
                backward[layer.name].append(seconds)
    types = {layer.name: type(layer).__name__ for layer in model.layers}
    return [{"layer": name, "type": types.get(name, model.loss.name), "output_shape": shapes.get(name, ()),
             "forward_ms": 1e3 * statistics.median(forward[name]),
             "backward_ms": 1e3 * statistics.median(backward[name])} for name in names]


def format_profile(rows):
    """The rows of :func:`profile_layers` as a text table, with a total line."""
    lines = [f"{'layer':<24}{'type':<22}{'output':<18}{'forward ms':>12}{'backward ms':>13}"]
    for r in rows:
        shape = "x".join(str(d) for d in r["output_shape"])
        lines.append(f"{r['layer']:<24}{r['type']:<22}{shape:<18}{r['forward_ms']:>12.3f}{r['backward_ms']:>13.3f}")
    lines.append(f"{'total':<64}{sum(r['forward_ms'] for r in rows):>12.3f}"
                 f"{sum(r['backward_ms'] for r in rows):>13.3f}")
    return "\n".join(lines)
