"""The compiled ops (custom_ops/, built by `make ops`), when they are there.

The library registers `CornerNet>CornerPool`, `CornerNet>CornerPoolGrad` (its gradient),
`CornerNet>WinogradInput` and `CornerNet>WinogradOutput`: namespaced, as TensorFlow's add-on
ops are, so that they never clash with another library's. `load()` returns them as
`.corner_pool`, `.corner_pool_grad`, `.winograd_input`, `.winograd_output`, or None; the reason
they are missing (not built, built for another TensorFlow, failed to load) is in `load_error()`.
"""

from __future__ import annotations

import types
from pathlib import Path

import tensorflow as tf

LIBRARY = Path(__file__).with_name("_custom_ops.so")
DTYPES = (tf.float32, tf.float16, tf.bfloat16)
OPS = ("corner_pool", "corner_pool_grad", "winograd_input", "winograd_output")
_module = None
_error: str | None = None


def load():
    """The loaded ops (.corner_pool, .corner_pool_grad, .winograd_input, .winograd_output), or
    None."""
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
            library = tf.load_op_library(str(LIBRARY))
            # TensorFlow names the wrappers after the op: "CornerNet>CornerPool" is
            # corner_net_corner_pool
            _module = types.SimpleNamespace(
                **{name: getattr(library, f"corner_net_{name}") for name in OPS}
            )
        except (tf.errors.NotFoundError, OSError) as error:
            _error = f"{LIBRARY.name} failed to load: {error}"
        except AttributeError as error:
            _error = f"{LIBRARY.name} was built from other sources (run `make ops` again): {error}"
    return _module


def load_error() -> str | None:
    load()
    return _error


@tf.RegisterGradient("CornerNet>CornerPool")
def _corner_pool_gradient(op, grad):
    return load().corner_pool_grad(op.inputs[0], grad, direction=op.get_attr("direction"))
