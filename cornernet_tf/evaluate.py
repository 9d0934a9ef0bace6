"""COCO box evaluation with pycocotools: `CocoEvaluator` (reset / update / result).

Classes inside the package are 0-based contiguous indices; COCO category ids are whatever the
annotation file says (1..90 with gaps for COCO). The evaluator maps index i to the i-th category id
in ascending order, the convention of the official code.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
from pathlib import Path

import numpy as np

from cornernet_tf.data.coco import (
    AnnotationError,
    check_annotations,
    coco_index,
    load_annotations,
)

__all__ = [
    "STAT_NAMES",
    "AnnotationError",
    "CocoEvaluator",
    "evaluate_examples",
    "load_annotations",
]

STAT_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
)


class CocoEvaluator:
    """Accumulates detections per image and scores them with COCOeval (bbox)."""

    def __init__(self, annotations, category_ids=()):
        """annotations: a path to a COCO JSON file (checked by `check_annotations`: an unusable
        file raises AnnotationError, bad annotations are left out), or a pycocotools COCO object.
        category_ids: the model's category map (class index i is category_ids[i]); empty: the
        file's category ids in ascending order. `warnings`: one per annotation left out, then
        those about the map; `left_out`: reason -> count of annotations left out."""
        self.path, self.left_out, self._first = None, collections.Counter(), {}
        if isinstance(annotations, (str, Path)):
            checked = check_annotations(annotations)
            self.coco, self.warnings = coco_index(checked.data), checked.warnings
            self.path, self.left_out, self._first = (
                Path(annotations),
                checked.left_out,
                checked.first,
            )
        else:
            self.coco, self.warnings = annotations, []
        self.category_ids = list(category_ids) or sorted(self.coco.getCatIds())
        unknown = [c for c in self.category_ids if c not in self.coco.cats]
        if unknown:
            self.warnings.append(
                f"category ids {unknown} of the model are not among the annotations' categories "
                f"{sorted(self.coco.getCatIds())}: their detections are not scored"
            )
        self.class_names = [
            str(self.coco.cats.get(c, {}).get("name", c)) for c in self.category_ids
        ]
        self.reset()

    def left_out_summary(self) -> list[str]:
        """One line per reason annotations were left out (not scored): count, reason, the first
        annotation's id; the most frequent reason first."""
        return [
            f"{self.path}: {count} annotation(s) left out, not scored: {reason} "
            f"(first: annotation {self._first[reason]!r})"
            for reason, count in self.left_out.most_common()
        ]

    def reset(self) -> None:
        self.results: list[dict] = []
        self.image_ids: set = set()
        self.coco_eval = None

    def update(self, image_id, boxes, scores, classes) -> None:
        """Adds one image's detections: boxes (N, 4) [x1, y1, x2, y2] in image pixels, scores (N,),
        classes (N,) 0-based indices into the annotation file's sorted category ids."""
        self.image_ids.add(image_id)
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        for box, score, cls in zip(boxes, np.asarray(scores), np.asarray(classes), strict=True):
            if not 0 <= int(cls) < len(self.category_ids):
                raise ValueError(
                    f"class index {int(cls)} outside the {len(self.category_ids)} categories of "
                    "the annotation file: does the model's num_classes match it?"
                )
            x1, y1, x2, y2 = (float(v) for v in box)
            self.results.append(
                {
                    "image_id": image_id,
                    "category_id": self.category_ids[int(cls)],
                    "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                    "score": float(score),
                }
            )

    def result(self) -> dict:
        """Runs COCOeval on the images seen so far. Returns the 12 COCO numbers by name
        (AP, AP50, ..., ARl; -1 where no ground truth defines it, e.g. APs without small boxes)
        and `per_class`: {class name: AP at IoU .50:.95, nan without ground truth}. Images seen
        without detections are scored as such; no image seen: all 0 and no per_class."""
        from pycocotools.cocoeval import COCOeval

        if not self.image_ids:
            return {**dict.fromkeys(STAT_NAMES, 0.0), "per_class": {}}
        if self.results:
            with contextlib.redirect_stdout(io.StringIO()):
                detections = self.coco.loadRes(self.results)
        else:  # pycocotools' loadRes cannot load an empty list
            dataset = self.coco.dataset
            detections = coco_index(
                {
                    "images": dataset["images"],
                    "annotations": [],
                    "categories": dataset["categories"],
                }
            )
        coco_eval = COCOeval(self.coco, detections, "bbox")
        coco_eval.params.imgIds = sorted(self.image_ids)
        with contextlib.redirect_stdout(io.StringIO()):
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        self.coco_eval = coco_eval
        stats = {
            name: float(value) for name, value in zip(STAT_NAMES, coco_eval.stats, strict=True)
        }
        precision = coco_eval.eval["precision"][:, :, :, 0, -1]  # IoU x recall x class, all areas
        per_class = {}
        position = {c: k for k, c in enumerate(coco_eval.params.catIds)}
        for cid, name in zip(self.category_ids, self.class_names, strict=True):
            if cid not in position:
                continue
            values = precision[:, :, position[cid]]
            values = values[values > -1]
            per_class[name] = float(values.mean()) if values.size else float("nan")
        return {**stats, "per_class": per_class}

    def write_results(self, path: str | Path) -> None:
        """Writes the detections in the COCO results format (1-based category ids of the file)."""
        Path(path).write_text(json.dumps(self.results))

    def precision_recall(self) -> dict[str, np.ndarray]:
        """Precision over the 101 recall points, averaged over classes with ground truth:
        `recall`, and `iou50`, `iou75`, `mean` (IoU .50:.95). Call after `result()`."""
        precision = self.coco_eval.eval["precision"][:, :, :, 0, -1]
        masked = np.where(precision > -1, precision, np.nan)
        with np.errstate(invalid="ignore"), contextlib.suppress(RuntimeWarning):
            per_iou = np.nanmean(masked, axis=2)  # IoU x recall
        return {
            "recall": np.asarray(self.coco_eval.params.recThrs),
            "iou50": per_iou[0],
            "iou75": per_iou[5],
            "mean": np.nanmean(per_iou, axis=0),
        }


def evaluate_examples(detect, examples, category_ids, class_names) -> dict:
    """COCO AP of `detect` (an (H, W, 3) uint8 RGB image -> dict of boxes, scores, classes) on
    `examples`, an iterable of {image, boxes (N, 4) xyxy pixels, classes (N,) indices}: the
    examples become the ground truth (category ids by the map `category_ids`). Returns
    `CocoEvaluator.result()`."""
    images, annotations = [], []
    categories = [{"id": int(c), "name": n} for c, n in zip(category_ids, class_names, strict=True)]
    detections = []
    for k, example in enumerate(examples, start=1):
        image = np.asarray(example["image"])
        images.append({"id": k, "height": image.shape[0], "width": image.shape[1]})
        boxes, classes = np.asarray(example["boxes"]), np.asarray(example["classes"])
        for box, cls in zip(boxes, classes, strict=True):
            x1, y1, x2, y2 = (float(v) for v in box)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": k,
                    "category_id": int(category_ids[int(cls)]),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
        detections.append((k, detect(image)))
    coco = coco_index({"images": images, "annotations": annotations, "categories": categories})
    evaluator = CocoEvaluator(coco, category_ids)
    for k, dets in detections:
        evaluator.update(k, dets["boxes"], dets["scores"], dets["classes"])
    return evaluator.result()
