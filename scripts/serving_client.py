#!/usr/bin/env python3
"""Send images to a CornerNet served by TF Serving and draw what comes back.

    python scripts/serving_client.py IMAGE... --url http://localhost:8501/v1/models/cornernet:predict
    python scripts/serving_client.py IMAGE... --grpc localhost:8500 [--model cornernet]
        [--signature serving_default] [--config C | --names a,b,c] [--threshold 0.3] [--out DIR]

REST sends the encoded files as {"instances": [{"b64": ...}, ...]}; gRPC sends a PredictRequest
(needs the `tensorflow-serving-api` package: pip install -e ".[serving]"). Writes DIR/<image>.png
with the boxes drawn and DIR/detections.json (boxes in pixels, [x1, y1, x2, y2]).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from cornernet_tf.serving import OUTPUT_KEYS, pixel_detections

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def rest_request(images: list[bytes], signature: str = "serving_default") -> dict:
    """The JSON body of a REST :predict request (row format, binary data as {"b64": ...})."""
    return {
        "signature_name": signature,
        "instances": [{"b64": base64.b64encode(data).decode("ascii")} for data in images],
    }


def parse_rest_response(body: dict) -> dict[str, np.ndarray]:
    """A REST :predict response -> {output key: array with the batch first}."""
    if "error" in body:
        raise RuntimeError(f"the server answered: {body['error']}")
    predictions = body["predictions"]
    return {key: np.array([p[key] for p in predictions], np.float32) for key in OUTPUT_KEYS}


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


def send_rest(url: str, body: dict, timeout: float = 120) -> dict:
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:  # TF Serving explains itself in the body
        return json.loads(error.read() or b'{"error": "HTTP %d"}' % error.code)


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
    """The bytes to send for an image file and its (H, W, 3) RGB pixels, upright. The served
    model decodes the bytes without reading EXIF, so a photo with an EXIF orientation is turned
    here and sent as PNG; any other file is sent as it is."""
    import io

    from PIL import Image, ImageOps

    data = Path(path).read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        turned = image.getexif().get(0x0112, 1) not in (1, None)
        rgb = ImageOps.exif_transpose(image).convert("RGB")
    if turned:
        buffer = io.BytesIO()
        rgb.save(buffer, "PNG")
        data = buffer.getvalue()
    return data, np.asarray(rgb)


def main(argv=None) -> int:
    args = parse_args(argv)
    from cornernet_tf.visualize import class_name, draw_detections

    names, ids = (args.names.split(",") if args.names else []), []
    if args.config:
        from cornernet_tf import load_config

        config = load_config(args.config)
        names, ids = list(config.data.class_names), list(config.data.category_ids)
    try:
        encoded, images = zip(*(upright(path) for path in args.images), strict=True)
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        if args.url:
            outputs = parse_rest_response(
                send_rest(args.url, rest_request(encoded, args.signature))
            )
        else:
            request = grpc_request(encoded, args.model, args.signature)
            outputs = parse_grpc_response(send_grpc(args.grpc, request))
    except (OSError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except ImportError as error:
        print(f"error: gRPC needs pip install -e '.[serving]' ({error})", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for i, (path, image) in enumerate(zip(args.images, images, strict=True)):
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
        picture.save(out / f"{Path(path).stem}.png")
        print(f"{path}: {int(keep.sum())} detection(s) >= {args.threshold}")
    (out / "detections.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {len(results)} picture(s) and {out / 'detections.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
