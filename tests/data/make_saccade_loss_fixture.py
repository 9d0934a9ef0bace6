"""Write tests/data/saccade_loss_public.npz: the official CornerNet_Saccade_Loss on fixed inputs.

Run by hand, from any directory, with a Python that has torch (never by the tests):

    /tmp/torchvenv/bin/python tests/data/make_saccade_loss_fixture.py [CORNERNET_LITE_DIR]

CORNERNET_LITE_DIR is a princeton-vl/CornerNet-Lite checkout (default /tmp/CornerNet-Lite). Only
core/models/py_utils/{losses,utils}.py and core/sample/{cornernet_saccade,utils}.py are imported,
as loose packages: the package __init__ files (the compiled corner pools) are never run, and cv2,
which the sampling module imports but the functions used here do not call, is a stub.

Inputs (official layouts, NCHW; S = 3 stacks, B = 2 images, C = 4 classes, 64 x 64 maps, K = 16):
    tl_heat, br_heat (S,B,C,64,64) logits; tl_tag, br_tag (S,B,1,64,64); tl_off, br_off
    (S,B,2,64,64); att_0, att_1, att_2 (S,B,1,h,w) logits, h = w = 16, 32, 64.
    tl_heatmaps, br_heatmaps (B,C,64,64) gaussian targets (official draw_gaussian, gaussian_iou 0.5);
    tl_valids, br_valids (B,C,64,64) 0 around the corners of the ignored objects, 1 elsewhere;
    tag_masks (B,K) uint8; tl_tags, br_tags (B,K) int64 flat indices; tl_regrs, br_regrs (B,K,2);
    att_targets_0..2 (B,1,h,w) in {0, 1} (official create_attention_mask);
    objects (B,6,6) the boxes behind the targets, rows x1, y1, x2, y2 (input pixels), class
    (1-based), ignored (0/1), zero-padded; object_counts (B,).
Objects are given in 255 x 255 input pixels and turned into targets as the official
cornernet_saccade does; some are ignored (drawn into the valid maps), as small or cropped objects
are there.
Outputs, every term of CornerNet_Saccade_Loss(pull_weight=0.1, push_weight=0.1) (the one
CornerNet-Saccade trains with), computed with the official helper functions in forward's order:
    loss_focal, loss_attention, loss_pull, loss_push, loss_offset, loss_total (= forward's output);
    focal_per_stack (S,2) tl/br, attention_per_stack (S,3) unnormalised per map,
    pull_per_stack_unweighted, push_per_stack_unweighted (S,), offset_per_stack (S,2);
    nopos_loss_* the same scalars for targets without objects (zero heatmaps, masks and attention
    targets, valid maps all ones).
"""

import importlib
import sys
import types
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
OUT = HERE / "saccade_loss_public.npz"
SEED = 0
STACKS, BATCH, CLASSES, SIZE, MAX_OBJECTS = 3, 2, 4, 64, 16
INPUT = 255
ATT_SIZES = (16, 32, 64)
ATT_RATIOS = (16, 8, 4)
ATT_RANGES = ((96, 256), (32, 96), (0, 32))
GAUSSIAN_IOU = 0.5
# (x1, y1, x2, y2, class 1-based, ignored) in 255 x 255 input pixels, per image
OBJECTS = (
    (
        (10.0, 20.0, 170.5, 140.0, 1, False),  # 160.5 wide: attention map 0
        (100.2, 30.7, 160.0, 90.1, 2, False),  # 59.8: map 1
        (200.0, 200.0, 219.5, 212.0, 3, False),  # 19.5: map 2
        (40.0, 150.0, 136.0, 230.0, 1, False),  # exactly 96: maps 0 and 1
        (5.0, 5.0, 14.0, 12.0, 4, True),  # small: ignored
        (180.0, 60.0, 250.0, 120.0, 2, True),  # cropped: ignored
    ),
    (
        (60.0, 60.0, 92.0, 80.0, 3, False),  # exactly 32: maps 1 and 2
        (120.3, 10.9, 250.0, 200.0, 4, False),  # 189.1: map 0
        (30.0, 180.0, 50.0, 205.0, 1, True),  # ignored, still on attention map 2
    ),
)


def official_modules(root: Path):
    """The official losses and sampling modules, imported without their packages' __init__."""
    sys.modules.setdefault("cv2", types.ModuleType("cv2"))
    for name, folder in (
        ("cnl_py_utils", root / "core/models/py_utils"),
        ("cnl_sample", root / "core/sample"),
    ):
        package = types.ModuleType(name)
        package.__path__ = [str(folder)]
        sys.modules[name] = package
    losses = importlib.import_module("cnl_py_utils.losses")
    sample_utils = importlib.import_module("cnl_sample.utils")
    saccade = importlib.import_module("cnl_sample.cornernet_saccade")
    return losses, sample_utils, saccade


def make_targets(sample_utils, saccade, objects_per_image):
    """The official targets of cornernet_saccade for boxes already in input pixels."""
    ratio = SIZE / INPUT
    heat = {c: np.zeros((BATCH, CLASSES, SIZE, SIZE), np.float32) for c in ("tl", "br")}
    valid = {c: np.zeros((BATCH, CLASSES, SIZE, SIZE), np.float32) for c in ("tl", "br")}
    regrs = {c: np.zeros((BATCH, MAX_OBJECTS, 2), np.float32) for c in ("tl", "br")}
    tags = {c: np.zeros((BATCH, MAX_OBJECTS), np.int64) for c in ("tl", "br")}
    masks = np.zeros((BATCH, MAX_OBJECTS), np.uint8)
    atts = [np.zeros((BATCH, 1, s, s), np.float32) for s in ATT_SIZES]
    for b, objects in enumerate(objects_per_image):
        dets = np.array([o[:5] for o in objects], np.float32).reshape(-1, 5)
        saccade.create_attention_mask([a[b, 0] for a in atts], ATT_RATIOS, ATT_RANGES, dets)
        count = 0
        for (x1, y1, x2, y2, cls, ignored), det in zip(objects, dets):
            category = int(cls) - 1
            fxtl, fytl, fxbr, fybr = det[0] * ratio, det[1] * ratio, det[2] * ratio, det[3] * ratio
            xtl, ytl, xbr, ybr = int(fxtl), int(fytl), int(fxbr), int(fybr)
            width = np.ceil((det[2] - det[0]) * ratio)
            height = np.ceil((det[3] - det[1]) * ratio)
            radius = max(0, int(sample_utils.gaussian_radius((height, width), GAUSSIAN_IOU)))
            if ignored:
                sample_utils.draw_gaussian(valid["tl"][b, category], [xtl, ytl], radius)
                sample_utils.draw_gaussian(valid["br"][b, category], [xbr, ybr], radius)
                continue
            sample_utils.draw_gaussian(heat["tl"][b, category], [xtl, ytl], radius)
            sample_utils.draw_gaussian(heat["br"][b, category], [xbr, ybr], radius)
            regrs["tl"][b, count] = [fxtl - xtl, fytl - ytl]
            regrs["br"][b, count] = [fxbr - xbr, fybr - ybr]
            tags["tl"][b, count] = ytl * SIZE + xtl
            tags["br"][b, count] = ybr * SIZE + xbr
            count += 1
        masks[b, :count] = 1
    out = {"tag_masks": masks}
    for c in ("tl", "br"):
        out[f"{c}_heatmaps"] = heat[c]
        out[f"{c}_valids"] = (valid[c] == 0).astype(np.float32)
        out[f"{c}_regrs"] = regrs[c]
        out[f"{c}_tags"] = tags[c]
    for i, att in enumerate(atts):
        out[f"att_targets_{i}"] = att
    return out


def make_predictions():
    rng = np.random.default_rng(SEED)
    maps = {}
    for c in ("tl", "br"):
        shape = (STACKS, BATCH)
        maps[f"{c}_heat"] = (rng.normal(size=shape + (CLASSES, SIZE, SIZE)) * 2 - 2).astype(
            np.float32
        )
        maps[f"{c}_tag"] = rng.normal(size=shape + (1, SIZE, SIZE)).astype(np.float32)
        maps[f"{c}_off"] = rng.uniform(-0.5, 1.5, size=shape + (2, SIZE, SIZE)).astype(np.float32)
    for i, s in enumerate(ATT_SIZES):
        maps[f"att_{i}"] = (rng.normal(size=(STACKS, BATCH, 1, s, s)) * 2 - 2).astype(np.float32)
    return maps


def official_terms(losses, maps, targets):
    """Every term of CornerNet_Saccade_Loss.forward, from the official helpers, and the total."""
    # tag_masks stays uint8, as the official sampling makes it: _ae_loss finds the pairs of
    # objects by mask + mask == 2, which a bool mask would never reach
    t = {k: torch.from_numpy(v) for k, v in targets.items()}

    def stacks(name):
        return [torch.from_numpy(maps[name][s].copy()) for s in range(STACKS)]

    def atts():
        return [[torch.from_numpy(maps[f"att_{i}"][s].copy()) for i in range(3)] for s in range(STACKS)]

    loss = losses.CornerNet_Saccade_Loss(pull_weight=1e-1, push_weight=1e-1)
    outs = [stacks(f"{c}_{n}") for n in ("heat", "tag", "off") for c in ("tl", "br")]
    outs = [outs[0], outs[1], outs[2], outs[3], outs[4], outs[5], atts()]
    gt_atts = [t[f"att_targets_{i}"] for i in range(3)]
    ys = [
        t["tl_heatmaps"], t["br_heatmaps"], t["tag_masks"], t["tl_regrs"], t["br_regrs"],
        t["tl_tags"], t["br_tags"], t["tl_valids"], t["br_valids"], gt_atts,
    ]
    total = loss(outs, ys).item()

    sig = losses._sigmoid
    focal = np.zeros((STACKS, 2), np.float32)
    offset = np.zeros((STACKS, 2), np.float32)
    pull = np.zeros(STACKS, np.float32)
    push = np.zeros(STACKS, np.float32)
    attention = np.zeros((STACKS, 3), np.float32)
    for s in range(STACKS):
        for k, c in enumerate(("tl", "br")):
            heat = sig(torch.from_numpy(maps[f"{c}_heat"][s].copy()))
            focal[s, k] = losses._focal_loss_mask([heat], t[f"{c}_heatmaps"], t[f"{c}_valids"])
            off = losses._tranpose_and_gather_feat(torch.from_numpy(maps[f"{c}_off"][s].copy()), t[f"{c}_tags"])
            offset[s, k] = losses._off_loss(off, t[f"{c}_regrs"], t["tag_masks"])
        tl = losses._tranpose_and_gather_feat(torch.from_numpy(maps["tl_tag"][s].copy()), t["tl_tags"])
        br = losses._tranpose_and_gather_feat(torch.from_numpy(maps["br_tag"][s].copy()), t["br_tags"])
        p, q = losses._ae_loss(tl, br, t["tag_masks"])
        pull[s], push[s] = p.item(), q.item()
        for i in range(3):
            att = sig(torch.from_numpy(maps[f"att_{i}"][s].copy()))
            attention[s, i] = losses._focal_loss([att], gt_atts[i])

    # the scalars exactly as forward sums them (per map: the sum over stacks / stacks)
    att_loss = 0
    for i in range(3):
        att_loss += losses._focal_loss(
            [sig(torch.from_numpy(maps[f"att_{i}"][s].copy())) for s in range(STACKS)], gt_atts[i]
        ) / STACKS
    scalars = {
        "focal": float(focal.sum()),
        "attention": float(att_loss),
        "pull": 0.1 * float(pull.sum()),
        "push": 0.1 * float(push.sum()),
        "offset": float(offset.sum()),
        "total": total,
    }
    recomposed = (
        scalars["focal"] + scalars["attention"] + scalars["pull"] + scalars["push"] + scalars["offset"]
    ) / STACKS
    assert np.isclose(recomposed, total, rtol=1e-6), (recomposed, total)
    per_stack = {
        "focal_per_stack": focal,
        "attention_per_stack": attention,
        "pull_per_stack_unweighted": pull,
        "push_per_stack_unweighted": push,
        "offset_per_stack": offset,
    }
    return scalars, per_stack


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/CornerNet-Lite")
    losses, sample_utils, saccade = official_modules(root)
    maps = make_predictions()
    targets = make_targets(sample_utils, saccade, OBJECTS)
    for i in range(3):
        assert targets[f"att_targets_{i}"].sum() >= 2, i  # every map has positives
    scalars, per_stack = official_terms(losses, maps, targets)
    empty = make_targets(sample_utils, saccade, ((), ()))
    nopos, _ = official_terms(losses, maps, empty)

    objects = np.zeros((BATCH, max(len(o) for o in OBJECTS), 6), np.float32)
    for b, rows in enumerate(OBJECTS):
        objects[b, : len(rows)] = np.array(rows, np.float32)
    out = {**maps, **targets, **per_stack}
    out["objects"] = objects
    out["object_counts"] = np.array([len(o) for o in OBJECTS], np.int32)
    out.update({f"loss_{k}": np.float32(v) for k, v in scalars.items()})
    out.update({f"nopos_loss_{k}": np.float32(v) for k, v in nopos.items()})
    np.savez_compressed(OUT, **out)
    for k, v in scalars.items():
        print(f"{k:10s} {v:.7g}   nopos {nopos[k]:.7g}")
    print("wrote", OUT, OUT.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
