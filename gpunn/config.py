"""Global settings, named as in Keras: the data format of image layers.

    >>> gpunn.config.image_data_format()
    'channels_first'
    >>> gpunn.config.set_image_data_format("channels_last")   # before building the model

``channels_first`` is gpunn's default: images (N, C, H, W), the course's ``input_shape=(1, 28, 28)``.
``channels_last`` is Keras's: (N, H, W, C), ``input_shape=(28, 28, 1)``. The environment variable
``GPUNN_IMAGE_DATA_FORMAT`` sets the default for a whole run; ``set_image_data_format`` overrides it.
A layer given ``data_format=...`` ignores both.
"""

import os

DATA_FORMATS = ("channels_first", "channels_last")
ENVIRONMENT_VARIABLE = "GPUNN_IMAGE_DATA_FORMAT"

_image_data_format = None  # set_image_data_format's choice; None: the environment's, or channels_first


def check_data_format(data_format, where):
    if data_format not in DATA_FORMATS:
        raise ValueError(f"{where}: data_format must be 'channels_first' or 'channels_last'; received {data_format!r}")
    return data_format


def image_data_format():
    """The data format of image layers made without ``data_format``: 'channels_first' or 'channels_last'."""
    if _image_data_format is not None:
        return _image_data_format
    return check_data_format(os.environ.get(ENVIRONMENT_VARIABLE, "channels_first"), ENVIRONMENT_VARIABLE)


def set_image_data_format(data_format):
    """Make 'channels_first' or 'channels_last' the default of the image layers built from now on."""
    global _image_data_format
    _image_data_format = check_data_format(data_format, "set_image_data_format")
