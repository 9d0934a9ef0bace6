"""Pure tensor functions."""

from cornernet_tf.ops.corner_pool import DIRECTIONS, IMPLEMENTATIONS, corner_pool

__all__ = ["DIRECTIONS", "IMPLEMENTATIONS", "corner_pool"]
