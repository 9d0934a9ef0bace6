#!/usr/bin/env python3
"""Times the OFFICIAL training loader; run by `benchmark.py --data --official-src DIR`.

Runs under a Python that has torch, opencv-python and tqdm (never the project's venv):

    TORCH_PYTHON scripts/official_loader_timing.py --official-src CornerNet/ --annotations A.json
        --images DIR [--batches 8] [--rounds 3]

It calls the official `sample.coco.kp_detection` (princeton-vl/CornerNet, unchanged) with the
official CornerNet training settings (511 input, 128 output, 80 classes, random crop, colour,
lighting) on the images and boxes of a COCO JSON, on one core (cv2, torch and BLAS limited to
one thread), batch 8. Only the dataset object is a stand-in: it lists the files and boxes.
Prints one line: `RESULT images_per_s=... (best of the rounds)`.
"""

import argparse
import json
import os
import sys
import time

for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = "1"

import cv2  # noqa: E402
import numpy as np  # noqa: E402

BATCH = 8


class CocoFiles:
    """What kp_detection reads from the official COCO db: configs, files, boxes, statistics."""

    def __init__(self, annotations: str, images: str):
        coco = json.loads(open(annotations).read())
        categories = sorted(c["id"] for c in coco["categories"])
        category_index = {cid: i + 1 for i, cid in enumerate(categories)}  # 1-based, as the db
        boxes = {image["id"]: [] for image in coco["images"]}
        for a in coco["annotations"]:
            x, y, w, h = a["bbox"]
            boxes[a["image_id"]].append([x, y, x + w, y + h, category_index[a["category_id"]]])
        self.files = [os.path.join(images, image["file_name"]) for image in coco["images"]]
        self.boxes = [
            np.array(boxes[image["id"]], np.float32).reshape(-1, 5) for image in coco["images"]
        ]
        self.db_inds = np.arange(len(self.files))
        self.configs = {
            "categories": 80,
            "input_size": [511, 511],
            "output_sizes": [[128, 128]],
            "border": 128,
            "lighting": True,
            "rand_crop": True,
            "rand_color": True,
            "rand_scales": np.arange(0.6, 1.4, 0.1),
            "gaussian_bump": True,
            "gaussian_iou": 0.3,
            "gaussian_radius": -1,
        }
        self.mean = np.array([0.40789654, 0.44719302, 0.47026115], dtype=np.float32)
        self.std = np.array([0.28863828, 0.27408164, 0.27809835], dtype=np.float32)
        self.eig_val = np.array([0.2141788, 0.01817699, 0.00341571], dtype=np.float32)
        self.eig_vec = np.array(
            [
                [-0.58752847, -0.69563484, 0.41340352],
                [-0.5832747, 0.00994535, -0.81221408],
                [-0.56089297, 0.71832671, 0.41158938],
            ],
            dtype=np.float32,
        )

    def shuffle_inds(self):
        np.random.shuffle(self.db_inds)

    def image_file(self, index):
        return self.files[index]

    def detections(self, index):
        return self.boxes[index].copy()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--official-src", required=True, help="princeton-vl/CornerNet checkout")
    parser.add_argument("--annotations", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--batches", type=int, default=8, help="batches of 8 per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    sys.path.insert(0, args.official_src)
    from config import system_configs
    from sample.coco import kp_detection

    system_configs.update_config({"batch_size": BATCH})
    db = CocoFiles(args.annotations, args.images)
    k_ind = 0
    for _ in range(2):  # warm-up
        _, k_ind = kp_detection(db, k_ind, True, False)
    rates = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        for _ in range(args.batches):
            _, k_ind = kp_detection(db, k_ind, True, False)
        rates.append(args.batches * BATCH / (time.perf_counter() - start))
    print(f"RESULT images_per_s={max(rates):.1f} torch={torch.__version__} cv2={cv2.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
