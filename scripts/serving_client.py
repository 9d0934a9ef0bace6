#!/usr/bin/env python3
"""Send images to a CornerNet served by TF Serving and draw what comes back.

    python scripts/serving_client.py IMAGE... --url http://localhost:8501/v1/models/cornernet:predict
    python scripts/serving_client.py IMAGE... --grpc localhost:8500 [--model cornernet]
        [--signature serving_default] [--config C | --names a,b,c] [--threshold 0.3] [--out DIR]

REST sends the encoded files as {"instances": [{"b64": ...}, ...]}; gRPC sends a PredictRequest
(needs the `tensorflow-serving-api` package: pip install -e ".[serving]"). Writes DIR/<image>.png
with the boxes drawn and DIR/detections.json (boxes in pixels, [x1, y1, x2, y2]).

A reply that is not what TF Serving sends (an HTML error page of a proxy, an {"error": ...}, too
few or malformed predictions), or a server that cannot be reached, ends as one line `error: ...`
naming the URL, the HTTP status and the start of the reply, exit code 1; bad arguments, config
or images end the same way with exit code 2.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import math
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

from cornernet_tf.serving import OUTPUT_KEYS, pixel_detections

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHOWN = 200  # characters of a reply quoted in an error message


class ServingError(RuntimeError):
    """The server could not be reached or its reply is not a prediction; the message names the
    URL, the HTTP status and the start of the reply."""


class Reply:
    """An HTTP reply: its status and body, and the start of the body for messages."""

    def __init__(self, url: str, status: int, body: bytes):
        self.url, self.status, self.body = url, status, body

    def start(self) -> str:
        """The first line of the body, at most SHOWN characters, quoted and escaped."""
        text = self.body[: SHOWN * 4].decode("utf-8", "replace").strip()
        return repr(text.splitlines()[0][:SHOWN]) if text else "(an empty reply)"

    def error(self, problem: str) -> ServingError:
        return ServingError(f"{self.url}: HTTP {self.status}, {problem}: {self.start()}")


def rest_request(images: list[bytes], signature: str = "serving_default") -> dict:
    """The JSON body of a REST :predict request (row format, binary data as {"b64": ...})."""
    return {
        "signature_name": signature,
        "instances": [{"b64": base64.b64encode(data).decode("ascii")} for data in images],
    }


def parse_rest_response(body: dict, count: int | None = None) -> dict[str, np.ndarray]:
    """A REST :predict response -> {output key: array with the batch first}, checked by
    `check_outputs` (`count`: the images sent). Raises RuntimeError saying what is wrong."""
    if isinstance(body, dict) and "error" in body:
        raise RuntimeError(f"the server answered: {str(body['error'])[:SHOWN]!r}")
    if not isinstance(body, dict) or "predictions" not in body:
        raise RuntimeError("the reply has no 'predictions'")
    predictions = body["predictions"]
    if not isinstance(predictions, list):
        raise RuntimeError("'predictions' is not a list")
    if count is not None and len(predictions) != count:
        raise RuntimeError(f"{len(predictions)} prediction(s) for {count} images")
    outputs = {}
    for key in OUTPUT_KEYS:
        if not all(isinstance(p, dict) and key in p for p in predictions):
            raise RuntimeError(f"output {key!r} missing from a prediction")
        try:
            outputs[key] = np.array([p[key] for p in predictions], np.float32)
        except ValueError as error:
            what = "ragged" if "inhomogeneous" in str(error) else "not numbers"
            raise RuntimeError(f"output {key!r} is {what}") from None
    return check_outputs(outputs)


def check_outputs(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The detection outputs if their shapes agree (boxes (N, K, 4), scores and classes (N, K),
    num_detections (N,)) and their values are finite with 0 <= num_detections <= K; else
    RuntimeError naming the output."""
    boxes = np.asarray(outputs["detection_boxes"])
    n = len(boxes) if boxes.ndim else 0
    k = boxes.shape[1] if boxes.ndim == 3 else 0
    expected = {
        "detection_boxes": (n, k, 4),
        "detection_scores": (n, k),
        "detection_classes": (n, k),
        "num_detections": (n,),
    }
    for key, shape in expected.items():
        value = np.asarray(outputs[key])
        if value.shape != shape:
            raise RuntimeError(f"output {key!r} has shape {value.shape}, expected {shape}")
        if not np.all(np.isfinite(value.astype(np.float64))):
            raise RuntimeError(f"output {key!r} is not finite")
    counts = np.asarray(outputs["num_detections"], np.float64)
    bad = counts[(counts < 0) | (counts > k) | (counts != np.round(counts))]
    if bad.size:
        raise RuntimeError(f"output 'num_detections' is {bad[0]:g}, expected 0 to {k}")
    return outputs


def grpc_request(images: list[bytes], model: str = "cornernet", signature="serving_default"):
    """A tensorflow_serving PredictRequest with the encoded images as the `images` input."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(images, dtype=tf.string))
    return request


def parse_grpc_response(response) -> dict[str, np.ndarray]:
    """A PredictResponse -> {output key: array with the batch first}."""
    import tensorflow as tf

    return {key: tf.make_ndarray(response.outputs[key]) for key in OUTPUT_KEYS}


def send_rest(url: str, body: dict, timeout: float = 120) -> Reply:
    """POSTs `body` as JSON; returns the reply, whatever its status. Raises ServingError when
    the server cannot be reached and ValueError for a URL that is not http(s)."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"--url {url}: not an http:// or https:// URL")
    try:
        urllib.parse.urlsplit(url).port  # noqa: B018 (parses the host and port)
    except ValueError as error:
        raise ValueError(f"--url {url}: not a valid URL ({error})") from None
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Reply(url, response.status, response.read())
    except urllib.error.HTTPError as error:  # TF Serving explains itself in the body
        return Reply(url, error.code, error.read() or b"")
    except urllib.error.URLError as error:
        raise ServingError(f"{url}: cannot reach the server ({error.reason})") from None
    except (OSError, http.client.HTTPException) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ServingError(f"{url}: cannot reach the server ({reason})") from None


def rest_outputs(reply: Reply, count: int) -> dict[str, np.ndarray]:
    """The outputs of a REST reply for `count` images; ServingError naming the URL, the
    status and the start of the reply when it is not a prediction."""
    if not reply.body.strip():
        raise ServingError(f"{reply.url}: HTTP {reply.status}, an empty reply")
    try:
        body = json.loads(reply.body)
    except ValueError:  # an HTML page of a proxy, a plain-text error
        raise reply.error("the reply is not JSON") from None
    try:
        outputs = parse_rest_response(body, count)
    except RuntimeError as error:
        raise reply.error(str(error)) from None
    if reply.status != 200:
        raise reply.error("an error status with a prediction")
    return outputs


def send_grpc(target: str, request, timeout: float = 120):
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    server = parser.add_mutually_exclusive_group(required=True)
    server.add_argument("--url", help="REST :predict URL")
    server.add_argument("--grpc", metavar="HOST:PORT", help="gRPC address")
    parser.add_argument("--model", default="cornernet", help="model name (gRPC)")
    parser.add_argument("--signature", default="serving_default")
    parser.add_argument("--config", help="a config, for the class names")
    parser.add_argument("--names", help="comma-separated class names")
    parser.add_argument("--threshold", type=float, default=0.3, help="min score drawn and listed")
    parser.add_argument("--out", default="runs/serving_client", help="output folder")
    return parser.parse_args(argv)


def upright(path) -> tuple[bytes, np.ndarray]:
    """The bytes to send for an image file (the file as it is: the served model turns a photo
    upright by its EXIF orientation) and its (H, W, 3) RGB pixels, upright as the boxes are
    (`cornernet_tf.images.read_image`: ImageError naming a file that is not an image)."""
    from cornernet_tf.images import decode_file_bytes, read_file_bytes

    data = read_file_bytes(path)  # one read: the pixels drawn are those of the bytes sent
    return data, decode_file_bytes(data, path)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except ServingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


class UserError(Exception):
    """Bad arguments, config or images (exit code 2)."""


def user_errors() -> tuple[type[Exception], ...]:
    from cornernet_tf.config import ConfigError
    from cornernet_tf.images import ImageError

    return (ConfigError, ImageError, ValueError, OSError)


def run(args) -> int:
    """The client's work; raises ServingError (the server) or UserError (the arguments)."""
    if not (math.isfinite(args.threshold) and 0 <= args.threshold <= 1):
        raise UserError(f"--threshold must be a number in [0, 1], got {args.threshold}")
    names, ids = (args.names.split(",") if args.names else []), []
    try:
        from cornernet_tf.visualize import picture_paths

        pictures = picture_paths(Path(args.out), args.images)
        if args.config:
            from cornernet_tf.config import load_config

            config = load_config(args.config)
            names, ids = list(config.data.class_names), list(config.data.category_ids)
        encoded, images = zip(*(upright(path) for path in args.images), strict=True)
    except user_errors() as error:
        raise UserError(str(error).strip().splitlines()[0] or type(error).__name__) from None
    if args.url:
        try:
            reply = send_rest(args.url, rest_request(encoded, args.signature))
        except ValueError as error:
            raise UserError(str(error)) from None
        outputs = rest_outputs(reply, len(images))
    else:
        try:
            request = grpc_request(encoded, args.model, args.signature)
        except ImportError as error:
            raise UserError(f"gRPC needs pip install -e '.[serving]' ({error})") from None
        try:
            outputs = check_outputs(parse_grpc_response(send_grpc(args.grpc, request)))
        except Exception as error:  # noqa: BLE001  (grpc.RpcError, a malformed response)
            details = getattr(error, "details", None)
            reason = details() if callable(details) else str(error)
            code = getattr(error, "code", None)
            status = f"{code().name}, " if callable(code) else ""
            reason = (reason or type(error).__name__).strip().splitlines()[0][:SHOWN]
            raise ServingError(f"{args.grpc}: {status}{reason!r}") from None
    out = Path(args.out)
    try:
        write_results(out, args, images, outputs, names, ids, pictures)
    except OSError as error:
        raise UserError(f"{out}: cannot write the results ({error.strerror or error})") from None
    except ValueError as error:  # classes outside the category map: the reply's fault
        raise ServingError(f"{args.url or args.grpc}: {error}") from None
    return 0


def write_results(out: Path, args, images, outputs, names, ids, pictures) -> None:
    """The pictures with the boxes drawn (`pictures`: their paths) and DIR/detections.json."""
    from cornernet_tf.visualize import class_name, draw_detections

    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for i, (path, image, picture_path) in enumerate(
        zip(args.images, images, pictures, strict=True)
    ):
        dets = pixel_detections(outputs, i, *image.shape[:2], category_ids=ids)
        keep = dets["scores"] >= args.threshold
        results[str(path)] = [
            {"box": [round(float(v), 2) for v in box], "score": round(float(score), 4),
             "class": int(cls), "name": class_name(names, int(cls))}
            for box, score, cls in zip(
                dets["boxes"][keep], dets["scores"][keep], dets["classes"][keep], strict=True
            )
        ]  # fmt: skip
        picture = draw_detections(image, **dets, names=names, threshold=args.threshold)
        picture.save(picture_path)
        print(f"{path}: {int(keep.sum())} detection(s) >= {args.threshold}")
    (out / "detections.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {len(results)} picture(s) and {out / 'detections.json'}")


if __name__ == "__main__":
    sys.exit(main())
