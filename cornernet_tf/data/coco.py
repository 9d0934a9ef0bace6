"""COCO JSON annotations + an image folder: checked loading (`load_annotations`), per-image
records (`read_coco`) and the pipeline source (`coco_source`).

Classes are 0-based indices into the file's category ids in ascending order, the convention of
the official code. Bad annotations and unreadable images are left out, each with a warning that
names the file and the entry.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from cornernet_tf.data.source import DataError, Source, decode_image


class AnnotationError(ValueError):
    """The annotation file cannot be used; the message names the file and what is wrong."""


def load_annotations(path: str | Path):
    """Loads a COCO annotation file with pycocotools, after checking it.

    Annotations with an unknown category id or a malformed box are left out, each with a warning
    naming the file and the annotation; returns (COCO, list of warnings).
    """
    from pycocotools.coco import COCO

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as error:
        raise AnnotationError(
            f"{path}: cannot read the annotation file ({error.strerror})"
        ) from None
    except json.JSONDecodeError as error:
        raise AnnotationError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: expected a JSON object with images/annotations/categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise AnnotationError(f"{path}: the '{key}' list is missing")
    if not data["categories"]:
        raise AnnotationError(f"{path}: 'categories' is empty")
    categories = {c.get("id") for c in data["categories"]}
    images = {i.get("id") for i in data["images"]}
    warnings, kept = [], []
    for ann in data["annotations"]:
        problem = _annotation_problem(ann, categories, images)
        if problem:
            warnings.append(f"{path}: annotation {ann.get('id', '?')} left out: {problem}")
        else:
            kept.append(ann)
    data["annotations"] = kept
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco, warnings


def _annotation_problem(ann: dict, categories: set, images: set) -> str | None:
    if ann.get("category_id") not in categories:
        return f"unknown category_id {ann.get('category_id')!r}"
    if ann.get("image_id") not in images:
        return f"unknown image_id {ann.get('image_id')!r}"
    box = ann.get("bbox")
    if (
        not isinstance(box, list)
        or len(box) != 4
        or not all(isinstance(v, (int, float)) and np.isfinite(v) for v in box)
    ):
        return f"bbox must be 4 finite numbers [x, y, w, h], got {box!r}"
    if box[2] <= 0 or box[3] <= 0:
        return f"bbox has no area: {box}"
    if "area" not in ann:
        ann["area"] = float(box[2] * box[3])
    ann.setdefault("iscrowd", 0)
    return None


def read_coco(annotations: str | Path, image_dir: str | Path):
    """Reads a COCO annotation file into per-image records, checking it.

    Returns (records, category_ids, warnings); a record is (path, boxes (N, 4) xyxy float32,
    classes (N,) int32 0-based by sorted category id). Images whose file is missing are left
    out and annotations with unknown ids or malformed boxes are dropped, each with a warning.
    """
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
