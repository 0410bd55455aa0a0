"""Targets are data: every file loads into a typed Target, every number has a source, and a bad
file is named with its key."""
import json

import pytest

from sparsecc import ConfigError
from sparsecc.targets import (DTYPES, Target, get_target, load_target_file, target_from_dict,
                              target_names)
from sparsecc.targets import _numbers

ALL = target_names()


def test_all_packaged_targets_load_typed():
    assert set(ALL) == {"h200", "h100", "a100", "l4", "tpu-v4", "tpu-v5e", "cpu-x86"}
    for name in ALL:
        t = get_target(name)
        assert isinstance(t, Target) and t.kind in ("gpu", "tpu", "cpu")
        assert t.memory_gbs > 0 and t.compute_units >= 1 and t.launch_us >= 0
        assert all(side >= 1 for side in t.tile)
        assert set(DTYPES) <= set(t.peak_tflops)
        assert t.peak("bf16") > 0 and t.peak("int8") > 0
        assert t.model.dense_efficiency <= 1 and t.model.memory_efficiency <= 1
        assert t.model.block_efficiency and all(0 < e <= 1 for e in t.model.block_efficiency.values())


@pytest.mark.parametrize("name", ALL)
def test_every_number_has_a_source(name):
    t = get_target(name)
    numbers = list(_numbers({k: v for k, v in t.data.items() if k != "sources"}, ""))
    assert len(numbers) >= 12, numbers
    for path in numbers:
        src = t.source_of(path)
        assert isinstance(src, str) and len(src) > 10, f"{name}: {path} has no source"


def test_datasheet_figures():
    h = get_target("h100")
    assert h.peak("f16") == pytest.approx(989.4) and h.peak("float16", sparse=True) == pytest.approx(1978.9)
    assert h.memory_gbs == 3350 and h.compute_units == 132 and h.l2_mib == 50
    assert "datasheet" in h.source_of("peak_tflops.f16")
    assert "kernels-h100.jsonl" in h.source_of("model.nm_overhead_us")
    assert get_target("a100").peak("f16") == 312 and get_target("l4").memory_gbs == 300
    assert get_target("tpu-v5e").peak("bf16") == 197 and get_target("tpu-v4").compute_units == 8


@pytest.mark.parametrize("name", ALL)
def test_sparse_tensor_cores_only_on_nvidia(name):
    t = get_target(name)
    assert t.has_sparse_tensor_cores == (t.kind == "gpu")
    for d, sparse in t.sparse_tflops.items():
        assert sparse == pytest.approx(2 * t.peak(d), rel=0.01)
    if t.kind == "gpu":
        assert t.model.nm_overhead_us is not None


def test_backend_capabilities():
    h, tpu, cpu = get_target("h100"), get_target("tpu-v5e"), get_target("cpu")
    for p in ("dense", "2:4", "block32x32@0.25", "channel0.5", "channel0.5+2:4"):
        assert h.supports(p, "torch") is None, p
    assert h.supports("4:8", "torch") == "torch on h100 runs only 2:4, not 4:8"
    assert h.supports("2:4", "onnx") == "onnx on h100 runs no N:M kernels"
    assert h.supports("block32x32@0.25", "onnx") == "onnx on h100 runs no block-sparse kernels"
    assert h.supports("channel0.5", "onnx") is None
    assert h.supports("block8x8@0.5", "torch").startswith("torch on h100 runs blocks with sides")
    assert tpu.supports("2:4", "torch") == "tpu-v5e has no N:M sparse hardware"
    assert tpu.supports("block64x64@0.1", "torch") == \
        "torch on tpu-v5e needs blocks aligned to 128, not 64x64"
    assert tpu.supports("block128x256@0.1", "torch") is None
    assert tpu.supports("channel0.5", "torch") is None
    assert tpu.supports("dense", "tvm") == "backend tvm is not available on tpu-v5e"
    assert cpu.supports("2:4", "tvm") == "cpu-x86 has no N:M sparse hardware"
    assert cpu.supports("block16x16@0.1", "tvm") is None
    assert cpu.supports("channel0.5+2:4", "tvm") == "cpu-x86 has no N:M sparse hardware"


def _raw(name="h100"):
    return json.loads(json.dumps(get_target(name).data))


@pytest.mark.parametrize("edit, key", [
    (lambda r: r.pop("memory_gbs"), "'memory_gbs'"),
    (lambda r: r.update(hbm_tbs=3.35), "'hbm_tbs'"),
    (lambda r: r["peak_tflops"].pop("int8"), "'peak_tflops.int8'"),
    (lambda r: r["peak_tflops"].update(fp8=1979), "'peak_tflops.fp8'"),
    (lambda r: r["model"].pop("nm_overhead_us"), "'model.nm_overhead_us'"),
    (lambda r: r["model"].update(warp_size=32), "'model.warp_size'"),
    (lambda r: r["tile"].update(k=64), "'tile.k'"),
    (lambda r: r.update(compute_units="many"), "'compute_units'"),
    (lambda r: r.update(memory_gbs=-1), "'memory_gbs'"),
    (lambda r: r["backends"]["torch"].update(sparse24={}), "'backends.torch.sparse24'"),
    (lambda r: r["backends"]["torch"]["block"].update(min_density=0.1),
     "'backends.torch.block.min_density'"),
    (lambda r: r.update(kind="fpga"), "'kind'"),
    (lambda r: r["model"].update(dense_efficiency=1.5), "'model.dense_efficiency'"),
    (lambda r: r["model"]["block_efficiency"].update({"8": 0}), "'model.block_efficiency.8'"),
    (lambda r: r["tile"].update(m=0), "'tile.m'"),
    (lambda r: r["sources"].update(memory_gbs=""), "'sources.memory_gbs'"),
    (lambda r: r["sources"].pop("memory_gbs"), "'memory_gbs' has no source"),
    (lambda r: r["sources"].pop("model"), "'model.dense_efficiency' has no source"),
])
def test_bad_target_file_names_file_and_key(tmp_path, edit, key):
    raw = _raw()
    edit(raw)
    path = tmp_path / "mygpu.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError) as e:
        load_target_file(path)
    assert str(path) in str(e.value) and key in str(e.value), str(e.value)


def test_target_file_round_trip_and_bad_json(tmp_path):
    path = tmp_path / "copy.json"
    path.write_text(json.dumps(_raw("tpu-v4")))
    t = load_target_file(path)
    assert t.name == "copy" and t == target_from_dict("copy", _raw("tpu-v4"), "x")
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="copy.json: not valid JSON"):
        load_target_file(path)


def test_nm_parameters_only_required_with_sparse_hardware():
    raw = _raw("tpu-v5e")
    assert "nm_overhead_us" not in raw["model"]
    target_from_dict("tpu-v5e", raw, "targets/tpu-v5e.json")   # loads without them
    raw["sparse_tflops"] = {"bf16": 394.0}
    raw["sources"]["sparse_tflops"] = "hypothetical"
    with pytest.raises(ConfigError, match="targets/tpu-v5e.json: missing key 'model.nm_efficiency'"):
        target_from_dict("tpu-v5e", raw, "targets/tpu-v5e.json")


def test_aliases_and_unknown_target():
    assert get_target("cpu").name == "cpu-x86" and get_target(" TPU-v5 ").name == "tpu-v5e"
    with pytest.raises(ConfigError, match="unknown target 'b200'; known: a100, cpu-x86, h100, h200"):
        get_target("b200")


def test_h200_is_the_h100_chip_with_its_own_memory():
    h, h1 = get_target("h200"), get_target("h100")
    assert h.peak("f16") == h1.peak("f16") and h.compute_units == h1.compute_units == 132
    assert h.memory_gbs == 4800 and "H200" in h.source_of("memory_gbs")
    assert h.has_sparse_tensor_cores and h.supports("2:4", "torch") is None
    assert h.supports("2:4", "onnx") is not None


@pytest.mark.parametrize("edit, match", [
    (lambda r: r.update(match="NVIDIA"), "key 'match' must be list"),
    (lambda r: r.update(match=["(unclosed"]), r"key 'match\[0\]' is not a valid regex"),
    (lambda r: r.update(match=[""]), r"key 'match\[0\]' must be a non-empty regex"),
])
def test_bad_match_regexes_are_named(edit, match):
    raw = json.loads(json.dumps(get_target("h200").data))
    edit(raw)
    with pytest.raises(ConfigError, match=match):
        target_from_dict("h200", raw, "targets/h200.json")
