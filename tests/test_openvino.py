"""The OpenVINO IR export: converted from the served graph, run by OpenVINO on the CPU, the
same detections as the SavedModel's image signature (float32), bfloat16 close."""

import json

import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf.serving import OUTPUT_KEYS
from tests.helpers import run_script

openvino = pytest.importorskip(
    "openvino", reason='OpenVINO is not installed: pip install ".[openvino]"'
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def exported(tiny_weights, tmp_path_factory):
    """The tiny model as an OpenVINO IR (any size) and as a SavedModel, by cornernet-export."""
    config, weights = tiny_weights
    out = tmp_path_factory.mktemp("openvino")
    args = ["--config", str(config), "--weights", str(weights), "--out", str(out / "saved")]
    assert run_script("export", *args, "--openvino", str(out / "ir")) == 0
    return out


def test_ir_gives_the_saved_models_detections(exported, test_images):
    from cornernet_tf.openvino_ir import load_openvino

    saved = tf.saved_model.load(str(exported / "saved/1")).signatures["serve_image"]
    ir = load_openvino(exported / "ir")
    for path in test_images:
        image = tf.io.decode_image(path.read_bytes(), channels=3).numpy()
        expected = {k: v.numpy() for k, v in saved(images=tf.constant(image[None])).items()}
        found = ir(image)
        assert set(found) == set(OUTPUT_KEYS)
        count = int(expected["num_detections"][0])
        assert int(found["num_detections"][0]) == count
        height, width = image.shape[:2]
        scale = np.array([height, width, height, width], np.float32)
        np.testing.assert_allclose(  # boxes within 1e-3 pixels of the image
            found["detection_boxes"][0, :count] * scale,
            expected["detection_boxes"][0, :count] * scale,
            atol=1e-3,
        )
        np.testing.assert_allclose(
            found["detection_scores"][0], expected["detection_scores"][0], atol=1e-5
        )
        np.testing.assert_array_equal(
            found["detection_classes"][0], expected["detection_classes"][0]
        )


def test_ir_metadata_and_bfloat16(exported, test_images):
    from cornernet_tf.openvino_ir import load_openvino

    metadata = json.loads((exported / "ir/cornernet.json").read_text())
    model = openvino.Core().read_model(str(exported / "ir/model.xml"))
    top_ks = [op.get_attributes() for op in model.get_ops() if op.get_type_name() == "TopK"]
    assert len(top_ks) >= 4 and not [t for t in top_ks if t["stable"]]  # exact_top_k ran
    assert metadata["class_names"] == ["circle", "square", "triangle", "star"]
    assert metadata["category_ids"] == [1, 2, 3, 4] and metadata["input_size"] is None
    image = tf.io.decode_image(test_images[0].read_bytes(), channels=3).numpy()
    full, half = (
        load_openvino(exported / "ir")(image),
        load_openvino(exported / "ir", "bfloat16")(image),
    )
    assert abs(full["detection_scores"][0, 0] - half["detection_scores"][0, 0]) < 0.05


def _stable_top_k_model(shape, k):
    from openvino import Model, opset13

    data = opset13.parameter(shape, np.float32, name="x")
    if k is None:  # k as an input, as the final top-k of the served graph has it
        count = opset13.parameter([], np.int32, name="k")
        top = opset13.topk(data, count, -1, "max", "value", "i32", stable=True)
        return Model([top.output(0), top.output(1)], [data, count])
    top = opset13.topk(data, np.int32(k), -1, "max", "value", "i32", stable=True)
    return Model([top.output(0), top.output(1)], [data])


@pytest.mark.parametrize(
    "shape, k",
    [((2, 5000), 300), ((3, 64), 64), ((1, 10), 1), ((40,), None), ((0,), None)],
    ids=["rows", "whole", "one", "dynamic-k", "empty"],
)
def test_exact_top_k_keeps_tensorflows_order_of_ties(shape, k):
    """OpenVINO's stable TopK (TensorFlow's top_k) sorts in O(n k) on the CPU; the rewrite uses
    the fast unstable one and restores the order exactly: greater values first, equal values
    by lower index, as tf.math.top_k."""
    import openvino

    from cornernet_tf.openvino_ir import exact_top_k

    model = exact_top_k(_stable_top_k_model([-1] * len(shape) if k is None else shape, k))
    top_ks = [op for op in model.get_ops() if op.get_type_name() == "TopK"]
    assert top_ks and not [op for op in top_ks if op.get_attributes()["stable"]]
    compiled = openvino.Core().compile_model(model, "CPU")
    rng = np.random.default_rng(0)
    data = rng.integers(0, 7, shape).astype(np.float32) / 7  # few values: ties everywhere
    count = shape[-1] // 2 if k is None else k
    inputs = [data, np.int32(count)] if k is None else [data]
    values, indices = compiled(inputs).values()
    expected = tf.math.top_k(data, k=count)
    np.testing.assert_array_equal(indices, expected.indices.numpy())
    np.testing.assert_array_equal(values, expected.values.numpy())


@pytest.fixture(scope="module")
def int8_exported(tiny_weights, shapes, tmp_path_factory):
    """The tiny model's IR with int8 convolutions, calibrated on 8 of 10 shapes training images
    in a folder that also holds a file that is not an image (left out)."""
    pytest.importorskip("nncf", reason='NNCF is not installed: pip install ".[int8]"')
    from cornernet_tf.openvino_ir import int8_unhelpful

    if reason := int8_unhelpful():
        pytest.skip(reason)
    config, weights = tiny_weights
    out = tmp_path_factory.mktemp("int8")
    calibration = out / "calibration"
    calibration.mkdir()
    for path in sorted((shapes / "train").glob("*.png"))[:10]:
        (calibration / path.name).write_bytes(path.read_bytes())
    (calibration / "notes.txt").write_text("not an image")
    args = ["--config", str(config), "--weights", str(weights), "--out", str(out / "saved")]
    args += ["--openvino", str(out / "ir"), "--int8", str(calibration), "--int8-images", "8"]
    assert run_script("export", *args) == 0
    return out


def test_int8_quantises_the_convolutions_only(int8_exported):
    from cornernet_tf.openvino_ir import INT8_OPS

    metadata = json.loads((int8_exported / "ir/cornernet.json").read_text())
    assert metadata["int8"] == {"calibration_images": 8}  # notes.txt left out
    model = openvino.Core().read_model(str(int8_exported / "ir/model.xml"))
    quantizers = [op for op in model.get_ops() if op.get_type_name() == "FakeQuantize"]
    assert quantizers
    quantized = set()
    for op in quantizers:  # each feeds a convolution (its input or its weights), nothing else
        users = [target.get_node() for target in op.output(0).get_target_inputs()]
        assert {user.get_type_name() for user in users} <= set(INT8_OPS), op.get_friendly_name()
        quantized |= {user.get_friendly_name() for user in users}
    convolutions = [op for op in model.get_ops() if op.get_type_name() in INT8_OPS]
    # all but the 4 convolutions before the final stack's corner pools
    assert len(quantized) == len(convolutions) - 4


def test_int8_detections_stay_close_to_float32(int8_exported, exported, test_images):
    from cornernet_tf.openvino_ir import load_openvino

    full, int8 = load_openvino(exported / "ir"), load_openvino(int8_exported / "ir")
    for path in test_images:
        image = tf.io.decode_image(path.read_bytes(), channels=3).numpy()
        expected, found = full(image), int8(image)
        assert set(found) == set(OUTPUT_KEYS)
        np.testing.assert_allclose(
            found["detection_scores"][0, :10], expected["detection_scores"][0, :10], atol=0.05
        )


def test_int8_is_refused_where_openvino_has_no_int8_convolutions(int8_exported, monkeypatch):
    from cornernet_tf import openvino_ir

    # int8 was measured faster than float32 with AVX2 alone, AVX-512 without VNNI, and VNNI
    assert openvino_ir.int8_unhelpful({"avx2", "fma"}) is None
    assert openvino_ir.int8_unhelpful({"avx2", "avx512f", "avx512bw"}) is None
    assert openvino_ir.int8_unhelpful({"avx2", "avx512_vnni", "amx_int8"}) is None
    reason = openvino_ir.int8_unhelpful({"avx", "sse4_2"})
    assert "no AVX2" in reason and "float32 IR" in reason
    assert openvino_ir.int8_unhelpful({"asimd", "asimddp"}) == reason  # not x86: not measured
    monkeypatch.setattr(openvino_ir, "cpu_flags", lambda: {"avx", "sse4_2"})
    with pytest.raises(openvino_ir.OpenvinoError, match="is an int8 IR: int8 is not faster"):
        openvino_ir.load_openvino(int8_exported / "ir")


def test_int8_needs_the_openvino_export(tiny_weights, tmp_path, capsys):
    config, weights = tiny_weights
    args = ["--config", str(config), "--weights", str(weights), "--out", str(tmp_path / "s")]
    assert run_script("export", *args, "--int8", str(tmp_path)) == 2
    assert "--int8 quantises the OpenVINO IR: add --openvino DIR" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()  # refused before anything is written


@pytest.mark.parametrize(
    "hidden, extra, message",
    [
        ("openvino", [], 'OpenVINO is not installed: pip install ".[openvino]"'),
        ("nncf", ["--int8", "IMAGES"], 'int8 needs NNCF: pip install ".[int8]"'),
    ],
)
def test_a_missing_engine_is_named_before_anything_is_written(
    tiny_weights, shapes, tmp_path, capsys, monkeypatch, hidden, extra, message
):
    import sys

    monkeypatch.setitem(sys.modules, hidden, None)  # `import` fails as if not installed
    config, weights = tiny_weights
    args = ["--config", str(config), "--weights", str(weights), "--out", str(tmp_path / "s")]
    extra = [str(shapes / "train") if e == "IMAGES" else e for e in extra]
    assert run_script("export", *args, "--openvino", str(tmp_path / "ir"), *extra) == 2
    assert f"error: --openvino: {message}" in capsys.readouterr().err
    assert not (tmp_path / "s").exists() and not (tmp_path / "ir").exists()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda folder: folder / "missing", "not a folder of images"),
        (lambda folder: folder, "none of its 1 files is an image"),
    ],
    ids=["missing", "no-image"],
)
def test_int8_calibration_folder_is_checked_first(
    tiny_weights, tmp_path, capsys, monkeypatch, make, message
):
    from cornernet_tf import openvino_ir

    monkeypatch.setattr(openvino_ir, "cpu_flags", lambda: {"avx2"})
    (tmp_path / "notes.txt").write_text("not an image")
    config, weights = tiny_weights
    args = ["--config", str(config), "--weights", str(weights), "--out", str(tmp_path / "s")]
    args += ["--openvino", str(tmp_path / "ir"), "--int8", str(make(tmp_path))]
    assert run_script("export", *args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s").exists() and not (tmp_path / "ir").exists()


def test_int8_export_is_refused_without_avx2(tiny_weights, shapes, tmp_path, capsys, monkeypatch):
    from cornernet_tf import openvino_ir

    monkeypatch.setattr(openvino_ir, "cpu_flags", lambda: {"avx", "sse4_2"})
    config, weights = tiny_weights
    args = ["--config", str(config), "--weights", str(weights), "--out", str(tmp_path / "s")]
    args += ["--openvino", str(tmp_path / "ir"), "--int8", str(shapes / "train")]
    assert run_script("export", *args) == 2
    assert "--int8: int8 is not faster than float32 on this CPU" in capsys.readouterr().err
