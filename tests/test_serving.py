"""cornernet_tf.serving.pixel_detections: serving outputs -> pixel boxes, hand-computed."""

import numpy as np
import pytest

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


def test_classes_by_the_category_map_and_ids_outside_it_named():
    mapped = pixel_detections(OUTPUTS, 0, 100, 200, category_ids=(1, 4, 9))
    assert mapped["classes"].tolist() == [0, 1]  # ids 1 and 4 are classes 0 and 1 of the map
    for classes, message in [
        ([[1.0, 5.0, 0.0], [2.0, 0.0, 0.0]], r"detection_classes holds 5, not one of the category"),
        ([[2.7, 4.0, 0.0], [2.0, 0.0, 0.0]], r"detection_classes holds 2\.7"),
    ]:
        with pytest.raises(ValueError, match=message):
            pixel_detections({**OUTPUTS, "detection_classes": classes}, 0, 100, 200, (1, 4, 9))
    unmapped = {**OUTPUTS, "detection_classes": [[0.0, 4.0, 0.0], [2.0, 0.0, 0.0]]}
    with pytest.raises(ValueError, match="holds 0, not one of whole numbers >= 1"):
        pixel_detections(unmapped, 0, 100, 200)
    assert pixel_detections(unmapped, 1, 100, 200)["classes"].tolist() == [1]  # rows past count
