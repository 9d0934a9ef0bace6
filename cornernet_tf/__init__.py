"""CornerNet (Law & Deng, ECCV 2018) in TensorFlow 2 / Keras 3.

Importing the package registers its Keras classes, so `keras.saving.load_model("m.keras")` can
rebuild a saved CornerNet.
"""

__version__ = "0.1.0"

from cornernet_tf.config import Config, ConfigError, load_config  # noqa: E402
from cornernet_tf.inference import Detector  # noqa: E402
from cornernet_tf.model import CornerNet, build_model, load_trained  # noqa: E402
from cornernet_tf.optimize import inference_model, variant  # noqa: E402

__all__ = [
    "Config",
    "ConfigError",
    "CornerNet",
    "Detector",
    "__version__",
    "build_model",
    "inference_model",
    "load_config",
    "load_trained",
    "variant",
]
