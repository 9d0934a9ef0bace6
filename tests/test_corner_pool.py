"""Corner pooling vs the official forward and backward (pools_public.npz), every implementation."""

import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf.ops import IMPLEMENTATIONS, corner_pool
from tests.helpers import load_fixture

DIRECTIONS = ("top", "bottom", "left", "right")


def nhwc(a):
    return tf.constant(np.transpose(a, (0, 2, 3, 1)))


def nchw(t):
    return np.transpose(t.numpy(), (0, 3, 1, 2))


def pool_and_grad(x, grad_out, direction, implementation):
    x = nhwc(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = corner_pool(x, direction, implementation=implementation)
    grad = tape.gradient(out, x, output_gradients=nhwc(grad_out))
    return nchw(out), nchw(grad)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("inputs", ["ties", "rand"])
def test_matches_official_forward_and_backward(implementation, direction, inputs):
    ref = load_fixture("pools_public.npz")
    out, grad = pool_and_grad(ref[f"x_{inputs}"], ref["grad_out"], direction, implementation)
    np.testing.assert_array_equal(out, ref[f"{direction}_pool_{inputs}_out"])
    np.testing.assert_allclose(grad, ref[f"{direction}_pool_{inputs}_grad"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_tie_rule_hand_computed(implementation):
    # The design notes' example: LeftPool on [1,3,2,3,0] -> [3,3,3,3,0], grad(ones) [0,0,0,4,1].
    x = tf.constant([1.0, 3.0, 2.0, 3.0, 0.0])[None, None, :, None]
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = corner_pool(x, "left", implementation=implementation)
    grad = tape.gradient(out, x)
    np.testing.assert_array_equal(out.numpy().ravel(), [3, 3, 3, 3, 0])
    np.testing.assert_array_equal(grad.numpy().ravel(), [0, 0, 0, 4, 1])


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_implementations_agree_on_odd_and_power_of_two_sizes(direction):
    rng = np.random.default_rng(3)
    for shape in [(2, 16, 16, 5), (1, 13, 9, 3), (1, 1, 1, 2)]:
        x = rng.integers(0, 4, shape).astype(np.float32)  # many ties
        g = rng.standard_normal(shape).astype(np.float32)
        results = []
        for implementation in IMPLEMENTATIONS:
            xt = tf.constant(x)
            with tf.GradientTape() as tape:
                tape.watch(xt)
                out = corner_pool(xt, direction, implementation=implementation)
            results.append((out.numpy(), tape.gradient(out, xt, output_gradients=g).numpy()))
        for out, grad in results[1:]:
            np.testing.assert_array_equal(out, results[0][0])
            np.testing.assert_allclose(grad, results[0][1], atol=1e-6)


def test_works_inside_tf_function_and_bfloat16():
    x = tf.random.stateless_normal([1, 8, 8, 4], seed=[1, 2])
    fn = tf.function(lambda t: corner_pool(t, "top"))
    np.testing.assert_array_equal(fn(x).numpy(), corner_pool(x, "top", implementation="scan"))
    half = corner_pool(tf.cast(x, tf.bfloat16), "right")
    assert half.dtype == tf.bfloat16


def test_the_implementation_is_an_argument_and_nothing_global_changes_it(monkeypatch):
    """No environment variable or module setting picks the implementation: the old
    CORNERNET_CORNER_POOL switch is gone, and a model records its own choice."""
    import cornernet_tf.ops.corner_pool as module
    from cornernet_tf.layers import CornerPool

    monkeypatch.setenv("CORNERNET_CORNER_POOL", "fast")  # would fail if it were read
    x = tf.random.stateless_normal([1, 5, 5, 2], seed=[2, 2])
    np.testing.assert_array_equal(corner_pool(x, "top"), corner_pool(x, "top", "scan"))
    assert not any(name.startswith(("set_", "get_")) for name in dir(module))
    layer = CornerPool("left", implementation="scan")
    assert CornerPool.from_config(layer.get_config()).implementation == "scan"
    assert CornerPool("left").implementation == "tf"


def test_bad_input_gives_clear_errors():
    x = tf.zeros([1, 4, 4, 2])
    with pytest.raises(ValueError, match="direction must be one of"):
        corner_pool(x, "up")
    with pytest.raises(ValueError, match="rank 4"):
        corner_pool(tf.zeros([4, 4]), "top")
    with pytest.raises(TypeError, match="floating-point"):
        corner_pool(tf.zeros([1, 4, 4, 2], tf.int32), "top")
    with pytest.raises(ValueError, match="implementation must be one of"):
        corner_pool(x, "top", implementation="cuda")


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("inputs", ["ties", "rand"])
def test_dynamic_sizes_match_official_forward_and_backward(direction, inputs):
    """With sizes unknown when traced (the any-size SavedModel and OpenVINO IR) the "tf" pool
    takes a running max in log2(n) doubling steps; same values and the same tie gradient."""
    ref = load_fixture("pools_public.npz")
    spec = tf.TensorSpec([None, None, None, None], tf.float32)

    @tf.function(input_signature=[spec, spec])
    def pool_and_grad_dynamic(x, grad_out):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = corner_pool(x, direction, implementation="tf")
        return out, tape.gradient(out, x, output_gradients=grad_out)

    out, grad = pool_and_grad_dynamic(nhwc(ref[f"x_{inputs}"]), nhwc(ref["grad_out"]))
    np.testing.assert_array_equal(nchw(out), ref[f"{direction}_pool_{inputs}_out"])
    np.testing.assert_allclose(
        nchw(grad), ref[f"{direction}_pool_{inputs}_grad"], rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_dynamic_sizes_keep_infinities_and_their_gradient(direction):
    inf = np.inf
    x = tf.constant([[-inf, -inf, 1.0, -inf, -inf], [3.0, -inf, 3.0, 2.0, -inf]])[None, :, :, None]
    spec = tf.TensorSpec([None, None, None, None], tf.float32)
    results = []
    for implementation, signature in (("tf", [spec]), ("scan", None)):

        @tf.function(input_signature=signature)
        def pool_and_grad(t, implementation=implementation):
            with tf.GradientTape() as tape:
                tape.watch(t)
                out = corner_pool(t, direction, implementation=implementation)
            return out, tape.gradient(out, t)

        results.append([r.numpy() for r in pool_and_grad(x)])
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


@pytest.mark.parametrize("batch", [None, 1, 2])  # a known batch: a one-image detector has 1
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_dynamic_sizes_work_in_a_traced_function(batch, direction):
    spec = tf.TensorSpec([batch, None, None, 3], tf.float32)
    fn = tf.function(
        lambda t: corner_pool(t, direction, implementation="tf"), input_signature=[spec]
    )
    x = tf.random.stateless_normal([batch or 2, 5, 9, 3], seed=[7, 7])
    np.testing.assert_array_equal(fn(x), corner_pool(x, direction, implementation="scan"))


@pytest.mark.custom_op
def test_the_compiled_library_registers_namespaced_ops():
    """Its ops carry the CornerNet> namespace (as TF's add-on ops do), so they cannot clash."""
    from cornernet_tf.ops import custom
    from cornernet_tf.ops.winograd import winograd_conv

    @tf.function
    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = corner_pool(x, "top", implementation="custom")
        return tape.gradient(y, x), winograd_conv(x, tf.zeros([36, 2, 2]), tf.zeros([2]))

    graph = run.get_concrete_function(tf.TensorSpec([1, 8, 8, 2])).graph.as_graph_def()
    names = {"CornerNet>CornerPool", "CornerNet>CornerPoolGrad", "CornerNet>WinogradInput"}
    assert names | {"CornerNet>WinogradOutput"} <= {node.op for node in graph.node}
    assert set(vars(custom.load())) == set(custom.OPS)


@pytest.mark.custom_op
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("dtype", [tf.float32, tf.float16, tf.bfloat16])
def test_compiled_op_is_bit_identical_to_tf(direction, dtype):
    rng = np.random.default_rng(5)
    x = tf.cast(rng.integers(0, 6, (2, 17, 11, 19)), dtype)  # ties everywhere
    g = tf.cast(rng.standard_normal((2, 17, 11, 19)), dtype)
    results = {}
    for implementation in ("tf", "custom"):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = corner_pool(x, direction, implementation=implementation)
        results[implementation] = (out, tape.gradient(out, x, output_gradients=g))
    for a, b in zip(results["tf"], results["custom"], strict=True):
        assert b.dtype == dtype
        np.testing.assert_array_equal(
            tf.cast(a, tf.float32).numpy(), tf.cast(b, tf.float32).numpy()
        )


@pytest.mark.custom_op
def test_compiled_gradient_by_finite_differences():
    x = tf.random.stateless_normal([1, 5, 4, 3], seed=[3, 4], dtype=tf.float32)
    for direction in DIRECTIONS:
        theoretical, numerical = tf.test.compute_gradient(
            lambda t, d=direction: corner_pool(t, d, implementation="custom"), [x]
        )
        np.testing.assert_allclose(theoretical[0], numerical[0], atol=2e-3)


@pytest.mark.custom_op
def test_compiled_op_in_a_traced_function_with_dynamic_sizes():
    spec = tf.TensorSpec([None, None, None, 3], tf.float32)
    fn = tf.function(
        lambda t: corner_pool(t, "top", implementation="custom"), input_signature=[spec]
    )
    x = tf.random.stateless_normal([2, 5, 9, 3], seed=[7, 8])
    np.testing.assert_array_equal(fn(x), corner_pool(x, "top", implementation="scan"))
    graph = fn.get_concrete_function().graph.as_graph_def()
    assert "CornerNet>CornerPool" in {node.op for node in graph.node}


def test_missing_compiled_op_falls_back_to_tf_with_one_warning(monkeypatch):
    import importlib

    from cornernet_tf.ops import custom

    module = importlib.import_module("cornernet_tf.ops.corner_pool")

    monkeypatch.setattr(custom, "_module", None)
    monkeypatch.setattr(custom, "_error", "built for TensorFlow 2.0, this is 2.21 (make ops)")
    monkeypatch.setattr(module, "_warned", set())
    x = tf.random.stateless_normal([1, 4, 4, 2], seed=[1, 1])
    with pytest.warns(RuntimeWarning, match="built for TensorFlow 2.0"):
        out = corner_pool(x, "left", implementation="custom")
    np.testing.assert_array_equal(out, corner_pool(x, "left", implementation="tf"))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second call is silent
        corner_pool(x, "left", implementation="custom")
        corner_pool(x, "left", implementation="auto")


@pytest.mark.custom_op
def test_compiled_op_checks_rank_at_graph_construction():
    from cornernet_tf.ops import custom

    with pytest.raises(ValueError, match="rank 4"):
        tf.function(lambda t: custom.load().corner_pool(t, direction="top")).get_concrete_function(
            tf.TensorSpec([4, 4], tf.float32)
        )


@pytest.mark.custom_op
def test_tiny_model_with_the_compiled_op_equals_the_pure_tf_one():
    import keras

    from cornernet_tf import build_model, load_config
    from tests.helpers import ROOT

    keras.utils.set_random_seed(4)
    models = {}
    for implementation in ("tf", "custom"):
        config = load_config(
            ROOT / "configs" / "tiny.yaml", [f"model.corner_pool={implementation}"]
        )
        models[implementation] = build_model(config)
    models["custom"].set_weights(models["tf"].get_weights())
    images = tf.random.stateless_normal([2, 63, 95, 3], seed=[5, 6])
    results = {}
    for name, model in models.items():
        with tf.GradientTape() as tape:
            out = model(images, training=True, all_stacks=True)
            loss = sum(tf.reduce_mean(tf.square(v)) for v in out.values())
        grads = tape.gradient(loss, model.trainable_variables)
        results[name] = (out, grads)
    for key in results["tf"][0]:
        np.testing.assert_allclose(results["custom"][0][key], results["tf"][0][key], atol=1e-5)
    for a, b in zip(results["tf"][1], results["custom"][1], strict=True):
        np.testing.assert_allclose(b, a, atol=1e-5)


def test_cuda_kernels_pass_the_fixtures_in_emulation_and_the_harness_compiles(tmp_path):
    """The CUDA kernels run on the CPU, one emulated thread after another
    (custom_ops/corner_pool/emulate_kernels.cc, built with g++), on the official fixtures; the
    GPU harness (cuda_harness.cu) builds with nvcc. It runs only on a GPU machine, which CI does
    not have."""
    import shutil
    import subprocess
    import sys

    from tests.helpers import DATA, ROOT

    source = ROOT / "custom_ops" / "corner_pool"
    subprocess.run(
        [sys.executable, str(source / "write_fixture.py"), str(DATA / "pools_public.npz"),
         str(tmp_path / "fixture")],
        check=True, capture_output=True,
    )  # fmt: skip
    shape = (tmp_path / "fixture" / "shape.txt").read_text().split()
    assert shape == ["2", "6", "7", "3"]  # NHWC of the (2, 3, 6, 7) NCHW fixture
    x = np.fromfile(tmp_path / "fixture" / "x_ties.bin", np.float32).reshape(2, 6, 7, 3)
    np.testing.assert_array_equal(
        x, np.transpose(load_fixture("pools_public.npz")["x_ties"], (0, 2, 3, 1))
    )
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ is not installed: the CUDA kernels cannot be emulated here")
    emulate = tmp_path / "emulate"
    subprocess.run(
        [gxx, "-O2", "-std=c++17", "-o", str(emulate), str(source / "emulate_kernels.cc")],
        check=True, capture_output=True,
    )  # fmt: skip
    done = subprocess.run([str(emulate), str(tmp_path / "fixture")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()  # 4 directions x 2 inputs, outputs exact
    assert len(lines) == 8 and all("forward max err 0," in x and "PASS" in x for x in lines)
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not installed: the CUDA harness cannot be compiled here")
    done = subprocess.run(
        [nvcc, "-O3", "-std=c++17", "-DGOOGLE_CUDA=1", "-o", str(tmp_path / "harness"),
         str(source / "cuda_harness.cu")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_library_is_refused_on_a_cpu_without_its_instructions(tmp_path, monkeypatch):
    """The sidecar file names the TensorFlow version (line 1) and the CPU flags the kernels were
    compiled for (line 2); the loader says which one does not match, before loading anything."""
    from cornernet_tf.ops import custom

    library = tmp_path / "_custom_ops.so"
    monkeypatch.setattr(custom, "LIBRARY", library)
    assert "is not built" in custom._refusal({"avx"})
    library.write_bytes(b"")
    sidecar = tmp_path / "_custom_ops.so.tf-version"
    sidecar.write_text("2.0.0\navx avx2\n")
    assert "built for TensorFlow 2.0.0" in custom._refusal({"avx", "avx2"})
    sidecar.write_text(f"{tf.__version__}\navx avx2\n")
    assert custom._refusal({"avx", "avx2", "sse4_1"}) is None
    assert custom._refusal(None) is None  # no /proc/cpuinfo: not checked
    refusal = custom._refusal({"avx", "sse4_1"})
    assert "built for a CPU with avx2, which this one lacks" in refusal
    sidecar.write_text(f"{tf.__version__}\n")  # a library built before the second line existed
    assert custom._refusal({"avx"}) is None


def test_the_build_uses_avx2_where_the_cpu_has_it(monkeypatch):
    """custom_ops/build.py reads the CPU flags as the loader does (it cannot import the package:
    it runs before the package is installed)."""
    import platform

    from cornernet_tf.cpu import cpu_flags as loader_flags
    from custom_ops.build import cpu_flags, isa_flags

    assert cpu_flags() == loader_flags()

    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    assert isa_flags({"avx", "avx2", "fma"}) == (["-mavx", "-mavx2"], ["avx", "avx2"])
    assert isa_flags({"avx"}) == (["-mavx"], ["avx"])
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert isa_flags({"asimd"}) == ([], [])
