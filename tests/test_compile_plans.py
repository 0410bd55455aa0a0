"""Plans through the whole pipeline: patterns land in the IR, the artifact (the torch module,
and the ONNX model for the plans ONNX Runtime runs) computes what the IR computes, channel
plans equal the zeroed reference, and plan files are checked."""
import json

import numpy as np
import pytest
import torch

import sparsecc
from sparsecc import models
from sparsecc.capture import capture
from sparsecc.cli import main
from sparsecc.errors import ConfigError
from sparsecc.ir import run, verify
from sparsecc.passes.group_channels import group_channels
from sparsecc.passes.shrink_channels import zero_channels

# Each plan kind forced on every layer it fits (overrides: first matching regex wins); the
# selector's own choices are tested in tests/passes/test_select_patterns.py.
MIXED = {r".*(mlp|intermediate|conv1|fc1).*": "channel0.5", ".*": "2:4"}
PLANS = {"2:4": {".*": "2:4"}, "block": {".*": "block16x16@0.25"},
         "channel": {".*": "channel0.5"}, "mixed": MIXED,
         "composite": {".*": "channel0.5+2:4"}}


def compile_zoo(name, overrides, **kw):
    z = models.get(name, tiny=True)
    config = sparsecc.CompileConfig(target="h100", overrides=overrides, **kw)
    result = sparsecc.compile(z.model, z.example_inputs, config, dynamic_dims=z.dynamic_dims,
                              name=name, calibration=z.calibration)
    return z, result


def artifact_matches_ir(result, inputs):
    if result.config.backend == "torch":
        with torch.no_grad():
            outs = result.module(*inputs)
        outs = [o.numpy() for o in (outs if isinstance(outs, tuple) else (outs,))]
    else:
        sess = result.onnx_session()
        outs = sess.run(None, {n: t.numpy() for n, t in zip(result.ir.inputs, inputs)})
    for o, r in zip(outs, run(result.ir, inputs)):
        r = r.numpy()
        assert np.abs(o - r).max() <= 1e-4 * max(np.abs(r).max(), 1e-12)


def ort_matches_ir(result, inputs):
    sess = result.onnx_session()
    feeds = {n: t.numpy() for n, t in zip(result.ir.inputs, inputs)}
    outs = sess.run(None, feeds)
    for o, r in zip(outs, run(result.ir, inputs)):
        r = r.numpy()
        assert np.abs(o - r).max() <= 1e-4 * max(np.abs(r).max(), 1e-12)


@pytest.mark.parametrize("name", models.names())
@pytest.mark.parametrize("plan, backend", [(p, "torch") for p in sorted(PLANS)] +
                         [("channel", "onnx")])
def test_every_plan_kind_verifies_and_exports(name, plan, backend, require_weights):
    require_weights(name)
    z, result = compile_zoo(name, PLANS[plan], backend=backend, dtype="f32")
    verify(result.ir)
    artifact_matches_ir(result, z.calibration[0])
    chosen = [d.chosen for d in result.plan.decisions]
    # something is sparse unless no layer can take the plan on this backend, and each says
    # why (e.g. 2:4 or block on a conv net: the torch backend's kernels run linear layers)
    assert any(c != "dense" for c in chosen) or all(
        "can't" in d.reason for d in result.plan.decisions), f"{name}: nothing for {plan}"
    for d in result.plan.decisions:
        assert d.reason, d.layer.name


def _nm_ok(w, n, m):
    groups = (w != 0).reshape(w.shape[0], -1, m) if w.dim() == 2 else \
        (w != 0).permute(0, 2, 3, 1).reshape(w.shape[0], -1, m)
    return bool((groups.sum(-1) <= n).all())


def test_nm_layers_obey_the_pattern_and_are_annotated():
    z, result = compile_zoo("tiny-llama", PLANS["2:4"])
    g = result.ir
    sparse = [n for n in g.nodes if n.attrs.get("sparsity")]
    assert len(sparse) == len([d for d in result.plan.decisions if d.chosen == "2:4"]) > 0
    for node in sparse:
        assert node.attrs["sparsity"] == "2:4" and _nm_ok(g.params[node.inputs[1]], 2, 4)
    calls = result.module.op_calls()       # the torch artifact runs each on our 2:4 operator
    assert sorted(calls) == sorted(d.layer.name for d in result.plan.decisions
                                   if d.chosen == "2:4")
    assert set(calls.values()) == {"sparsecc::linear_2to4"}


@pytest.mark.parametrize("name", ["tiny-llama", "mnist-cnn", "tiny-resnet", "minilm"])
def test_channel_plan_equals_the_zeroed_reference(name, require_weights):
    require_weights(name)
    z, result = compile_zoo(name, PLANS["channel"], reconstruct=False)   # the plain removal
    reference = capture(z.model, z.example_inputs, dynamic_dims=z.dynamic_dims)
    groups = group_channels(reference)
    removed = result.ir.analyses["removed_channels"]
    assert removed
    index = {grp.root: i for i, grp in enumerate(groups)}
    zeroed = zero_channels(reference, groups, {index[root]: r for root, r in removed.items()})
    for batch in z.calibration[:2]:
        out, ref = run(result.ir, batch)[0], run(zeroed, batch)[0]
        assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()
    assert sum(t.numel() for t in result.ir.params.values()) < \
        sum(t.numel() for t in reference.params.values())


def test_channel_error_proxy_equals_the_measured_consumer_error():
    z, result = compile_zoo("tiny-llama", PLANS["channel"])
    d = result.plan["layers.0.mlp.gate_proj"]
    cand = next(c for c in d.candidates if c.pattern == "channel0.5")
    reference = capture(z.model, z.example_inputs, dynamic_dims=z.dynamic_dims)
    groups = group_channels(reference)
    removed = result.ir.analyses["removed_channels"]
    index = {grp.root: i for i, grp in enumerate(groups)}
    zeroed = zero_channels(reference, groups, {index[root]: r for root, r in removed.items()})
    down = next(n for n in reference.nodes if n.op == "linear"
                and n.inputs[1] == "layers.0.mlp.down_proj.weight")

    def down_outputs(graph):
        seen = []
        captured_input = []

        def observe(node, inputs, result):
            if node.outputs == down.outputs:
                captured_input.append(inputs[0])
        for batch in z.calibration:
            run_with = sparsecc.ir.Interpreter(graph)
            run_with.run(batch, observe)
        w = reference.params["layers.0.mlp.down_proj.weight"]
        wz = zeroed.params["layers.0.mlp.down_proj.weight"]
        return [x @ w.T for x in captured_input], [x @ wz.T for x in captured_input]

    full, masked = down_outputs(reference)  # same inputs; only the consumer columns differ
    num = sum(((f - m) ** 2).sum().item() for f, m in zip(full, masked))
    den = sum((f ** 2).sum().item() for f in full)
    assert cand.error == pytest.approx(num / den, rel=0.01)


def test_plan_file_takes_effect_and_bad_plan_files_are_named(tmp_path, capsys):
    good = tmp_path / "plan.json"
    good.write_text(json.dumps({"layers": {"layers.0.mlp.up_proj": "2:4",
                                           "layers.1.mlp.gate_proj": "channel0.5"}}))
    out = tmp_path / "out"
    assert main(["compile", "tiny-llama", "--target", "h100", "--out", str(out),
                 "--plan", str(good)]) == 0
    chosen = json.loads((out / "plan.json").read_text())["layers"]
    assert chosen["layers.0.mlp.up_proj"] == "2:4"
    assert chosen["layers.1.mlp.gate_proj"] == "channel0.5"
    assert chosen["layers.0.mlp.gate_proj"] == "dense"
    capsys.readouterr()
    cases = {
        "missing.json": (None, "No such file"),
        "bad.json": ("{not json", "is not valid JSON"),
        "shape.json": ('["2:4"]', 'expected an object with a "layers" object'),
        "layer.json": ('{"layers": {"layers.9.mlp.up_proj": "2:4"}}',
                       "layer 'layers.9.mlp.up_proj' does not exist"),
        "pattern.json": ('{"layers": {"layers.0.mlp.up_proj": "5:4"}}', "0 < n < m"),
        "conflict.json": ('{"layers": {"layers.0.mlp.up_proj": "channel0.5", '
                          '"layers.0.mlp.gate_proj": "channel0.25"}}', "share channels"),
    }
    for fname, (text, message) in cases.items():
        path = tmp_path / fname
        if text is not None:
            path.write_text(text)
        bad_out = tmp_path / f"out-{fname}"
        code = main(["compile", "tiny-llama", "--target", "h100", "--out", str(bad_out),
                     "--plan", str(path)])
        err = capsys.readouterr().err
        assert code == 2 and message in err, (fname, err)
        assert fname == "conflict.json" or path.name in err, err
        assert not bad_out.exists()


def test_unprunable_channel_request_stays_dense_with_the_reason():
    z, result = compile_zoo("tiny-llama", {r"layers\.0\.mlp\.down_proj": "channel0.5"})
    d = result.plan["layers.0.mlp.down_proj"]
    assert d.chosen == "dense" and "normalizes" in d.reason
