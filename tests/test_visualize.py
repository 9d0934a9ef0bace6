"""Pictures: detections and ground truth drawn on an image, sheets of pictures."""

import numpy as np
from PIL import Image

from cornernet_tf.visualize import draw_detections, sheet


def test_detections_above_the_threshold_and_the_ground_truth_are_drawn():
    image = np.full((100, 120, 3), 90, np.uint8)
    boxes = np.array([[10, 10, 50, 60], [60, 20, 110, 90]], np.float32)
    truth = [[20, 30, 80, 70]]
    drawn = draw_detections(image, boxes, [0.9, 0.2], [0, 1], ["a", "b"], ground_truth=truth)
    picture = np.asarray(drawn)
    assert picture.shape == (100, 120, 3)
    assert tuple(picture[40, 10]) == (230, 25, 75)  # box 0's left edge, class 0's colour
    assert tuple(picture[50, 110]) == (90, 90, 90)  # box 1 scores under the threshold
    assert tuple(picture[50, 80]) == (255, 255, 255)  # the ground truth's right edge, white
    assert tuple(picture[50, 81]) == (0, 0, 0)  # edged in black outside
    assert tuple(picture[50, 79]) == (0, 0, 0)  # and inside


def test_a_sheet_puts_pictures_in_rows_and_shrinks_large_ones():
    small = Image.new("RGB", (100, 50), "red")
    large = Image.new("RGB", (1280, 640), "blue")  # shrunk to 640 x 320
    result = sheet([small, large, small, small], columns=3)
    assert result.size == (3 * 640, 2 * 320)
    assert result.getpixel((10, 10)) == (255, 0, 0)
    assert result.getpixel((640 + 600, 300)) == (0, 0, 255)
    assert result.getpixel((10, 320 + 10)) == (255, 0, 0)  # the fourth starts the second row
    assert result.getpixel((2 * 640 + 10, 320 + 10)) == (255, 255, 255)  # nothing there
    assert large.size == (1280, 640)  # the pictures given are not changed
