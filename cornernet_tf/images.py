"""Reading images: one decoder for every path, size read from the header before decoding.

Detect, evaluate, training and the SavedModel all decode with TensorFlow's decoders
(`cornernet_tf.data.source.decode_image`: JPEG, PNG, GIF, BMP; 16-bit PNGs scaled to 8 bits,
palettes expanded, CMYK JPEGs converted, alpha dropped), so an image gives the same pixels on
every path. Before decoding, the width and height are read from the file's header and images
of more than `MAX_PIXELS` pixels are refused: a small compressed file cannot make a reader
allocate gigabytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# 8K UHD (7680 x 4320 = 33.2 Mpx): decoded as uint8 RGB it takes 100 MB
MAX_PIXELS = 7680 * 4320

FORMATS = ("JPEG", "PNG", "GIF", "BMP")
MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8", b"BM")
# each byte as quoted text shows it: printable ASCII but quotes and backslash, else "."
SHOWN_AS_TEXT = tuple(
    chr(i) if 32 <= i < 127 and chr(i) not in "'\"\\" else "." for i in range(256)
)


class ImageError(ValueError):
    """An image file is missing, unreadable, too large or not an image; the message names it."""


def image_format(head: bytes) -> str | None:
    """The format ("JPEG", "PNG", "GIF", "BMP") that these first bytes of a file start, or None."""
    for name, magic in zip(FORMATS, MAGIC, strict=True):
        if head.startswith(magic):
            return name
    return None


def describe_bytes(head: bytes) -> str:
    """The first bytes of a file, readable whatever they are: hex, then printable ASCII."""
    text = "".join(SHOWN_AS_TEXT[b] for b in head)
    return f"{head.hex(' ')} (as text: {text})"


def encoded_format(data):
    """The format of encoded image bytes (a scalar tf.string) as an index into FORMATS (int32),
    -1 when it is none of them."""
    import tensorflow as tf

    found = [tf.equal(tf.strings.substr(data, 0, len(magic)), magic) for magic in MAGIC]
    return tf.cast(tf.reduce_max(tf.where(found, tf.range(len(MAGIC)) + 1, 0)), tf.int32) - 1


def encoded_size(data):
    """(height, width) int64 of encoded image bytes, read from the header without decoding:
    JPEG's SOF segment (tf.io.extract_jpeg_shape), PNG's IHDR, GIF's logical screen, BMP's
    info header. (0, 0) for an unknown format."""
    import tensorflow as tf

    head = tf.strings.join([tf.strings.substr(data, 0, 32), b"\0" * 32])

    def number(offset, length, little):
        raw = tf.io.decode_raw(tf.strings.substr(head, offset, length), tf.uint8)
        raw = tf.cast(raw[:length], tf.int64)
        weights = [256**i for i in range(length)]  # reversed in Python, not by a graph op:
        # Grappler's shape inference fails on a reversed constant vector ("layout failed")
        return tf.reduce_sum(raw * tf.constant(weights if little else weights[::-1], tf.int64))

    def jpeg():
        shape = tf.cast(tf.io.extract_jpeg_shape(data), tf.int64)
        return shape[0], shape[1]

    def png():
        return number(20, 4, False), number(16, 4, False)

    def gif():
        return number(8, 2, True), number(6, 2, True)

    def bmp():  # BITMAPCOREHEADER (12 bytes): 16-bit sides; later headers: signed 32-bit
        core = tf.equal(number(14, 4, True), 12)
        height = tf.where(core, number(20, 2, True), number(22, 4, True))
        width = tf.where(core, number(18, 2, True), number(18, 4, True))
        height = tf.where(height >= 2**31, 2**32 - height, height)  # negative: top-down rows
        return height, width

    def unknown():
        return tf.constant(0, tf.int64), tf.constant(0, tf.int64)

    return tf.switch_case(encoded_format(data), [jpeg, png, gif, bmp], default=unknown)


def folder_files(folder: str | Path) -> list[Path]:
    """The files of a folder (not its subfolders), sorted by name, hidden ones left out."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith("."))


def images_in(folder: str | Path) -> tuple[list[Path], list[Path]]:
    """(image files, other files) of a folder (`folder_files`), told apart by their first bytes
    (JPEG, PNG, GIF, BMP); whether an image decodes is `read_image`'s to find, and so is why a
    file cannot be read (it counts as an image here, so that the reason is told)."""
    images, others = [], []
    for path in folder_files(folder):
        try:
            with path.open("rb") as file:
                is_image = image_format(file.read(8)) is not None
        except OSError:
            is_image = True
        (images if is_image else others).append(path)
    return images, others


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Reads an image file as (H, W, 3) uint8 RGB, upright (the EXIF orientation of a photo is
    applied, as in training), decoded as training and the SavedModel decode it. Raises
    ImageError naming the file when it is missing, not a JPEG/PNG/GIF/BMP, larger than
    `max_pixels` (checked from the header, before decoding) or cannot be decoded."""
    return decode_file_bytes(read_file_bytes(path), path, max_pixels)


def read_file_bytes(path: str | Path) -> bytes:
    """The bytes of an image file; ImageError naming it when it is missing, a folder, a pipe or
    a device, unreadable or empty."""
    from cornernet_tf.files import special_file

    path = Path(path)
    if kind := special_file(path):
        raise ImageError(f"{path}: not an image file but {kind}")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied") from None
    except OSError as error:
        raise ImageError(f"{path}: cannot read the file ({error.strerror or error})") from None
    if not data:
        raise ImageError(f"{path}: the file is empty")
    return data


def decode_file_bytes(data: bytes, path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """`read_image` of the bytes `data` read from `path` (named in its errors)."""
    import tensorflow as tf

    from cornernet_tf.data.source import decode_image
    from cornernet_tf.files import reason

    if image_format(data[:8]) is None:
        raise ImageError(
            f"{path}: not a JPEG, PNG, GIF or BMP image; it starts with {describe_bytes(data[:12])}"
        )
    try:
        height, width = (int(side) for side in encoded_size(tf.constant(data)))
    except tf.errors.InvalidArgumentError:
        kind = image_format(data[:8])
        raise ImageError(f"{path}: not an image (corrupt {kind} header)") from None
    if height * width > max_pixels:
        raise ImageError(
            f"{path}: {width}x{height} = {height * width:,} pixels, more than the limit of "
            f"{max_pixels:,}"
        )
    if height < 1 or width < 1:
        raise ImageError(f"{path}: the image is empty ({width}x{height})")
    try:
        image = decode_image(tf.constant(data)).numpy()
    except tf.errors.OpError as error:
        raise ImageError(
            f"{path}: cannot decode the {image_format(data[:8])} ({reason(error)})"
        ) from None
    return image
