"""Honest artifacts: what the written artifact runs is what the report says.

Every zoo model is compiled for every target and every backend that target offers, with plans
that ask for each pattern family, and the artifact itself (the ONNX graph's initializers, the
torch module's operator calls, the TVM module's kernels) is read back: every layer the report
calls N:M or block-sparse runs a kernel of that pattern, no layer runs a sparse kernel the
report does not name, channel-pruned layers have the shrunk weight, and the report's
`artifact` section is what the artifact says. The always-on subset covers two models, a GPU
and the CPU target, torch and onnx; the rest is `slow`.
"""
import pytest

import sparsecc
from sparsecc import models
from sparsecc.backend import backend_names
from sparsecc.patterns import parse_pattern
from sparsecc.targets import get_target, target_names

PLANS = {
    "nm": {r".*(mlp|intermediate|conv1|fc1).*": "channel0.5+2:4", ".*": "2:4"},
    "block": {r".*(mlp|intermediate|fc1).*": "channel0.5", ".*": "block16x16@0.5"},
}
FAST = {("tiny-llama", "h200"), ("tiny-llama", "cpu-x86"), ("mnist-cnn", "h200"),
        ("mnist-cnn", "cpu-x86")}


def _cases():
    for name in models.names():
        for target in target_names():
            for backend in backend_names():
                if backend not in get_target(target).backends:
                    continue
                for plan in PLANS:
                    fast = (name, target) in FAST and backend != "tvm"
                    yield pytest.param(name, target, backend, plan,
                                       marks=() if fast else pytest.mark.slow,
                                       id=f"{name}-{target}-{backend}-{plan}")


def _families(pattern: str) -> set[str]:
    p = parse_pattern(pattern)
    if p.kind == "composite":
        return {"nm"}
    return {p.kind} & {"nm", "block"}


@pytest.mark.parametrize("name, target, backend, plan", list(_cases()))
def test_the_artifact_runs_what_the_report_says(name, target, backend, plan, require_weights):
    require_weights(name)
    if backend == "tvm":
        pytest.importorskip("tvm")
    z = models.get(name, tiny=True)
    cfg = sparsecc.CompileConfig(target=target, backend=backend, dtype="f32",
                                 reconstruct=False, overrides=PLANS[plan])
    r = sparsecc.compile(z.model, z.example_inputs, cfg, dynamic_dims=z.dynamic_dims, name=name)
    kernels = r.artifact.kernels()
    assert set(kernels) == {d.layer.name for d in r.plan.decisions}
    for d in r.plan.decisions:
        k = kernels[d.layer.name]
        want = _families(d.chosen)
        runs = {k["family"]} & {"nm", "block"}
        assert runs == want, (f"{d.layer.name}: report says {d.chosen}, the artifact runs "
                              f"{k['family']} ({k['kernel']})")
        final = tuple(r.ir.values[d.layer.weight].shape)
        assert k["weight_shape"] is None or tuple(k["weight_shape"]) == final
        if parse_pattern(d.chosen).kind in ("channel", "composite"):
            assert final[0] < d.layer.shape[0] or final[1] < d.layer.shape[1], d.layer.name
        assert d.reason, d.layer.name                 # every decision says why
    reported = r.report["artifact"]["layers"]
    assert {n: v["family"] for n, v in reported.items()} == \
        {n: v["family"] for n, v in kernels.items()}
