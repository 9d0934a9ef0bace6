"""cornernet-make-shapes (cornernet_tf.shapes): the synthetic four-shape COCO dataset."""

import hashlib
import json

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from tests.helpers import run_script

NAMES = ["circle", "square", "triangle", "star"]


def digests(folder):
    """{relative path: sha256} of every file under `folder`."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes")
    assert run_script("make_shapes", "--out", str(out), "--train", "24", "--val", "6") == 0
    return out


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    runs = {}
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        out = tmp_path / name
        args = ("--out", str(out), "--train", "6", "--val", "3", "--seed", seed)
        assert run_script("make_shapes", *args) == 0
        runs[name] = digests(out)
    assert len(runs["a"]) == 6 + 3 + 2
    assert runs["a"] == runs["b"]
    assert runs["a"].keys() == runs["c"].keys()
    assert all(runs["a"][key] != runs["c"][key] for key in runs["a"])


@pytest.mark.parametrize("split, count", [("train", 24), ("val", 6)])
def test_coco_layout(dataset, split, count):
    coco = COCO(str(dataset / f"{split}.json"))
    categories = coco.loadCats(coco.getCatIds())
    assert [(c["id"], c["name"]) for c in categories] == list(enumerate(NAMES, 1))
    assert sorted(coco.getImgIds()) == list(range(1, count + 1))
    annotations = coco.dataset["annotations"]
    assert len({a["id"] for a in annotations}) == len(annotations) >= count
    for info in coco.dataset["images"]:
        with Image.open(dataset / split / info["file_name"]) as image:
            assert image.mode == "RGB"
            assert image.size == (info["width"], info["height"]) == (255, 255)
        objects = coco.loadAnns(coco.getAnnIds(imgIds=info["id"]))
        assert 1 <= len(objects) <= 5
        for a in objects:
            x, y, w, h = a["bbox"]
            assert w > 0 and h > 0 and x >= 0 and y >= 0
            assert x + w <= info["width"] and y + h <= info["height"]
            assert 0.1 * 255 <= max(w, h) <= 0.5 * 255
            assert 0 < a["area"] <= w * h
            assert a["iscrowd"] == 0 and a["category_id"] in (1, 2, 3, 4)
            assert len(a["color"]) == 3


def colour_match(pixels, annotation, tolerance=10):
    """Which pixels (..., 3) lie within `tolerance` per channel of the object's fill or outline."""
    colours = [annotation["color"]] + ([annotation["outline"]] if annotation["outline"] else [])
    pixels = pixels.astype(int)
    return np.any([np.abs(pixels - np.array(c)).max(-1) <= tolerance for c in colours], axis=0)


def test_boxes_are_tight(dataset):
    """For objects away from all others, each box edge holds the object's colour and the line
    just outside it does not."""
    coco = json.loads((dataset / "train.json").read_text())
    checked = 0
    for info in coco["images"]:
        image = np.asarray(Image.open(dataset / "train" / info["file_name"]))
        objects = [a for a in coco["annotations"] if a["image_id"] == info["id"]]
        for a in objects:
            x, y, w, h = a["bbox"]
            grown = [x - 3, y - 3, w + 6, h + 6]
            if any(
                o is not a
                and grown[0] < o["bbox"][0] + o["bbox"][2]
                and o["bbox"][0] < grown[0] + grown[2]
                and grown[1] < o["bbox"][1] + o["bbox"][3]
                and o["bbox"][1] < grown[1] + grown[3]
                for o in objects
            ):
                continue
            region = image[y : y + h, x : x + w]
            for edge in (region[:, 0], region[:, -1], region[0], region[-1]):
                assert colour_match(edge, a).any(), a
            outside = []
            if x > 0:
                outside.append(image[y : y + h, x - 1])
            if x + w < 255:
                outside.append(image[y : y + h, x + w])
            if y > 0:
                outside.append(image[y - 1, x : x + w])
            if y + h < 255:
                outside.append(image[y + h, x : x + w])
            for line in outside:
                assert not colour_match(line, a).any(), a
            checked += 1
    assert checked >= 10


def test_every_class_appears_and_objects_overlap_sometimes(dataset):
    coco = json.loads((dataset / "train.json").read_text())
    assert {a["category_id"] for a in coco["annotations"]} == {1, 2, 3, 4}
    per_image = {}
    for a in coco["annotations"]:
        per_image.setdefault(a["image_id"], []).append(a["bbox"])
    assert max(len(boxes) for boxes in per_image.values()) >= 4


def test_custom_size_and_stale_images_removed(tmp_path):
    assert run_script("make_shapes", "--out", str(tmp_path), "--train", "5", "--val", "2") == 0
    args = ("--out", str(tmp_path), "--train", "3", "--val", "2", "--size", "96")
    assert run_script("make_shapes", *args) == 0
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == [
        f"{i:06d}.png" for i in range(3)
    ]
    coco = json.loads((tmp_path / "train.json").read_text())
    assert {(i["width"], i["height"]) for i in coco["images"]} == {(96, 96)}
    with Image.open(tmp_path / "train" / "000002.png") as image:
        assert image.size == (96, 96)


def test_summary_line(tmp_path, capsys):
    assert run_script("make_shapes", "--out", str(tmp_path), "--train", "2", "--val", "1") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["train", "val"]
    assert "2 images" in lines[0] and "circle" in lines[0] and "star" in lines[0]


@pytest.mark.parametrize(
    "args, named",
    [
        (["--train", "0"], "--train"),
        (["--val", "-1"], "--val"),
        (["--size", "10"], "--size"),
        (["--seed", "-3"], "--seed"),
        (["--train", "many"], "--train"),
    ],
)
def test_bad_arguments(tmp_path, capsys, args, named):
    assert run_script("make_shapes", "--out", str(tmp_path / "out"), *args) == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unwritable_out(tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    out = blocker / "shapes"
    assert run_script("make_shapes", "--out", str(out), "--train", "1", "--val", "1") == 2
    err = capsys.readouterr().err
    assert "--out" in err and str(out) in err and "Traceback" not in err


def test_missing_out(capsys):
    assert run_script("make_shapes", "--train", "1") == 2
    assert "--out" in capsys.readouterr().err
