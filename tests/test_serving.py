"""cornernet_tf.serving.pixel_detections: serving outputs -> pixel boxes, hand-computed."""

import numpy as np

from cornernet_tf.serving import OUTPUT_KEYS, pixel_detections

OUTPUTS = {  # two images, N = 3 rows each, the second image with one real detection
    "detection_boxes": [
        [[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0], [0, 0, 0, 0]],
        [[0.5, 0.25, 0.75, 0.5], [0, 0, 0, 0], [0, 0, 0, 0]],
    ],
    "detection_scores": [[0.9, 0.4, 0.0], [0.7, 0.0, 0.0]],
    "detection_classes": [[1.0, 4.0, 0.0], [2.0, 0.0, 0.0]],
    "num_detections": [2.0, 1.0],
}


def test_boxes_in_pixels_and_zero_based_classes():
    first = pixel_detections(OUTPUTS, 0, height=100, width=200)
    np.testing.assert_allclose(first["boxes"], [[40, 10, 120, 50], [0, 0, 200, 100]], rtol=1e-6)
    np.testing.assert_allclose(first["scores"], [0.9, 0.4])
    assert first["classes"].tolist() == [0, 3]
    second = pixel_detections(OUTPUTS, 1, height=40, width=80)
    np.testing.assert_allclose(second["boxes"], [[20, 20, 40, 30]], rtol=1e-6)
    assert second["classes"].tolist() == [1] and len(second["scores"]) == 1


def test_flat_lists_as_tfjs_gives_them():
    flat = {key: np.asarray(OUTPUTS[key]).reshape(-1).tolist() for key in OUTPUT_KEYS}
    for index in (0, 1):
        a, b = pixel_detections(flat, index, 50, 60), pixel_detections(OUTPUTS, index, 50, 60)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
