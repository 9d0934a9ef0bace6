"""SavedModel -> TF.js graph model, with the `tensorflowjs` converter in its own virtualenv.

The `tensorflowjs` package cannot live beside this project's TensorFlow (its pins pull an older
TensorFlow and TensorFlow Decision Forests whose protobuf clashes), so it gets a venv of its own,
created on first use (it needs the package registry then) and called as a subprocess. The venv
lives in the user's cache directory, $XDG_CACHE_HOME/cornernet-tf/tfjs-venv (by default
~/.cache/cornernet-tf/tfjs-venv), or wherever $CORNERNET_TFJS_VENV says.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

# tensorflowjs 4.22 pulls TensorFlow 2.19 and TF Decision Forests 1.12; protobuf 6.31 then
# replaces the protobuf < 6 that TensorFlow 2.19 asks for (pip warns; the converter needs it).
# In one pip call the resolver backtracks for many minutes and fails, hence two.
PACKAGES = ("tensorflowjs==4.22.0", "protobuf==6.31.1")
QUANTIZATIONS = ("none", "float16", "uint8")
SHARD_BYTES = 4 * 1024 * 1024


class TfjsError(RuntimeError):
    """The converter venv could not be made, or the conversion failed (its output attached)."""


def tool_venv() -> Path:
    """Where the converter's venv lives (see the module docstring)."""
    if os.environ.get("CORNERNET_TFJS_VENV"):
        return Path(os.environ["CORNERNET_TFJS_VENV"])
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "cornernet-tf" / "tfjs-venv"


def converter_ready() -> bool:
    """Whether the converter's venv is installed (no package registry needed to convert)."""
    root = tool_venv()
    stamp = root / ".installed"
    return (root / "bin" / "tensorflowjs_converter").exists() and (
        stamp.exists() and stamp.read_text() == " ".join(PACKAGES)
    )


def ensure_converter(log=print) -> Path:
    """The `tensorflowjs_converter` executable, installing its venv first if needed."""
    root = tool_venv()
    converter = root / "bin" / "tensorflowjs_converter"
    stamp = root / ".installed"
    if converter_ready():
        return converter
    log(f"creating the TF.js converter venv {root} ({', '.join(PACKAGES)}; once, a few minutes)")
    root.parent.mkdir(parents=True, exist_ok=True)
    venv.create(root, with_pip=True, clear=True)
    pip = [str(root / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    for command in [pip + ["--upgrade", "pip"]] + [pip + [package] for package in PACKAGES]:
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise TfjsError(
                f"could not install {' '.join(PACKAGES)} into {root}:\n{done.stderr[-3000:]}"
            )
    stamp.write_text(" ".join(PACKAGES))
    return converter


def convert_to_tfjs(
    saved_model, out, *, signature: str = "serve_image", quantize: str = "none", metadata=None
) -> Path:
    """Converts one signature of a SavedModel to a TF.js graph model in `out`.

    Weights in 4 MB shards; quantize: none, float16 or uint8 (weights only; TF.js dequantizes them
    to float32 when it loads the model). `metadata` (a dict) is written to out/cornernet.json.
    Returns out/model.json.
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZATIONS)}, got {quantize!r}")
    converter = ensure_converter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    command = [
        str(converter),
        "--input_format=tf_saved_model",
        "--output_format=tfjs_graph_model",
        f"--signature_name={signature}",
        "--saved_model_tags=serve",
        f"--weight_shard_size_bytes={SHARD_BYTES}",
    ]
    if quantize != "none":
        command.append(f"--quantize_{quantize}=*")
    command += [str(saved_model), str(out)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode or not (out / "model.json").exists():
        raise TfjsError(
            f"tensorflowjs_converter failed on {saved_model} (exit {done.returncode}):\n"
            f"{done.stderr[-4000:]}"
        )
    name_outputs(out / "model.json")
    flatten_fused_biases(out / "model.json")
    split_skip_biases(out / "model.json")
    if metadata is not None:
        (out / "cornernet.json").write_text(json.dumps(metadata, indent=1))
    return out / "model.json"


def name_outputs(model_json: Path) -> None:
    """Gives every output of the converted signature its SavedModel name.

    The converter (4.22) keeps some output keys and replaces others by their node names
    ("Identity_2:0"). The SavedModel's outputs become the nodes Identity, Identity_1, ... in the
    order of their sorted keys (tf.nest's flattening order), which restores the names.
    """
    from cornernet_tf.serving import OUTPUT_KEYS

    model = json.loads(model_json.read_text())
    outputs = model["signature"]["outputs"]
    by_node = sorted(outputs.values(), key=lambda info: _identity_number(info["name"]))
    if len(by_node) != len(OUTPUT_KEYS):
        raise TfjsError(f"{model_json}: expected outputs {OUTPUT_KEYS}, got {list(outputs)}")
    model["signature"]["outputs"] = dict(zip(sorted(OUTPUT_KEYS), by_node, strict=True))
    model_json.write_text(json.dumps(model))


def flatten_fused_biases(model_json: Path) -> None:
    """Reshapes the (1, 1, 1, C) biases of fused convolutions to (C,).

    Keras adds a conv's bias as a (1, 1, 1, C) tensor; the converter makes it rank 1 when it fuses
    it into _FusedConv2D, except for C = 1 (the embedding heads), which TF.js's WASM and WebGL
    backends then refuse ("FusedConv2D only supports rank-1 bias"). Same bytes, new shape.
    """
    model = json.loads(model_json.read_text())
    nodes = model["modelTopology"]["node"]
    biases = {node["input"][2].split(":")[0] for node in nodes if node["op"] == "_FusedConv2D"}
    other_uses = {
        name.split(":")[0]
        for node in nodes
        for i, name in enumerate(node.get("input", []))
        if not (node["op"] == "_FusedConv2D" and i == 2)
    }
    for group in model["weightsManifest"]:
        for weight in group["weights"]:
            shape = weight["shape"]
            if weight["name"] in biases - other_uses and len(shape) == 4 and shape[:3] == [1, 1, 1]:
                weight["shape"] = shape[3:]
    model_json.write_text(json.dumps(model))


def node_images(images) -> list[dict]:
    """The images file of web/run_node.mjs: each RGB uint8 (H, W, 3) array as its height, width
    and base64 pixels."""
    return [
        {
            "height": im.shape[0],
            "width": im.shape[1],
            "rgb": base64.b64encode(im.tobytes()).decode(),
        }
        for im in images
    ]


CONV_ATTRS = ("T", "strides", "padding", "explicit_paddings", "data_format", "dilations")


def split_skip_biases(model_json: Path) -> None:
    """Splits each _FusedConv2D whose "bias" is not a rank-1 weight into Conv2D, AddV2, Relu.

    A folded bias that is all zeros (BatchNorms that were never trained, as in a fresh model) is
    dropped by the converter's optimiser, which then fuses a residual's `conv + skip` as if the
    skip, a (B, H, W, C) activation, were the bias. TF.js's CPU backend computes that right; its
    WASM and WebGL backends refuse it ("FusedConv2D only supports rank-1 bias"). The same
    arithmetic unfused runs on every backend.
    """
    model = json.loads(model_json.read_text())
    shapes = {w["name"]: w["shape"] for g in model["weightsManifest"] for w in g["weights"]}
    nodes = []
    for node in model["modelTopology"]["node"]:
        attr = node.get("attr", {})
        fused = [
            base64.b64decode(op).decode()
            for op in attr.get("fused_ops", {}).get("list", {}).get("s", [])
        ]
        bias = node["input"][2].split(":")[0] if len(node.get("input", [])) > 2 else None
        if (
            node["op"] != "_FusedConv2D"
            or fused not in (["BiasAdd"], ["BiasAdd", "Relu"])
            or len(shapes.get(bias, [])) == 1
        ):
            nodes.append(node)
            continue
        name, dtype = node["name"], {"T": attr["T"]}
        conv = {k: v for k, v in attr.items() if k in CONV_ATTRS}
        nodes.append(
            {"name": f"{name}/conv", "op": "Conv2D", "input": node["input"][:2], "attr": conv}
        )
        added = f"{name}/add" if "Relu" in fused else name
        nodes.append(
            {
                "name": added,
                "op": "AddV2",
                "input": [f"{name}/conv", node["input"][2]],
                "attr": dtype,
            }
        )
        if "Relu" in fused:
            nodes.append({"name": name, "op": "Relu", "input": [added], "attr": dtype})
    model["modelTopology"]["node"] = nodes
    model_json.write_text(json.dumps(model))


def _identity_number(name: str) -> int:
    node = name.split(":")[0]
    if node == "Identity":
        return 0
    if not node.startswith("Identity_"):
        raise TfjsError(f"unexpected output node {name} in the converted model")
    return int(node.split("_")[1])


if __name__ == "__main__":  # python -m cornernet_tf.tfjs: just make the venv
    print(ensure_converter())
    sys.exit(0)
