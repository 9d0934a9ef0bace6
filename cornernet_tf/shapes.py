"""A small synthetic COCO-format detection dataset of four shapes (the data of `make demo`).

    write_dataset(out, train=400, val=100, size=255, seed=0, classes="shapes")

writes out/train/000000.png ..., out/train.json, out/val/000000.png ..., out/val.json. Class sets
(`CLASS_SETS`): "shapes", category ids 1..4: circle, square, triangle, star (the demo); "signs",
category ids 3, 5, 8 (ids with gaps, as real datasets have): hexagon, cross, arrow (the
fine-tuning demo). Each image is size x size RGB: a smooth random
background with low-amplitude noise and 1-5 flat-coloured shapes (side 12%-45% of the image,
optionally outlined, possibly overlapping or slightly clipped at the border). The same arguments
give byte-identical files.

Annotation layout: `bbox` [x, y, w, h] in whole pixels, the tight bounds of the shape's drawn
pixels (fill and outline, clipped to the image, including parts a later shape covers); `area` is
that drawn pixel count; `iscrowd` 0; extra fields `color` (fill RGB) and `outline` (outline RGB,
or null). Image ids and annotation ids count from 1 in each file.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle", "star")
# class set -> {category id: name}
CLASS_SETS = {
    "shapes": dict(enumerate(CLASSES, start=1)),
    "signs": {3: "hexagon", 5: "cross", 8: "arrow"},
}
MIN_SIZE, MAX_SIZE = 64, 2048
MIN_SIDE, MAX_SIDE = 0.12, 0.45  # object side as a fraction of the image side
OVERHANG = 0.10  # how far (fraction of its side) an object may stick out of the image
MAX_BOX_COVER = 0.5  # a new object may cover at most this much of an earlier object's box
MIN_VISIBLE = 0.6  # every object keeps at least this share of its pixels visible
MIN_CONTRAST = 110.0  # wanted RGB distance of a fill colour from its surroundings
NAME = re.compile(r"\d{6}\.png")


def check_arguments(
    train: int, val: int, size: int, seed: int, classes: str = "shapes"
) -> str | None:
    """What is wrong with these dataset arguments (naming the argument), or None."""
    if classes not in CLASS_SETS:
        return f"classes must be one of {', '.join(CLASS_SETS)}, got {classes!r}"
    for name, count in (("train", train), ("val", val)):
        if count < 1:
            return f"{name} must be at least 1, got {count}"
    if not MIN_SIZE <= size <= MAX_SIZE:
        return f"size must be in [{MIN_SIZE}, {MAX_SIZE}], got {size}"
    if seed < 0:
        return f"seed must be non-negative, got {seed}"
    return None


def write_dataset(
    out: str | Path,
    train: int = 400,
    val: int = 100,
    size: int = 255,
    seed: int = 0,
    classes: str = "shapes",
) -> dict[str, dict]:
    """Writes the train and val splits under `out` (created if missing); returns
    {"train": COCO dict, "val": COCO dict}. Raises ValueError naming a bad argument."""
    problem = check_arguments(train, val, size, seed, classes)
    if problem:
        raise ValueError(problem)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return {
        name: write_split(out, split, name, count, size, seed, CLASS_SETS[classes])
        for split, (name, count) in enumerate((("train", train), ("val", val)))
    }


# ---------------------------------------------------------------------------------- drawing


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random colour field (a coarse random grid, upsampled bicubically) as float32."""
    base = rng.uniform(40, 215, 3)
    spread = rng.uniform(15, 60)
    cells = int(rng.integers(2, 6))
    grid = np.clip(base + rng.uniform(-spread, spread, (cells, cells, 3)), 0, 255)
    small = Image.fromarray(grid.astype(np.uint8), "RGB")
    field = small.resize((size, size), Image.BICUBIC)
    return np.asarray(field, np.float32)


# the polygons of the "signs" set, vertices in [-1, 1] before scaling and turning
SIGNS = {
    "hexagon": [(math.cos(a), math.sin(a)) for a in np.arange(6) * math.pi / 3],
    "cross": [(-0.3, -1), (0.3, -1), (0.3, -0.3), (1, -0.3), (1, 0.3), (0.3, 0.3), (0.3, 1),
              (-0.3, 1), (-0.3, 0.3), (-1, 0.3), (-1, -0.3), (-0.3, -0.3)],
    "arrow": [(-1, -0.25), (0.2, -0.25), (0.2, -0.7), (1, 0), (0.2, 0.7), (0.2, 0.25),
              (-1, 0.25)],
}  # fmt: skip


def shape_outline(rng: np.random.Generator, kind: str, side: float):
    """('ellipse', radius) or ('polygon', vertices relative to the centre) for one shape."""
    if kind == "circle":
        return "ellipse", side / 2
    if kind == "square":
        h = side / 2
        return "polygon", np.array([[-h, -h], [h, -h], [h, h], [-h, h]])
    angle = rng.uniform(0, 2 * math.pi)
    if kind in SIGNS:
        points = np.array(SIGNS[kind]) * side / 2
        turn = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        return "polygon", points @ turn.T
    if kind == "triangle":
        # equilateral, circumradius chosen so its widest extent is about `side`
        radius = side / math.sqrt(3)
        angles = angle + np.arange(3) * 2 * math.pi / 3
        radii = np.full(3, radius)
    else:  # 5-pointed star
        radius = side / 2
        angles = angle + np.arange(10) * math.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, radius, radius * rng.uniform(0.38, 0.5))
    return "polygon", np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)


def render(size: int, form: str, geometry, centre, width: int):
    """(fill mask, outline mask or None) of a shape centred at `centre`, as bool arrays."""
    cx, cy = centre
    masks = []
    for outline in (False, True) if width else (False,):
        image = Image.new("L", (size, size), 0)
        draw = ImageDraw.Draw(image)
        style = {"outline": 255, "width": width} if outline else {"fill": 255}
        if form == "ellipse":
            r = geometry
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], **style)
        else:
            points = [(float(x + cx), float(y + cy)) for x, y in geometry]
            draw.polygon(points, **style)
        masks.append(np.asarray(image) > 0)
    return masks[0], (masks[1] if width else None)


def mask_box(mask: np.ndarray):
    """[x, y, w, h] (ints) of the True pixels of `mask`, or None when there are none."""
    cols = np.flatnonzero(mask.any(0))
    rows = np.flatnonzero(mask.any(1))
    if cols.size == 0:
        return None
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


def box_intersection(a, b) -> int:
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(w, 0) * max(h, 0)


def pick_colour(rng: np.random.Generator, avoid: list[np.ndarray]) -> np.ndarray:
    """A random RGB colour far from every colour in `avoid` (best of a few draws)."""
    best, best_score = None, -1.0
    for _ in range(24):
        colour = rng.integers(0, 256, 3).astype(np.float32)
        score = min(float(np.linalg.norm(colour - other)) for other in avoid)
        if score > best_score:
            best, best_score = colour, score
        if score >= MIN_CONTRAST:
            break
    return best


def make_image(rng: np.random.Generator, size: int, classes: dict | None = None):
    """One image (uint8 HxWx3) and its objects: dicts of category_id, bbox, area, colours.
    classes: {category id: shape name}, a value of CLASS_SETS (default: the four shapes)."""
    classes = classes or CLASS_SETS["shapes"]
    ids, names = list(classes), list(classes.values())
    canvas = background(rng, size)
    objects = []  # dict(box, full, visible, colour, ...)
    for _ in range(int(rng.integers(1, 6))):
        for _attempt in range(30):
            kind = int(rng.integers(len(ids)))
            side = rng.uniform(MIN_SIDE, MAX_SIDE) * size
            form, geometry = shape_outline(rng, names[kind], side)
            if form == "ellipse":
                low, high = np.full(2, -geometry), np.full(2, geometry)
            else:
                low, high = geometry.min(0), geometry.max(0)
            slack = OVERHANG * (high - low)
            centre = rng.uniform(-low - slack, size - high + slack)
            width = int(rng.integers(2, 4)) if rng.random() < 0.4 else 0
            fill, outline = render(size, form, geometry, centre, width)
            full = fill if outline is None else fill | outline
            box = mask_box(full)
            if box is None or min(box[2], box[3]) < 4:
                continue
            if any(
                box_intersection(box, other["box"])
                > MAX_BOX_COVER * other["box"][2] * other["box"][3]
                or np.count_nonzero(other["visible"] & ~full) < MIN_VISIBLE * other["pixels"]
                for other in objects
            ):
                continue
            break
        else:
            continue  # no acceptable placement for this object: leave it out
        x, y, w, h = box
        avoid = [canvas[y : y + h, x : x + w].reshape(-1, 3).mean(0)]
        avoid += [o["colour"] for o in objects if box_intersection(box, o["box"]) > 0]
        colour = pick_colour(rng, avoid)
        canvas[fill] = colour
        line = None
        if outline is not None:
            # darker or lighter than the fill, whichever is further away
            line = colour * 0.35 if colour.mean() > 110 else colour + (255 - colour) * 0.65
            line = np.round(line)
            canvas[outline] = line
        for other in objects:
            other["visible"] &= ~full
        pixels = int(np.count_nonzero(full))
        objects.append(
            {
                "category_id": ids[kind],
                "box": box,
                "pixels": pixels,
                "visible": full.copy(),
                "colour": colour,
                "line": line,
            }
        )
    amplitude = int(rng.integers(2, 9))
    canvas += rng.integers(-amplitude, amplitude + 1, canvas.shape).astype(np.float32)
    image = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    annotations = [
        {
            "category_id": o["category_id"],
            "bbox": o["box"],
            "area": o["pixels"],
            "color": [int(c) for c in o["colour"]],
            "outline": None if o["line"] is None else [int(c) for c in o["line"]],
        }
        for o in objects
    ]
    return image, annotations


# ---------------------------------------------------------------------------------- dataset


def write_split(
    out: Path, split: int, name: str, count: int, size: int, seed: int, classes: dict
) -> dict:
    """Writes out/name/*.png and out/name.json; returns the COCO dict."""
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    start = time.perf_counter()
    shown = start
    for index in range(count):
        rng = np.random.default_rng([seed, split, index])
        pixels, objects = make_image(rng, size, classes)
        file_name = f"{index:06d}.png"
        Image.fromarray(pixels, "RGB").save(folder / file_name, compress_level=6)
        images.append({"id": index + 1, "file_name": file_name, "width": size, "height": size})
        for obj in objects:
            annotations.append(
                {"id": len(annotations) + 1, "image_id": index + 1, **obj, "iscrowd": 0}
            )
        now = time.perf_counter()
        if now - shown > 2.0 and index + 1 < count:
            print(f"  {name}: {index + 1}/{count} images", file=sys.stderr, flush=True)
            shown = now
    # images of an earlier, larger run would otherwise stay behind unannotated
    for stale in folder.iterdir():
        if NAME.fullmatch(stale.name) and int(stale.name[:6]) >= count:
            stale.unlink()
    coco = {
        "info": {
            "description": f"synthetic shapes ({name}), cornernet_tf.shapes",
            "seed": seed,
            "size": size,
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": i, "name": label, "supercategory": "shape"} for i, label in classes.items()
        ],
    }
    with open(out / f"{name}.json", "w") as file:
        json.dump(coco, file, separators=(",", ":"))
        file.write("\n")
    per_class = ", ".join(
        f"{label} {sum(a['category_id'] == i for a in annotations)}" for i, label in classes.items()
    )
    print(
        f"{name}: {count} images, {len(annotations)} objects ({per_class}) -> "
        f"{out / name}/, {out / name}.json [{time.perf_counter() - start:.1f} s]"
    )
    return coco
