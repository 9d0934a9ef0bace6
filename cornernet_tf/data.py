"""Input pipeline: sources -> decoded examples -> official augmentation -> targets -> batches.

Everything after the source is tf.data with TensorFlow ops (parallel map, no Python on the hot
path). Randomness is stateless and keyed by (seed, epoch, example index), so a pipeline is
deterministic whatever the parallelism, and can be resumed at any position.

Sources yield dicts: `image` ((H, W, 3) uint8 RGB, decoded once), `boxes` (N, 4)
[x1, y1, x2, y2] in image pixels, `classes` (N,) 0-based:
    coco_source(annotations.json, image_dir)   COCO JSON (pycocotools) + image folder
    tfrecord_source(file pattern)              tf.train.Example with the usual detection keys

Augmentation as the official `kp_detection` (sample/coco.py) does it, in BGR like the official
cv2 images: random scale crop (scales 0.6..1.3, border 128, zero padding) or, for evaluation,
the centred full-image square; resize to the input size; horizontal flip (p 0.5,
x1' = W - x2 - 1); /255; brightness, contrast, saturation in random order (alpha 1 +- 0.4); PCA
lighting (std 0.1); (x - mean) / std. Boxes are clipped and degenerate ones dropped by
`encode_corners`. The batches carry sparse targets; the train step draws the heatmaps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from cornernet_tf.config import Config
from cornernet_tf.geometry import output_size
from cornernet_tf.targets import encode_corners

RANDOM_SCALES = tuple(np.arange(0.6, 1.4, 0.1))  # 0.6 ... 1.3 (1.4 excluded), as the official
BORDER = 128
EIGEN_VALUES = (0.2141788, 0.01817699, 0.00341571)
EIGEN_VECTORS = (
    (-0.58752847, -0.69563484, 0.41340352),
    (-0.5832747, 0.00994535, -0.81221408),
    (-0.56089297, 0.71832671, 0.41158938),
)
GRAY_RGB = (0.299, 0.587, 0.114)  # cv2 BGR2GRAY weights, in RGB order
TFRECORD_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/xmax": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
    "image/object/class/label": tf.io.VarLenFeature(tf.int64),
}


class DataError(ValueError):
    """A dataset cannot be used; the message names the file and the problem."""


# ----------------------------------------------------------------------------------- sources


def read_coco(annotations: str | Path, image_dir: str | Path):
    """Reads a COCO annotation file into per-image records, checking it.

    Returns (records, category_ids, warnings); a record is (path, boxes (N, 4) xyxy float32,
    classes (N,) int32 0-based by sorted category id). Images whose file is missing are left
    out and annotations with unknown ids or malformed boxes are dropped, each with a warning.
    """
    from cornernet_tf.evaluate import load_annotations

    coco, warnings = load_annotations(annotations)
    category_ids = sorted(coco.getCatIds())
    index = {cid: i for i, cid in enumerate(category_ids)}
    records = []
    for image_id in sorted(coco.imgs):
        info = coco.imgs[image_id]
        path = Path(image_dir) / info["file_name"]
        if not path.is_file():
            warnings.append(f"{annotations}: image {image_id} left out: {path} does not exist")
            continue
        anns = [a for a in coco.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
        anns = [a for a in anns if _inside(a, info, annotations, warnings)]
        boxes = np.array(
            [
                [
                    a["bbox"][0],
                    a["bbox"][1],
                    a["bbox"][0] + a["bbox"][2],
                    a["bbox"][1] + a["bbox"][3],
                ]
                for a in anns
            ],
            np.float32,
        ).reshape(-1, 4)
        classes = np.array([index[a["category_id"]] for a in anns], np.int32)
        records.append((str(path), boxes, classes))
    if not records:
        raise DataError(f"{annotations}: no usable image in {image_dir}")
    return records, category_ids, warnings


class Source:
    """Raw items that are cheap to shuffle and skip (paths, serialised records), and how to load
    one into {image ((H, W, 3) uint8 RGB), boxes (N, 4) xyxy pixels, classes (N,) 0-based}."""

    def __init__(self, items: tf.data.Dataset, load, size: int | None, warnings=()):
        self.items, self.load, self.size, self.warnings = items, load, size, list(warnings)


def _inside(ann: dict, info: dict, annotations, warnings: list) -> bool:
    """False (with a warning naming the annotation) for a box entirely outside its image."""
    width, height = info.get("width"), info.get("height")
    if not width or not height:
        return True
    x, y, w, h = ann["bbox"]
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        warnings.append(
            f"{annotations}: annotation {ann.get('id', '?')} of image {info['id']} left out: "
            f"box {ann['bbox']} lies outside the {width}x{height} image"
        )
        return False
    return True


def coco_source(annotations: str | Path, image_dir: str | Path) -> Source:
    """COCO JSON + image folder. Missing and non-image files are left out with a warning."""
    records, _, warnings = read_coco(annotations, image_dir)
    records = [r for r in records if _readable(r[0], warnings)]
    if not records:
        raise DataError(f"{annotations}: no readable image in {image_dir}")
    paths = tf.constant([r[0] for r in records])
    boxes = tf.ragged.constant([r[1] for r in records], dtype=tf.float32, ragged_rank=1)
    classes = tf.ragged.constant([r[2] for r in records], dtype=tf.int32)
    items = tf.data.Dataset.from_tensor_slices((paths, boxes, classes))

    def load(item):
        path, b, c = item
        image = decode_image(tf.io.read_file(path))
        return {"image": image, "boxes": tf.reshape(b, [-1, 4]), "classes": c}

    return Source(items, load, len(records), warnings)


def _readable(path: str, warnings: list) -> bool:
    """A quick header check (not a full decode): is it an image file at all?"""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.size  # noqa: B018
        return True
    except (OSError, UnidentifiedImageError) as error:
        warnings.append(f"{path}: left out, not a readable image ({error})")
        return False


def tfrecord_source(pattern: str) -> Source:
    """TFRecords of tf.train.Example: image/encoded, image/object/bbox/{xmin,ymin,xmax,ymax}
    normalised to [0, 1], image/object/class/label 1-based (TF's object-detection convention)."""
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise DataError(f"{pattern}: no TFRecord file matches")

    def load(record):
        ex = tf.io.parse_single_example(record, TFRECORD_FEATURES)
        image = decode_image(ex["image/encoded"])
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        coords = [
            tf.sparse.to_dense(ex[f"image/object/bbox/{k}"])
            for k in ("xmin", "ymin", "xmax", "ymax")
        ]
        boxes = tf.stack(coords, axis=-1) * tf.stack([shape[1], shape[0], shape[1], shape[0]])
        classes = tf.cast(tf.sparse.to_dense(ex["image/object/class/label"]), tf.int32) - 1
        return {"image": image, "boxes": boxes, "classes": classes}

    items = tf.data.TFRecordDataset(files)
    return Source(items, load, None)


# ------------------------------------------------------------------------------ augmentation


def crop_around(image, boxes, center, size):
    """The official crop_image: a `size` (h, w) window centred on `center` (cy, cx), zero-padded
    where it leaves the image; boxes moved with it. Returns (image, boxes)."""
    shape = tf.shape(image)
    im_h, im_w = shape[0], shape[1]
    cty, ctx = center[0], center[1]
    height, width = size[0], size[1]
    x0, x1 = tf.maximum(0, ctx - width // 2), tf.minimum(ctx + width // 2, im_w)
    y0, y1 = tf.maximum(0, cty - height // 2), tf.minimum(cty + height // 2, im_h)
    left, right = ctx - x0, x1 - ctx
    top, bottom = cty - y0, y1 - cty
    pad_top, pad_left = height // 2 - top, width // 2 - left
    window = image[y0:y1, x0:x1]
    cropped = tf.pad(
        window,
        [
            [pad_top, height - pad_top - (top + bottom)],
            [pad_left, width - pad_left - (left + right)],
            [0, 0],
        ],
    )
    shift = tf.cast(tf.stack([pad_left - x0, pad_top - y0] * 2), boxes.dtype)
    return cropped, boxes + shift


def full_image_crop(image, boxes):
    """The official evaluation crop: the image centred in a max(h, w) square."""
    shape = tf.shape(image)
    side = tf.maximum(shape[0], shape[1])
    return crop_around(image, boxes, shape[:2] // 2, tf.stack([side, side]))


def random_crop(image, boxes, input_size, seed, scales=RANDOM_SCALES, border=BORDER):
    """The official random_crop: a window of input_size x scale around a random centre."""
    shape = tf.shape(image)
    seeds = tf.random.experimental.stateless_split(seed, 3)
    scale = tf.gather(
        tf.constant(scales, tf.float64),
        tf.random.stateless_uniform([], seeds[0], 0, len(scales), tf.int32),
    )
    size = tf.cast(tf.constant(input_size, tf.float64) * scale, tf.int32)

    def centre(extent, key):
        b = _border(border, extent)
        return tf.random.stateless_uniform([], key, b, extent - b, tf.int32)

    center = tf.stack([centre(shape[0], seeds[1]), centre(shape[1], seeds[2])])
    return crop_around(image, boxes, center, size)


def _border(border: int, size):
    """The official _get_border: border // i for the first i = 1, 2, 4 ... with size - b > b."""
    i = tf.constant(1)
    i = tf.while_loop(lambda i: size - border // i <= border // i, lambda i: [i * 2], [i])[0]
    return border // i


def resize(image, boxes, size):
    """Bilinear resize to `size` (h, w), float32 out; boxes scaled per axis (the official
    _resize_image)."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    resized = tf.image.resize(image, size, method="bilinear")
    ratio = tf.constant(size, tf.float32) / shape
    return resized, boxes * tf.stack([ratio[1], ratio[0], ratio[1], ratio[0]])


def flip_boxes(boxes, width):
    """Boxes of the image mirrored left-right: x1', x2' = W - x2 - 1, W - x1 - 1 (the official
    convention)."""
    width = tf.cast(width, boxes.dtype)
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    return tf.stack([width - x2 - 1, y1, width - x1 - 1, y2], -1)


def color_jitter(seed, gray_mean, var: float = 0.4):
    """The official color_jittering_ as coefficients (scale, gray_weight, offset): brightness,
    contrast and saturation in a random order (alpha 1 +- var) turn the image x (BGR in [0, 1])
    into scale * x + gray_weight * gray + offset, where gray is the gray image of x and
    gray_mean its mean, both taken once before the steps, as the official code does."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    alphas = 1.0 + tf.random.stateless_uniform([3], seeds[0], -var, var)

    def brightness(scale, gray_weight, offset):
        a = alphas[0]
        return scale * a, gray_weight * a, offset * a

    def contrast(scale, gray_weight, offset):
        a = alphas[1]
        return scale * a, gray_weight * a, offset * a + gray_mean * (1 - a)

    def saturation(scale, gray_weight, offset):
        a = alphas[2]
        return scale * a, gray_weight * a + (1 - a), offset * a

    steps = (brightness, contrast, saturation)
    orders = [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]
    pick = tf.random.stateless_uniform([], seeds[1], 0, 6, tf.int32)

    def apply(order):
        def run():
            coefficients = (tf.constant(1.0), tf.constant(0.0), tf.constant(0.0))
            for k in order:
                coefficients = steps[k](*coefficients)
            return tf.stack(coefficients)

        return run

    return tf.unstack(tf.switch_case(pick, [apply(order) for order in orders]))


def lighting(seed, std: float = 0.1):
    """The official PCA lighting noise: the BGR shift eigvec @ (eigval * N(0, std, 3))."""
    alpha = tf.random.stateless_normal([3], seed, stddev=std)
    return tf.linalg.matvec(tf.constant(EIGEN_VECTORS), tf.constant(EIGEN_VALUES) * alpha)


def network_input(image_rgb, data, scale=1.0, gray_weight=0.0, shift=(0.0, 0.0, 0.0)):
    """RGB in [0, 255] -> network input, BGR ((scale x + gray_weight gray(x) + shift) - mean) / std
    with x the BGR image / 255: one 3 x 3 matrix and an offset, a single pass over the pixels.

    With the defaults it is the official normalize_ alone; with `color_jitter` and `lighting`
    coefficients it is the official colour augmentation followed by normalize_.
    """
    std = tf.constant(data.std_bgr)
    gray_rgb = tf.constant(GRAY_RGB)
    swap = tf.constant([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # RGB -> BGR
    matrix = (scale * swap + gray_weight * gray_rgb[:, None]) / (255.0 * std)
    offset = (shift - tf.constant(data.mean_bgr)) / std
    # a 1 x 1 convolution with a bias: TF fuses it into one kernel, 3x faster than tensordot
    pixels = tf.nn.conv2d(image_rgb[None], matrix[None, None], 1, "VALID")
    return tf.nn.bias_add(pixels, offset)[0]


# --------------------------------------------------------------------------------- pipeline


def decode_image(encoded) -> tf.Tensor:
    """Encoded JPEG/PNG/... -> (H, W, 3) uint8 RGB (grayscale and RGBA converted)."""
    return tf.io.decode_image(encoded, channels=3, expand_animations=False)


def prepare_example(example, seed, config: Config, training: bool):
    """One decoded source example -> (normalised BGR image (H, W, 3), sparse targets dict of
    `encode_corners`; `draw_heatmaps` makes the heatmaps in the train step).

    Crop and flip run on the uint8 source pixels and colour, lighting and normalisation in one
    affine map, which is the official sequence of steps with fewer passes over the image: the
    bilinear resize commutes with the mirror and the colour steps are affine maps.
    """
    data = config.data
    input_size = tuple(data.input_size)
    image = example["image"]
    boxes = tf.cast(example["boxes"], tf.float32)
    seeds = tf.random.experimental.stateless_split(seed, 4)
    if training:
        image, boxes = random_crop(image, boxes, input_size, seeds[0])
        flipped = tf.random.stateless_uniform([], seeds[1]) > 0.5
        image = tf.cond(flipped, lambda: tf.reverse(image, [1]), lambda: image)
    else:
        image, boxes = full_image_crop(image, boxes)
    image, boxes = resize(image, boxes, input_size)
    if training:
        boxes = tf.cond(flipped, lambda: flip_boxes(boxes, input_size[1]), lambda: boxes)
        gray_mean = tf.tensordot(tf.reduce_mean(image, [0, 1]), tf.constant(GRAY_RGB), 1) / 255.0
        scale, gray_weight, offset = color_jitter(seeds[2], gray_mean)
        image = network_input(image, data, scale, gray_weight, offset + lighting(seeds[3]))
    else:
        image = network_input(image, data)
    image = tf.ensure_shape(image, [*input_size, 3])
    targets = encode_corners(
        boxes,
        example["classes"],
        input_size=input_size,
        output_size=output_size(input_size),
        max_objects=data.max_objects,
        gaussian_iou=data.gaussian_iou,
    )
    return image, targets


def make_dataset(
    source: Source,
    config: Config,
    *,
    batch_size: int,
    training: bool,
    seed: int = 0,
    start: int = 0,
) -> tf.data.Dataset:
    """Batches of (images (B, H, W, 3) float32 normalised BGR, sparse targets of `encode_corners`;
    mask as float32). The model's train step draws the heatmaps (`draw_heatmaps`).

    training: shuffled (reshuffled every epoch, deterministic for a seed), augmented, repeated
    forever, partial batches dropped; `start` skips that many examples (to resume). Otherwise:
    in order, full-image crop, no augmentation, one pass, the last batch may be smaller.
    Example k's random augmentation depends only on (seed, k).
    """
    items = source.items
    if training:
        buffer = source.size or 2048
        items = items.shuffle(buffer, seed=seed, reshuffle_each_iteration=True).repeat()
    items = items.enumerate().skip(start)

    def prepare(index, item):
        key = tf.random.experimental.stateless_fold_in(tf.constant([seed, 0], tf.int64), index)
        return prepare_example(source.load(item), key, config, training)

    ds = items.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.ignore_errors(log_warning=True)
    ds = ds.batch(batch_size, drop_remainder=training).map(float_mask)
    return ds.prefetch(tf.data.AUTOTUNE)


def float_mask(images, targets):
    """The mask as float32 0/1: Keras averages a first batch over replicas when it builds a model
    under a distribution strategy, which fails on bool tensors. The loss accepts either."""
    return images, {**targets, "mask": tf.cast(targets["mask"], tf.float32)}
