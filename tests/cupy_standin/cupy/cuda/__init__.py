"""The stand-in's ``cupy.cuda``: one device (the CPU), events on the host clock, waits counted as syncs."""

import contextlib
import time

from cupy import _core
from cupy._core import check_name, counts


class runtime:
    """``cupy.cuda.runtime``: the questions gpunn asks about the device."""

    @staticmethod
    def getDeviceCount():
        return 1

    @staticmethod
    def getDeviceProperties(device):
        return {"name": b"CuPy stand-in (NumPy on the CPU)", "totalGlobalMem": 16 * 2**30, "major": 9, "minor": 0,
                "multiProcessorCount": 1}

    @staticmethod
    def runtimeGetVersion():
        return 13000

    @staticmethod
    def driverGetVersion():
        return 13000


class Device:
    """``cupy.cuda.Device(i)``: there is one, device 0."""

    def __init__(self, device=None):
        self.id = 0 if device is None else int(device)
        if self.id != 0:
            raise RuntimeError(f"cudaErrorInvalidDevice: the stand-in has one device, 0; asked for {self.id}")

    compute_capability = "90"

    def use(self):
        pass

    def synchronize(self):
        counts.syncs += 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class Event:
    """``cupy.cuda.Event()``: records the host clock (the stand-in's work is done when it returns)."""

    def __init__(self, block=False, disable_timing=False, interprocess=False):
        self.time = None

    def record(self, stream=None):
        self.time = time.perf_counter()

    def synchronize(self):
        counts.syncs += 1


class MemoryPointer:
    """``a.data``: where an array's device memory starts (``ptr``, an integer address)."""

    def __init__(self, ptr):
        self.ptr = ptr


class Stream:
    """A CUDA stream. The stand-in runs everything at once, in program order, whatever the stream; a
    stream other than the null one (handle 0) can capture a graph (see ``cupy._core``)."""

    _current = []  # the streams entered with ``with stream:``, innermost last
    _handles = iter(range(1, 1 << 62))

    def __init__(self, null=False, non_blocking=False, ptr=None):
        self.ptr = 0 if null else next(Stream._handles)

    def __enter__(self):
        Stream._current.append(self)
        return self

    def __exit__(self, *exc):
        Stream._current.pop()
        return False

    def use(self):
        Stream._current[:] = [self]
        return self

    def record(self, event=None):
        event = event or Event()
        event.record(self)
        return event

    def wait_event(self, event):
        pass  # in program order already

    def synchronize(self):
        counts.syncs += 1

    def is_capturing(self):
        return _core.capture is not None and _core.capture.stream is self

    def begin_capture(self, mode=None):
        if self.ptr == 0:
            raise RuntimeError("cudaErrorStreamCaptureUnsupported: the null stream cannot capture")
        if _core.capture is not None:
            raise RuntimeError("cudaErrorIllegalState: a stream is capturing already")
        _core.capture = _core.Capture()
        _core.capture.stream = self

    def end_capture(self):
        if not self.is_capturing():
            raise RuntimeError("cudaErrorIllegalState: this stream is not capturing")
        recorded, _core.capture = _core.capture, None
        for buffer in recorded.buffers:  # nothing ran: a value read before a replay is garbage
            _core.poison(buffer)
        return Graph(recorded.steps)


Stream.null = Stream(null=True)


class Graph:
    """A captured graph: ``launch`` replays what the capture recorded (one launch, counted in ``replays``)."""

    def __init__(self, steps):
        self._steps = steps

    def launch(self, stream=None):
        if _core.capture is not None:
            raise RuntimeError("the stand-in does not nest graphs: a graph launched during a capture")
        counts.replays += 1
        for step in self._steps:
            step()

    def upload(self, stream=None):
        pass


def get_current_stream(device=None):
    return Stream._current[-1] if Stream._current else Stream.null


class MemoryPool:
    """A memory pool of its own (``cupy.cuda.MemoryPool()``), for ``using_allocator(pool.malloc)``."""

    def malloc(self, size):
        raise RuntimeError("the stand-in's arrays are NumPy's: MemoryPool.malloc is only a token for using_allocator")

    def free_all_blocks(self, stream=None):
        pass


@contextlib.contextmanager
def using_allocator(allocator=None):
    """New device arrays come from ``allocator`` inside the block (the stand-in only notes that one is set)."""
    saved, _core.allocator = _core.allocator, allocator
    try:
        yield
    finally:
        _core.allocator = saved


def get_elapsed_time(start_event, end_event):
    """Milliseconds between two recorded events."""
    return 1e3 * (end_event.time - start_event.time)


def __getattr__(name):
    check_name("cupy.cuda", name)
    raise AttributeError(f"module 'cupy.cuda' of the stand-in has no '{name}' (real CuPy does: add it to the stand-in)")
