"""The serving outputs (SavedModel, TF Serving, TF.js) and what a Python caller makes of them.

    detection_boxes   (B, N, 4) float32 [ymin, xmin, ymax, xmax], normalised to the image
    detection_scores  (B, N) float32, sorted
    detection_classes (B, N) float32, 1-based
    num_detections    (B,) float32: the first num_detections rows are real, the rest zeros
NumPy only: a client needs no TensorFlow for this.
"""

from __future__ import annotations

import numpy as np

OUTPUT_KEYS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")


def pixel_detections(outputs: dict, index: int, height: int, width: int) -> dict[str, np.ndarray]:
    """Image `index` of serving outputs (array-likes, batch first; flat lists as TF.js gives
    them are reshaped) -> boxes (M, 4) [x1, y1, x2, y2] in pixels of that height x width image,
    scores (M,), classes (M,) int 0-based: what `Detector` returns."""
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
        "classes": classes[index, :count].astype(int) - 1,
    }
