"""The stand-in's ``cupy.cuda``: one device (the CPU), events on the host clock, waits counted as syncs."""

import time

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
    """A CUDA stream: the stand-in runs everything at once, on the null stream (handle 0)."""

    ptr = 0


def get_current_stream(device=None):
    return Stream()


def get_elapsed_time(start_event, end_event):
    """Milliseconds between two recorded events."""
    return 1e3 * (end_event.time - start_event.time)


def __getattr__(name):
    check_name("cupy.cuda", name)
    raise AttributeError(f"module 'cupy.cuda' of the stand-in has no '{name}' (real CuPy does: add it to the stand-in)")
