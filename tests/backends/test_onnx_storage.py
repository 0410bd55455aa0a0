"""ONNX storage options: sparse initializers (export level) and external data."""
import os

import numpy as np
import onnx
import onnxruntime as ort

import sparsecc
from sparsecc import models
from sparsecc.backends.onnx import export_onnx
from sparsecc.ir import run


def _compile(pattern="channel0.5", backend="onnx", **kw):
    z = models.get("tiny-llama", tiny=True)
    cfg = sparsecc.CompileConfig(target="h100", backend=backend,
                                 overrides={r".*mlp.*": pattern}, **kw)
    return z, sparsecc.compile(z.model, z.example_inputs, cfg, dynamic_dims=z.dynamic_dims)


def test_sparse_initializers_are_smaller_and_compute_the_same(tmp_path):
    # block-masked weights come from the torch backend's plan; the ONNX backend never plans
    # them (ONNX Runtime runs them dense), but export_onnx can still store them compactly
    z, result = _compile("block16x16@0.25", backend="torch")
    dense_store = export_onnx(result.ir)
    model = export_onnx(result.ir, sparse_initializers=True)
    # The structural check passes; full_check=True does not yet: ONNX shape inference gives
    # the Transpose that reads a sparse initializer no input shape (an open limitation).
    onnx.checker.check_model(model)
    names = {s.values.name for s in model.graph.sparse_initializer}
    masked = {n.inputs[1] for n in result.ir.nodes if n.attrs.get("sparsity")}
    assert names and names <= masked   # the block-masked weights that fit the block grid
    # 2:4 keeps half the weights: COO with int64 indices would be bigger, so none are sparse
    _, nm = _compile("2:4", backend="torch")
    assert len(export_onnx(nm.ir, sparse_initializers=True).graph.sparse_initializer) == 0
    assert model.ByteSize() < dense_store.ByteSize()
    x = z.calibration[0]
    feeds = {n: t.numpy() for n, t in zip(result.ir.inputs, x)}
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    out = sess.run(None, feeds)[0]
    ref = run(result.ir, x)[0].numpy()
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()


def test_external_data_round_trips(tmp_path):
    z, result = _compile()
    result.artifact.external_data = True
    out = result.save(tmp_path / "ext")
    assert sorted(os.listdir(out)) == [".sparsecc-output", "config.json", "model.onnx",
                                      "model.onnx.data",
                                      "plan.json", "report.html", "report.json"]
    assert os.path.getsize(os.path.join(out, "model.onnx")) < 100_000
    sess = ort.InferenceSession(os.path.join(out, "model.onnx"),
                                providers=["CPUExecutionProvider"])
    x = z.calibration[0]
    got = sess.run(None, {n: t.numpy() for n, t in zip(result.ir.inputs, x)})[0]
    ref = run(result.ir, x)[0].numpy()
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()


def test_session_device_choice():
    _, result = _compile()
    assert result.onnx_session("cpu").get_providers() == ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        import pytest
        with pytest.raises(sparsecc.ConfigError, match="CUDA execution provider"):
            result.onnx_session("cuda")
