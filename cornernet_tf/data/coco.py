"""COCO JSON annotations + an image folder: checked loading (`load_annotations`), per-image
records (`read_coco`) and the pipeline source (`coco_source`).

Classes are 0-based indices into a category map (the dataset's category ids in ascending order,
the convention of the official code). Category ids outside the map and duplicate image ids are
errors; bad boxes and unreadable images are left out, each with a warning that names the file and
the entry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from cornernet_tf.data.source import DataError, Source, decode_image, is_image


class AnnotationError(ValueError):
    """The annotation file cannot be used; the message names the file and what is wrong."""


def load_annotations(path: str | Path):
    """Loads a COCO annotation file with pycocotools, after checking it.

    Annotations with an unknown category id or a malformed box are left out, each with a warning
    naming the file and the annotation; returns (COCO, list of warnings).
    """
    path = Path(path)
    data = _read_json(path)
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
    return coco_index(data), warnings


def coco_index(data: dict):
    """A pycocotools COCO object of a COCO dict, indexed without its console output."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


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


def read_coco(annotations: str | Path, image_dir: str | Path, category_ids=()):
    """Reads and checks a COCO annotation file for training: per-image records, the category map.

    category_ids: the map (class index i is the i-th id, ascending); empty: the file's category
    ids in ascending order. Raises DataError naming the file, the entry, the field and the value
    for an annotation whose category_id is not in the map and for duplicate image ids. Leaves out,
    with a warning each: annotations of unknown images, boxes that are malformed, of zero area
    or outside their image; images whose file is missing or is not an image (header check).
    Returns a `CocoRecords`.
    """
    path = Path(annotations)
    data = _read_json(path)
    names = {c.get("id"): str(c.get("name", c.get("id"))) for c in data["categories"]}
    ids = tuple(category_ids) or tuple(sorted(names))
    index = {cid: i for i, cid in enumerate(ids)}
    images = {}
    for info in data["images"]:
        image_id = info.get("id")
        if image_id in images:
            raise DataError(
                f"{path}: duplicate image id {image_id!r}: {images[image_id].get('file_name')!r} "
                f"and {info.get('file_name')!r}"
            )
        images[image_id] = info
    warnings, dropped = [], 0
    by_image: dict = {}
    known_ids, known_images = set(index), set(images)
    for ann in data["annotations"]:
        if ann.get("category_id") not in index:
            raise DataError(
                f"{path}: annotation {ann.get('id', '?')}: category_id {ann.get('category_id')!r} "
                f"is not in the category map {list(ids)}"
                + ("" if category_ids else " (the ids of the file's 'categories')")
            )
        problem = _annotation_problem(ann, known_ids, known_images)
        if problem is None and not ann.get("iscrowd", 0):
            problem = _outside(ann, images[ann["image_id"]])
        if problem:
            warnings.append(f"{path}: annotation {ann.get('id', '?')} left out: {problem}")
            dropped += 1
        elif not ann.get("iscrowd", 0):
            by_image.setdefault(ann["image_id"], []).append(ann)
    records, image_ids, missing = [], [], 0
    for image_id in sorted(images, key=lambda i: (isinstance(i, str), i)):
        info = images[image_id]
        file = Path(image_dir) / str(info.get("file_name"))
        problem = _image_problem(file)
        if problem:
            warnings.append(f"{path}: image {image_id} left out: {problem}")
            missing += 1
            continue
        anns = by_image.get(image_id, [])
        boxes = np.array(
            [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], np.float32
        ).reshape(-1, 4)
        classes = np.array([index[a["category_id"]] for a in anns], np.int32)
        records.append((str(file), boxes, classes))
        image_ids.append(image_id)
    if not records:
        raise DataError(f"{path}: no usable image in {image_dir} (all {len(images)} left out)")
    boxes = sum(len(r[1]) for r in records)
    summary = (
        f"{path}: {len(records)} images, {boxes} boxes, {len(ids)} categories; left out "
        f"{missing} images (missing or not an image), {dropped} boxes"
    )
    class_names = tuple(names.get(cid, str(cid)) for cid in ids)
    return CocoRecords(records, image_ids, ids, class_names, warnings, summary)


@dataclasses.dataclass
class CocoRecords:
    """What `read_coco` found: records (path, boxes (N, 4) xyxy float32, classes (N,) int32),
    their image ids, category_ids (the map), class_names (by class index), warnings, summary."""

    records: list
    image_ids: list
    category_ids: tuple
    class_names: tuple
    warnings: list
    summary: str


def _read_json(path: Path) -> dict:
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
    return data


def _outside(ann: dict, info: dict) -> str | None:
    """Why a box lies entirely outside its image (when the image's size is given), or None."""
    width, height = info.get("width"), info.get("height")
    if not width or not height:
        return None
    x, y, w, h = ann["bbox"]
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        return f"box {ann['bbox']} of image {info['id']} lies outside the {width}x{height} image"
    return None


def _image_problem(path: Path) -> str | None:
    """Why `path` is not an image file, from its first bytes only, or None."""
    try:
        with open(path, "rb") as file:
            head = file.read(16)
    except FileNotFoundError:
        return f"{path} does not exist"
    except OSError as error:
        return f"{path} cannot be read ({error.strerror})"
    if not is_image(head):
        return f"{path} is not a readable image (not a JPEG, PNG, GIF or BMP file)"
    return None


def coco_source(annotations: str | Path, image_dir: str | Path, category_ids=()) -> Source:
    """COCO JSON + image folder, checked by `read_coco`; `source.category_ids` and
    `source.class_names` are the map it used and the names of its categories."""
    coco = read_coco(annotations, image_dir, category_ids)
    records = coco.records
    paths = tf.constant([r[0] for r in records])
    lengths = [len(r[2]) for r in records]
    boxes = tf.RaggedTensor.from_row_lengths(np.concatenate([r[1] for r in records]), lengths)
    classes = tf.RaggedTensor.from_row_lengths(np.concatenate([r[2] for r in records]), lengths)
    items = tf.data.Dataset.from_tensor_slices((paths, boxes, classes))

    def load(item):
        path, b, c = item
        image = decode_image(tf.io.read_file(path))
        return {"image": image, "boxes": tf.reshape(b, [-1, 4]), "classes": c}

    source = Source(items, load, len(records), coco.warnings, coco.summary)
    source.category_ids, source.class_names = coco.category_ids, coco.class_names
    return source
