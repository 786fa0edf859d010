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
    gradient, backward (without dL/dx of the data) -- with every layer's forward and
    backward timed on their own, ``repeat`` times after ``warmup`` steps. Weights are not
    updated. Returns one dict per layer, in the order the graph runs them, with the median
    milliseconds: ``{"layer", "type", "output_shape", "forward_ms", "backward_ms"}``; the
    loss is the last row. (A layer called several times counts all its calls.)
    """
    if model._compile_args is None:
        raise RuntimeError("profile_layers times the loss too: call model.compile(optimizer=..., loss=...) first")
    xs, ys = model._check_data(x, y)
    xs, ys = [backend.to_device(a) for a in xs], [backend.to_device(a) for a in ys]
    layers = model.sublayers
    times = {layer.name: {"forward": [0.0], "backward": [0.0]} for layer in layers + [_LOSS]}
    shapes = {}

    def timed(layer, what, method):
        def run(*args, **kwargs):
            result, seconds = elapsed(lambda: method(*args, **kwargs))
            times[layer.name][what][-1] += seconds
            if what == "forward":
                shapes[layer.name] = tuple(getattr(result, "shape", ()))
            return result
        return run

    for layer in layers:  # instance attributes, in front of the class's methods while profiling
        layer.forward, layer.backward_call = timed(layer, "forward", layer.forward), \
            timed(layer, "backward", layer.backward_call)
    model.needs_input_grad = False  # as in train_step: nothing uses dL/dx of the data
    try:
        for _ in range(warmup + repeat):
            for entry in times.values():
                entry["forward"].append(0.0)
                entry["backward"].append(0.0)
            y_pred = model.forward(xs, training=True)
            _, seconds = elapsed(lambda: model.compute_loss(y_pred, ys))
            dy, seconds_grad = elapsed(model.loss_gradient)
            times[_LOSS.name]["forward"][-1], times[_LOSS.name]["backward"][-1] = seconds, seconds_grad
            model._backward(dy)
    finally:
        model.needs_input_grad = True
        for layer in layers:
            del layer.forward, layer.backward_call
    loss_names = ", ".join(head.loss.name for head in model.heads if head.loss is not None)
    return [{"layer": layer.name, "type": loss_names if layer is _LOSS else type(layer).__name__,
             "output_shape": shapes.get(layer.name, ()),
             "forward_ms": 1e3 * statistics.median(times[layer.name]["forward"][warmup + 1:]),
             "backward_ms": 1e3 * statistics.median(times[layer.name]["backward"][warmup + 1:])}
            for layer in layers + [_LOSS]]


class _Loss:
    name = "loss"


_LOSS = _Loss()


def format_profile(rows):
    """The rows of :func:`profile_layers` as a text table, with a total line."""
    lines = [f"{'layer':<24}{'type':<22}{'output':<18}{'forward ms':>12}{'backward ms':>13}"]
    for r in rows:
        shape = "x".join(str(d) for d in r["output_shape"])
        lines.append(f"{r['layer']:<24}{r['type']:<22}{shape:<18}{r['forward_ms']:>12.3f}{r['backward_ms']:>13.3f}")
    lines.append(f"{'total':<64}{sum(r['forward_ms'] for r in rows):>12.3f}"
                 f"{sum(r['backward_ms'] for r in rows):>13.3f}")
    return "\n".join(lines)
