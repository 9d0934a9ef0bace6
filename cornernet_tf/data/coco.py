"""COCO JSON annotations + an image folder: checked loading (`load_annotations`), per-image
records (`read_coco`) and the pipeline source (`coco_source`).

Classes are 0-based indices into a category map (the dataset's category ids in ascending order,
the convention of the official code). Category ids outside the map and duplicate image ids are
errors; bad boxes and unreadable images are left out, each with a warning that names the file and
the entry. For evaluation, `check_annotations` also refuses what pycocotools would score wrongly
(repeated image / annotation / category ids, entries without id or file_name).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from cornernet_tf.data.source import DataError, Source, decode_image, is_image
from cornernet_tf.files import special_file


class AnnotationError(ValueError):
    """The annotation file cannot be used; the message names the file and what is wrong."""


def load_annotations(path: str | Path):
    """Loads a COCO annotation file with pycocotools, after `check_annotations`: returns
    (COCO, list of warnings, one per annotation left out)."""
    checked = check_annotations(path)
    return coco_index(checked.data), checked.warnings


@dataclasses.dataclass
class CheckedAnnotations:
    """What `check_annotations` kept: data (the COCO dict, bad annotations removed), warnings
    (one per annotation left out, naming the file and the annotation), left_out (reason ->
    count) and first (reason -> the id of the first annotation left out for it)."""

    data: dict
    warnings: list
    left_out: collections.Counter
    first: dict


def check_annotations(path: str | Path) -> CheckedAnnotations:
    """Reads and checks a COCO annotation file for evaluation.

    Raises AnnotationError, naming the file, the entry (list index and id), the field and the
    value, when the file is not a JSON object with the lists images (not empty), annotations and
    categories; an entry is not an object; an id is missing, not an integer or string, or
    repeated (images, annotations, categories); an image has no file_name, or a width / height
    that is not a positive number. Leaves out, with a warning each (as training does), the
    annotations whose category_id or image_id is unknown, whose bbox is not 4 finite numbers or
    has no area, whose area is not a number, or whose box lies wholly outside its image (it can
    never be detected): they are not scored.
    """
    path = Path(path)
    data = _read_json(path)
    if not data["images"]:
        raise AnnotationError(f"{path}: 'images' is empty: no image to evaluate")
    _check_ids(path, data, "categories", "category")
    _check_ids(path, data, "images", "image")
    _check_ids(path, data, "annotations", "annotation")
    for k, info in enumerate(data["images"]):
        where = f"{path}: images[{k}] (id {info['id']!r})"
        name = info.get("file_name")
        if name is None:
            raise AnnotationError(
                f"{where} has no 'file_name' (expected the image's file name in the image folder)"
            )
        if not isinstance(name, str) or not name:
            raise AnnotationError(f"{where}: 'file_name' must be a file name, got {name!r}")
        for key in ("width", "height"):
            value = info.get(key)
            if value is not None and not (_is_number(value) and value > 0):
                raise AnnotationError(f"{where}: '{key}' must be a positive number, got {value!r}")
    if problem := shared_file_name(data["images"]):
        raise AnnotationError(f"{path}: {problem}")
    categories = {c["id"] for c in data["categories"]}
    images = {i["id"]: i for i in data["images"]}
    warnings, kept, left_out, first = [], [], collections.Counter(), {}
    for ann in data["annotations"]:
        reason, problem = _annotation_problem(ann, categories, set(images)) or (None, None)
        if problem is None and not ann.get("iscrowd", 0):
            problem = _outside(ann, images[ann["image_id"]])
            reason = "box wholly outside its image"
        if problem:
            warnings.append(f"{path}: annotation {ann['id']} left out: {problem}")
            left_out[reason] += 1
            first.setdefault(reason, ann["id"])
        else:
            kept.append(ann)
    data["annotations"] = kept
    return CheckedAnnotations(data, warnings, left_out, first)


def shared_file_name(images) -> str | None:
    """What is wrong when two image entries name the same file (one picture would get the boxes
    of both), or None."""
    seen = {}
    for info in images:
        name = str(info.get("file_name"))  # as the image's path is made
        if name in seen:
            return (
                f"images {seen[name]!r} and {info.get('id')!r} have the same file_name {name!r}: "
                "the boxes of both would be on one picture"
            )
        seen[name] = info.get("id")
    return None


def _check_ids(path: Path, data: dict, key: str, what: str) -> None:
    """Every entry of data[key] is an object with an integer or string 'id', each id once."""
    seen = collections.Counter()
    for k, entry in enumerate(data[key]):
        if not isinstance(entry, dict):
            raise AnnotationError(f"{path}: {key}[{k}] must be a JSON object, got {_short(entry)}")
        if "id" not in entry:
            raise AnnotationError(f"{path}: {key}[{k}] has no 'id' (expected an integer)")
        value = entry["id"]
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise AnnotationError(
                f"{path}: {key}[{k}]: 'id' must be an integer or a string, got {_short(value)}"
            )
        seen[value] += 1
    kinds = {type(value) for value in seen}
    if len(kinds) > 1:
        raise AnnotationError(f"{path}: the {what} ids mix integers and strings: expected one kind")
    repeated = [(value, n) for value, n in seen.items() if n > 1]
    if repeated:
        value, n = repeated[0]
        more = f" ({len(repeated)} ids are repeated)" if len(repeated) > 1 else ""
        raise AnnotationError(
            f"{path}: {what} id {value!r} appears {n} times in '{key}'{more}: each "
            f"{what} needs its own id"
        )


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_number(value) -> bool:
    """A finite JSON number (not true/false)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) or bool(np.isfinite(value))


def _among(value, known: set) -> bool:
    """value is in `known` (False for a value that cannot be, such as a list)."""
    try:
        return value in known
    except TypeError:
        return False


def coco_index(data: dict):
    """A pycocotools COCO object of a COCO dict, indexed without its console output."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _annotation_problem(ann: dict, categories: set, images: set) -> tuple[str, str] | None:
    """Why an annotation cannot be used, as (reason, message naming the value), or None. Fills
    in a missing area (w * h) and iscrowd (0)."""
    if not _among(ann.get("category_id"), categories):
        return "unknown category_id", f"unknown category_id {ann.get('category_id')!r}"
    if not _among(ann.get("image_id"), images):
        return "unknown image_id", f"unknown image_id {ann.get('image_id')!r}"
    box = ann.get("bbox")
    if not isinstance(box, list) or len(box) != 4 or not all(_is_number(v) for v in box):
        return "malformed bbox", f"bbox must be 4 finite numbers [x, y, w, h], got {box!r}"
    if box[2] <= 0 or box[3] <= 0:
        return "bbox of no area", f"bbox has no area: {box}"
    if "area" not in ann:
        ann["area"] = float(box[2] * box[3])
    elif not (_is_number(ann["area"]) and ann["area"] >= 0):
        return "area not a number", f"area must be a number >= 0, got {ann['area']!r}"
    crowd = ann.setdefault("iscrowd", 0)
    if not (crowd == 0 or crowd == 1):
        return "bad iscrowd", f"iscrowd must be 0 or 1, got {crowd!r}"
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
    for key in ("categories", "images", "annotations"):
        for k, entry in enumerate(data[key]):
            if not isinstance(entry, dict):
                raise DataError(f"{path}: {key}[{k}] must be a JSON object, got {_short(entry)}")
    names = {c.get("id"): str(c.get("name", c.get("id"))) for c in data["categories"]}
    ids = tuple(category_ids) or tuple(sorted(names))
    index = {cid: i for i, cid in enumerate(ids)}
    images = {}
    for k, info in enumerate(data["images"]):
        image_id = info.get("id")
        if isinstance(image_id, bool) or not isinstance(image_id, (int, str)):
            raise DataError(
                f"{path}: images[{k}]: 'id' must be an integer or a string, got {_short(image_id)}"
            )
        if image_id in images:
            raise DataError(
                f"{path}: duplicate image id {image_id!r}: {images[image_id].get('file_name')!r} "
                f"and {info.get('file_name')!r}"
            )
        images[image_id] = info
    if problem := shared_file_name(data["images"]):
        raise DataError(f"{path}: {problem}")
    warnings, dropped = [], 0
    by_image: dict = {}
    known_ids, known_images = set(index), set(images)
    for ann in data["annotations"]:
        if not _among(ann.get("category_id"), index):
            raise DataError(
                f"{path}: annotation {ann.get('id', '?')}: category_id {ann.get('category_id')!r} "
                f"is not in the category map {list(ids)}"
                + ("" if category_ids else " (the ids of the file's 'categories')")
            )
        _, problem = _annotation_problem(ann, known_ids, known_images) or (None, None)
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
        problem = image_problem(file)
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
    if not boxes:
        raise DataError(
            f"{path}: no box to learn from: {len(data['annotations'])} annotation(s), "
            f"{dropped} left out"
            + (f" (first: {warnings[0].split(' left out: ', 1)[-1]})" if dropped else "")
            + "; the image ids of 'annotations' must be those of 'images'",
            warnings,
        )
    summary = (
        f"{path}: {len(records):,} images, {boxes:,} boxes, {len(ids)} categories; left out "
        f"{missing:,} images (missing or not an image), {dropped:,} boxes"
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
    if kind := special_file(path):
        raise AnnotationError(f"{path}: not an annotation file but {kind}")
    try:
        data = json.loads(path.read_text())
    except OSError as error:
        raise AnnotationError(
            f"{path}: cannot read the annotation file ({error.strerror})"
        ) from None
    except UnicodeDecodeError:
        raise AnnotationError(f"{path}: not valid JSON (not UTF-8 text)") from None
    except json.JSONDecodeError as error:
        raise AnnotationError(f"{path}: not valid JSON ({error})") from None
    except RecursionError:
        raise AnnotationError(f"{path}: not COCO JSON (lists or objects nested too deep)") from None
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: expected a JSON object with images/annotations/categories")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise AnnotationError(f"{path}: the '{key}' list is missing")
        if not isinstance(data[key], list):
            raise AnnotationError(f"{path}: '{key}' must be a list, got {_json_kind(data[key])}")
    if not data["categories"]:
        raise AnnotationError(f"{path}: 'categories' is empty")
    return data


def _json_kind(value) -> str:
    kinds = {dict: "an object", str: "a string", bool: "true/false", type(None): "null"}
    return kinds.get(type(value), "a number")


def _outside(ann: dict, info: dict) -> str | None:
    """Why a box lies entirely outside its image (when the image's size is given), or None."""
    width, height = info.get("width"), info.get("height")
    if not (_is_number(width) and _is_number(height) and width > 0 and height > 0):
        return None
    x, y, w, h = ann["bbox"]
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        return f"box {ann['bbox']} of image {info['id']} lies outside the {width}x{height} image"
    return None


def image_problem(path: Path) -> str | None:
    """Why `path` is not an image file, from its first bytes only, or None."""
    if kind := special_file(path):
        return f"{path} is not an image file but {kind}"
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
