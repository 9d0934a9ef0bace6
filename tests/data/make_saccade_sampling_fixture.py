"""Write tests/data/saccade_sampling_public.npz: the official CornerNet-Saccade sampling's box
geometry, attention targets and random draws.

Run by hand, from any directory, with a Python that has numpy (never by the tests):

    /tmp/torchvenv/bin/python tests/data/make_saccade_sampling_fixture.py [CORNERNET_LITE_DIR]

CORNERNET_LITE_DIR is a princeton-vl/CornerNet-Lite checkout (default /tmp/CornerNet-Lite). Its
core/sample/{cornernet_saccade,utils}.py are imported as a loose package with stand-ins for torch
(unused here) and cv2, whose resize returns a zero image of the requested size (a broadcast view,
so a large scale costs no memory): the image's pixels do not enter the geometry.

Geometry cases (CASES of them): a random image size and up to MAX_BOXES random boxes (some partly
or wholly outside the image, sides 2 to 600 pixels), then the steps of cornernet_saccade for one
image, in its order and with its functions and np.random draws: clip_detections,
ref_scale(random_crop = rand_crop, alternately False and True), the scale, scale_image_detections,
crop_image_dets (its crop centre recorded), clip_detections, the flip, create_attention_mask, the
overlap and min_scale tests. Arrays, padded with zeros to MAX_BOXES rows:
    image_size (CASES, 2) H, W; boxes (CASES, MAX_BOXES, 4); counts (CASES,);
    scale (CASES,) float64; reference (CASES,) (-1: none); center (CASES, 2) cy, cx in the scaled
    image; flipped (CASES,) bool;
    out_boxes (CASES, MAX_BOXES, 4); out_index (CASES, MAX_BOXES) rows of the input boxes;
    out_counts (CASES,); out_ignore (CASES, MAX_BOXES) bool (drawn into the valid masks, not the
    heatmaps); attention_0..2 (CASES, h, w) float32, h = w = 16, 32, 64.
Draws (DRAWS each, official functions, np.random seeded):
    size_200, size_60, size_10: ref_scale's scale x the box's longer side (200, 60, 10), rounded;
    full_fraction: the fraction of ref_scale(random_crop=True) draws without a reference;
    center_box: crop_image_dets' (cy, cx) for a (600, 800) image and the box
        CENTER_BOX; center_none: the same image without a reference; center_narrow: a
        (200, 800) image with CENTER_BOX (cy is the image's centre).
"""

import importlib
import sys
import types
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "saccade_sampling_public.npz"
CASES = 64
MAX_BOXES = 8
DRAWS = 20000
INPUT_SIZE = [255, 255]
ATT_SIZES = ((16, 16), (32, 32), (64, 64))
ATT_RATIOS = (16, 8, 4)
ATT_RANGES = ((96, 256), (32, 96), (0, 32))
RAND_SCALES = np.arange(0.5, 1.1, 0.1)  # detection.py with CornerNet_Saccade.json's values
MIN_SCALE = 16
CENTER_BOX = [300.0, 200.0, 420.0, 260.0]


def official_sampling(root: Path):
    """cornernet_saccade.py with a cv2 whose resize gives a zero view of the requested size."""
    cv2 = types.ModuleType("cv2")

    def resize(image, size):
        return np.broadcast_to(np.zeros((1, 1, 3), image.dtype), (size[1], size[0], 3))

    cv2.resize = resize
    sys.modules["cv2"] = cv2
    sys.modules.setdefault("torch", types.ModuleType("torch"))
    package = types.ModuleType("cnl_sample")
    package.__path__ = [str(root / "core/sample")]
    sys.modules["cnl_sample"] = package
    return importlib.import_module("cnl_sample.cornernet_saccade")


def random_boxes(rng, height, width):
    count = rng.integers(0, MAX_BOXES + 1)
    sides = np.exp(rng.uniform(np.log(2), np.log(600), size=(count, 2)))
    x1 = rng.uniform(-60, width + 10, size=count)
    y1 = rng.uniform(-60, height + 10, size=count)
    boxes = np.stack([x1, y1, x1 + sides[:, 0], y1 + sides[:, 1]], axis=1)
    classes = rng.integers(1, 81, size=(count, 1))
    return np.concatenate([boxes, classes], axis=1).astype(np.float32)


def geometry_case(sac, k):
    """One image through cornernet_saccade's steps; returns the inputs, choices and outputs."""
    rng = np.random.default_rng(k)
    np.random.seed(1000 + k)
    height, width = (int(v) for v in rng.integers(100, 900, size=2))
    orig_detections = random_boxes(rng, height, width)
    inputs = orig_detections.copy()
    rand_crop = bool(k % 2)
    record = {}
    crop_image = sac.crop_image

    def recording_crop(image, center, size, output_size=None):
        record["center"] = [int(center[0]), int(center[1])]
        return crop_image(image, center, size, output_size=output_size)

    sac.crop_image = recording_crop
    try:
        image = np.zeros((height, width, 3), np.uint8)
        keep_inds = np.arange(orig_detections.shape[0])
        detections = orig_detections.copy()
        border = [0, image.shape[0], 0, image.shape[1]]
        detections, clip_inds = sac.clip_detections(border, detections)
        keep_inds = keep_inds[clip_inds]
        scale, ref_ind = sac.ref_scale(detections, random_crop=rand_crop)
        scale = np.random.choice(RAND_SCALES) if scale is None else scale
        orig_detections[:, 0:4:2] *= scale
        orig_detections[:, 1:4:2] *= scale
        image, detections = sac.scale_image_detections(image, detections, scale)
        image, detections, border = sac.crop_image_dets(
            image, detections, ref_ind, INPUT_SIZE, rand_center=True
        )
        detections, clip_inds = sac.clip_detections(border, detections)
        keep_inds = keep_inds[clip_inds]
        flipped = np.random.uniform() > 0.5
        if flipped:
            image[:] = image[:, ::-1, :]
            detections[:, [0, 2]] = image.shape[1] - detections[:, [2, 0]] - 1
        atts = [np.zeros(s, np.float32) for s in ATT_SIZES]
        sac.create_attention_mask(atts, ATT_RATIOS, ATT_RANGES, detections)
        overlaps = sac.bbox_overlaps(detections, orig_detections[keep_inds]) > 0.5
        ignore = []
        for detection, overlap in zip(detections, overlaps, strict=True):
            det_height = int(detection[3]) - int(detection[1])
            det_width = int(detection[2]) - int(detection[0])
            ignore.append(not (overlap and max(det_height, det_width) >= MIN_SCALE))
    finally:
        sac.crop_image = crop_image
    return {
        "image_size": [height, width],
        "inputs": inputs,
        "scale": float(scale),
        "reference": -1 if ref_ind is None else int(ref_ind),
        "center": record["center"],
        "flipped": bool(flipped),
        "out_boxes": detections[:, :4],
        "out_index": keep_inds,
        "out_ignore": np.array(ignore, bool),
        "attention": atts,
    }


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/CornerNet-Lite")
    sac = official_sampling(root)
    out = {
        "image_size": np.zeros((CASES, 2), np.int32),
        "boxes": np.zeros((CASES, MAX_BOXES, 4), np.float32),
        "counts": np.zeros(CASES, np.int32),
        "scale": np.zeros(CASES, np.float64),
        "reference": np.zeros(CASES, np.int32),
        "center": np.zeros((CASES, 2), np.int32),
        "flipped": np.zeros(CASES, bool),
        "out_boxes": np.zeros((CASES, MAX_BOXES, 4), np.float32),
        "out_index": np.zeros((CASES, MAX_BOXES), np.int32),
        "out_counts": np.zeros(CASES, np.int32),
        "out_ignore": np.zeros((CASES, MAX_BOXES), bool),
    }
    for i, (h, w) in enumerate(ATT_SIZES):
        out[f"attention_{i}"] = np.zeros((CASES, h, w), np.float32)
    for k in range(CASES):
        case = geometry_case(sac, k)
        inputs = case["inputs"]
        n, m = len(inputs), len(case["out_boxes"])
        out["image_size"][k] = case["image_size"]
        out["boxes"][k, :n] = inputs[:, :4]
        out["counts"][k] = n
        out["scale"][k] = case["scale"]
        out["reference"][k] = case["reference"]
        out["center"][k] = case["center"]
        out["flipped"][k] = case["flipped"]
        out["out_boxes"][k, :m] = case["out_boxes"]
        out["out_index"][k, :m] = case["out_index"]
        out["out_counts"][k] = m
        out["out_ignore"][k, :m] = case["out_ignore"]
        for i in range(3):
            out[f"attention_{i}"][k] = case["attention"][i]

    np.random.seed(7)
    for side in (200, 60, 10):
        box = np.array([[0, 0, side, side / 2, 1]], np.float32)
        out[f"size_{side}"] = np.array(
            [round(sac.ref_scale(box)[0] * side) for _ in range(DRAWS)], np.int16
        )
    box = np.array([[0, 0, 50, 50, 1]], np.float32)
    out["full_fraction"] = np.float64(
        np.mean([sac.ref_scale(box, random_crop=True)[1] is None for _ in range(DRAWS)])
    )
    centers = []
    original = sac.crop_image

    def recording_crop(image, center, size, output_size=None):
        centers.append([int(center[0]), int(center[1])])
        return original(image, center, size, output_size=output_size)

    sac.crop_image = recording_crop
    try:
        for name, (height, width), ind in (
            ("center_box", (600, 800), 0),
            ("center_none", (600, 800), None),
            ("center_narrow", (200, 800), 0),
        ):
            centers.clear()
            image = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (height, width, 3))
            for _ in range(DRAWS):
                dets = np.array([CENTER_BOX + [1]], np.float32)
                sac.crop_image_dets(image, dets, ind, INPUT_SIZE, rand_center=True)
            out[name] = np.array(centers, np.int16)
    finally:
        sac.crop_image = original
    np.savez_compressed(OUT, **out)
    print("cases without reference:", int(np.sum(out["reference"] < 0)))
    print("boxes in / out:", int(out["counts"].sum()), int(out["out_counts"].sum()))
    print("ignored:", int(out["out_ignore"].sum()), "flipped:", int(out["flipped"].sum()))
    print("attention cells:", [int(out[f"attention_{i}"].sum()) for i in range(3)])
    print("full fraction:", out["full_fraction"])
    print("wrote", OUT, OUT.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
