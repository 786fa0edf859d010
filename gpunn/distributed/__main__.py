"""``python -m gpunn.distributed -n N <python arguments>``: see :mod:`gpunn.distributed.launch`."""

from gpunn.distributed.launch import main

if __name__ == "__main__":
    main()
