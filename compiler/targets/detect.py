"""`--target auto`: the target for this machine's GPU, else for its CPU.

    detect() -> Detection(target, device, how, notes)

GPU (torch sees CUDA): the device name is matched against the packaged targets' `match`
regexes ("NVIDIA H200" -> h200). A GPU no target matches gets a target built from its own
properties: SM count, L2, memory and compute capability read from the device, and a probe of
about a second that measures what the cost model needs most:

    memory_gbs            device-to-device copy, bytes read + written per second
    peak_tflops.f16/bf16  an 8192^3 (smaller on small GPUs) GEMM's rate / model.dense_efficiency
    peak_tflops.f32       a 4096^3 float32 GEMM (TF32 off) / model.dense_efficiency
    launch_us             one tiny GEMM replayed in a CUDA graph

The efficiencies and kernel parameters come from the packaged target of the nearest
architecture (`TEMPLATES`); 2:4 is offered when the GPU has sparse tensor cores (compute
capability 8.0 or later) and cuSPARSELt is available, block-sparse when Triton is.

CPU (no CUDA): a target built from this CPU: cores, vector ISA (AVX-512, AVX2, AMX) from
/proc/cpuinfo, L2 from sysfs, and the same kind of probe (float32 and bfloat16 GEMM rates on all
threads, a copy for bandwidth), with the parameters of `cpu-x86`.

Built targets are written to the user's cache (`targets/NAME.json`, the schema of the packaged
files, every number with its source) and found there next time without probing; they are
"uncalibrated" until `sparsecc calibrate --target auto` measures their cost table. A property
that can't be read, or a probe that fails, gives one warning line and a stated fallback.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import time
from collections.abc import Callable
from typing import Any

from ..cache import cache_dir, read_json, slug, warn, write_json_atomic
from ..errors import ConfigError
from . import Target, _packaged, load_target_file, target_from_dict, target_names

# compute capability -> the packaged target whose model parameters a built GPU target borrows
TEMPLATES = {(9, 0): "h100", (8, 9): "l4", (8, 6): "l4", (8, 7): "l4", (8, 0): "a100"}
DEFAULT_TEMPLATE = "a100"
CPU_TEMPLATE = "cpu-x86"


@dataclasses.dataclass(frozen=True)
class Detection:
    target: Target
    device: str                   # what was found: "NVIDIA H200", "Intel(R) Xeon(R) ... (2 cores)"
    how: str                      # "known" | "built" | "cached"
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.how == "known":
            return f"detected {self.device}: target {self.target.name}"
        when = "built now from its properties" if self.how == "built" else \
            "built earlier from its properties"
        return f"detected {self.device}: target {self.target.name} ({when})"


_DETECTED: Detection | None = None


def detect(refresh: bool = False) -> Detection:
    """This machine's target (detected once per process unless `refresh`)."""
    global _DETECTED
    if _DETECTED is None or refresh:
        _DETECTED = _detect()
    return _DETECTED


def detection() -> Detection | None:
    """The detection made in this process, if any (the report names it)."""
    return _DETECTED


def _detect() -> Detection:
    try:
        import torch
        has_cuda = torch.cuda.is_available()
    except Exception as e:            # noqa: BLE001 - a broken driver must not stop a compile
        warn(f"can't query CUDA ({str(e).splitlines()[0][:120]}); using this CPU's target")
        has_cuda = False
    if has_cuda:
        try:
            return detect_gpu(gpu_properties())
        except _NoGpu as e:
            warn(f"{e}; using this CPU's target")
    return detect_cpu(cpu_properties())


class _NoGpu(Exception):
    pass


# -- GPU ----------------------------------------------------------------------------------------
def gpu_properties(index: int = 0) -> dict[str, Any]:
    """What the CUDA device says about itself; a property it won't give is left out, with a
    warning (a device whose name can't be read is no usable GPU)."""
    import torch
    try:
        p = torch.cuda.get_device_properties(index)
    except Exception as e:            # noqa: BLE001
        raise _NoGpu(f"can't read CUDA device {index}'s properties "
                     f"({str(e).splitlines()[0][:120]})") from None
    props: dict[str, Any] = {}
    readers: dict[str, Callable[[], Any]] = {
        "name": lambda: str(p.name),
        "compute_capability": lambda: [int(p.major), int(p.minor)],
        "sm_count": lambda: int(p.multi_processor_count),
        "memory_gib": lambda: round(int(p.total_memory) / 2**30, 1),
        "l2_mib": lambda: round(int(p.L2_cache_size) / 2**20, 1),
    }
    for key, read in readers.items():
        try:
            value = read()
            if value in (None, "", 0):
                raise ValueError("empty")
            props[key] = value
        except Exception as e:        # noqa: BLE001 - each property falls back on its own
            if key == "name":
                raise _NoGpu(f"can't read CUDA device {index}'s name") from None
            warn(f"can't read the GPU's {key} ({str(e).splitlines()[0][:80] or type(e).__name__}); "
                 f"{_FALLBACK_TEXT[key]}")
    props.update(_nvml_clocks(index))
    try:
        props["cusparselt"] = bool(torch.backends.cusparselt.is_available())
    except Exception:                 # noqa: BLE001
        props["cusparselt"] = False
    try:
        import triton  # noqa: F401
        props["triton"] = True
    except ImportError:
        props["triton"] = False
    return props


_FALLBACK_TEXT = {
    "compute_capability": "assuming no sparse tensor cores and the A100's kernel parameters",
    "sm_count": "costing it as one compute unit per 128-wide tile row",
    "memory_gib": "sizing the probe for a 4 GiB GPU",
    "l2_mib": "no L2 size in its target",
}


def _nvml_clocks(index: int) -> dict[str, Any]:
    """Max SM and memory clocks (MHz) and bus width from NVML, when nvidia-ml-py is there."""
    try:
        import pynvml
    except ImportError:
        return {}
    try:
        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(index)
        out = {"sm_clock_mhz": int(pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM)),
               "memory_clock_mhz": int(pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_MEM))}
        try:
            out["memory_bus_bits"] = int(pynvml.nvmlDeviceGetMemoryBusWidth(h))
        except Exception:             # noqa: BLE001 - older drivers
            pass
        return out
    except Exception:                 # noqa: BLE001 - NVML is informational only
        return {}


def match_known(device_name: str) -> str | None:
    """The packaged target whose `match` regexes accept this CUDA device name."""
    for name in target_names():
        t = _packaged(name)
        if t.kind == "gpu" and any(re.search(rx, device_name) for rx in t.match):
            return name
    return None


def detect_gpu(props: dict[str, Any], probe: Callable[[dict], dict] | None = None) -> Detection:
    device = props["name"]
    known = match_known(device)
    if known:
        return Detection(_packaged(known), device, "known")
    return _cached_or_built(slug(device), device, props, probe or probe_gpu, build_gpu_target)


def _cached_or_built(name: str, device: str, props: dict[str, Any],
                     probe: Callable[[dict], dict], build: Callable[..., Target]) -> Detection:
    """The target built earlier for this device, else probe it, build one and keep it."""
    cached = _load_cached(name)
    if cached is not None:
        return Detection(cached, device, "cached")
    measured = probe(props)
    target = build(name, props, measured)
    _save(target)
    return Detection(target, device, "built", tuple(measured.get("notes", ())))


def probe_gpu(props: dict[str, Any]) -> dict[str, Any]:
    """Bandwidth, GEMM rates and launch cost of CUDA device 0, in about a second."""
    import torch
    from sparsecc.backends.torch.timing import graph_time_us   # noqa: PLC0415 (GPU only)
    out: dict[str, Any] = {"notes": []}
    mem = props.get("memory_gib", 4.0)
    n_copy = int(min(256 * 2**20, mem * 2**30 / 16))            # elements of fp16
    try:
        x = torch.empty(n_copy, dtype=torch.float16, device="cuda").normal_()
        y = torch.empty_like(x)
        us = graph_time_us(lambda a: y.copy_(a), [(x,)], warmup=3, reps=10)
        out["copy_gbs"] = 2 * x.numel() * 2 / us / 1e3
        del x, y
    except Exception as e:            # noqa: BLE001
        out["notes"].append(f"bandwidth probe failed ({str(e).splitlines()[0][:80]})")
    n = 8192 if mem >= 16 else 4096
    for dtype, key, size in ((torch.float16, "gemm_f16_tflops", n),
                             (torch.float32, "gemm_f32_tflops", 4096)):
        try:
            tf32 = torch.backends.cuda.matmul.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = False
            a = torch.randn(size, size, device="cuda", dtype=dtype)
            b = torch.randn(size, size, device="cuda", dtype=dtype)
            us = graph_time_us(lambda p, q: p @ q, [(a, b)], warmup=2, reps=5)
            out[key] = 2 * size ** 3 / us / 1e6
            del a, b
        except Exception as e:        # noqa: BLE001
            out["notes"].append(f"{key} probe failed ({str(e).splitlines()[0][:80]})")
        finally:
            torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        a = torch.randn(16, 64, device="cuda", dtype=torch.float16)
        w = torch.randn(64, 64, device="cuda", dtype=torch.float16)
        out["launch_us"] = graph_time_us(lambda p: torch.nn.functional.linear(p, w), [(a,)] * 20,
                                         warmup=3, reps=10)
    except Exception as e:            # noqa: BLE001
        out["notes"].append(f"launch probe failed ({str(e).splitlines()[0][:80]})")
    torch.cuda.empty_cache()
    return out


def _today() -> str:
    return datetime.date.today().isoformat()


def build_gpu_target(name: str, props: dict[str, Any], measured: dict[str, Any]) -> Target:
    """A target for a GPU no packaged target matches, from its properties and the probe."""
    cc = tuple(props.get("compute_capability") or ())
    template = _packaged(TEMPLATES.get(cc, DEFAULT_TEMPLATE))
    raw = json.loads(json.dumps(template.data))
    raw.pop("match", None)
    when = f"measured by sparsecc's probe on {props['name']}, {_today()}"
    read = f"read from {props['name']} by sparsecc, {_today()}"
    sources = {"model": f"the {template.name} target's parameters (nearest architecture; "
                        f"not fitted to this GPU: run `sparsecc calibrate --target auto`)",
               "tile": f"the {template.name} target's GEMM tile"}
    eff = raw["model"]["dense_efficiency"]
    peaks = dict.fromkeys(("f16", "bf16", "f32", "int8"))
    if "gemm_f16_tflops" in measured:
        peaks["f16"] = peaks["bf16"] = round(measured["gemm_f16_tflops"] / eff, 1)
        sources["peak_tflops"] = f"f16/bf16: {when}: {measured['gemm_f16_tflops']:.0f} TFLOP/s " \
                                 f"on a large GEMM, divided by model.dense_efficiency {eff}"
    else:
        peaks["f16"] = peaks["bf16"] = template.peak("f16")
        sources["peak_tflops"] = f"the {template.name} target's peaks (the GEMM probe failed)"
    if "gemm_f32_tflops" in measured:
        peaks["f32"] = round(measured["gemm_f32_tflops"] / eff, 2)
        sources["peak_tflops.f32"] = f"{when}: float32 GEMM (TF32 off) / dense_efficiency"
    else:
        peaks["f32"] = template.peak("f32")
    sparse = bool(cc) and cc >= (8, 0) and props.get("cusparselt", False)
    raw["sparse_tflops"] = {"f16": round(2 * peaks["f16"], 1), "bf16": round(2 * peaks["bf16"], 1)} \
        if sparse else {}
    sources["sparse_tflops"] = ("2:4 sparse tensor cores double the dense tensor rate on "
                                "compute capability 8.0 and later (NVIDIA Ampere/Hopper whitepapers); "
                                "cuSPARSELt is available here") if sparse else \
        "no 2:4 kernel here (compute capability below 8.0, or no cuSPARSELt in this torch)"
    if not sparse:
        for key in ("nm_efficiency", "nm_memory_efficiency", "nm_overhead_us"):
            raw["model"].pop(key, None)
    raw["peak_tflops"] = {k: v for k, v in peaks.items()}
    if "copy_gbs" in measured:
        raw["memory_gbs"] = round(measured["copy_gbs"], 0)
        sources["memory_gbs"] = f"{when}: device-to-device copy, bytes read + written"
    else:
        sources["memory_gbs"] = f"the {template.name} target's bandwidth (the probe failed)"
    raw["compute_units"] = int(props.get("sm_count") or template.compute_units)
    sources["compute_units"] = read if props.get("sm_count") else f"the {template.name} target's"
    raw["l2_mib"] = props.get("l2_mib")
    sources["l2_mib"] = read
    if "launch_us" in measured:
        raw["launch_us"] = round(measured["launch_us"], 2)
        sources["launch_us"] = f"{when}: a 16x64x64 GEMM replayed in a CUDA graph"
    else:
        sources["launch_us"] = f"the {template.name} target's"
    torch_caps = {"dense": {"kernel": "cuBLAS"}, "channel": {}, "composite": {}}
    if sparse:
        torch_caps["nm"] = {"nm": ["2:4"], "kernel": "cuSPARSELt"}
    if props.get("triton") and cc and cc >= (8, 0):
        torch_caps["block"] = {"sides": [16, 32, 64, 128], "kernel": "sparsecc Triton BSR"}
    raw["backends"] = {"torch": torch_caps, "onnx": {"dense": {}, "channel": {}},
                       "tvm": {"dense": {}, "channel": {}}}
    sources["backends"] = f"what this GPU has kernels for ({read})"
    raw["description"] = (f"{props['name']} (compute capability "
                          f"{'.'.join(map(str, cc)) or 'unknown'}, built by --target auto; "
                          f"uncalibrated until `sparsecc calibrate --target auto`)")
    raw["detected"] = {k: v for k, v in props.items() if not isinstance(v, bool)}
    raw["detected"]["date"] = _today()
    raw["detected"]["probe"] = {k: round(v, 2) for k, v in measured.items()
                                if isinstance(v, (int, float))}
    sources["detected"] = read
    raw["sources"] = sources
    return target_from_dict(name, raw, f"the target built for {props['name']}")


# -- CPU ----------------------------------------------------------------------------------------
def cpu_properties() -> dict[str, Any]:
    """This CPU's model name, usable cores, vector ISA and L2 (what Linux tells)."""
    props: dict[str, Any] = {"name": "unknown CPU", "flags": []}
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        for line in text.splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and props["name"] == "unknown CPU":
                props["name"] = " ".join(value.split())
            elif key == "flags" and not props["flags"]:
                props["flags"] = value.split()
    except OSError:
        warn("can't read /proc/cpuinfo; assuming an x86-64 CPU with AVX2")
        props["flags"] = ["avx2", "fma"]
    try:
        props["cores"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        props["cores"] = os.cpu_count() or 1
    try:
        with open("/sys/devices/system/cpu/cpu0/cache/index2/size") as f:
            size = f.read().strip()
        props["l2_mib_per_core"] = (float(size[:-1]) / 1024 if size.endswith("K")
                                    else float(size.rstrip("M")))
    except (OSError, ValueError):
        pass
    flags = set(props["flags"])
    props["vector_bits"] = 512 if "avx512f" in flags else 256 if "avx2" in flags else 128
    props["isa"] = [f for f in ("avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "avx2", "fma")
                    if f in flags]
    props.pop("flags")
    return props


def cpu_target_name(props: dict[str, Any]) -> str:
    model = re.sub(r"\((R|TM|r|tm)\)|\bCPU\b|@.*$", " ", props["name"])
    return f"cpu-{slug(model)}-{props['cores']}c"


def detect_cpu(props: dict[str, Any], probe: Callable[[dict], dict] | None = None) -> Detection:
    device = f"{props['name']} ({props['cores']} cores, {', '.join(props['isa']) or 'no AVX'})"
    return _cached_or_built(cpu_target_name(props), device, props, probe or probe_cpu,
                            build_cpu_target)


def probe_cpu(props: dict[str, Any]) -> dict[str, Any]:
    """float32 and bfloat16 GEMM rates on all threads and copy bandwidth, in about a second."""
    import torch
    out: dict[str, Any] = {"notes": []}

    def rate(dtype, n: int) -> float:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b
        times = []
        for _ in range(3):
            t = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t)
        return 2 * n ** 3 / min(times) / 1e12

    for dtype, key in ((torch.float32, "gemm_f32_tflops"), (torch.bfloat16, "gemm_bf16_tflops")):
        try:
            out[key] = rate(dtype, 1024)
        except Exception as e:        # noqa: BLE001
            out["notes"].append(f"{key} probe failed ({str(e).splitlines()[0][:80]})")
    try:
        x = torch.ones(32 * 2**20)           # 128 MiB of float32
        y = torch.empty_like(x)
        y.copy_(x)
        best = min(_seconds(lambda: y.copy_(x)) for _ in range(3))
        out["copy_gbs"] = 2 * x.numel() * 4 / best / 1e9
    except Exception as e:            # noqa: BLE001
        out["notes"].append(f"bandwidth probe failed ({str(e).splitlines()[0][:80]})")
    return out


def _seconds(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def build_cpu_target(name: str, props: dict[str, Any], measured: dict[str, Any]) -> Target:
    template = _packaged(CPU_TEMPLATE)
    raw = json.loads(json.dumps(template.data))
    raw.pop("match", None)
    when = f"measured by sparsecc's probe on this CPU ({props['name']}), {_today()}"
    sources = {"model": f"the {template.name} target's parameters (not fitted to this CPU: run "
                        f"`sparsecc calibrate --target auto`)",
               "tile": f"the {template.name} target's register tile",
               "sparse_tflops": "no N:M sparse hardware on x86 CPUs (FACTS.md)"}
    eff = raw["model"]["dense_efficiency"]
    f32 = measured.get("gemm_f32_tflops")
    if f32:
        peak32 = round(f32 / eff, 4)
        sources["peak_tflops"] = f"{when}: a 1024^3 GEMM on all threads / dense_efficiency {eff}"
    else:
        peak32 = template.peak("f32")
        sources["peak_tflops"] = f"the {template.name} target's peaks (the GEMM probe failed)"
    bf16 = measured.get("gemm_bf16_tflops")
    peak16 = round(max(bf16 / eff, peak32), 4) if bf16 else peak32
    raw["peak_tflops"] = {"f16": peak32, "bf16": peak16, "f32": peak32, "int8": None}
    sources["peak_tflops.f16"] = "f16 runs at the float32 rate after conversion on CPUs (costed so)"
    raw["sparse_tflops"] = {}
    if "copy_gbs" in measured:
        raw["memory_gbs"] = round(measured["copy_gbs"], 1)
        sources["memory_gbs"] = f"{when}: a 128 MiB copy, bytes read + written"
    else:
        sources["memory_gbs"] = f"the {template.name} target's bandwidth (the probe failed)"
    raw["compute_units"] = int(props["cores"])
    sources["compute_units"] = "usable cores (sched_getaffinity)"
    raw["vector_bits"] = int(props["vector_bits"])
    sources["vector_bits"] = "the widest vector ISA in /proc/cpuinfo's flags"
    if props.get("l2_mib_per_core"):
        raw["l2_mib"] = round(props["l2_mib_per_core"] * props["cores"], 2)
        sources["l2_mib"] = "sysfs cache/index2 size x usable cores"
    else:
        raw["l2_mib"] = None
        sources["l2_mib"] = "not readable from sysfs"
    sources["launch_us"] = f"the {template.name} target's (approximate per-op dispatch cost)"
    sources["backends"] = template.source_of("backends") or "the cpu-x86 target's"
    raw["description"] = (f"{props['name']}, {props['cores']} cores, {props['vector_bits']}-bit "
                          f"vectors (built by --target auto; uncalibrated until `sparsecc "
                          f"calibrate --target auto`)")
    raw["detected"] = {"name": props["name"], "cores": props["cores"], "isa": props["isa"],
                       "date": _today(),
                       "probe": {k: round(v, 4) for k, v in measured.items()
                                 if isinstance(v, (int, float))}}
    sources["detected"] = "read from this machine by sparsecc"
    raw["sources"] = sources
    return target_from_dict(name, raw, f"the target built for {props['name']}")


# -- the cache of built targets -----------------------------------------------------------------
def _path(name: str):
    return cache_dir() / "targets" / f"{name}.json"


def _load_cached(name: str) -> Target | None:
    path = _path(name)
    if read_json(path, "cached target") is None:      # absent, or unreadable (warned)
        return None
    try:
        return load_target_file(path)
    except ConfigError as e:
        warn(f"ignoring cached target {path}: {e}; probing this device again")
        return None


def _save(target: Target) -> None:
    try:
        write_json_atomic(target.data, _path(target.name))
    except OSError as e:
        warn(f"can't write the built target to {_path(target.name)} ({e.strerror}); "
             f"it will be probed again next time")
