"""What ``fit`` shows while it trains: a bar where one can be redrawn, one line per epoch where it cannot.

``verbose`` as in Keras:

- 0: nothing;
- 1 or ``"auto"`` (the default): a tqdm bar on a terminal or in a Jupyter notebook, redrawn in place;
  in a log file or a pipe, where every redraw would add a line, one line per epoch instead;
- 2: one line per epoch.

In a notebook the bar is tqdm's widget when ipywidgets is installed, its text bar
otherwise (``tqdm.auto`` would warn "IProgress not found" there).
"""

import importlib.util
import os
import sys
import time

VERBOSE = (0, 1, 2, "auto")
PLURAL = {"sample": "samples", "batch": "batches"}


def check_verbose(verbose):
    if verbose not in VERBOSE:
        raise ValueError(f"verbose must be 0 (silent), 1 or 'auto' (a progress bar), or 2 (one line per epoch); "
                         f"received verbose={verbose!r}")


def in_notebook():
    """Running in a Jupyter kernel: IPython's shell was started by a kernel app (tqdm's test).

    (Keras tests whether ipykernel was imported, which any program may do without running in a notebook.)
    """
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in shell.config


def is_terminal(stream):
    """A terminal a bar can be redrawn on. A pseudo-terminal that reports a width of 0 is not: tqdm draws an
    empty bar there, and mpirun hands its ranks such terminals."""
    if not getattr(stream, "isatty", lambda: False)():
        return False
    try:
        return os.get_terminal_size(stream.fileno()).columns > 0
    except (OSError, ValueError):  # no file descriptor to ask (an object standing in for a terminal)
        return True


def bar_class():
    """tqdm's widget bar in a notebook with ipywidgets; its text bar everywhere else."""
    if in_notebook() and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm
    else:
        from tqdm import tqdm
    return tqdm


class Progress:
    """One epoch's progress: samples (or batches) done, elapsed time, loss and metrics."""

    REFRESH_SECONDS = 0.5

    def __init__(self, verbose, total, description, unit="sample"):
        self.stream = sys.stdout
        self.total, self.description, self.unit = total, description, unit
        self.show_bar = verbose in (1, "auto") and (in_notebook() or is_terminal(self.stream))
        self.show_line = verbose == 2 or (verbose in (1, "auto") and not self.show_bar)
        self.bar = bar_class()(total=total, desc=description, unit=unit, file=self.stream, leave=True,
                               dynamic_ncols=True) if self.show_bar else None
        self.done, self.start = 0, time.perf_counter()
        self.last_refresh = self.start

    def update(self, n, totals):
        """``n`` more samples (or batches) done; the bar shows the running loss at most twice a second."""
        self.done += n
        if self.bar is None:
            return
        self.bar.update(n)
        now = time.perf_counter()
        if now - self.last_refresh >= self.REFRESH_SECONDS:
            self.bar.set_postfix(_format(totals.result()), refresh=False)
            self.last_refresh = now

    def close(self, logs):
        """End the epoch's display with its ``logs`` (None: the epoch had no batches, nothing to show)."""
        if self.bar is not None:
            if logs is not None:
                self.bar.set_postfix(_format(logs), refresh=False)
            self.bar.close()
        elif self.show_line and logs is not None:
            done = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
            elapsed = time.perf_counter() - self.start
            print(f"{self.description} - {done} {PLURAL[self.unit]} - {elapsed:.1f}s - "
                  + " - ".join(f"{k}: {v:.4f}" for k, v in logs.items()), file=self.stream)


def _format(logs):
    return {k: f"{v:.4f}" for k, v in logs.items()}
