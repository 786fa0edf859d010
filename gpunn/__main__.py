"""``python -m gpunn info``: which backend and device gpunn uses, and the versions behind it."""

import argparse

import gpunn.backend as backend


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m gpunn", description=__doc__)
    parser.add_argument("command", choices=["info"], help="info: print the backend, device, versions and data paths")
    parser.parse_args(argv)
    print("\n".join(backend.info()))


if __name__ == "__main__":
    main()
