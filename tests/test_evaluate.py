"""COCO evaluation, image reading, and the evaluate / detect scripts on a small folder."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cornernet_tf.detection_log import DetectionLog, file_stamp
from cornernet_tf.evaluate import STAT_NAMES, AnnotationError, CocoEvaluator, load_annotations
from cornernet_tf.images import ImageError, read_image
from tests.helpers import ROOT, png_header, run_script, without_waiting

BOXES = {1: [[10, 20, 60, 50], [70, 15, 40, 80]], 2: [[30, 30, 90, 60]]}  # xywh per image


def write_dataset(folder, extra_annotations=()):
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id, boxes in BOXES.items():
        picture = np.full((120, 160, 3), 90, np.uint8)
        for x, y, w, h in boxes:
            picture[y : y + h, x : x + w] = (200, 60, 30)
        Image.fromarray(picture).save(folder / f"img{image_id}.png")
        images.append(
            {"id": image_id, "file_name": f"img{image_id}.png", "width": 160, "height": 120}
        )
        for k, box in enumerate(boxes):
            annotations.append(
                {
                    "id": image_id * 10 + k,
                    "image_id": image_id,
                    "bbox": box,
                    "category_id": 7 if k else 3,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
    categories = [{"id": 3, "name": "square"}, {"id": 7, "name": "tall"}]
    path = folder / "annotations.json"
    path.write_text(
        json.dumps(
            {
                "images": images,
                "annotations": annotations + list(extra_annotations),
                "categories": categories,
            }
        )
    )
    return path


def ground_truth_as_detections(evaluator):
    for image_id, boxes in BOXES.items():
        xyxy = [[x, y, x + w, y + h] for x, y, w, h in boxes]
        evaluator.update(image_id, xyxy, np.ones(len(boxes)), [0, 1][: len(boxes)])


def test_perfect_detections_score_one_and_match_pycocotools(tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    path = write_dataset(tmp_path)
    evaluator = CocoEvaluator(path)
    assert evaluator.category_ids == [3, 7] and evaluator.class_names == ["square", "tall"]
    ground_truth_as_detections(evaluator)
    result = evaluator.result()
    assert result["AP"] == pytest.approx(1.0) and result["AP50"] == pytest.approx(1.0)
    assert result["per_class"] == {"square": pytest.approx(1.0), "tall": pytest.approx(1.0)}
    evaluator.write_results(tmp_path / "dets.json")
    written = json.loads((tmp_path / "dets.json").read_text())
    assert {d["category_id"] for d in written} == {3, 7}
    gt = COCO(str(path))
    direct = COCOeval(gt, gt.loadRes(str(tmp_path / "dets.json")), "bbox")
    direct.evaluate(), direct.accumulate(), direct.summarize()
    np.testing.assert_allclose([result[n] for n in STAT_NAMES], direct.stats)


def test_shifted_detections_lower_ap_and_reset(tmp_path):
    evaluator = CocoEvaluator(write_dataset(tmp_path))
    evaluator.update(1, [[10, 20, 70, 70]], [0.9], [0])  # IoU with [10,20,60,50] = 0.6
    result = evaluator.result()
    assert 0 < result["AP"] < result["AP50"]
    evaluator.reset()
    assert evaluator.result()["AP"] == 0.0


def test_bad_annotations_are_left_out_with_warnings(tmp_path):
    bad = [
        {"id": 91, "image_id": 1, "bbox": [1, 2, 3, 4], "category_id": 99},
        {"id": 92, "image_id": 1, "bbox": [1, 2, 3], "category_id": 3},
        {"id": 93, "image_id": 2, "bbox": [1, 2, 0, 4], "category_id": 3},
        {"id": 94, "image_id": 5, "bbox": [1, 2, 3, 4], "category_id": 3},
    ]
    coco, warnings = load_annotations(write_dataset(tmp_path, bad))
    assert len(coco.anns) == 3 and len(warnings) == 4
    assert "annotation 91 left out: unknown category_id 99" in warnings[0]
    assert "annotation 92" in warnings[1] and "4 finite numbers" in warnings[1]
    assert "no area" in warnings[2] and "unknown image_id 5" in warnings[3]
    assert str(tmp_path / "annotations.json") in warnings[0]


def test_unusable_annotation_files(tmp_path):
    with pytest.raises(AnnotationError, match="missing.json: cannot read"):
        load_annotations(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(AnnotationError, match="x.json: not valid JSON"):
        load_annotations(tmp_path / "x.json")
    (tmp_path / "y.json").write_text('{"images": []}')
    with pytest.raises(AnnotationError, match="'annotations' list is missing"):
        load_annotations(tmp_path / "y.json")
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(AnnotationError, match=r"deep\.json: not COCO JSON \(.* nested too deep"):
        load_annotations(tmp_path / "deep.json")


def test_pipes_and_devices_are_errors_not_waits(tmp_path):
    os.mkfifo(tmp_path / "pipe.json")
    os.mkfifo(tmp_path / "pipe.png")
    error = without_waiting(load_annotations, tmp_path / "pipe.json")
    assert str(error) == f"{tmp_path / 'pipe.json'}: not an annotation file but a named pipe (FIFO)"
    error = without_waiting(read_image, tmp_path / "pipe.png")
    assert str(error) == f"{tmp_path / 'pipe.png'}: not an image file but a named pipe (FIFO)"
    error = without_waiting(read_image, Path("/dev/zero"))
    assert str(error) == "/dev/zero: not an image file but a character device"


def test_read_image_converts_and_names_bad_files(tmp_path):
    Image.fromarray(np.full((5, 7), 128, np.uint8)).save(tmp_path / "gray.png")
    Image.fromarray(np.zeros((5, 7, 4), np.uint8)).save(tmp_path / "rgba.png")
    assert read_image(tmp_path / "gray.png").shape == (5, 7, 3)
    assert read_image(tmp_path / "rgba.png").shape == (5, 7, 3)
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ImageError, match="notes.png: not a JPEG, PNG, GIF or BMP image"):
        read_image(tmp_path / "notes.png")
    with pytest.raises(ImageError, match="nope.jpg: no such file"):
        read_image(tmp_path / "nope.jpg")
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "cut.png")
    data = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.png"):
        read_image(tmp_path / "cut.png")


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """Random but seeded weights: with seed 1 the tiny model pairs some corners on these images."""
    import keras

    from cornernet_tf import build_model, load_config

    keras.utils.set_random_seed(1)
    model = build_model(
        load_config(ROOT / "configs/tiny.yaml", {"model.num_classes": 2, "data.class_names": []})
    )
    path = tmp_path_factory.mktemp("tiny") / "tiny.weights.h5"
    model.save_weights(str(path))
    return path


@pytest.mark.e2e
def test_evaluate_script_end_to_end(tmp_path, tiny_weights, capsys):
    annotations = write_dataset(tmp_path / "data")
    data = json.loads(annotations.read_text())
    data["images"].append({"id": 3, "file_name": "missing.png", "width": 10, "height": 10})
    annotations.write_text(json.dumps(data))
    code = run_script(
        "evaluate",
        "--config",
        str(ROOT / "configs/tiny.yaml"),
        "--weights",
        str(tiny_weights),
        "--annotations",
        str(annotations),
        "--images",
        str(tmp_path / "data"),
        "--no-flip",
        "--scales",
        "0.5,1",
        "--out",
        str(tmp_path / "out"),
        "model.num_classes=2",
        "data.class_names=[]",
    )
    assert code == 0
    captured = capsys.readouterr()
    assert "AP50" in captured.out and "square" in captured.out
    assert "1 of 3 images named in" in captured.err and "(missing.png)" in captured.err
    assert "COCO bbox on 2 images (1 of 3 left out" in captured.out
    detections = json.loads((tmp_path / "out/detections.json").read_text())
    assert detections and {d["image_id"] for d in detections} <= {1, 2}
    assert (tmp_path / "out/precision_recall.png").stat().st_size > 1000
    examples = Image.open(tmp_path / "out/examples.png")
    assert examples.size == (2 * 160, 120)  # the two scored images
    assert (200, 60, 30) in [colour for _, colour in examples.getcolors(1 << 16)]  # the images
    assert (255, 255, 255) in [colour for _, colour in examples.getcolors(1 << 16)]  # the truth


@pytest.mark.e2e
def test_detect_script_draws_and_lists_skipped(tmp_path, tiny_weights, capsys):
    write_dataset(tmp_path)
    Image.fromarray(np.full((1, 1, 3), 200, np.uint8)).save(tmp_path / "dot.png")
    (tmp_path / "bad.jpg").write_text("nope")
    (tmp_path / "huge.png").write_bytes(png_header(20000, 20000))  # a 45-byte "decompression bomb"
    Image.open(tmp_path / "img1.png").save(tmp_path / "img1.jpg")  # same name, other format
    (tmp_path / "d2").mkdir()
    Image.open(tmp_path / "img1.png").save(tmp_path / "d2/img1.png")  # same name, other folder
    inputs = ["huge.png", "img1.png", "dot.png", "bad.jpg", "img1.jpg", "d2/img1.png", "dot.png"]
    code = run_script(
        "detect",
        "--config",
        str(ROOT / "configs/tiny.yaml"),
        "--weights",
        str(tiny_weights),
        *[str(tmp_path / name) for name in inputs],
        "--out",
        str(tmp_path / "out"),
        "--threshold",
        "0.0",
        "--set",
        "model.num_classes=2",
        "data.class_names=[]",
    )
    assert code == 1
    out, err = capsys.readouterr()
    assert "skipped 2 file(s)" in err
    assert "bad.jpg: not a JPEG, PNG, GIF or BMP image; it starts with 6e 6f 70 65" in err
    assert "huge.png: 20000x20000 = 400,000,000 pixels, more than the limit" in err
    assert "wrote 4 picture(s)" in out
    assert f"img1-2.png <- {tmp_path / 'img1.jpg'}, img1-3.png <- {tmp_path / 'd2/img1.png'}" in out
    pictures = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert pictures == ["dot.png", "img1-2.png", "img1-3.png", "img1.png"]
    assert Image.open(tmp_path / "out/img1.png").size == (160, 120)
    assert Image.open(tmp_path / "out/dot.png").size == (1, 1)
    results = json.loads((tmp_path / "out/detections.json").read_text())
    assert set(results) == {
        str(tmp_path / n) for n in ("img1.png", "dot.png", "img1.jpg", "d2/img1.png")
    }
    first = results[str(tmp_path / "img1.png")][0]
    assert set(first) == {"box", "score", "class", "category_id", "name"}
    assert first["name"].startswith("class ") and first["category_id"] == first["class"] + 1


def test_detect_skips_an_image_that_a_test_scale_makes_too_large(tmp_path, tiny_weights, capsys):
    write_dataset(tmp_path)  # img1.png is 160 x 120: at scale 200 a 32000 x 24000 input
    Image.fromarray(np.full((1, 1, 3), 200, np.uint8)).save(tmp_path / "dot.png")
    inputs = [str(tmp_path / "img1.png"), str(tmp_path / "dot.png")]
    tiny = ["--config", str(ROOT / "configs/tiny.yaml"), "--weights", str(tiny_weights)]
    settings = ["model.num_classes=2", "data.class_names=[]", "test.scales=[200]"]
    code = run_script("detect", *tiny, *inputs, "--out", str(tmp_path / "out"), *settings)
    assert code == 1
    out, err = capsys.readouterr()
    assert f"{inputs[0]}: 160x120 at test.scales 200 is resized to 32000x24000 = " in err
    assert "wrote 1 picture(s)" in out
    assert list(json.loads((tmp_path / "out/detections.json").read_text())) == [inputs[1]]


def test_detection_log_keeps_values_exactly_and_only_for_the_same_settings(tmp_path):
    path, weights = tmp_path / "log.jsonl", tmp_path / "w.weights.h5"
    weights.write_bytes(b"1")
    settings = {"config": {"test": {"scales": (1,)}}, "weights": file_stamp(weights)}
    rng = np.random.default_rng(0)
    boxes = rng.uniform(-50, 600, (7, 4)).astype(np.float32)
    scores = rng.uniform(0, 1, 7).astype(np.float32)
    with DetectionLog(path, settings) as log:
        log.add(5, (640, 480), {"boxes": boxes, "scores": scores, "classes": np.arange(7)})
        log.add("b.png", error="b.png: not an image")
    again = DetectionLog(path, settings)  # tuples read back as lists: the same settings
    assert not again.replaced and set(again.records) == {5, "b.png"}
    record = again.records[5]
    assert np.array_equal(np.asarray(record["boxes"], np.float32), boxes)  # exact, not close
    assert np.array_equal(np.asarray(record["scores"], np.float32), scores)
    assert record["size"] == [640, 480] and record["classes"] == list(range(7))
    assert again.records["b.png"]["error"] == "b.png: not an image"

    with path.open("ab") as file:  # lines that are not whole records are not resumed
        file.write(b'{"image_id": 6, "size": [1, 1]}\n{"image_id": 8, "sco\xff\n')
    assert set(DetectionLog(path, settings).records) == {5, "b.png"}

    os.utime(weights, ns=(1, 1))  # the weights file replaced
    other = DetectionLog(path, {**settings, "weights": file_stamp(weights)})
    assert other.records == {} and other.replaced == ["weights.modified_ns"]
    path.write_text("not json\n")
    assert DetectionLog(path, settings).replaced == ["all"]


class CountedDetector:
    """Detector.__call__ patched to count the images it detects (`images`: their shapes) and to
    raise KeyboardInterrupt, as Ctrl-C does, on the one after the first `stop_after`."""

    def __init__(self, monkeypatch):
        from cornernet_tf.inference import Detector

        self.images, self.stop_after = [], None
        call = Detector.__call__

        def counted(detector, image):
            if len(self.images) == self.stop_after:
                raise KeyboardInterrupt
            self.images.append(image.shape)
            return call(detector, image)

        monkeypatch.setattr(Detector, "__call__", counted)

    def reset(self, stop_after=None) -> None:
        self.images.clear()
        self.stop_after = stop_after


@pytest.fixture
def detector(monkeypatch):
    return CountedDetector(monkeypatch)


def evaluate_args(data, out, *extra):
    return [
        "--config",
        str(ROOT / "configs/tiny.yaml"),
        "--annotations",
        str(data / "annotations.json"),
        "--images",
        str(data),
        "--no-flip",
        "--out",
        str(out),
        "model.num_classes=2",
        "data.class_names=[]",
        *extra,
    ]


def four_images(folder):
    """write_dataset's two images, each also under a second id and name, and one that does not
    decode: five images named, four scored."""
    annotations = write_dataset(folder)
    data = json.loads(annotations.read_text())
    for image in list(data["images"]):
        copy = {**image, "id": image["id"] + 100, "file_name": f"copy{image['file_name']}"}
        (folder / copy["file_name"]).write_bytes((folder / image["file_name"]).read_bytes())
        data["images"].append(copy)
        for ann in [a for a in data["annotations"] if a["image_id"] == image["id"]]:
            data["annotations"].append({**ann, "id": ann["id"] + 1000, "image_id": copy["id"]})
    (folder / "cut.png").write_bytes((folder / "img1.png").read_bytes()[:200])
    data["images"].append({"id": 7, "file_name": "cut.png", "width": 160, "height": 120})
    annotations.write_text(json.dumps(data))


@pytest.mark.e2e
def test_an_interrupted_evaluation_resumes_where_it_stopped(
    tmp_path, tiny_weights, capsys, detector
):
    """Ctrl-C after two images keeps them in DIR/detections.partial.jsonl; the same command
    then detects only the others and writes the same detections.json as a run in one go. A log
    of other settings, or with a torn last line, is handled."""
    data = tmp_path / "data"
    four_images(data)
    weights = ["--weights", str(tiny_weights)]
    assert run_script("evaluate", *weights, *evaluate_args(data, tmp_path / "straight")) == 0
    straight = (tmp_path / "straight/detections.json").read_text()
    assert len(json.loads(straight)) > 10  # the seeded tiny model finds boxes on these images
    assert not (tmp_path / "straight/detections.partial.jsonl").exists()  # removed when done
    capsys.readouterr()

    out = tmp_path / "out"
    log = out / "detections.partial.jsonl"
    detector.reset(stop_after=2)
    assert run_script("evaluate", *weights, *evaluate_args(data, out)) == 1
    err = capsys.readouterr().err
    assert f"interrupted (Ctrl-C) after 3 of 5 images; the same command resumes from {log}" in err
    assert not (out / "detections.json").exists()
    assert len(log.read_text().splitlines()) == 1 + 3  # the settings, 2 images, cut.png
    interrupted = log.read_text()
    with log.open("a") as file:  # a torn last line (killed while writing) is dropped
        file.write('{"image_id": 101, "size": [160, 12')

    detector.reset()
    assert run_script("evaluate", *weights, *evaluate_args(data, out)) == 0
    captured = capsys.readouterr()
    assert len(detector.images) == 2
    assert f"resuming: 2 of 5 images done before ({log})" in captured.out  # cut.png tried again
    assert "skipped 1 image(s) that could not be decoded" in captured.err  # told again
    assert "COCO bbox on 4 images (1 of 5 left out" in captured.out
    assert (out / "detections.json").read_text() == straight
    assert not log.exists()

    # a log of other settings (here the scales) is not resumed: the command says which differ
    log.write_text(interrupted)
    detector.reset()
    assert run_script("evaluate", *weights, *evaluate_args(data, out, "--scales", "0.5")) == 0
    captured = capsys.readouterr()
    assert len(detector.images) == 4 and "resuming" not in captured.out
    said = "holds detections made with other settings (config test.scales): starting afresh"
    assert f"{log} {said}" in captured.err


@pytest.mark.e2e
def test_an_interrupted_detect_resumes_where_it_stopped(tmp_path, tiny_weights, capsys, detector):
    data = tmp_path / "data"
    four_images(data)
    inputs = [str(data / n) for n in ("img1.png", "cut.png", "img2.png", "copyimg1.png")]

    def detect(out, *extra):
        args = ["--config", str(ROOT / "configs/tiny.yaml"), "--weights", str(tiny_weights)]
        args += [*inputs, "--out", str(out), "--threshold", "0.1", *extra]
        return run_script("detect", *args, "model.num_classes=2", "data.class_names=[]")

    assert detect(tmp_path / "straight") == 1  # cut.png does not decode
    straight = (tmp_path / "straight/detections.json").read_text()
    assert sum(map(len, json.loads(straight).values())) > 5

    out = tmp_path / "out"
    log = out / "detections.partial.jsonl"
    detector.reset(stop_after=1)
    assert detect(out) == 1
    err = capsys.readouterr().err
    assert f"interrupted (Ctrl-C) after 2 of 4 images; the same command resumes from {log}" in err
    assert (out / "img1.png").exists() and not (out / "detections.json").exists()

    detector.reset()
    assert detect(out) == 1
    captured = capsys.readouterr()
    assert len(detector.images) == 2 and "resuming: 1 of 4 images done before" in captured.out
    assert "skipped 1 file(s)" in captured.err and "cut.png" in captured.err  # told again
    assert (out / "detections.json").read_text() == straight
    assert sorted(p.name for p in out.iterdir()) == sorted(
        p.name for p in (tmp_path / "straight").iterdir()
    )
    assert not log.exists()

    # another threshold draws other pictures: nothing is reused
    detector.reset(stop_after=1)
    assert detect(out) == 1
    detector.reset()
    capsys.readouterr()
    assert detect(out, "--threshold", "0.5") == 1
    assert len(detector.images) == 3 and "(threshold): starting afresh" in capsys.readouterr().err


@pytest.mark.e2e
def test_detect_takes_a_folder_for_its_images(tmp_path, tiny_weights, capsys):
    data = tmp_path / "data"
    write_dataset(data)  # img1.png, img2.png and annotations.json
    (data / ".hidden.png").write_bytes((data / "img1.png").read_bytes())
    (data / "sub").mkdir()
    (data / "sub/img3.png").write_bytes((data / "img1.png").read_bytes())
    (data / "photo.JPEG").write_bytes((data / "img2.png").read_bytes())  # a PNG by its bytes
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty/notes.txt").write_text("no images here")
    config = ["--config", str(ROOT / "configs/tiny.yaml"), "--weights", str(tiny_weights)]
    overrides = ["model.num_classes=2", "data.class_names=[]"]
    out = tmp_path / "out"
    assert run_script("detect", *config, str(data), "--out", str(out), *overrides) == 0
    note = f"note: 1 file(s) of {data} are not images, left out (first: annotations.json)"
    assert note in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("*.png")) == ["img1.png", "img2.png", "photo.png"]
    results = json.loads((out / "detections.json").read_text())
    assert list(results) == [str(data / n) for n in ("img1.png", "img2.png", "photo.JPEG")]

    # a folder without images is skipped like an unreadable file; an image given twice (in a
    # folder and by its path) is read once
    image = str(data / "img1.png")
    inputs = [str(tmp_path / "empty"), str(data), image, "--out", str(tmp_path / "again")]
    assert run_script("detect", *config, *inputs, *overrides) == 1
    captured = capsys.readouterr()
    assert "empty: a folder without JPEG, PNG, GIF or BMP files" in captured.err
    assert list(json.loads((tmp_path / "again/detections.json").read_text())) == list(results)

    code = run_script("detect", *config, str(data), "--out", str(data), *overrides)
    assert code == 2 and "is also an input folder" in capsys.readouterr().err
    before = (data / "img1.png").read_bytes()  # an image in --out, given by its path
    code = run_script("detect", *config, str(data / "img1.png"), "--out", str(data), *overrides)
    err = capsys.readouterr().err
    assert code == 2 and f"its picture {data / 'img1.png'} would overwrite the input" in err
    assert (data / "img1.png").read_bytes() == before
    (out / "detections.partial.jsonl").mkdir()
    code = run_script("detect", *config, str(data), "--out", str(out), *overrides)
    assert code == 2 and "detections.partial.jsonl is in the way" in capsys.readouterr().err
