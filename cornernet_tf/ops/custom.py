"""The compiled ops (custom_ops/, built by `make ops`), when they are there.

The library registers `CornerNet>CornerPool`, `CornerNet>CornerPoolGrad` (its gradient),
`CornerNet>WinogradInput` and `CornerNet>WinogradOutput`: namespaced, as TensorFlow's add-on
ops are, so that they never clash with another library's. `load()` returns them as
`.corner_pool`, `.corner_pool_grad`, `.winograd_input`, `.winograd_output`, or None; the reason
they are missing (not built, built for another TensorFlow or for a CPU with instructions this
one lacks, failed to load) is in `load_error()`.
"""

from __future__ import annotations

import types
from pathlib import Path

import tensorflow as tf

from cornernet_tf.cpu import cpu_flags

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
    _error = _refusal(cpu_flags())
    if _error is None:
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


def _refusal(flags: set[str] | None) -> str | None:
    """Why the library must not be loaded here, or None. Its sidecar file holds the TensorFlow
    version it was built for (line 1) and the CPU flags its kernels need (line 2, from
    `custom_ops/build.py`); `flags` are this CPU's (None: unknown, not checked)."""
    sidecar = LIBRARY.with_name(LIBRARY.name + ".tf-version")
    if not LIBRARY.exists():
        return f"{LIBRARY.name} is not built (run `make ops`)"
    lines = sidecar.read_text().splitlines() if sidecar.exists() else []
    built = lines[0].strip() if lines else "an unknown version"
    if built != tf.__version__:
        return (
            f"{LIBRARY.name} was built for TensorFlow {built}, this is {tf.__version__} "
            "(run `make ops` again)"
        )
    missing = sorted(set(lines[1].split()) - flags) if len(lines) > 1 and flags is not None else []
    if missing:
        return (
            f"{LIBRARY.name} was built for a CPU with {', '.join(missing)}, which this one lacks "
            "(run `make ops` again here)"
        )
    return None


def load_error() -> str | None:
    load()
    return _error


@tf.RegisterGradient("CornerNet>CornerPool")
def _corner_pool_gradient(op, grad):
    return load().corner_pool_grad(op.inputs[0], grad, direction=op.get_attr("direction"))
