"""scripts/serving_client.py on bad replies and bad arguments: one line `error: ...` that names
the URL, the HTTP status and the start of the reply, and exit code 1 (the server) or 2 (the
arguments). A local stand-in server answers; no model is built."""

import http.server
import json
import os
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import run_script, without_waiting

K = 3  # detections per image in the stand-in's good replies


def good_prediction(count=K):
    return {
        "detection_boxes": [[0.1, 0.1, 0.5, 0.5]] * count,
        "detection_scores": [0.9] * count,
        "detection_classes": [1.0] * count,
        "num_detections": float(count),
    }


@pytest.fixture
def server():
    """A REST stand-in: `server.reply = (status, content type, body bytes)`; yields its URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (the http.server name)
            self.rfile.read(int(self.headers["Content-Length"]))
            status, kind, body = Handler.reply
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True).start()
    httpd.url = f"http://127.0.0.1:{httpd.server_port}/v1/models/cornernet:predict"
    httpd.handler = Handler
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def images(tmp_path):
    paths = []
    for i in range(2):
        path = tmp_path / f"im{i}.png"
        Image.fromarray(np.full((20, 30, 3), 40 * i, np.uint8)).save(path)
        paths.append(str(path))
    return paths


def run(server, images, tmp_path, capsys, status, body, kind="application/json"):
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    server.handler.reply = (status, kind, body)
    code = run_script("serving_client", *images, "--url", server.url, "--out", str(tmp_path / "o"))
    err = capsys.readouterr().err.strip()
    return code, err


def assert_one_line(err, *fragments):
    assert err.startswith("error: "), err
    assert "\n" not in err and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err


HTML = b"<html>\r\n<head><title>502 Bad Gateway</title></head>\n<body>nginx</body></html>\n"


@pytest.mark.parametrize(
    "status, body, kind, fragments",
    [
        (502, HTML, "text/html", ["HTTP 502", "'<html>'", "not JSON"]),
        (500, b"", "text/html", ["HTTP 500", "empty"]),
        (200, HTML, "text/html", ["HTTP 200", "not JSON", "'<html>'"]),
        (200, b"x" * 5000, "text/plain", ["HTTP 200", "not JSON", "'" + "x" * 200 + "'"]),
        (200, b"\x1b[31mred\x00", "text/plain", ["not JSON", r"\x1b[31mred\x00"]),
        (400, {"error": "images[0] is not an image"}, None, ["HTTP 400", "images[0] is not"]),
        (200, {"error": "model not loaded"}, None, ["HTTP 200", "model not loaded"]),
        (200, {"outputs": []}, None, ["HTTP 200", "no 'predictions'"]),
        (200, [1, 2], None, ["HTTP 200", "no 'predictions'"]),
        (200, {"predictions": [good_prediction()]}, None, ["1 prediction", "2 images"]),
        (200, {"predictions": "none"}, None, ["'predictions' is not a list"]),
        (200, {"predictions": [{}, {}]}, None, ["'detection_boxes' missing"]),
        (
            200,
            {"predictions": [good_prediction(3), good_prediction(2)]},
            None,
            ["detection_boxes", "ragged"],
        ),
        (
            200,
            {"predictions": [good_prediction(), {**good_prediction(), "num_detections": 9}]},
            None,
            ["num_detections", "9"],
        ),
        (
            200,
            {"predictions": [good_prediction(), {**good_prediction(), "detection_scores": "a"}]},
            None,
            ["detection_scores"],
        ),
        (
            200,
            {"predictions": [{**good_prediction(), "detection_boxes": [[1]] * K}] * 2},
            None,
            ["detection_boxes", "shape"],
        ),
    ],
)
def test_bad_replies_are_one_line_errors(
    server, images, tmp_path, capsys, status, body, kind, fragments
):
    code, err = run(server, images, tmp_path, capsys, status, body, kind or "application/json")
    assert code == 1
    assert_one_line(err, server.url, *fragments)
    assert not (tmp_path / "o" / "detections.json").exists()


def test_a_good_reply_still_works(server, images, tmp_path, capsys):
    body = {"predictions": [good_prediction(), good_prediction()]}
    code, err = run(server, images, tmp_path, capsys, 200, body)
    assert code == 0, err
    results = json.loads((tmp_path / "o" / "detections.json").read_text())
    assert len(results[images[0]]) == K
    assert results[images[0]][0]["box"] == [3.0, 2.0, 15.0, 10.0]


def test_connection_refused(images, tmp_path, capsys):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1/models/cornernet:predict"
    code = run_script("serving_client", *images, "--url", url, "--out", str(tmp_path / "o"))
    assert code == 1
    assert_one_line(capsys.readouterr().err.strip(), url, "cannot reach")


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--config", "no_such_config"], ["no_such_config", "cannot read config"]),
        (["--config", "tiny", "--url", "localhost:8501/v1"], ["localhost:8501/v1", "URL"]),
        (["--config", "tiny", "--url", "http://[::1"], ["--url http://[::1", "Invalid IPv6 URL"]),
        (["--threshold", "nan"], ["--threshold", "nan"]),
    ],
)
def test_bad_arguments_exit_2(images, tmp_path, capsys, args, fragments):
    if "--url" not in args:
        args = [*args, "--url", "http://127.0.0.1:9/v1/models/cornernet:predict"]
    code = run_script("serving_client", *images, *args, "--out", str(tmp_path / "o"))
    assert code == 2
    assert_one_line(capsys.readouterr().err.strip(), *fragments)


def test_an_output_folder_that_is_a_file_exits_2(server, images, tmp_path, capsys):
    (tmp_path / "o").write_text("")
    body = {"predictions": [good_prediction()] * 2}
    code, err = run(server, images, tmp_path, capsys, 200, body)
    assert code == 2
    assert_one_line(err, str(tmp_path / "o"), "cannot write")


def test_pictures_never_overwrite_an_input_or_each_other(server, images, tmp_path, capsys):
    before = Path(images[0]).read_bytes()
    args = ["--url", server.url, "--out", str(tmp_path)]  # the inputs' own folder
    assert run_script("serving_client", *images, *args) == 2
    err = capsys.readouterr().err.strip()
    assert_one_line(err, f"its picture {tmp_path / 'im0.png'} would overwrite the input")
    assert Path(images[0]).read_bytes() == before
    (tmp_path / "d").mkdir()
    twin = shutil.copy(images[1], tmp_path / "d" / "im0.png")  # same name, other folder
    body = {"predictions": [good_prediction()] * 2}
    server.handler.reply = (200, "application/json", json.dumps(body).encode())
    out = tmp_path / "o"
    assert (
        run_script("serving_client", images[0], str(twin), "--url", server.url, "--out", str(out))
        == 0
    )
    assert sorted(p.name for p in out.glob("*.png")) == ["im0-2.png", "im0.png"]


def test_bad_images_exit_2(tmp_path, capsys):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    for path in (text, tmp_path / "missing.png", tmp_path):
        code = run_script(
            "serving_client", str(path), "--url", "http://127.0.0.1:9/x", "--out", str(tmp_path)
        )
        assert code == 2
        assert_one_line(capsys.readouterr().err.strip(), str(path))


def test_a_pipe_as_image_exits_2_without_waiting(tmp_path, capsys):
    os.mkfifo(tmp_path / "pipe.png")
    args = [str(tmp_path / "pipe.png"), "--url", "http://127.0.0.1:9/x", "--out", str(tmp_path)]
    assert without_waiting(run_script, "serving_client", *args) == 2
    message = f"{tmp_path / 'pipe.png'}: not an image file but a named pipe (FIFO)"
    assert_one_line(capsys.readouterr().err.strip(), message)
