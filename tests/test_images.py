"""cornernet_tf.images.read_image: the pixels training and the SavedModel decode, the size read
from the header before decoding, one clear error per bad file."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from cornernet_tf.images import MAX_PIXELS, ImageError, read_image
from tests.helpers import ROOT, bmp_header, gif_header, png_header

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (24, 40, 3), dtype=np.uint8)


def graph_decoded(data: bytes) -> np.ndarray:
    """What the SavedModel's serving_default decodes (8-bit RGB)."""
    from cornernet_tf.export import check_encoded_image

    return check_encoded_image(tf.constant(data), tf.constant(0)).numpy()


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "name, data",
    [
        # 16-bit grayscale: PIL's convert("RGB") saturates it to white, TF scales it to 8 bits
        ("gray16.png", encoded(Image.fromarray(RGB[..., 0].astype(np.uint16) * 257), "PNG")),
        ("palette.png", encoded(Image.fromarray(RGB).convert("P"), "PNG")),
        ("cmyk.jpg", encoded(Image.fromarray(RGB).convert("CMYK"), "JPEG")),
        ("rgba.png", encoded(Image.fromarray(np.dstack([RGB, RGB[..., :1]])), "PNG")),
        ("photo.bmp", encoded(Image.fromarray(RGB), "BMP")),
        ("anim.gif", encoded(Image.fromarray(RGB).convert("P"), "GIF")),
    ],
)
def test_read_image_decodes_as_the_saved_model(tmp_path, name, data):
    (tmp_path / name).write_bytes(data)
    np.testing.assert_array_equal(read_image(tmp_path / name), graph_decoded(data))


@pytest.mark.parametrize("name", ["yuv420", "yuv444", "gray"])
def test_jpegs_give_the_pixels_of_the_official_reader(tmp_path, name):
    """cv2.imread's pixels (tests/data/jpeg_cv2.npz, made by make_jpeg_fixture.py with OpenCV):
    libjpeg's accurate integer IDCT. TF's default is the fast one, up to 7 grey levels off."""
    from cornernet_tf.data.source import decode_image

    with np.load(ROOT / "tests/data/jpeg_cv2.npz") as fixture:
        data, official = fixture[f"{name}_jpeg"].tobytes(), fixture[f"{name}_rgb"]
    (tmp_path / "photo.jpg").write_bytes(data)
    np.testing.assert_array_equal(decode_image(tf.constant(data)).numpy(), official)  # training
    np.testing.assert_array_equal(read_image(tmp_path / "photo.jpg"), official)  # detect, evaluate
    np.testing.assert_array_equal(graph_decoded(data), official)  # the SavedModel
    fast = tf.io.decode_image(data, channels=3).numpy().astype(int)
    assert np.abs(fast - official).max() > 0  # the fixture tells the two IDCTs apart


def test_a_16_bit_png_keeps_its_values():
    image = Image.fromarray(RGB[..., 0].astype(np.uint16) * 257)  # v * 257: 8 bits -> 16 bits
    decoded = graph_decoded(encoded(image, "PNG"))
    np.testing.assert_array_equal(decoded[..., 0], RGB[..., 0])


@pytest.mark.parametrize(
    "data, message",
    [
        (
            png_header(8000, 8000),
            "8000x8000 = 64,000,000 pixels, more than the limit of 33,177,600",
        ),
        (gif_header(65535, 65535), "65535x65535 = 4,294,836,225 pixels"),
        (bmp_header(7000, -7000), "7000x7000 = 49,000,000 pixels"),
        (bytes(range(200, 240)), "not a JPEG, PNG, GIF or BMP image; it starts with c8 c9 ca"),
        (b"RIFF\x1c\x05\x00\x00WEBPVP8 ", "starts with 52 49 46 46 1c 05 00 00 57 45 42 50 (as"),
        (b"", "the file is empty"),
        (b"\xff\xd8\xff\xe0garbage", "not an image (corrupt JPEG header)"),
        (png_header(40, 30), "cannot decode the PNG"),  # a header, no pixel data
    ],
)
def test_bad_files_are_named_before_anything_is_decoded(tmp_path, data, message):
    (tmp_path / "bad.img").write_bytes(data)
    with pytest.raises(ImageError, match="bad.img: " if "empty" in message else "bad.img") as e:
        read_image(tmp_path / "bad.img")
    assert message in str(e.value)


def test_the_pixel_limit_is_8k_and_can_be_lowered(tmp_path):
    assert MAX_PIXELS == 7680 * 4320
    (tmp_path / "a.png").write_bytes(encoded(Image.fromarray(RGB), "PNG"))
    assert read_image(tmp_path / "a.png", max_pixels=40 * 24).shape == (24, 40, 3)
    with pytest.raises(ImageError, match="40x24 = 960 pixels, more than the limit of 959"):
        read_image(tmp_path / "a.png", max_pixels=959)
