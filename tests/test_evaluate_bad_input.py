"""cornernet-evaluate on bad input: one line `error: ...` and exit code 2, or a warning with a
count that says what is scored; never a traceback or a silently wrong AP.

All but one test stop before the network is loaded (the weights path need not exist).
"""

import json
import math

import numpy as np
import pytest
from PIL import Image

from cornernet_tf.evaluate import AnnotationError, CocoEvaluator
from tests.helpers import ROOT, run_script
from tests.test_evaluate import write_dataset

TINY = ["--config", str(ROOT / "configs/tiny.yaml"), "model.num_classes=2", "data.class_names=[]"]


def evaluate(tmp_path, *args, images=None, annotations=None, weights="unused.weights.h5"):
    """Runs cornernet-evaluate in this process on the dataset of tmp_path/data; returns its code."""
    annotations = annotations or tmp_path / "data/annotations.json"
    images = images or tmp_path / "data"
    base = ["--weights", str(weights), "--annotations", str(annotations), "--images", str(images)]
    return run_script("evaluate", *TINY, *base, "--out", str(tmp_path / "out"), *args)


def dataset(tmp_path, change=None):
    """The two-image dataset of test_evaluate, its JSON passed through `change(data)`."""
    path = write_dataset(tmp_path / "data")
    if change:
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))
    return path


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_wrong_images_folder_is_an_error_naming_it_and_the_missing_files(tmp_path, capsys):
    dataset(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    assert evaluate(tmp_path, images=tmp_path / "elsewhere") == 2
    line = error_line(capsys)
    assert f"none of the 2 images named in {tmp_path / 'data/annotations.json'}" in line
    assert str(tmp_path / "elsewhere") in line and "img1.png, img2.png" in line
    assert not (tmp_path / "out").exists()
    assert evaluate(tmp_path, images=tmp_path / "nowhere") == 2
    assert f"--images {tmp_path / 'nowhere'}: no such folder" in error_line(capsys)


def test_duplicate_image_ids_are_an_error(tmp_path, capsys):
    def twice(data):
        data["images"].append({**data["images"][0], "file_name": "img2.png"})

    dataset(tmp_path, twice)
    assert evaluate(tmp_path) == 2
    line = error_line(capsys)
    assert "annotations.json: image id 1 appears 2 times in 'images'" in line


def test_duplicate_annotation_ids_are_an_error(tmp_path, capsys):
    def twice(data):
        data["annotations"][2]["id"] = data["annotations"][0]["id"]

    dataset(tmp_path, twice)
    assert evaluate(tmp_path) == 2
    assert "annotations.json: annotation id 10 appears 2 times in 'annotations'" in error_line(
        capsys
    )


def test_an_image_without_file_name_is_an_error(tmp_path, capsys):
    dataset(tmp_path, lambda data: data["images"][1].pop("file_name"))
    assert evaluate(tmp_path) == 2
    assert "annotations.json: images[1] (id 2) has no 'file_name'" in error_line(capsys)


@pytest.mark.parametrize("limit", ["0", "-1"])
def test_limit_must_be_positive(tmp_path, capsys, limit):
    dataset(tmp_path)
    with pytest.raises(SystemExit) as exit:
        evaluate(tmp_path, "--limit", limit)
    assert exit.value.code == 2
    assert f"argument --limit: {limit} is less than 1" in capsys.readouterr().err


def test_an_existing_file_as_out_is_an_error(tmp_path, capsys):
    dataset(tmp_path)
    (tmp_path / "out").write_text("a file")
    assert evaluate(tmp_path) == 2
    assert f"--out {tmp_path / 'out'} is a file, not a folder" in error_line(capsys)


BAD_FILES = {
    "not JSON": ("{not json", "not valid JSON"),
    "binary": (b"\xff\xfe\x00\x81", "not valid JSON (not UTF-8 text)"),
    "images not a list": ({"images": {}, "annotations": [], "categories": [{"id": 1}]},
                          "'images' must be a list, got an object"),
    "no images": ({"images": [], "annotations": [], "categories": [{"id": 1}]},
                  "'images' is empty: no image to evaluate"),
}  # fmt: skip


@pytest.mark.parametrize("name", BAD_FILES)
def test_unusable_annotation_files_are_errors(tmp_path, capsys, name):
    content, message = BAD_FILES[name]
    path = tmp_path / "bad.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    assert evaluate(tmp_path, annotations=path, images=tmp_path) == 2
    assert f"error: {path}: {message}" in error_line(capsys)


def image_field(index, key, value):
    return lambda data: data["images"][index].__setitem__(key, value)


BAD_ENTRIES = {
    "image not an object": (lambda d: d["images"].append(7), "images[2] must be a JSON object"),
    "image id missing": (lambda d: d["images"][0].pop("id"), "images[0] has no 'id'"),
    "image id a list": (image_field(0, "id", [1]),
                        "images[0]: 'id' must be an integer or a string, got [1]"),
    "width negative": (image_field(1, "width", -5),
                       "images[1] (id 2): 'width' must be a positive number, got -5"),
    "annotation not an object": (lambda d: d["annotations"].append("box"),
                                 "annotations[3] must be a JSON object"),
    "annotation id missing": (lambda d: d["annotations"][1].pop("id"),
                              "annotations[1] has no 'id'"),
    "category without id": (lambda d: d["categories"].append({"name": "x"}),
                            "categories[2] has no 'id'"),
    "duplicate category": (lambda d: d["categories"].append({"id": 3, "name": "again"}),
                           "category id 3 appears 2 times in 'categories'"),
}  # fmt: skip


@pytest.mark.parametrize("name", BAD_ENTRIES)
def test_malformed_entries_are_errors_naming_entry_and_field(tmp_path, capsys, name):
    change, message = BAD_ENTRIES[name]
    dataset(tmp_path, change)
    assert evaluate(tmp_path) == 2
    assert f"annotations.json: {message}" in error_line(capsys)


def test_no_ground_truth_among_the_scored_images_is_an_error(tmp_path, capsys):
    dataset(tmp_path, lambda data: data.__setitem__("annotations", []))
    assert evaluate(tmp_path) == 2
    assert "none of the 2 images to score has a ground-truth box" in error_line(capsys)


def test_category_ids_that_match_none_of_the_models_are_an_error(tmp_path, capsys):
    """Ids written as strings ("1") are other ids than the model's (1): every AP would be 0."""

    def as_strings(data):
        for entry in data["categories"]:
            entry["id"] = str(entry["id"])
        for entry in data["annotations"]:
            entry["category_id"] = str(entry["category_id"])

    dataset(tmp_path, as_strings)
    assert evaluate(tmp_path, "data.category_ids=[3, 7]") == 2
    line = error_line(capsys)
    assert "none of the model's category ids [3, 7] is a category id of" in line
    assert "('3', '7'): every AP would be 0" in line


def test_why_annotations_were_left_out_comes_before_the_error_they_cause(tmp_path, capsys):
    def as_strings(data):  # only the annotations' ids: every annotation has an unknown category
        for entry in data["annotations"]:
            entry["category_id"] = str(entry["category_id"])

    dataset(tmp_path, as_strings)
    assert evaluate(tmp_path) == 2
    err = capsys.readouterr().err
    assert "unknown category_id" in err.split("error: ")[0]
    assert "has a ground-truth box" in err.split("error: ")[1]


def test_bad_boxes_are_left_out_and_counted_by_reason(tmp_path):
    bad = [
        {"id": 91, "image_id": 1, "bbox": [1, 2, 3, "4"], "category_id": 3},
        {"id": 92, "image_id": 1, "bbox": [1, 2, math.nan, 4], "category_id": 3},
        {"id": 93, "image_id": 2, "bbox": [1, 2, -3, 4], "category_id": 3},
        {"id": 94, "image_id": 2, "bbox": [500, 2, 3, 4], "category_id": 3},
        {"id": 95, "image_id": 2, "bbox": [-50, 2, 30, 4], "category_id": 7},
        {"id": 96, "image_id": 1, "bbox": [1, 2, 3, 4], "category_id": 99},
        {"id": 97, "image_id": 1, "bbox": [1, 2, 3, 4], "category_id": 3, "area": "big"},
        {"id": 98, "image_id": [1], "bbox": [1, 2, 3, 4], "category_id": 3},
        {"id": 99, "image_id": 1, "bbox": [1, 2, 3, 4], "category_id": 3, "iscrowd": "yes"},
    ]
    path = tmp_path / "ann.json"
    data = json.loads(write_dataset(tmp_path).read_text())
    path.write_text(json.dumps({**data, "annotations": data["annotations"] + bad}, allow_nan=True))
    evaluator = CocoEvaluator(path)
    assert len(evaluator.coco.anns) == 3
    assert evaluator.left_out == {
        "malformed bbox": 2,
        "bbox of no area": 1,
        "box wholly outside its image": 2,
        "unknown category_id": 1,
        "area not a number": 1,
        "unknown image_id": 1,
        "bad iscrowd": 1,  # pycocotools failed on it after the network had run
    }
    assert (
        f"{path}: 2 annotation(s) left out, not scored: box wholly outside its image "
        "(first: annotation 94)" in evaluator.left_out_summary()
    )


def test_load_annotations_errors_are_annotation_errors(tmp_path):
    path = dataset(tmp_path, lambda data: data["images"][1].pop("file_name"))
    with pytest.raises(AnnotationError, match=r"images\[1\] \(id 2\) has no 'file_name'"):
        CocoEvaluator(path)


@pytest.mark.e2e
def test_some_unreadable_images_are_counted_left_out_and_said(tmp_path, capsys, tiny_weights):
    """The network runs once (no detections: score threshold 1): missing, undecodable and
    wrongly sized images and a box outside its image are reported with counts."""
    config, weights = tiny_weights

    def change(data):
        data["categories"] = [{"id": i, "name": f"c{i}"} for i in (3, 7, 8, 9)]
        data["images"] += [
            {"id": 3, "file_name": "gone.png", "width": 160, "height": 120},
            {"id": 4, "file_name": "cut.png", "width": 160, "height": 120},
            {"id": 5, "file_name": "small.png", "width": 160, "height": 120},
        ]
        data["annotations"].append({"id": 99, "image_id": 1, "bbox": [0, 500, 5, 5],
                                    "category_id": 3})  # fmt: skip

    dataset(tmp_path, change)
    png = (tmp_path / "data/img1.png").read_bytes()
    (tmp_path / "data/cut.png").write_bytes(png[: len(png) // 2])
    Image.fromarray(np.zeros((60, 80, 3), np.uint8)).save(tmp_path / "data/small.png")
    code = run_script(
        "evaluate",
        *["--config", str(config), "--weights", str(weights), "--no-flip"],
        *["--annotations", str(tmp_path / "data/annotations.json")],
        *["--images", str(tmp_path / "data"), "--out", str(tmp_path / "out")],
        "test.score_threshold=1.0",
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    err = captured.err
    assert "1 annotation(s) left out, not scored: box wholly outside its image" in err
    assert "1 of 5 images named in" in err and "gone.png" in err
    assert "left out and not scored; scoring the other 4" in err
    assert "skipped 1 image(s)" in err and "cut.png" in err
    assert "1 image(s) differ in size from the width/height" in err and "small.png" in err
    assert "COCO bbox on 3 images (2 of 5 left out" in captured.out
    assert "no detections on the 3 scored images" in err
    assert "AP50   0.0000" in captured.out and "APs    -1.0000" in captured.out
    assert "-1 or nan: no ground-truth box of that size or class" in captured.out
    out = tmp_path / "out"
    written = f"{out / 'detections.json'}, {out / 'precision_recall.png'} and"
    assert f"wrote {written} {out / 'examples.png'}" in captured.out
    assert (out / "precision_recall.png").stat().st_size > 1000
    assert Image.open(out / "examples.png").width > 100  # the 3 scored images, sizes differing
    assert "Traceback" not in err
