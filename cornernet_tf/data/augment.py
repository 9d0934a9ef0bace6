"""The official `kp_detection` augmentation (sample/coco.py) in TensorFlow ops, in BGR like the
official cv2 images: random scale crop (scales 0.6..1.3, border 128, zero padding) or, for
evaluation, the centred full-image square; resize to the input size; horizontal flip (p 0.5,
x1' = W - x2 - 1); /255; brightness, contrast, saturation in random order (alpha 1 +- 0.4); PCA
lighting (std 0.1); (x - mean) / std. Randomness is stateless: every function takes its seed.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

RANDOM_SCALES = tuple(np.arange(0.6, 1.4, 0.1))  # 0.6 ... 1.3 (1.4 excluded), as the official
BORDER = 128
EIGEN_VALUES = (0.2141788, 0.01817699, 0.00341571)
EIGEN_VECTORS = (
    (-0.58752847, -0.69563484, 0.41340352),
    (-0.5832747, 0.00994535, -0.81221408),
    (-0.56089297, 0.71832671, 0.41158938),
)
GRAY_RGB = (0.299, 0.587, 0.114)  # cv2 BGR2GRAY weights, in RGB order


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
