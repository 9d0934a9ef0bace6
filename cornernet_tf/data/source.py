"""What every source gives the pipeline: a `Source` of raw items and a loader, `DataError`, and
image decoding that applies the EXIF orientation (as the official code's cv2.imread does)."""

from __future__ import annotations

import tensorflow as tf

# the first bytes of the formats tf.io.decode_image reads
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8", b"BM")
EXIF_ORIENTATION = 0x0112  # the TIFF tag of the orientation, values 1 (upright) to 8


class DataError(ValueError):
    """A dataset cannot be used; the message names the file and the problem."""


class Source:
    """Raw items that are cheap to shuffle and skip (paths, serialised records), and how to load
    one into {image ((H, W, 3) uint8 RGB), boxes (N, 4) xyxy pixels, classes (N,) 0-based}.

    size: the number of items; shuffle_buffer: how many items a training shuffle holds;
    warnings: what was left out, one line each; summary: one line on what is there."""

    def __init__(self, items, load, size: int, warnings=(), summary: str = "", shuffle_buffer=None):
        self.items, self.load, self.size = items, load, size
        self.warnings, self.summary = list(warnings), summary
        self.shuffle_buffer = shuffle_buffer or size

    def examples(self, count: int | None = None) -> tf.data.Dataset:
        """The first `count` (None: all) examples, loaded, in order, unaugmented."""
        items = self.items if count is None else self.items.take(count)
        return items.map(lambda *item: self.load(item[0] if len(item) == 1 else item))


def is_image(head: bytes) -> bool:
    """Do these first bytes of a file start a JPEG, PNG, GIF or BMP image?"""
    return head.startswith(IMAGE_MAGIC)


def decode_image(encoded) -> tf.Tensor:
    """Encoded JPEG/PNG/... -> (H, W, 3) uint8 RGB (grayscale and RGBA converted), turned upright
    by the EXIF orientation of a JPEG."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    return orient(image, exif_orientation(encoded))


def exif_orientation(encoded) -> tf.Tensor:
    """The EXIF orientation (int32, 1-8) of a JPEG's Exif segment; 1 when there is none.

    Reads the TIFF header after "Exif\\0\\0" in the first 64 KiB (where the APP1 segment must
    be) and looks for tag 0x0112 among the first IFD's entries, in either byte order."""
    parts = tf.strings.split(tf.strings.substr(encoded, 0, 65536), "Exif\x00\x00", maxsplit=1)
    tiff = tf.cond(tf.size(parts) > 1, lambda: parts[-1], lambda: tf.constant(b""))
    little = tf.equal(tf.strings.substr(tiff, 0, 2), b"II")
    big = tf.equal(tf.strings.substr(tiff, 0, 2), b"MM")

    def number(offset, length):
        raw = tf.io.decode_raw(
            tf.strings.substr(tiff, offset, length), tf.uint8, fixed_length=length
        )
        raw = tf.cast(raw, tf.int32)
        weights = 256 ** tf.range(length)
        return tf.where(little, tf.reduce_sum(raw * weights), tf.reduce_sum(raw * weights[::-1]))

    def lookup():
        first_ifd = number(4, 4)
        count = tf.minimum(number(first_ifd, 2), 64)
        entries = tf.strings.substr(tiff, first_ifd + 2, 12 * count)
        raw = tf.cast(tf.io.decode_raw(entries, tf.uint8), tf.int32)
        raw = tf.reshape(raw[: 12 * (tf.size(raw) // 12)], [-1, 12])
        tags = tf.where(little, raw[:, 0] + 256 * raw[:, 1], 256 * raw[:, 0] + raw[:, 1])
        values = tf.where(little, raw[:, 8] + 256 * raw[:, 9], 256 * raw[:, 8] + raw[:, 9])
        found = tf.boolean_mask(values, tf.equal(tags, EXIF_ORIENTATION))
        value = tf.cond(tf.size(found) > 0, lambda: found[0], lambda: tf.constant(1))
        return tf.where((value >= 1) & (value <= 8), value, 1)

    usable = (little | big) & (tf.strings.length(tiff) >= 8)
    return tf.cond(usable, lookup, lambda: tf.constant(1))


def orient(image, orientation) -> tf.Tensor:
    """The image turned upright for an EXIF orientation 1-8 (PIL's ImageOps.exif_transpose)."""

    def transpose(x):
        return tf.transpose(x, [1, 0, 2])

    branches = [
        lambda: image,  # 1 upright
        lambda: tf.reverse(image, [1]),  # 2 mirrored
        lambda: tf.reverse(image, [0, 1]),  # 3 upside down
        lambda: tf.reverse(image, [0]),  # 4 mirrored upside down
        lambda: transpose(image),  # 5
        lambda: tf.reverse(transpose(image), [1]),  # 6 turned 90 degrees clockwise to see
        lambda: tf.reverse(transpose(image), [0, 1]),  # 7
        lambda: tf.reverse(transpose(image), [0]),  # 8 turned 90 degrees anticlockwise
    ]
    image = tf.switch_case(tf.cast(orientation, tf.int32) - 1, branches)
    image.set_shape([None, None, 3])
    return image
