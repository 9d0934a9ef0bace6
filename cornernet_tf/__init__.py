"""CornerNet (Law & Deng, ECCV 2018) in TensorFlow 2 / Keras 3."""

from cornernet_tf.config import Config, ConfigError, load_config
from cornernet_tf.model import CornerNet, build_model

__all__ = ["Config", "ConfigError", "CornerNet", "build_model", "load_config"]
