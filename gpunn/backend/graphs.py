"""CUDA graphs: a training step recorded once, then replayed with one launch.

A small network's training step is launch-bound on a GPU: each kernel launch costs the host
10-20 microseconds of Python and driver, more than the GPU spends on a LeNet layer. CUDA can
record what a stream is given (stream capture) into a graph, and launch the whole graph at
once afterwards: the host then pays one launch per step. ``model.compile(jit_compile=True)``
does this for the forward pass, the loss and backward (see :mod:`gpunn.models.training`).

A graph holds the work exactly as it was recorded, so the step must keep to four rules:

- fixed shapes: those of the batch it was captured with (a last, smaller batch runs eagerly);
- fixed addresses: every array is the same buffer at every replay. The batch is copied into
  buffers of its own before each replay; what the step allocates comes from a memory pool of
  the graph's own (``cupy.cuda.using_allocator``), kept as long as the graph, so that no other
  array is ever given that memory;
- fixed scalars: a number passed to a kernel (a learning rate, Adam's step count) is baked in;
  the optimizer's update, whose numbers change every step, stays out of the graph (one launch
  for all the weights, :mod:`gpunn.utils.flat`);
- no waiting for the GPU and no cuBLAS: no read back to the host, no copy from it (the loss
  stays on the device), and, since CuPy refuses cuBLAS calls during a capture, matrix products
  on gpunn's own kernel while :func:`in_graph` (``gpunn/ops/gemm.py``); no random numbers
  either, which would repeat at every replay (``backend.random`` refuses).

:class:`Graph` runs the step eagerly first, on a side stream with the graph's pool (warm-up:
the pool then holds blocks of every size the step asks for, and each kernel is compiled), then
captures it; replays run on the current stream, in order with the rest.
"""

import contextlib

import gpunn.backend as backend

_preparing = False
_capturing = False


def capturing():
    """True while a stream records a graph: work is recorded, not run, and new device memory cannot be had."""
    return _capturing


def in_graph():
    """True while a step is prepared for a graph (its warm-up and its capture): matrix products then run on
    gpunn's own kernel instead of cuBLAS, and random draws are refused."""
    return _preparing


class Graph:
    """``step()`` (no arguments: it reads and writes fixed buffers), run eagerly by :meth:`warm_up`, then
    recorded by :meth:`capture` and replayed by :meth:`replay`. :attr:`outputs`: what the captured run
    returned, the arrays every replay fills again."""

    def __init__(self, step):
        cupy = backend._cupy
        self.step, self.graph, self.outputs = step, None, None
        self.pool, self.stream = cupy.cuda.MemoryPool(), cupy.cuda.Stream(non_blocking=True)

    def warm_up(self):
        """Run the step for real, as it will be captured; returns a copy of its result (out of the graph's pool,
        which the capture reuses). Twice before capturing: the second run sees the first's arrays still held
        by the layers, as the capture will, so the pool then holds a block of every size the capture asks."""
        with self._preparing():
            result = self.step()
        return _copied(result)

    def capture(self):
        global _capturing
        with self._preparing():
            self.stream.begin_capture()
            _capturing = True
            try:
                self.outputs = self.step()
            except BaseException:
                with contextlib.suppress(Exception):  # the capture is broken; its end may say so, but the cause is this
                    self.stream.end_capture()
                raise
            finally:
                _capturing = False
            self.graph = self.stream.end_capture()
        self.step = None  # the graph holds the work now (and the step object need not be kept by its graph)

    @contextlib.contextmanager
    def _preparing(self):
        global _preparing
        cupy = backend._cupy
        self.stream.wait_event(cupy.cuda.get_current_stream().record())  # after the eager work before it
        _preparing = True
        try:
            with self.stream, cupy.cuda.using_allocator(self.pool.malloc):
                yield
        finally:
            _preparing = False
            cupy.cuda.get_current_stream().wait_event(self.stream.record())  # and the eager work after it waits

    def replay(self):
        """Run the captured step once more (one launch), on the current stream; its results land in :attr:`outputs`."""
        self.graph.launch(backend._cupy.cuda.get_current_stream())


def _copied(value):
    """``value`` with every array in it (through tuples and lists) copied."""
    if isinstance(value, (tuple, list)):
        return type(value)(_copied(v) for v in value)
    return value.copy() if isinstance(value, backend._cupy.ndarray) else value
