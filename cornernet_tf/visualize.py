"""Pictures: detections (and ground truth) drawn on images, sheets of them, precision-recall
curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

PALETTE = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
]  # fmt: skip


def picture_paths(out: Path, paths) -> list[Path]:
    """Where the picture of each input image goes in the folder `out`: `<stem>.png`, numbered
    `<stem>-2.png`, ... when an earlier input already has that name (names compared
    case-insensitively). ValueError when a picture would overwrite one of the inputs."""
    paths = list(paths)
    taken, pictures = set(), []
    for path in paths:
        stem, number = Path(path).stem, 1
        name = f"{stem}.png"
        while name.lower() in taken:
            number += 1
            name = f"{stem}-{number}.png"
        taken.add(name.lower())
        pictures.append(Path(out) / name)
    inputs = {Path(path).resolve(): path for path in paths if Path(path).is_file()}
    for picture in pictures:
        if picture.resolve() in inputs:
            raise ValueError(
                f"its picture {picture} would overwrite the input {inputs[picture.resolve()]}; "
                "pick another --out"
            )
    return pictures


def class_name(names: Sequence[str], index: int) -> str:
    return names[index] if 0 <= index < len(names) else f"class {index}"


def draw_detections(
    image, boxes, scores, classes, names: Sequence[str] = (), threshold=0.3, ground_truth=()
):
    """Draws boxes scoring >= threshold with 'name score' labels; returns a PIL RGB image.

    image: (H, W, 3) uint8 RGB; boxes (N, 4) [x1, y1, x2, y2] in image pixels; classes 0-based.
    ground_truth: boxes (M, 4) in the same form, drawn first as thin white boxes edged in black.
    """
    from PIL import Image, ImageDraw, ImageFont

    picture = Image.fromarray(np.asarray(image, np.uint8)).convert("RGB")
    draw = ImageDraw.Draw(picture)
    size = max(11, min(picture.size) // 40)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    width = max(2, min(picture.size) // 200)
    for x1, y1, x2, y2 in np.asarray(ground_truth, np.float64).reshape(-1, 4):
        draw.rectangle([x1 - 1, y1 - 1, x2 + 1, y2 + 1], outline=(0, 0, 0), width=3)
        draw.rectangle([x1, y1, x2, y2], outline=(255, 255, 255), width=1)
    order = np.argsort(np.asarray(scores))  # best drawn last, on top
    for i in order:
        if scores[i] < threshold:
            continue
        colour = PALETTE[int(classes[i]) % len(PALETTE)]
        x1, y1, x2, y2 = (float(v) for v in boxes[i])
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=width)
        label = f"{class_name(names, int(classes[i]))} {float(scores[i]):.2f}"
        left, top, right, bottom = draw.textbbox((x1, y1), label, font=font)
        ty = y1 - (bottom - top) - 4 if y1 - (bottom - top) - 4 >= 0 else y1
        draw.rectangle([x1, ty, x1 + (right - left) + 6, ty + (bottom - top) + 4], fill=colour)
        draw.text((x1 + 3, ty + 1), label, fill=(0, 0, 0), font=font)
    return picture


def sheet(pictures, columns: int = 3, largest: int = 640):
    """The PIL pictures side by side, `columns` to a row, on white; pictures larger than
    `largest` pixels on a side are shrunk to it (aspect kept)."""
    from PIL import Image

    pictures = [picture.copy() for picture in pictures]
    for picture in pictures:
        picture.thumbnail((largest, largest))
    width = max(picture.width for picture in pictures)
    height = max(picture.height for picture in pictures)
    rows = -(-len(pictures) // columns)
    result = Image.new("RGB", (width * min(columns, len(pictures)), height * rows), "white")
    for k, picture in enumerate(pictures):
        result.paste(picture, ((k % columns) * width, (k // columns) * height))
    return result


def plot_precision_recall(curves: dict, path: str | Path, title: str = "") -> None:
    """Saves a PNG of precision vs recall (keys recall, iou50, iou75, mean from CocoEvaluator)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5.5, 4.5), dpi=120)
    for key, label in (("iou50", "IoU 0.50"), ("iou75", "IoU 0.75"), ("mean", "IoU 0.50:0.95")):
        axes.plot(curves["recall"], curves[key], label=label)
    axes.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
