"""`--target auto`: known GPUs map to their packaged target, others get one built from their
properties and a probe, no GPU gives this CPU's target; every failure is one warning line and a
stated fallback, never a traceback."""
import json
import warnings

import pytest

from sparsecc import CompileConfig, ConfigError
from sparsecc.cache import SparseccWarning
from sparsecc.targets import get_target, known_names
from sparsecc.targets import detect as det

H200_PROPS = {"name": "NVIDIA H200", "compute_capability": [9, 0], "sm_count": 132,
              "memory_gib": 139.8, "l2_mib": 60.0, "cusparselt": True, "triton": True}
PROBE = {"copy_gbs": 4300.0, "gemm_f16_tflops": 700.0, "gemm_f32_tflops": 50.0,
         "launch_us": 3.1, "notes": []}


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSECC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(det, "_DETECTED", None)
    return tmp_path / "cache"


@pytest.mark.parametrize("device, target", [
    ("NVIDIA H200", "h200"), ("NVIDIA H100 80GB HBM3", "h100"), ("NVIDIA A100-SXM4-80GB", "a100"),
    ("NVIDIA L4", "l4"), ("NVIDIA L40S", None), ("NVIDIA GeForce RTX 4090", None),
    ("NVIDIA H100 PCIe", None)])
def test_known_gpus_map_by_name(device, target):
    assert det.match_known(device) == target


def test_known_gpu_is_the_packaged_target_without_probing():
    def no_probe(props):
        raise AssertionError("a known GPU must not be probed")
    d = det.detect_gpu(dict(H200_PROPS), probe=no_probe)
    assert d.how == "known" and d.target is get_target("h200")
    assert "detected NVIDIA H200: target h200" in d.describe()


def test_unknown_gpu_gets_a_target_from_its_properties(own_cache):
    props = dict(H200_PROPS, name="NVIDIA GeForce RTX 4090", compute_capability=[8, 9],
                 sm_count=128, l2_mib=72.0)
    probe = dict(PROBE, gemm_f16_tflops=150.0, copy_gbs=900.0)
    d = det.detect_gpu(props, probe=lambda p: probe)
    t = d.target
    assert d.how == "built" and t.name == "nvidia-geforce-rtx-4090" and t.kind == "gpu"
    assert t.compute_units == 128 and t.l2_mib == 72.0 and t.memory_gbs == 900.0
    # the probe's rate is what a large GEMM reaches: peak = rate / dense_efficiency
    assert t.peak("f16") * t.model.dense_efficiency == pytest.approx(150.0, rel=0.01)
    assert t.sparse_tflops["f16"] == pytest.approx(2 * t.peak("f16"))
    assert t.supports("2:4", "torch") is None and t.supports("block64x64@0.25", "torch") is None
    assert t.supports("2:4", "onnx") is not None
    assert "uncalibrated" in t.description and "probe" in t.source_of("memory_gbs")
    assert t.data["detected"]["sm_count"] == 128
    # written to the cache and found there next time, without probing
    assert (own_cache / "targets" / "nvidia-geforce-rtx-4090.json").is_file()
    again = det.detect_gpu(props, probe=lambda p: pytest.fail("probed twice"))
    assert again.how == "cached" and again.target == t
    assert get_target("nvidia-geforce-rtx-4090") == t
    assert "nvidia-geforce-rtx-4090" in known_names()


def test_old_gpu_has_no_24_and_a_failed_probe_falls_back():
    props = dict(H200_PROPS, name="Tesla T4", compute_capability=[7, 5], cusparselt=False)
    d = det.detect_gpu(props, probe=lambda p: {"notes": ["bandwidth probe failed (boom)"]})
    t = d.target
    assert not t.has_sparse_tensor_cores and t.model.nm_efficiency is None
    assert "2:4" not in str(t.backends["torch"]) and t.supports("2:4", "torch") is not None
    assert t.supports("block64x64@0.25", "torch") is not None      # Triton BSR needs sm_80
    assert t.memory_gbs == get_target("a100").memory_gbs           # the template's, said so
    assert "probe failed" in t.source_of("memory_gbs")
    assert d.notes == ("bandwidth probe failed (boom)",)


def test_unreadable_gpu_property_is_one_warning_and_a_fallback(monkeypatch):
    torch = pytest.importorskip("torch")

    class Props:
        name = "NVIDIA Mystery"
        major, minor, multi_processor_count, total_memory = 9, 0, 100, 80 * 2**30

        @property
        def L2_cache_size(self):
            raise RuntimeError("cudaDeviceGetAttribute failed")

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: Props())
    with pytest.warns(SparseccWarning, match=r"can't read the GPU's l2_mib .*no L2 size"):
        props = det.gpu_properties()
    assert props["name"] == "NVIDIA Mystery" and "l2_mib" not in props and props["sm_count"] == 100
    t = det.build_gpu_target("nvidia-mystery", props, PROBE)
    assert t.l2_mib is None and t.compute_units == 100


def test_a_gpu_whose_properties_cant_be_read_falls_back_to_the_cpu(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    def broken(i):
        raise RuntimeError("CUDA driver error: unknown error")
    monkeypatch.setattr(torch.cuda, "get_device_properties", broken)
    monkeypatch.setattr(det, "probe_cpu", lambda props: {"gemm_f32_tflops": 0.2, "notes": []})
    with pytest.warns(SparseccWarning, match="can't read CUDA device 0's properties .*CPU"):
        d = det.detect()
    assert d.target.kind == "cpu"


def test_no_gpu_gives_this_cpus_target(own_cache, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    d = det.detect()
    t = d.target
    props = det.cpu_properties()
    assert t.kind == "cpu" and t.name == det.cpu_target_name(props) and t.name.startswith("cpu-")
    assert t.compute_units == props["cores"] and t.vector_bits == props["vector_bits"]
    assert t.peak("f32") > 0 and t.memory_gbs > 0 and not t.sparse_tflops
    assert "probe" in t.source_of("peak_tflops.f32")
    assert d.describe().startswith(f"detected {props['name']}")
    # the config resolves auto to it; a second process finds it in the cache
    assert CompileConfig(target="auto").target == t.name
    assert get_target(t.name) == t
    monkeypatch.setattr(det, "_DETECTED", None)
    assert det.detect().how == "cached"


def test_corrupt_cached_target_is_one_warning_and_probed_again(own_cache):
    path = own_cache / "targets" / "nvidia-geforce-rtx-4090.json"
    path.parent.mkdir(parents=True)
    props = dict(H200_PROPS, name="NVIDIA GeForce RTX 4090", compute_capability=[8, 9])
    for bad in (b"\x00\xff garbage", json.dumps({"kind": "gpu"}).encode()):
        path.write_bytes(bad)
        with pytest.warns(SparseccWarning, match="ignoring cached target"):
            d = det.detect_gpu(props, probe=lambda p: PROBE)
        assert d.how == "built"
        assert json.loads(path.read_text())["kind"] == "gpu"      # rewritten whole


def test_unknown_target_lists_the_known_ones_and_auto():
    with pytest.raises(ConfigError) as e:
        get_target("h300")
    msg = str(e.value)
    assert "unknown target 'h300'" in msg and "h200" in msg and "cpu-x86" in msg and "auto" in msg
    with pytest.raises(ConfigError, match="or auto"):
        CompileConfig(target="b200")


def test_no_warning_on_the_ordinary_path(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        det.detect()
