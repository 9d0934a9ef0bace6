"""OpenVINO IR export and inference: the served model for Intel's CPU engine.

`openvino` is an optional extra (`pip install ".[openvino]"`): it needs only NumPy, installs
beside TensorFlow 2.21 with `pip check` clean (unlike the TF.js converter, which needs a venv of
its own) and adds 180 MB. Its TensorFlow frontend reads the SavedModel itself.

The IR holds the same graph as the SavedModel's image signature, for one image: the official
test procedure (resize or any-size padding, normalisation, the network, flip test, decoding,
soft-NMS) in one graph, with BatchNorm folded. Its input is `images`, uint8 RGB [1, H, W, 3]:
OpenVINO has no conversion for TensorFlow's DecodeImage, so the client decodes the image, and
the input has rank 4 because the frontend cannot convert ReverseV2 (the flip test) on a tensor
of unknown rank. Outputs as the SavedModel's (`cornernet_tf.serving.OUTPUT_KEYS`). The weights
are float32; bfloat16 or float16 is chosen when the model is compiled, by OpenVINO's
INFERENCE_PRECISION_HINT (`load_openvino(..., precision=)`).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cornernet_tf.config import Config, category_ids
from cornernet_tf.export import serving_functions
from cornernet_tf.optimize import inference_model

# precision name -> OpenVINO's INFERENCE_PRECISION_HINT on the CPU
PRECISION_HINTS = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}
MODEL_FILE = "model.xml"  # and model.bin beside it
METADATA_FILE = "cornernet.json"


class OpenvinoError(RuntimeError):
    """OpenVINO is not installed, or the conversion failed; the message says what to do."""


def _openvino():
    try:
        import openvino
    except ImportError:
        raise OpenvinoError(
            'OpenVINO is not installed: pip install ".[openvino]" (or pip install openvino)'
        ) from None
    return openvino


def export_openvino(
    model,
    config: Config,
    path,
    *,
    input_size: int | None = None,
    flip: bool | None = None,
    fold_batchnorm: bool = True,
) -> Path:
    """Writes the OpenVINO IR of `model` to the folder `path` (model.xml, model.bin and
    cornernet.json: class_names, category_ids, input_size, flip). input_size: None for the
    official any-size procedure, N for a fixed N x N input; flip: the flip test (None: the
    config's). Returns the path of model.xml."""
    ov = _openvino()
    if config.test.procedure == "saccade":
        raise OpenvinoError(
            f"{config.source}: the OpenVINO export does not cover CornerNet-Saccade's test "
            "procedure (test.procedure saccade); export the SavedModel"
        )
    if flip is not None:
        config = dataclasses.replace(config, test=dataclasses.replace(config.test, flip=flip))
    network = inference_model(model, "float32", fold_batchnorm, corner_pool="tf")
    function, _ = serving_functions(network, config, input_size, browser=True)["serve_image"]
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cornernet-openvino-") as scratch:
        archive = keras.export.ExportArchive()
        spec = tf.TensorSpec([1, None, None, 3], tf.uint8, name="images")
        archive.add_endpoint("serve_image", function, [spec])
        archive.write_out(scratch, verbose=False)
        try:
            converted = ov.convert_model(scratch)
        except Exception as error:  # noqa: BLE001  (the frontend's own error types)
            raise OpenvinoError(f"OpenVINO could not convert the model: {error}") from None
    ov.save_model(converted, str(path / MODEL_FILE), compress_to_fp16=False)
    metadata = {
        "class_names": list(config.data.class_names),
        "category_ids": list(category_ids(config)),
        "input_size": input_size,
        "flip": config.test.flip,
    }
    (path / METADATA_FILE).write_text(json.dumps(metadata, indent=1))
    return path / MODEL_FILE


def load_openvino(path, precision: str = "float32", threads: int | None = None):
    """The IR in the folder `path` compiled for the CPU, computing in `precision` (float32,
    bfloat16, float16: OpenVINO's precision hint; the weights stay float32). Returns a function
    uint8 RGB image (H, W, 3) or (1, H, W, 3) -> the serving outputs as NumPy arrays (batch 1)."""
    ov = _openvino()
    if precision not in PRECISION_HINTS:
        raise ValueError(f"precision must be one of {list(PRECISION_HINTS)}, got {precision!r}")
    folder = Path(path)
    xml = folder / MODEL_FILE if folder.is_dir() else folder
    settings = {"INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision]}
    if threads:
        settings["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(str(xml), "CPU", settings)

    def run(image) -> dict[str, np.ndarray]:
        image = np.asarray(image, np.uint8)
        outputs = compiled(image[None] if image.ndim == 3 else image)
        return {output.get_any_name(): value for output, value in outputs.items()}

    return run
