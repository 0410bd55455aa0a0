import numpy as np
import torch

import sparsecc
from sparsecc import models
from sparsecc.ir import run


def test_compile_leaves_the_model_untouched_and_runs_in_ort():
    z = models.get("tiny-resnet", tiny=True)
    model = z.model.train()  # a model in training mode is compiled from an eval copy
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = sparsecc.compile(model, z.example_inputs, sparsecc.CompileConfig(target="cpu"),
                              dynamic_dims=z.dynamic_dims, name="tiny-resnet")
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    x = torch.randn(3, *z.example_inputs[0].shape[1:])
    (ort_out,) = result.onnx_session().run(None, {result.ir.inputs[0]: x.numpy()})
    ref = run(result.ir, [x])[0]
    np.testing.assert_allclose(ort_out, ref.numpy(), rtol=1e-4, atol=1e-4 * ref.abs().max().item())
    assert result.report["target"] == "cpu-x86"
    assert len(result.plan.decisions) == len(result.report["layers"]) > 0


def test_torch_backend_is_an_nn_module():
    z = models.get("mnist-cnn", tiny=True)
    result = sparsecc.compile(z.model, z.example_inputs,
                              sparsecc.CompileConfig(target="h100", backend="torch", dtype="f32"),
                              dynamic_dims=z.dynamic_dims)
    module = result.module
    assert isinstance(module, torch.nn.Module)
    x = z.calibration[0][0]
    with torch.no_grad():
        assert torch.allclose(module(x), z.model(x), rtol=1e-5, atol=1e-6)
