"""The benchmark's reading of the engines' switches (scripts/benchmark_openvino.py)."""

import importlib.util

import pytest

from tests.helpers import ROOT


@pytest.fixture
def engines():
    spec = importlib.util.spec_from_file_location(
        "benchmark_openvino", ROOT / "scripts" / "benchmark_openvino.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "isa, expected",
    [
        (None, ("float32", "bfloat16")),
        ("AVX2", ("float32",)),
        ("avx2", ("float32",)),
        ("AVX2_VNNI", ("float32",)),
        ("SSE41", ("float32",)),
        ("AVX512_CORE", ("float32", "bfloat16")),  # oneDNN emulates bfloat16 there
        ("AVX512_CORE_BF16", ("float32", "bfloat16")),
        ("ALL", ("float32", "bfloat16")),
    ],
)
def test_bfloat16_rows_only_where_onednn_has_bfloat16_kernels(engines, monkeypatch, isa, expected):
    if isa is None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
    assert engines.precisions() == expected


def test_onednn_settings_are_named_in_the_table_header(engines, monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    assert engines.onednn_limits() is None
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    assert engines.onednn_limits() == (
        "oneDNN settings: ONEDNN_MAX_CPU_ISA=AVX2, TF_ENABLE_ONEDNN_OPTS=0"
    )
