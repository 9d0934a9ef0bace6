"""The serving SavedModel: loaded by stock TensorFlow in a clean process, equal to the in-Python
test procedure, listed and run by saved_model_cli, stock ops only, bad requests refused."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf import load_config
from cornernet_tf.data.source import decode_pixels
from cornernet_tf.export import export_saved_model
from cornernet_tf.images import read_image
from cornernet_tf.inference import Detector
from cornernet_tf.serving import OUTPUT_KEYS
from tests.helpers import ROOT, bmp_header, gif_header, png_header, run_script

pytestmark = pytest.mark.e2e  # the tiny model exported as a SavedModel

BIN = Path(sys.executable).parent


def expected_outputs(detector, paths, limit=100):
    """The in-Python pipeline's detections as the serving outputs (normalised, classes as the
    config's category ids, padded)."""
    from cornernet_tf.config import category_ids

    ids = np.array(category_ids(detector.config), np.float32)
    rows = {key: [] for key in OUTPUT_KEYS}
    for path in paths:
        image = read_image(path)
        dets = detector(image)
        h, w = image.shape[:2]
        x1, y1, x2, y2 = dets["boxes"].T
        count = len(dets["scores"])
        boxes = np.zeros((limit, 4), np.float32)
        boxes[:count] = np.stack([y1 / h, x1 / w, y2 / h, x2 / w], -1)
        scores, classes = np.zeros(limit, np.float32), np.zeros(limit, np.float32)
        scores[:count], classes[:count] = dets["scores"], ids[dets["classes"]]
        for key, value in zip(OUTPUT_KEYS, (boxes, scores, classes, count), strict=True):
            rows[key].append(value)
    return {key: np.array(value) for key, value in rows.items()}


def run_clean_process(saved_model, paths, out):
    """tests/scripts/run_saved_model.py: both signatures, in a process without cornernet_tf."""
    script = ROOT / "tests" / "scripts" / "run_saved_model.py"
    done = subprocess.run(
        [sys.executable, str(script), str(saved_model), str(out), *map(str, paths)],
        capture_output=True,
        text=True,
        cwd="/",  # not the repository: the package cannot be imported by accident
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # Grappler's layout pass gave up on the graph with an error line in the server's log
    assert "layout failed" not in done.stderr, done.stderr[-3000:]
    with np.load(out) as data:
        return {key: data[key] for key in data.files}


def assert_same(outputs, expected, prefix):
    np.testing.assert_array_equal(outputs[f"{prefix}/num_detections"], expected["num_detections"])
    for key in ("detection_boxes", "detection_scores", "detection_classes"):
        np.testing.assert_allclose(
            outputs[f"{prefix}/{key}"], expected[key], atol=1e-4, err_msg=key
        )


@pytest.fixture(scope="module")
def any_size(tiny_weights, tmp_path_factory):
    """The official any-size procedure exported (no --input-size) and its Detector."""
    detector = Detector.from_files(*tiny_weights)
    path = export_saved_model(detector.model, detector.config, tmp_path_factory.mktemp("any") / "1")
    return path, detector


def test_any_size_saved_model_equals_the_python_pipeline(any_size, test_images, tmp_path):
    path, detector = any_size
    outputs = run_clean_process(path, test_images, tmp_path / "out.npz")
    expected = expected_outputs(detector, test_images)
    assert expected["num_detections"].min() > 0, "the seeded model should detect something"
    assert_same(outputs, expected, "encoded")
    assert_same(outputs, expected, "image")


def test_fixed_size_saved_model_equals_the_python_pipeline(
    exported, tiny_weights, test_images, tmp_path
):
    outputs = run_clean_process(exported["saved_model"], test_images, tmp_path / "out.npz")
    detector = Detector.from_files(*tiny_weights, input_size=159)
    expected = expected_outputs(detector, test_images)
    assert_same(outputs, expected, "encoded")
    assert_same(outputs, expected, "image")
    # a 159 x 159 image is not resized: the fixed-size graph equals the official procedure there
    official = expected_outputs(Detector.from_files(*tiny_weights), test_images[3:])
    np.testing.assert_allclose(
        outputs["encoded/detection_boxes"][3], official["detection_boxes"][0], atol=1e-4
    )


def saved_nodes(path):
    """Every node of a SavedModel's graph and of its functions (NodeDef protos)."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    graph = proto.meta_graphs[0].graph_def
    nodes = list(graph.node)
    for function in graph.library.function:
        nodes += function.node_def
    return nodes


def assert_stock_ops_only(path):
    from tensorflow.python.framework import op_def_registry

    ops = {node.op for node in saved_nodes(path)}
    assert not ops & {"PyFunc", "EagerPyFunc", "PyFuncStateless", "CornerNet>CornerPool"}
    unknown = sorted(op for op in ops if op_def_registry.get(op) is None)
    assert not unknown, f"ops that stock TensorFlow does not have: {unknown}"


def test_export_layout_and_stock_ops_only(exported, tiny_weights):
    path = exported["saved_model"]
    assert (path / "saved_model.pb").is_file() and (
        path / "variables" / "variables.index"
    ).is_file()
    assert_stock_ops_only(path)
    # BatchNorm is folded into the convolutions by default
    assert not [node for node in saved_nodes(path) if "BatchNorm" in node.op]


def test_bfloat16_export_computes_in_bfloat16(tiny_weights, test_images, tmp_path):
    """--precision bfloat16 without folding: bfloat16 convolutions, stock ops, float32 outputs
    close to the float32 Detector's."""
    config, weights = tiny_weights
    out = tmp_path / "half"
    code = run_script(
        "export", "--config", str(config), "--weights", str(weights), "--out", str(out),
        "--input-size", "159", "--no-flip", "--precision", "bfloat16", "--no-fold-batchnorm",
    )  # fmt: skip
    assert code == 0
    path = out / "1"
    assert_stock_ops_only(path)
    nodes = saved_nodes(path)
    conv_types = {node.attr["T"].type for node in nodes if node.op == "Conv2D"}
    assert tf.bfloat16.as_datatype_enum in conv_types
    image = tf.constant(read_image(test_images[3]))
    served = tf.saved_model.load(str(path)).signatures["serve_image"](images=image[None])
    assert served["detection_scores"].dtype == tf.float32
    detector = Detector.from_files(config, weights, ["test.flip=false"], input_size=159)
    expected = detector(image.numpy())
    assert served["num_detections"][0] > 0
    np.testing.assert_allclose(served["detection_scores"][0, :5], expected["scores"][:5], atol=0.02)


def test_saved_model_cli_show_and_run(exported, test_images, tmp_path):
    path = exported["saved_model"]
    cli = str(BIN / "saved_model_cli")
    shown = subprocess.run(
        [cli, "show", "--dir", str(path), "--all"], capture_output=True, text=True, check=True
    ).stdout
    for name in ("serving_default", "serve_image", *OUTPUT_KEYS):
        assert name in shown
    image = tf.io.decode_image(test_images[0].read_bytes(), channels=3).numpy()[None]
    np.save(tmp_path / "image.npy", image)
    subprocess.run(
        [cli, "run", "--dir", str(path), "--tag_set", "serve", "--signature_def", "serve_image",
         "--inputs", f"images={tmp_path / 'image.npy'}", "--outdir", str(tmp_path / "out")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    boxes = np.load(tmp_path / "out" / "detection_boxes.npy")
    model = tf.saved_model.load(str(path))
    expected = model.signatures["serve_image"](images=tf.constant(image))["detection_boxes"]
    np.testing.assert_allclose(boxes, expected.numpy(), atol=1e-6)


@pytest.mark.parametrize(
    "signature, request_, message",
    [
        ("serving_default", [b""], "images[0] is an empty string"),
        (
            "serving_default",
            ["image", b"hello world"],
            "images[1] is not a JPEG, PNG, GIF or BMP file; it starts with",
        ),
        ("serving_default", ["image", "truncated"], "Invalid PNG data"),
        (  # bytes that are not UTF-8 are quoted in hex: the message stays text
            "serving_default",
            [bytes(range(200, 212))],
            "starts with c8 c9 ca cb cc cd ce cf d0 d1 d2 d3 (as text: ............)",
        ),
        (
            "serving_default",
            [b"RIFF\x1c\x05\x00\x00WEBPVP8 "],
            "starts with 52 49 46 46 1c 05 00 00 57 45 42 50 (as text: RIFF....WEBP)",
        ),
        (  # a 45-byte PNG header of 8000x8000: refused before any pixel is decoded
            "serving_default",
            [png_header(8000, 8000)],
            "images[0] is 8000x8000 = 64000000 pixels, more than the 33177600 this model accepts",
        ),
        ("serving_default", [gif_header(65535, 65535)], "65535x65535 = 4294836225 pixels"),
        ("serving_default", [bmp_header(9000, -9000)], "9000x9000 = 81000000 pixels"),
        (
            "serve_image",
            np.zeros((1, 4321, 7681, 3), np.uint8),
            "more than the 33177600 pixels this model accepts: shape] [4321 7681 3]",
        ),
        ("serving_default", [[b"x"]], "a batch (a list) of encoded images of shape [?]"),
        ("serve_image", np.zeros((8, 8, 3), np.uint8), "batch of RGB images of shape [?, ?, ?, 3]"),
        ("serve_image", np.zeros((1, 8, 8, 4), np.uint8), "got shape] [1 8 8 4]"),
        ("serve_image", np.zeros((1, 0, 8, 3), np.uint8), "an image has no pixels"),
        ("serve_image", np.zeros((1, 8, 8, 3), np.float32), "expected to be a uint8 tensor"),
    ],
)
def test_bad_requests_fail_in_the_signatures_own_checks(
    exported, test_images, signature, request_, message
):
    model = tf.saved_model.load(str(exported["saved_model"]))
    png = test_images[0].read_bytes()
    if isinstance(request_, list) and "image" in request_:
        request_ = [{"image": png, "truncated": png[:100]}.get(r, r) for r in request_]
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        model.signatures[signature](images=tf.constant(request_))
    assert message in str(error.value)


def test_encoded_images_are_turned_upright_by_their_exif_orientation(exported, test_images):
    """A phone photo stores its pixels sideways with an EXIF orientation; the encoded signature
    detects on the upright picture, as every viewer shows it and as training read it."""
    import io

    from PIL import Image

    model = tf.saved_model.load(str(exported["saved_model"]))
    upright = read_image(test_images[1])  # 90 x 160
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned a quarter anticlockwise: view it turned clockwise
    buffer = io.BytesIO()
    Image.fromarray(np.rot90(upright)).save(buffer, "JPEG", exif=exif.tobytes(), quality=95)
    photo = buffer.getvalue()
    served = model.signatures["serving_default"](images=tf.constant([photo]))
    turned = decode_pixels(tf.constant(photo)).numpy()  # as stored
    expected = model.signatures["serve_image"](images=tf.constant(np.rot90(turned, -1)[None]))
    sideways = model.signatures["serve_image"](images=tf.constant(turned[None]))
    assert int(served["num_detections"][0]) > 0
    for key in OUTPUT_KEYS:  # one float32 ulp apart at most: the two graphs differ
        np.testing.assert_allclose(served[key], expected[key], rtol=0, atol=1e-6, err_msg=key)
    assert not np.allclose(served["detection_boxes"], sideways["detection_boxes"])


def test_export_refuses_an_existing_version_and_bad_sizes(exported, tiny_weights, capsys):
    config, weights = tiny_weights
    out = exported["saved_model"].parent
    args = ["--config", str(config), "--weights", str(weights), "--out", str(out)]
    assert run_script("export", *args) == 2
    assert "exists" in capsys.readouterr().err
    assert run_script("export", *args, "--version", "2", "--input-size", "160") == 2
    assert "one less than a multiple of 32" in capsys.readouterr().err
    assert not (out / "2").exists()


def test_fixed_input_size_needs_one_scale(tiny_weights):
    config = load_config(tiny_weights[0], ["test.scales=[0.5,1]"])
    detector = Detector(Detector.from_files(*tiny_weights).model, config, input_size=159)
    with pytest.raises(ValueError, match="runs one scale"):
        detector(np.zeros((20, 20, 3), np.uint8))


@pytest.mark.slow
@pytest.mark.heavy
def test_hourglass104_exports_and_serves(test_images, tmp_path):
    """The full model (random weights, 805 MB of variables) through export and a clean process."""
    import keras

    from cornernet_tf import build_model

    keras.utils.set_random_seed(3)
    config = load_config(ROOT / "configs" / "hourglass104.yaml")
    detector = Detector(build_model(config), config)
    path = export_saved_model(detector.model, config, tmp_path / "hg104" / "1")
    size = sum(f.stat().st_size for f in (path / "variables").glob("variables.data*"))
    # stored once; the first stack's corner modules and heads (26 MB) are not in the test path
    assert 0.77e9 < size < 0.81e9
    images = test_images[1:2]  # the 90 x 160 JPEG: a 127 x 255 input
    outputs = run_clean_process(path, images, tmp_path / "out.npz")
    assert_same(outputs, expected_outputs(detector, images), "encoded")


def test_export_uses_the_pure_tf_corner_pool(tiny_weights, tmp_path):
    """A model built with another implementation is exported as its "tf" variant (same
    weights); the model itself is left as it was."""
    from cornernet_tf import build_model
    from cornernet_tf.optimize import inference_model

    config = load_config(tiny_weights[0], ["model.corner_pool=custom"])
    model = build_model(config)
    copy = inference_model(model, fold=False, corner_pool="tf")
    assert copy.corner_pool == "tf" and model.corner_pool == "custom"
    for a, b in zip(model.get_weights(), copy.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    path = export_saved_model(model, config, tmp_path / "m", input_size=159, browser=True)
    graph = tf.saved_model.load(str(path)).signatures["serve_image"].graph.as_graph_def()
    ops = {node.op for node in graph.node}
    ops |= {node.op for f in graph.library.function for node in f.node_def}
    assert not any(op.startswith("CornerNet>") for op in ops), sorted(ops)
    assert model.corner_pool == "custom"


@pytest.mark.heavy
def test_saccade_saved_model_equals_the_python_pipeline(test_images, tmp_path):
    """CornerNet-Saccade's whole procedure (glance, attention crops, per-class soft-NMS) in the
    same two signatures, stock ops only, equal to the Python Detector in a clean process. Seeded
    random weights; an embedding threshold that pairs any corners so that boxes come out."""
    import keras

    keras.utils.set_random_seed(3)
    overrides = {"test.ae_threshold": 1e3, "test.att_thresholds": [0.05]}
    detector = Detector.from_files("tiny_saccade", overrides=overrides)
    path = export_saved_model(detector.model, detector.config, tmp_path / "saccade" / "1")
    assert_stock_ops_only(path)
    outputs = run_clean_process(path, test_images, tmp_path / "out.npz")
    expected = expected_outputs(detector, test_images)
    assert expected["num_detections"].min() > 0
    assert_same(outputs, expected, "encoded")
    assert_same(outputs, expected, "image")


def test_the_printed_docker_command_quotes_a_path_with_spaces(tmp_path):
    import shlex

    from cornernet_tf.cli.export import serving_help

    version = tmp_path / "my models" / "cornernet" / "1"
    command = serving_help(version, "cornernet").splitlines()[0].removeprefix("TF Serving:")
    words = shlex.split(command)
    assert words[words.index("-v") + 1] == f"{version.parent}:/models/cornernet"
