"""scripts/serving_client.py: REST and gRPC requests built, answered by the exported SavedModel as
TF Serving would answer them, and parsed back; the script end to end against a REST stand-in."""

import base64
import http.server
import importlib.util
import json
import threading

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import ROOT, run_script

pytestmark = pytest.mark.e2e  # the tiny model exported as a SavedModel

spec = importlib.util.spec_from_file_location("client", ROOT / "scripts" / "serving_client.py")
client = importlib.util.module_from_spec(spec)
spec.loader.exec_module(client)


@pytest.fixture(scope="module")
def served(exported):
    return tf.saved_model.load(str(exported["saved_model"]))


def answer_rest(model, body: dict) -> dict:
    """What TF Serving's REST API does with a row-format request to a one-input signature."""
    images = [base64.b64decode(row["b64"]) for row in body["instances"]]
    outputs = model.signatures[body["signature_name"]](images=tf.constant(images))
    count = len(images)
    return {
        "predictions": [
            {k: v[i].numpy().tolist() for k, v in outputs.items()} for i in range(count)
        ]
    }


def test_rest_request_and_response(served, test_images):
    encoded = [path.read_bytes() for path in test_images]
    body = json.loads(json.dumps(client.rest_request(encoded)))  # what goes over the wire
    assert body["signature_name"] == "serving_default"
    assert [base64.b64decode(row["b64"]) for row in body["instances"]] == encoded
    parsed = client.parse_rest_response(json.loads(json.dumps(answer_rest(served, body))))
    direct = served.signatures["serving_default"](images=tf.constant(encoded))
    for key in client.OUTPUT_KEYS:
        np.testing.assert_allclose(parsed[key], direct[key].numpy(), atol=1e-6, err_msg=key)
    assert parsed["detection_boxes"].shape == (len(encoded), 100, 4)


def test_rest_error_is_raised_with_the_servers_words():
    with pytest.raises(RuntimeError, match="images\\[0\\] is an empty string"):
        client.parse_rest_response({"error": "images[0] is an empty string, not an image"})


def test_grpc_request_and_response(served, test_images):
    from tensorflow_serving.apis import predict_pb2

    encoded = [path.read_bytes() for path in test_images]
    wire = client.grpc_request(encoded, "cornernet").SerializeToString()
    request = predict_pb2.PredictRequest.FromString(wire)  # as the server receives it
    assert request.model_spec.name == "cornernet"
    assert request.model_spec.signature_name == "serving_default"
    images = tf.make_ndarray(request.inputs["images"])
    assert list(images) == encoded
    outputs = served.signatures[request.model_spec.signature_name](images=tf.constant(images))
    response = predict_pb2.PredictResponse()
    for key, value in outputs.items():
        response.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
    parsed = client.parse_grpc_response(
        predict_pb2.PredictResponse.FromString(response.SerializeToString())
    )
    for key in client.OUTPUT_KEYS:
        np.testing.assert_array_equal(parsed[key], outputs[key].numpy())


def test_client_script_against_a_rest_stand_in(served, test_images, tmp_path, capsys):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (the http.server name)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            data = json.dumps(answer_rest(served, body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/v1/models/cornernet:predict"
    try:
        code = run_script(
            "serving_client", *map(str, test_images[:2]), "--url", url,
            "--names", "circle,square,triangle,star", "--threshold", "0", "--out", str(tmp_path),
        )  # fmt: skip
    finally:
        server.shutdown()
    assert code == 0
    results = json.loads((tmp_path / "detections.json").read_text())
    direct = served.signatures["serving_default"](images=tf.constant([test_images[0].read_bytes()]))
    first = results[str(test_images[0])]
    assert len(first) == int(direct["num_detections"][0])
    ymin, xmin, ymax, xmax = direct["detection_boxes"][0, 0].numpy() * 127
    np.testing.assert_allclose(first[0]["box"], [xmin, ymin, xmax, ymax], atol=0.01)
    assert (tmp_path / f"{test_images[0].stem}.png").is_file()
