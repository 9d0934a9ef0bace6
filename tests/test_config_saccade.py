"""CornerNet-Saccade's test settings in TestConfig: the official defaults and messages that name
the key and the value."""

import pytest

from cornernet_tf import ConfigError, load_config


def test_defaults_are_the_official_saccade_settings():
    test = load_config(None).test
    assert test.procedure == "cornernet"  # the whole-image procedure stays the default
    assert test.init_sizes == (192, 255)
    assert test.att_scales == (1.0, 2.0, 4.0)
    assert test.att_thresholds == (0.3,)
    assert test.att_max_crops == 30
    assert test.att_ranges == ((96, 256), (32, 96), (0, 32))
    assert test.att_ratios == (16, 8, 4)
    assert test.att_nms_kernel == 3 and test.ref_dets is True


def test_saccade_settings_from_overrides():
    config = load_config(
        "tiny_saccade",
        ["test.procedure=saccade", "test.att_scales=[1, 1.5, 2]", "test.att_max_crops=8"],
    )
    assert config.test.procedure == "saccade" and config.test.att_max_crops == 8
    assert config.test.att_scales == (1.0, 1.5, 2.0)


def test_the_saccade_procedure_needs_a_model_with_attention_maps():
    """A CornerNet without attention heads (the demo model, Hourglass-104) cannot run it."""
    with pytest.raises(
        ConfigError,
        match=r"tiny\.yaml: override test\.procedure=saccade: test\.procedure saccade crops where "
        r"attention maps point at input "
        r"strides 16, 8, 4, which needs model\.attention true.*got attention False, depth 3",
    ):
        load_config("tiny", ["test.procedure=saccade"])


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"test.procedure": "lite"}, r"test\.procedure must be cornernet or saccade, got 'lite'"),
        ({"test.init_sizes": []}, r"test\.init_sizes must be positive sizes, got \[\]"),
        ({"test.init_sizes": [192, 0]}, r"test\.init_sizes must be positive sizes, got \[192, 0\]"),
        (
            {"test.att_thresholds": [0.3, 0.3]},
            r"test\.att_thresholds must have one entry \(one round of attention crops is "
            r"supported.*got \[0\.3, 0\.3\]",
        ),
        ({"test.att_thresholds": [1.5]}, r"test\.att_thresholds must be in \[0, 1\), got \[1\.5\]"),
        (
            {"test.att_scales": [1, 2]},
            r"test\.att_scales needs one entry per attention map, as test\.att_ratios \(3\), "
            r"got \[1\.0, 2\.0\]",
        ),
        (
            {"test.att_ranges": [[96, 256], [0, 96]]},
            r"test\.att_ranges needs one entry per attention map.*got \[\[96, 256\], \[0, 96\]\]",
        ),
        ({"test.att_scales": [1, 0, 4]}, r"test\.att_scales must be positive, got \[1\.0, 0\.0"),
        ({"test.att_ratios": [16, 0, 4]}, r"test\.att_ratios must be positive strides"),
        (
            {"test.att_ranges": [[96, 256], [96, 32], [0, 32]]},
            r"test\.att_ranges must be \[low, high\] pairs with 0 <= low < high, "
            r"got \[\[96, 256\], \[96, 32\], \[0, 32\]\]",
        ),
        ({"test.att_ranges": [[96, 256, 1]]}, r"'test\.att_ranges\[0\]' must have 2 entries"),
        ({"test.att_max_crops": -1}, r"test\.att_max_crops must be >= 0, got -1"),
        ({"test.att_nms_kernel": 4}, r"test\.att_nms_kernel must be an odd size >= 1, got 4"),
        ({"test.ref_dets": "yes"}, r"'test\.ref_dets' must be bool, got 'yes'"),
    ],
)
def test_saccade_errors_name_the_key_and_the_value(overrides, message):
    with pytest.raises(ConfigError, match=r"<defaults>: .*" + message):
        load_config(None, overrides)
