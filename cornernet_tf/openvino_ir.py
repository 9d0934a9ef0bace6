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
INFERENCE_PRECISION_HINT (`load_openvino(..., precision=)`). With calibration images the
convolutions are quantised to int8 by NNCF (`export_openvino(..., int8_images=)`, the `int8`
extra), on CPUs where int8 is faster (AVX2 and later, `int8_unhelpful`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cornernet_tf.config import Config, category_ids
from cornernet_tf.cpu import cpu_flags
from cornernet_tf.export import serving_functions
from cornernet_tf.optimize import inference_model

# precision name -> OpenVINO's INFERENCE_PRECISION_HINT on the CPU
PRECISION_HINTS = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}
# /proc/cpuinfo flags under which OpenVINO's int8 convolutions beat its float32 ones: its int8
# kernels need AVX2 (about half the float32 time there and with AVX-512; VNNI and AMX cut more)
INT8_FLAGS = ("avx2",)
# the operations int8 applies to; the rest of the graph (corner pools, decoding, soft-NMS) stays
# in the compute precision: scores and boxes are never quantised
INT8_OPS = ("Convolution", "GroupConvolution", "ConvolutionBackpropData")
MODEL_FILE = "model.xml"  # and model.bin beside it
METADATA_FILE = "cornernet.json"


NO_OPENVINO = 'OpenVINO is not installed: pip install ".[openvino]" (or pip install openvino)'
NO_NNCF = 'int8 needs NNCF: pip install ".[int8]"'


class OpenvinoError(RuntimeError):
    """OpenVINO is not installed, or the conversion failed; the message says what to do."""


def missing_engine(int8: bool = False) -> str | None:
    """Why an IR cannot be written here (OpenVINO, or NNCF for int8, not installed), found
    without importing them; None when both are there."""
    import importlib.util

    if importlib.util.find_spec("openvino") is None:
        return NO_OPENVINO
    if int8 and importlib.util.find_spec("nncf") is None:
        return NO_NNCF
    return None


def _openvino():
    try:
        import openvino
    except ImportError:
        raise OpenvinoError(NO_OPENVINO) from None
    return openvino


def export_openvino(
    model,
    config: Config,
    path,
    *,
    input_size: int | None = None,
    flip: bool | None = None,
    fold_batchnorm: bool = True,
    int8_images=None,
) -> Path:
    """Writes the OpenVINO IR of `model` to the folder `path` (model.xml, model.bin and
    cornernet.json: class_names, category_ids, input_size, flip, int8). input_size: None for the
    official any-size procedure, N for a fixed N x N input; flip: the flip test (None: the
    config's). int8_images: calibration images (uint8 RGB arrays, H x W x 3, as the model will
    see them) to quantise the convolutions to int8 (`quantize_int8`); None keeps float32.
    Returns the path of model.xml."""
    ov = _openvino()
    if int8_images is not None and (reason := int8_unhelpful()):
        raise OpenvinoError(reason)
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
        converted = convert(scratch)
    int8 = None
    if int8_images is not None:
        converted, int8 = quantize_int8(converted, int8_images)
    ov.save_model(converted, str(path / MODEL_FILE), compress_to_fp16=False)
    metadata = {
        "class_names": list(config.data.class_names),
        "category_ids": list(category_ids(config)),
        "input_size": input_size,
        "flip": config.test.flip,
        "int8": int8,
    }
    (path / METADATA_FILE).write_text(json.dumps(metadata, indent=1))
    return path / MODEL_FILE


def convert(source):
    """`openvino.convert_model(source)` (a SavedModel folder or a concrete tf.function) with
    every stable TopK made fast by `exact_top_k`."""
    ov = _openvino()
    try:
        converted = ov.convert_model(source)
    except Exception as error:  # noqa: BLE001  (the frontend's own error types)
        raise OpenvinoError(f"OpenVINO could not convert the model: {error}") from None
    return exact_top_k(converted)


def exact_top_k(model):
    """Replaces each stable TopK of `model` (an openvino.Model; TensorFlow's top_k converts to
    one: equal values in index order) by the same result built on the unstable TopK.

    OpenVINO's CPU plugin sorts a stable TopK in O(n k): 670 ms for the 100 best of a
    Hourglass-104 heatmap (80 x 128 x 128), where the unstable one takes 2.4 ms. Rewritten, the
    k-th largest value comes from the unstable TopK; the selected elements are those above it
    and, of those equal to it, the first by index; they are ordered by (value descending, index
    ascending) with a k x k comparison, so values and indices equal TensorFlow's exactly.
    TopKs along another axis than the last, or of mode min, are left as they are."""
    from openvino import opset13 as ops

    for node in model.get_ordered_ops():
        attributes = node.get_attributes()
        if node.get_type_name() != "TopK" or not attributes.get("stable"):
            continue
        rank = node.input(0).get_partial_shape().rank
        if attributes["mode"] != "max" or not rank.is_static:
            continue
        if attributes["axis"] not in (-1, rank.get_length() - 1):
            continue
        values, indices = _top_k_from_unstable(ops, node, attributes["index_element_type"])
        node.output(0).replace(values)
        node.output(1).replace(indices)
    model.validate_nodes_and_infer_types()
    return model


def _top_k_from_unstable(ops, node, index_type: str):
    """(values, indices) of the stable TopK `node` along its last axis, from unstable ops."""
    data = node.input_value(0)
    k = ops.convert(node.input_value(1), index_type)
    fast = ops.topk(data, k, -1, "max", "none", index_type, stable=False)
    kth = ops.reduce_min(fast.output(0), np.int64(-1), keep_dims=True)  # the k-th largest
    above = ops.greater(data, kth)
    tied = ops.equal(data, kth)
    room = ops.subtract(k, ops.reduce_sum(ops.convert(above, index_type), np.int64(-1), True))
    tie_rank = ops.cumsum(ops.convert(tied, index_type), np.int64(-1), exclusive=True)
    chosen = ops.logical_or(above, ops.logical_and(tied, ops.less(tie_rank, room)))
    # exactly k chosen per row; NonZero lists them row by row, by index within a row
    where = ops.non_zero(chosen, index_type)
    positions = ops.gather(where, np.int64(-1), 0)  # the coordinates along the last axis
    chosen_index = ops.reshape(positions, ops.shape_of(fast.output(1), "i64"), False)
    chosen_value = ops.gather_elements(data, chosen_index, -1)
    # the rank of each chosen element: greater values, then equal values at lower indices
    v_i = ops.unsqueeze(chosen_value, np.int64(-1))
    v_j = ops.unsqueeze(chosen_value, np.int64(-2))
    order = ops.range(np.int32(0), ops.convert(k, "i32"), np.int32(1), "i32")
    before = ops.less(ops.unsqueeze(order, np.int64(0)), ops.unsqueeze(order, np.int64(1)))
    ahead = ops.logical_or(ops.greater(v_j, v_i), ops.logical_and(ops.equal(v_j, v_i), before))
    rank = ops.reduce_sum(ops.convert(ahead, index_type), np.int64(-1), False)
    indices = ops.scatter_elements_update(chosen_index, rank, chosen_index, np.int64(-1))
    values = ops.gather_elements(data, indices, -1)
    return values.output(0), indices.output(0)


def int8_unhelpful(flags: set[str] | None = None) -> str | None:
    """Why int8 would not be faster than float32 on a CPU with these /proc/cpuinfo flags (None:
    this CPU's), or None when OpenVINO has int8 convolutions for it (INT8_FLAGS: AVX2)."""
    flags = (cpu_flags() or set()) if flags is None else flags
    if flags & set(INT8_FLAGS):
        return None
    return (
        "int8 is not faster than float32 on this CPU: it has no AVX2, which OpenVINO's int8 "
        "convolutions need (with AVX2 they take about half the float32 time, with VNNI or AMX "
        "less); use the float32 IR with the float32 precision"
    )


def quantize_int8(model, images):
    """Post-training int8 quantisation (NNCF, its mixed preset) of an openvino.Model's
    convolutions (INT8_OPS), calibrated on `images`: uint8 RGB arrays
    (H x W x 3) or image files (read by `cornernet_tf.images.read_image` when NNCF needs them,
    so that hundreds of photos are never all in memory). Returns (quantised model,
    {"calibration_images": n}). Only the convolutions' inputs and weights become int8: the
    corner pools, decoding and soft-NMS keep their float values, and so do the convolutions
    that feed the corner pools (`_pool_inputs`)."""
    try:
        import nncf
    except ImportError:
        raise OpenvinoError(NO_NNCF) from None
    samples = list(images)
    if not samples:
        raise OpenvinoError("int8 needs at least one calibration image, got none")
    others = sorted({op.get_type_name() for op in model.get_ops()} - set(INT8_OPS))
    nncf.set_log_level(logging.WARNING)  # its progress bars stay; not a line per ignored op
    quantized = nncf.quantize(
        model,
        nncf.Dataset(samples, _model_input),
        subset_size=len(samples),
        preset=nncf.QuantizationPreset.MIXED,
        ignored_scope=nncf.IgnoredScope(names=_pool_inputs(model), types=others, validate=False),
    )
    try:  # never write an IR the CPU plugin cannot compile
        _openvino().Core().compile_model(quantized, "CPU")
    except RuntimeError as error:
        reason = " ".join(str(error).split())[-300:]
        raise OpenvinoError(
            f"the int8 IR does not compile on the CPU ({reason}); export float32"
        ) from None
    return quantized, {"calibration_images": len(samples)}


POOL_NAME = re.compile(r"(top|bottom|left|right)_pool")


def _pool_inputs(model) -> list[str]:
    """Names of the convolutions whose output goes (through its bias, ReLU, and the pool's own
    reversal) into a corner pool. They stay float: OpenVINO's low-precision passes would move
    their int8 scales into the pool, where they have failed to compile the pool's loop."""
    names = []
    for op in model.get_ops():
        if op.get_type_name() not in INT8_OPS:
            continue
        nodes = [op]
        for _ in range(4):  # bias, ReLU, reversal, the pool
            nodes = [t.get_node() for n in nodes for t in n.output(0).get_target_inputs()]
            if any(POOL_NAME.search(n.get_friendly_name()) for n in nodes):
                names.append(op.get_friendly_name())
                break
            nodes = [n for n in nodes if n.get_type_name() not in INT8_OPS]
    return names


def _model_input(image) -> np.ndarray:
    """A calibration image (array or file) as the IR's input, uint8 [1, H, W, 3]."""
    if isinstance(image, (str, Path)):
        from cornernet_tf.images import read_image

        image = read_image(image)
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise OpenvinoError(
            f"a calibration image must be uint8 RGB (H, W, 3), got {image.dtype} {image.shape}"
        )
    return image[None]


def load_openvino(path, precision: str = "float32", threads: int | None = None):
    """The IR in the folder `path` compiled for the CPU, computing in `precision` (float32,
    bfloat16, float16: OpenVINO's precision hint; the weights stay float32). Returns a function
    uint8 RGB image (H, W, 3) or (1, H, W, 3) -> the serving outputs as NumPy arrays (batch 1)."""
    ov = _openvino()
    if precision not in PRECISION_HINTS:
        raise ValueError(f"precision must be one of {list(PRECISION_HINTS)}, got {precision!r}")
    folder = Path(path)
    xml = folder / MODEL_FILE if folder.is_dir() else folder
    metadata = folder / METADATA_FILE if folder.is_dir() else folder.with_name(METADATA_FILE)
    if metadata.is_file() and json.loads(metadata.read_text()).get("int8"):
        if reason := int8_unhelpful():
            raise OpenvinoError(f"{xml} is an int8 IR: {reason}")
    settings = {"INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision]}
    if threads:
        settings["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(str(xml), "CPU", settings)

    def run(image) -> dict[str, np.ndarray]:
        image = np.asarray(image, np.uint8)
        outputs = compiled(image[None] if image.ndim == 3 else image)
        return {output.get_any_name(): value for output, value in outputs.items()}

    return run
