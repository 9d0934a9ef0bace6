"""The serving outputs (SavedModel, TF Serving, TF.js) and what a Python caller makes of them.

    detection_boxes   (B, N, 4) float32 [ymin, xmin, ymax, xmax], normalised to the image
    detection_scores  (B, N) float32, sorted
    detection_classes (B, N) float32, the dataset's category ids (data.category_ids; 1..N
                      when the config has no map)
    num_detections    (B,) float32: the first num_detections rows are real, the rest zeros
NumPy only: a client needs no TensorFlow for this.
"""

from __future__ import annotations

import numpy as np

OUTPUT_KEYS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")


def pixel_detections(
    outputs: dict, index: int, height: int, width: int, category_ids=()
) -> dict[str, np.ndarray]:
    """Image `index` of serving outputs (array-likes, batch first; flat lists as TF.js gives
    them are reshaped) -> boxes (M, 4) [x1, y1, x2, y2] in pixels of that height x width image,
    scores (M,), classes (M,) int 0-based by the category map `category_ids` (empty: the ids
    are 1..N): what `Detector` returns."""
    counts = np.asarray(outputs["num_detections"]).reshape(-1)
    batch = len(counts)
    count = int(counts[index])
    boxes = np.asarray(outputs["detection_boxes"], np.float32).reshape(batch, -1, 4)
    scores = np.asarray(outputs["detection_scores"], np.float32).reshape(batch, -1)
    classes = np.asarray(outputs["detection_classes"]).reshape(batch, -1)
    ymin, xmin, ymax, xmax = boxes[index, :count].T
    return {
        "boxes": np.stack([xmin * width, ymin * height, xmax * width, ymax * height], -1),
        "scores": scores[index, :count],
        "classes": class_indices(classes[index, :count], category_ids),
    }


def class_indices(ids, category_ids=()) -> np.ndarray:
    """Category ids -> 0-based class indices by the map `category_ids` (ascending; empty: the
    ids are 1..N). ValueError naming the first id that is not a whole number or not in the map
    (a model exported with another map)."""
    values = np.asarray(ids, np.float64).reshape(-1)
    known = np.asarray(category_ids, np.int64).reshape(-1)
    whole = np.isfinite(values) & (values == np.round(values))
    inside = np.isin(values, known) if len(known) else values >= 1
    if not (whole & inside).all():
        bad = values[~(whole & inside)][0]
        expected = f"the category ids {known.tolist()}" if len(known) else "whole numbers >= 1"
        raise ValueError(f"detection_classes holds {bad:g}, not one of {expected}")
    ids = values.astype(np.int64)
    return np.searchsorted(known, ids) if len(known) else ids - 1
