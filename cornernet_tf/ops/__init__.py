"""Pure tensor functions."""

from cornernet_tf.ops.corner_pool import (
    DIRECTIONS,
    IMPLEMENTATIONS,
    corner_pool,
    corner_pool_implementation,
    get_corner_pool_implementation,
    set_corner_pool_implementation,
)

__all__ = [
    "DIRECTIONS",
    "IMPLEMENTATIONS",
    "corner_pool",
    "corner_pool_implementation",
    "get_corner_pool_implementation",
    "set_corner_pool_implementation",
]
