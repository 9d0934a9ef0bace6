"""What every source gives the pipeline: a `Source` of raw items and a loader, `DataError`, the
decoding check (`without_undecodable`), the share rule (`require_usable`: at least
`MIN_USABLE` = 50% of a source's images must be usable), and image decoding that applies the
EXIF orientation (as the official code's cv2.imread does)."""

from __future__ import annotations

import re

import tensorflow as tf

from cornernet_tf.images import MAX_PIXELS, encoded_size, image_format

EXIF_ORIENTATION = 0x0112  # the TIFF tag of the orientation, values 1 (upright) to 8
# the least share of a source's images (TFRecords: of its bytes) that must be usable to train
MIN_USABLE = 0.5
# a COCO source's warning for an image it left out (cornernet_tf.data.coco.read_coco)
_IMAGE_LEFT_OUT = re.compile(r": image \S+ left out: ")


class DataError(ValueError):
    """A dataset cannot be used; the message names the file and the problem. `warnings`: what
    the checks found before they gave up (for data_warnings.txt), possibly empty."""

    def __init__(self, message: str, warnings=()):
        super().__init__(message)
        self.warnings = list(warnings)


class Source:
    """Raw items that are cheap to shuffle and skip (paths, serialised records), and how to load
    one into {image ((H, W, 3) uint8 RGB), boxes (N, 4) xyxy pixels, classes (N,) 0-based}.

    size: the number of items; shuffle_buffer: how many items a training shuffle holds;
    warnings: what was left out, one line each; summary: one line on what is there;
    usable: (usable, found, unit) for the share rule, e.g. (9, 12, "images"); decoded: every
    image was decoded once by the checks (`without_undecodable`); names: item k's file or
    record, for warnings (None: read from the item, a path)."""

    def __init__(
        self,
        items,
        load,
        size: int,
        warnings=(),
        summary: str = "",
        shuffle_buffer=None,
        *,
        usable=None,
        decoded: bool = False,
        names=None,
    ):
        self.items, self.load, self.size = items, load, size
        self.warnings, self.summary = list(warnings), summary
        self.shuffle_buffer = shuffle_buffer or size
        if usable is None:  # a COCO source: its warnings count the images it left out
            left_out = sum(1 for w in self.warnings if _IMAGE_LEFT_OUT.search(w))
            usable = (size, size + left_out, "images")
        self.usable, self.decoded, self.names = usable, decoded, names

    def item_names(self) -> list[str]:
        """Item k's file or record, for messages."""
        return self.names or _item_names(self.items)

    def examples(self, count: int | None = None) -> tf.data.Dataset:
        """The first `count` (None: all) examples, loaded, in order, unaugmented."""
        items = self.items if count is None else self.items.take(count)
        return items.map(lambda *item: self.load(item[0] if len(item) == 1 else item))


def undecodable(items, load, size: int, progress: bool = False) -> list[int]:
    """The positions of the items whose image does not decode (truncated, corrupt, or larger than
    `cornernet_tf.images.MAX_PIXELS` by its header), found by
    decoding each once, in parallel, with the loader the pipeline uses. `progress`: a progress
    bar on stderr while it runs."""
    from tqdm import tqdm

    items = items.enumerate().map(
        lambda k, *item: (k, tf.shape(load(item[0] if len(item) == 1 else item)["image"])),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=False,
    )
    found = items.ignore_errors().as_numpy_iterator()
    bar = {"total": size, "unit": "image", "leave": False, "disable": not progress}
    decoded = {int(k) for k, _ in tqdm(found, desc="decoding every image once", **bar)}
    return sorted(set(range(size)) - decoded)


def without_undecodable(source: Source, what: str = "image", progress: bool = False) -> Source:
    """`source` without the items whose image does not decode, each with a warning naming its
    file, and the summary with the count; DataError (with the warnings) when none decodes.
    The check decodes every image once, before the first step (`progress`: with a progress
    bar)."""
    if source.decoded:
        return source
    bad = undecodable(source.items, source.load, source.size, progress)
    bad_set = set(bad)
    names = source.item_names()
    warnings = [
        f"{names[k]} left out: the {what} does not decode (truncated, corrupt, or over "
        f"{MAX_PIXELS:,} pixels)"
        for k in bad
    ]
    usable, found, unit = source.usable
    result = Source(
        _dropped(source.items, bad),
        source.load,
        source.size - len(bad),
        source.warnings + warnings,
        f"{source.summary}; {len(bad):,} {what}"
        + (" does not decode" if len(bad) == 1 else "s do not decode"),
        min(source.shuffle_buffer, max(1, source.size - len(bad))),
        usable=(usable - len(bad), found, unit),
        decoded=True,
        names=[n for k, n in enumerate(names) if k not in bad_set],
    )
    for key in ("category_ids", "class_names"):
        if hasattr(source, key):
            setattr(result, key, getattr(source, key))
    if not result.size:
        raise DataError(
            f"{names[0] if names else source.summary}...: no {what} of {source.size} decodes "
            "(all truncated or corrupt)",
            result.warnings,
        )
    return result


def require_usable(source: Source, role: str, least: float = MIN_USABLE) -> None:
    """DataError (with the source's warnings) when less than `least` of the source's data is
    usable: a dataset that is mostly broken is a mistake to fix, not one to train on."""
    usable, found, unit = source.usable
    share = usable / found if found else 0.0
    if share < least:
        raise DataError(
            f"only {usable} of {found} {unit} of the {role} data are usable ({share:.0%}); "
            f"training needs at least {least:.0%}: fix or remove the broken files (see "
            f"data_warnings.txt; summary: {source.summary})",
            source.warnings,
        )


def _dropped(items, positions) -> tf.data.Dataset:
    if not positions:
        return items
    bad = tf.constant(positions, tf.int64)
    kept = items.enumerate().filter(lambda k, *item: ~tf.reduce_any(tf.equal(bad, k)))
    return kept.map(lambda k, *item: item[0] if len(item) == 1 else item)


def _item_names(items) -> list[str]:
    """The first string of each item (a COCO source's image path)."""

    def first(*item):
        parts = item[0] if len(item) == 1 else item
        return parts[0] if isinstance(parts, tuple) else parts

    return [v.decode(errors="replace") for v in items.map(first).as_numpy_iterator()]


def is_image(head: bytes) -> bool:
    """Do these first bytes of a file start a JPEG, PNG, GIF or BMP image?"""
    return image_format(head) is not None


def decode_image(encoded, max_pixels: int = MAX_PIXELS) -> tf.Tensor:
    """Encoded JPEG/PNG/... -> (H, W, 3) uint8 RGB (`decode_pixels`), turned upright by the EXIF
    orientation of a JPEG. An image of more than `max_pixels` pixels by its header fails
    (InvalidArgumentError) before it is decoded."""
    height, width = encoded_size(encoded)
    check = tf.debugging.Assert(
        height * width <= max_pixels,
        ["an image has more pixels than", max_pixels, "height, width:", height, width],
    )
    with tf.control_dependencies([check]):
        return decode_upright(encoded)


def decode_upright(encoded) -> tf.Tensor:
    """`decode_pixels`, turned upright by the EXIF orientation of a JPEG: what training, detect,
    evaluate and the SavedModel's serving_default see."""
    return orient(decode_pixels(encoded), exif_orientation(encoded))


def decode_pixels(encoded) -> tf.Tensor:
    """Encoded JPEG/PNG/GIF/BMP -> (H, W, 3) uint8 RGB as stored (grayscale, palettes and CMYK
    converted, alpha dropped, 16 bits scaled to 8, the first frame of a GIF). A JPEG is decoded
    with libjpeg's accurate integer IDCT, which gives the pixels of cv2.imread, the official
    reader; TensorFlow's default, the fast IDCT, is up to 7 grey levels off them."""
    is_jpeg = tf.equal(tf.strings.substr(encoded, 0, 3), b"\xff\xd8\xff")
    image = tf.cond(
        is_jpeg,
        lambda: tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(encoded, channels=3, expand_animations=False),
    )
    image.set_shape([None, None, 3])
    return image


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
        # reversed in Python, as in images.encoded_size
        weights = [256**i for i in range(length)]
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
