"""Runs an exported SavedModel in a process that never imports cornernet_tf (as TF Serving would).

    python run_saved_model.py SAVED_MODEL OUT.npz IMAGE...

Writes, for both signatures, every output: `encoded/<key>` for one serving_default call on all
the images (sizes may differ) and `image/<key>` for one serve_image call per image, stacked.
"""

import sys

import numpy as np
import tensorflow as tf

saved_model, out, *paths = sys.argv[1:]
model = tf.saved_model.load(saved_model)
encoded = [open(path, "rb").read() for path in paths]
results = {}
for key, value in model.signatures["serving_default"](images=tf.constant(encoded)).items():
    results[f"encoded/{key}"] = value.numpy()


def pixels(data: bytes) -> tf.Tensor:
    """A client's decoding: a JPEG with the accurate IDCT, as cv2.imread and PIL decode it and
    as serving_default does (TensorFlow's default is the fast one)."""
    if data[:3] == b"\xff\xd8\xff":
        return tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")
    return tf.io.decode_image(data, channels=3)


per_image = [model.signatures["serve_image"](images=pixels(data)[None]) for data in encoded]
for key in per_image[0]:
    results[f"image/{key}"] = np.concatenate([r[key].numpy() for r in per_image])
assert "cornernet_tf" not in sys.modules, "the SavedModel must load without the package"
np.savez(out, **results)
