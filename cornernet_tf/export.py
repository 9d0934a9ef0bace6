"""SavedModel export for TF Serving (and, from it, the TF.js graph model).

Signatures (outputs as TF's object-detection API: boxes normalised [ymin, xmin, ymax, xmax] of
the original image, classes the dataset's category ids (the config's category map, 1..N
without one) as float32, padded to `max_detections` with zeros):

    serving_default: images  tf.string [B], encoded JPEG / PNG / GIF / BMP, any sizes, turned
                             upright by a JPEG's EXIF orientation (boxes are of the upright image)
    serve_image:     images  tf.uint8 [B, H, W, 3], RGB
      -> detection_boxes (B, N, 4), detection_scores (B, N), detection_classes (B, N),
         num_detections (B,)        (float32, N = config.test.max_per_image)

The graph holds the whole official test procedure (decode, resize, pad, BGR normalisation, the
network, flip test, corner decoding, soft-NMS) and only stock TF ops: the network is exported as
`cornernet_tf.optimize.inference_model` makes it, a variant of the model with the pure-TF corner
pools whatever the model was built with (no compiled op, no py_function), BatchNorm folded into
the convolutions (unless fold_batchnorm=False), computing in config.test.precision.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import tensorflow as tf

from cornernet_tf.config import Config, category_ids
from cornernet_tf.data.source import decode_upright
from cornernet_tf.images import MAX_PIXELS, SHOWN_AS_TEXT, encoded_format, encoded_size
from cornernet_tf.inference import detect_image
from cornernet_tf.optimize import inference_model


def serving_outputs(
    dets: dict, height, width, max_detections: int, category_ids
) -> dict[str, tf.Tensor]:
    """detect_image's output for one image -> the padded, normalised serving outputs; classes
    become category ids by the map `category_ids` (`cornernet_tf.config.category_ids`)."""
    x1, y1, x2, y2 = tf.unstack(dets["boxes"], axis=-1)
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    count = tf.shape(dets["scores"])[0]
    pad = [[0, max_detections - count]]
    ids = tf.gather(tf.constant(list(category_ids), tf.int32), dets["classes"])

    def padded(value):
        return tf.pad(value, pad + [[0, 0]] * (value.shape.rank - 1))

    return {
        "detection_boxes": padded(tf.stack([y1 / h, x1 / w, y2 / h, x2 / w], -1)),
        "detection_scores": padded(dets["scores"]),
        "detection_classes": padded(tf.cast(ids, tf.float32)),
        # counted from the scores, not tf.shape: OpenVINO 2026.4 returns garbage for a
        # shape value taken as an output
        "num_detections": tf.reduce_sum(tf.ones_like(dets["scores"])),
    }


def _output_signature(max_detections: int) -> dict[str, tf.TensorSpec]:
    return {
        "detection_boxes": tf.TensorSpec([max_detections, 4], tf.float32),
        "detection_scores": tf.TensorSpec([max_detections], tf.float32),
        "detection_classes": tf.TensorSpec([max_detections], tf.float32),
        "num_detections": tf.TensorSpec([], tf.float32),
    }


def check_encoded_image(data, index, max_pixels: int = MAX_PIXELS) -> tf.Tensor:
    """Decodes one encoded image to (H, W, 3) uint8 RGB after checks that name images[index]:
    not empty, a JPEG / PNG / GIF / BMP (else its first bytes are quoted in hex and ASCII, so
    the message stays valid UTF-8), at most `max_pixels` pixels by its header (before any
    pixel is decoded). A JPEG is turned upright by its EXIF orientation, as training reads it."""
    empty = tf.debugging.Assert(
        tf.strings.length(data) > 0,
        [tf.strings.format("images[{}] is an empty string, not an encoded image", index)],
    )
    with tf.control_dependencies([empty]):
        known = tf.greater_equal(encoded_format(data), 0)
    unknown = tf.debugging.Assert(
        known,
        [
            tf.strings.join(  # not tf.strings.format, which quotes a string
                [
                    tf.strings.format("images[{}] is not a JPEG, PNG, GIF or BMP file", index),
                    "; it starts with ",
                    quoted_bytes(tf.strings.substr(data, 0, 12)),
                ]
            )
        ],
    )
    with tf.control_dependencies([unknown]):
        height, width = encoded_size(data)
    too_large = tf.debugging.Assert(
        height * width <= max_pixels,
        [
            tf.strings.format(
                "images[{}] is {}x{} = {} pixels, more than the {} this model accepts "
                "(cornernet-export --max-pixels)",
                (index, width, height, height * width, max_pixels),
            )
        ],
    )
    with tf.control_dependencies([too_large]):
        data = tf.identity(data)
    return decode_upright(data)


def quoted_bytes(data) -> tf.Tensor:
    """Bytes (a scalar tf.string) as ASCII text: hex, then the printable characters, as
    `cornernet_tf.images.describe_bytes` writes them."""
    codes = tf.cast(tf.io.decode_raw(data, tf.uint8), tf.int32)
    hex_digits = tf.constant([f"{i:02x}" for i in range(256)])
    shown = tf.constant(SHOWN_AS_TEXT)
    hex_text = tf.strings.reduce_join(tf.gather(hex_digits, codes), separator=" ")
    text = tf.strings.reduce_join(tf.gather(shown, codes))
    return tf.strings.join([hex_text, " (as text: ", text, ")"])


def checked_batch(images, shape: list, what: str) -> tf.Tensor:
    """`images` after a run-time check of its rank and known dimensions against `shape`.

    The signatures take inputs of unknown rank and check them here: TF Serving feeds a request
    without checking it against the signature's shape, and a known rank would let the graph
    optimiser fold the check away.
    """
    actual = tf.shape(images)

    def dims_ok():  # only evaluated once the rank is right
        known = [tf.equal(actual[i], d) for i, d in enumerate(shape) if d is not None]
        return tf.reduce_all(known) if known else tf.constant(True)

    ok = tf.cond(tf.equal(tf.size(actual), len(shape)), dims_ok, lambda: tf.constant(False))
    expected = "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
    check = tf.debugging.Assert(
        ok,
        [f"images must be {what} of shape {expected}, got shape", actual],  # no StringFormat:
        summarize=8,  # TF.js has no such op
    )
    with tf.control_dependencies([check]):
        images = tf.identity(images)
    images.set_shape(shape)  # static only: TF.js 4.22 misreads EnsureShape's partial shapes
    return images


def serving_functions(
    model,
    config: Config,
    input_size: int | None = None,
    browser: bool = False,
    max_pixels: int = MAX_PIXELS,
) -> dict:
    """The signature functions of the serving model, {name: (function, input_signature)}.

    max_pixels: images with more pixels are refused (INVALID_ARGUMENT), encoded ones by their
    header before decoding.
    browser: only serve_image, for a batch of one image and without tf.map_fn, whose lowered
    while loop TF.js 4.22 cannot run ("LoopExecuted").
    """
    limit = config.test.max_per_image
    output_signature = _output_signature(limit)

    def one_image(image):
        shape = tf.shape(image)
        checks = [
            tf.debugging.Assert(
                tf.reduce_all(shape[:2] > 0),
                ["an image has no pixels: its shape is", shape],
                summarize=8,
            )
        ]
        if not browser:  # TF.js has no int64; its input has a fixed size
            pixels = tf.reduce_prod(tf.cast(shape[:2], tf.int64))
            message = f"an image has more than the {max_pixels} pixels this model accepts: shape"
            checks.append(tf.debugging.Assert(pixels <= max_pixels, [message, shape], summarize=8))
        with tf.control_dependencies(checks):
            image = tf.identity(image)
        dets = detect_image(model, image, config, input_size)
        height, width = tf.shape(image)[0], tf.shape(image)[1]
        return serving_outputs(dets, height, width, limit, category_ids(config))

    def serve_image(images):
        images = checked_batch(images, [None, None, None, 3], "a batch of RGB images")
        return tf.map_fn(one_image, images, fn_output_signature=output_signature)

    def serve_one(images):
        images = checked_batch(images, [1, None, None, 3], "one RGB image in a batch")
        return {key: value[None] for key, value in one_image(images[0]).items()}

    def serve_encoded(images):
        images = checked_batch(images, [None], "a batch (a list) of encoded images")
        index = tf.range(tf.shape(images)[0])
        return tf.map_fn(
            lambda args: one_image(check_encoded_image(*args, max_pixels)),
            (images, index),
            fn_output_signature=output_signature,
        )

    image_spec = [tf.TensorSpec(None, tf.uint8, name="images")]
    if browser:
        return {"serve_image": (serve_one, image_spec)}
    return {
        "serving_default": (serve_encoded, [tf.TensorSpec(None, tf.string, name="images")]),
        "serve_image": (serve_image, image_spec),
    }


def export_saved_model(
    model,
    config: Config,
    path,
    *,
    input_size: int | None = None,
    flip: bool | None = None,
    browser: bool = False,
    fold_batchnorm: bool = True,
    max_pixels: int = MAX_PIXELS,
) -> Path:
    """Writes the serving SavedModel of `model` to `path` (e.g. exported/cornernet/1).

    input_size: None for the official any-size procedure, or N for a fixed N x N input;
    flip: the flip test (None: config.test.flip); browser: only `serve_image`, for one image
    (batch 1) and without a loop, the source of the TF.js model (float32 only: TF.js has no
    bfloat16; not CornerNet-Saccade's procedure, which needs float64); fold_batchnorm: merge
    each BatchNorm into its convolution; max_pixels: the largest image (height x width) the
    model accepts, checked from an encoded image's header before decoding (not in the browser
    model, whose input has a fixed size). The network computes in config.test.precision.
    Returns the path.
    """
    if flip is not None:
        config = dataclasses.replace(config, test=dataclasses.replace(config.test, flip=flip))
    if browser and config.test.procedure == "saccade":
        raise ValueError(
            f"{config.source}: TF.js cannot run CornerNet-Saccade's test procedure "
            "(test.procedure saccade) as the SavedModel does: TF.js (4.22) has no float64 and "
            "computes the procedure's float64 steps in float32, where the location NMS compares "
            "distances that equal its threshold (attention peaks in neighbouring rows or columns "
            "are exactly 16 / zoom apart), so the browser model would crop other places and "
            'give other detections (docs/deployment.md, "CornerNet-Saccade and TF.js"); '
            "export the SavedModel only"
        )
    if browser and config.test.precision != "float32":
        raise ValueError(
            f"TF.js cannot run bfloat16: export the browser model with test.precision float32, "
            f"got {config.test.precision!r}"
        )
    model = inference_model(model, config.test.precision, fold_batchnorm, corner_pool="tf")
    # no archive.track(model): the endpoints' variables are tracked by ExportArchive itself, and
    # tracking the model too stores every variable twice (Keras 3.15; measured 2x the size)
    archive = keras.export.ExportArchive()
    path = Path(path)
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be at least 1, got {max_pixels}")
    functions = serving_functions(model, config, input_size, browser, max_pixels)
    for name, (function, signature) in functions.items():
        archive.add_endpoint(name, function, signature)
    archive.write_out(str(path), verbose=False)
    return path
