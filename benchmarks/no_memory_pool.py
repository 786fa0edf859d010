"""A pytest plugin for the compute-sanitizer runs of gpu_check.py: every CuPy array gets its own cudaMalloc.

CuPy's memory pool carves arrays out of larger blocks, so a kernel that reads or writes past the end
of an array usually lands inside the pool's block, where memcheck sees nothing wrong. Without the
pool every array is an allocation of its own, and memcheck catches the first byte past its end.

    compute-sanitizer --tool memcheck python -m pytest -p benchmarks.no_memory_pool tests/test_im2col.py -k cupy
"""


def pytest_configure(config):
    import cupy

    cupy.cuda.set_allocator(None)
