"""Models: :class:`Sequential` (a stack of layers) and :class:`Model` (layers wired into any graph).

- :mod:`~gpunn.models.graph`: ``Input``, symbolic tensors, the recorded calls;
- :mod:`~gpunn.models.functional`: ``Model`` -- forward and backward over the graph;
- :mod:`~gpunn.models.training`: compile, fit, evaluate, predict (one loop for every model);
- :mod:`~gpunn.models.sequential`: ``Sequential``, the chain;
- :mod:`~gpunn.models.heads`, :mod:`~gpunn.models.checks`, :mod:`~gpunn.models.summary`,
  :mod:`~gpunn.models.serial`: per-output losses, data checks, the summary table, the saved graph.
"""

from gpunn import saving
from gpunn.models.functional import Model
from gpunn.models.graph import Input, InputLayer
from gpunn.models.sequential import Sequential

load_model = saving.load_model

__all__ = ["Input", "InputLayer", "Model", "Sequential", "load_model"]
