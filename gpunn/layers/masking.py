"""Masks: which time steps of a padded batch are real, carried beside the values as Keras carries them.

Sentences of different lengths share a batch once they are padded to one length with id 0::

    ids   = [[5, 8, 2, 0, 0],            mask = [[T, T, T, F, F],
             [7, 3, 9, 4, 6]]                    [T, T, T, T, T]]

``Embedding(input_dim, output_dim, mask_zero=True)`` makes that mask, ``ids != 0``: booleans of shape
(batch, time) on the device. A model then carries each tensor's mask beside its values
(:meth:`gpunn.Model.forward`), with Keras's rules:

- a layer whose ``forward`` takes ``mask`` receives the mask of its first argument; one that takes
  ``<name>_mask`` receives the mask of its argument ``<name>`` (``value_mask``, ``query_mask``) --
  unless the call gives it explicitly;
- its output's mask is ``layer.compute_mask(x, mask)``: by default the input's own mask for a
  layer that works step by step (``supports_masking = True``: Dense, Dropout, LayerNormalization,
  attention...), None for one that does not (Flatten; a recurrent layer that returns only its
  last state);
- the loss weighs every step by its output's mask (:func:`gpunn.losses.apply_mask`), so padded
  steps contribute exactly nothing to the loss, its gradient or the metrics.

Masks are device arrays like the values: nothing here reads one back to the host, so a GPU never
waits for Python because of them. Outside a model (``layer(x)`` on arrays) nothing is carried:
give ``mask=...`` yourself.
"""

import functools
import inspect


@functools.lru_cache(maxsize=None)
def _parameters(forward):
    """The parameter names of a layer class's ``forward`` (``self`` left out), read once per class."""
    return tuple(inspect.signature(forward).parameters)[1:]


def mask_parameters(layer):
    """The parameters of ``layer.forward`` that take masks: ``mask`` and every ``<name>_mask``."""
    return tuple(name for name in _parameters(type(layer).forward) if name == "mask" or name.endswith("_mask"))


def masks_to_give(layer, arguments, mask_of, value_of):
    """The mask arguments a model adds to a call of ``layer`` (those the call leaves out), and the mask
    of its first argument (what :meth:`Layer.compute_mask` starts from).

    ``arguments`` are the call's arguments by name, as recorded in the graph; ``mask_of(argument)`` is
    the mask of one (None when it has none), or the masks of a list of them; ``value_of(argument)`` its
    value.
    """
    first = next(iter(arguments))
    given = {}
    for name in mask_parameters(layer):
        source = first if name == "mask" else name[:-len("_mask")]
        if name not in arguments and source in arguments:
            mask = mask_of(arguments[source])
            if _any(mask):
                given[name] = mask
    if "mask" in arguments:  # given explicitly, as in Keras: it is the mask the output inherits
        return given, value_of(arguments["mask"])
    return given, given.get("mask", mask_of(arguments[first]))


def output_masks(layer, x, mask, count):
    """One mask (or None) per output of a call: ``layer.compute_mask(x, mask)``, which names the first
    output's mask alone when the others (returned states, attention scores) have none."""
    masks = layer.compute_mask(x, mask)
    if count == 1:
        return [masks]
    return list(masks) if isinstance(masks, (list, tuple)) else [masks] + [None] * (count - 1)


def first_mask(layer, mask):
    """``{name: mask}`` for the parameter of ``layer.forward`` that takes its first argument's mask
    (``mask``, or ``query_mask``...): how a block (Residual, the Transformer blocks) hands its own
    input's mask to the layers it holds. Empty when there is no mask or the layer takes none."""
    if mask is None:
        return {}
    names = mask_parameters(layer)
    for name in ("mask", f"{_parameters(type(layer).forward)[0]}_mask"):
        if name in names:
            return {name: mask}
    return {}


def _any(mask):
    """Whether a mask (or a list of masks) holds any mask at all -- a Python question about None, never about values."""
    if isinstance(mask, (list, tuple)):
        return any(_any(m) for m in mask)
    return mask is not None
