"""One SGD step of the tiny CornerNet under MirroredStrategy on 2 logical CPUs vs the same step
computed on one device as the mean of the two half-batch losses (the official per-GPU rule).
Prints the max abs difference of the weight updates. Run in its own process (logical devices)."""

import os
import sys

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from cornernet_tf import build_model, load_config  # noqa: E402
from cornernet_tf.targets import encode_targets  # noqa: E402

root = sys.argv[1]
config = load_config(f"{root}/configs/tiny.yaml", {"data.input_size": [63, 63]})
rng = np.random.default_rng(0)
images = rng.standard_normal((4, 63, 63, 3)).astype(np.float32)
targets = []
for b in range(4):
    xy = rng.uniform(0, 40, (b + 1, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(8, 20, (b + 1, 2))], 1)
    targets.append(
        encode_targets(
            boxes,
            rng.integers(0, 4, b + 1),
            input_size=(63, 63),
            output_size=(16, 16),
            num_classes=4,
        )
    )
targets = {k: tf.stack([t[k] for t in targets]) for k in targets[0]}
targets["mask"] = tf.cast(targets["mask"], tf.float32)  # as make_dataset batches it

keras.utils.set_random_seed(1)
reference = build_model(config)
initial = [v.numpy() for v in reference.trainable_variables]


@tf.function  # a graph, as fit runs the distributed step
def reference_step(images, targets):
    """One device: the mean of the two half-batch losses, BN statistics per half."""
    with tf.GradientTape() as tape:
        halves = [
            reference.compute_losses(
                images[i : i + 2], {k: v[i : i + 2] for k, v in targets.items()}, True
            )["loss"]
            for i in (0, 2)
        ]
        loss = (halves[0] + halves[1]) / 2
    return loss, tape.gradient(loss, reference.trainable_variables)


loss, grads = reference_step(images, targets)
expected = [w - 0.1 * g.numpy() for w, g in zip(initial, grads, strict=True)]

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    model = build_model(config)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
for v, w in zip(model.trainable_variables, initial, strict=True):
    v.assign(w)
dataset = tf.data.Dataset.from_tensors((images, targets))
logs = model.fit(dataset, epochs=1, verbose=0).history
got = [v.numpy() for v in model.trainable_variables]
update = max(float(np.abs(e - w).max()) for e, w in zip(expected, initial, strict=True))
diff = max(float(np.abs(e - g).max()) for e, g in zip(expected, got, strict=True))
print(
    f"replicas={strategy.num_replicas_in_sync} loss={logs['loss'][0]:.6f} "
    f"reference_loss={float(loss):.6f} max_update={update:.3e} max_diff={diff:.3e}"
)
if len(sys.argv) > 2:
    for v, e, g, w in zip(model.trainable_variables, expected, got, initial, strict=True):
        d = float(np.abs(e - g).max())
        if d > 1e-5:
            print(v.path, d, float(np.abs(e - w).max()))
