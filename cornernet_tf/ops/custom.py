"""The compiled CornerPool op (custom_ops/corner_pool, built by `make ops`), when it is there.

`load()` returns the op module or None; the reason it is missing (not built, built for another
TensorFlow, failed to load) is in `load_error()`. Its gradient is the CornerPoolGrad op.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

LIBRARY = Path(__file__).with_name("_custom_ops.so")
DTYPES = (tf.float32, tf.float16, tf.bfloat16)
_module = None
_error: str | None = None


def load():
    """The loaded op library (with .corner_pool and .corner_pool_grad), or None."""
    global _module, _error
    if _module is not None or _error is not None:
        return _module
    version_file = LIBRARY.with_name(LIBRARY.name + ".tf-version")
    if not LIBRARY.exists():
        _error = f"{LIBRARY.name} is not built (run `make ops`)"
    elif not version_file.exists() or version_file.read_text().strip() != tf.__version__:
        built = version_file.read_text().strip() if version_file.exists() else "an unknown version"
        _error = (
            f"{LIBRARY.name} was built for TensorFlow {built}, this is {tf.__version__} "
            "(run `make ops` again)"
        )
    else:
        try:
            _module = tf.load_op_library(str(LIBRARY))
        except (tf.errors.NotFoundError, OSError) as error:
            _error = f"{LIBRARY.name} failed to load: {error}"
    return _module


def load_error() -> str | None:
    load()
    return _error


@tf.RegisterGradient("CornerPool")
def _corner_pool_gradient(op, grad):
    return load().corner_pool_grad(op.inputs[0], grad, direction=op.get_attr("direction"))
