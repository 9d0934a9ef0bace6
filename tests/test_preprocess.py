import numpy as np

from cornernet_tf.config import DataConfig
from cornernet_tf.preprocess import normalize_image


def test_normalisation_is_bgr_with_the_official_mean_and_std():
    data = DataConfig()
    pixel = np.array([[[255, 0, 51]]], np.uint8)  # R, G, B
    out = normalize_image(pixel, data).numpy()[0, 0]
    expected_bgr = (np.array([0.2, 0.0, 1.0]) - data.mean_bgr) / data.std_bgr
    np.testing.assert_allclose(out, expected_bgr, rtol=1e-6)
    assert out.dtype == np.float32
