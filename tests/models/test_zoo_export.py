"""Every tiny zoo model exports with torch.export, dynamic axes and a small, known op vocabulary.

The exported program (before `run_decompositions`, so Linear/SDPA/norms stay single nodes) must use
only the ops the compiler's capture expects, hold the expected number of layer ops, and give the
eager model's outputs at other batch and sequence sizes than the ones it was traced with.
"""

from __future__ import annotations

import collections

import pytest
import torch

from sparsecc.models import ZooModel, get, names

LAYER_AND_ELEMENTWISE_OPS = {
    "aten.linear.default", "aten.conv1d.default", "aten.conv2d.default",
    "aten.batch_norm.default", "aten.layer_norm.default", "aten.rms_norm.default",
    "aten.embedding.default", "aten.scaled_dot_product_attention.default",
    "aten.relu.default", "aten.gelu.default", "aten.silu.default", "aten.sigmoid.default",
    "aten.tanh.default", "aten.softmax.int", "aten.add.Tensor", "aten.mul.Tensor",
    "aten.sub.Tensor", "aten.div.Tensor", "aten.neg.default", "aten.pow.Tensor_Scalar",
    "aten.rsqrt.default", "aten.max_pool2d.default", "aten.avg_pool2d.default",
    "aten.adaptive_avg_pool2d.default", "aten.mean.dim", "aten.sum.dim_IntList",
}
SHAPE_OPS = {
    "aten.reshape.default", "aten.view.default", "aten.permute.default", "aten.transpose.int",
    "aten.expand.default", "aten.slice.Tensor", "aten.cat.default", "aten.split.Tensor",
    "aten.unsqueeze.default", "aten.squeeze.dim", "aten.flatten.using_ints",
}
# Outside the list in the brief: reading a symbolic size, and minilm's int64 -> float32 mask cast
# (`Tensor.to(dtype)` exports as to.dtype plus a metadata assertion).
BOOKKEEPING_OPS = {"aten.sym_size.int", "aten.to.dtype", "aten._assert_tensor_metadata.default"}
ALLOWED_OPS = LAYER_AND_ELEMENTWISE_OPS | SHAPE_OPS | BOOKKEEPING_OPS

EXPECTED_LAYER_OP_COUNTS = {
    "tiny-llama": {"aten.linear.default": 15, "aten.scaled_dot_product_attention.default": 2,
                   "aten.rms_norm.default": 5, "aten.embedding.default": 1},
    "llama3-8b-layer": {"aten.linear.default": 7, "aten.scaled_dot_product_attention.default": 1,
                        "aten.rms_norm.default": 2},
    "minilm": {"aten.linear.default": 36, "aten.scaled_dot_product_attention.default": 6,
               "aten.layer_norm.default": 13, "aten.gelu.default": 6},
    "mnist-cnn": {"aten.conv2d.default": 2, "aten.linear.default": 2},
    "resnet50": {"aten.conv2d.default": 53, "aten.batch_norm.default": 53,
                 "aten.linear.default": 1},
    "tiny-resnet": {"aten.conv2d.default": 17, "aten.batch_norm.default": 17,
                    "aten.linear.default": 1},
    "tinyllama-1.1b-shape": {"aten.linear.default": 15,
                             "aten.scaled_dot_product_attention.default": 2,
                             "aten.embedding.default": 1},
}
# built by their own library (transformers): its mask and position code brings ops of its own
# (cumsum, arange, ...), which the capture tests cover; the vocabulary check is for our models
LIBRARY_BUILT = {"tinyllama-1.1b-shape"}


def dynamic_shapes(zoo_model: ZooModel) -> dict[str, dict[int, object] | None]:
    """`Dim.DYNAMIC` on every dynamic axis (named Dims would add minilm's max=512 position limit)."""
    return {
        name: {axis: torch.export.Dim.DYNAMIC for axis in zoo_model.dynamic_dims.get(name, {})}
        or None
        for name in zoo_model.input_names
    }


def export_tiny(name: str) -> tuple[ZooModel, torch.export.ExportedProgram]:
    """Export the tiny config traced at batch >= 2: a size-1 example axis would be specialized."""
    batch = max(2, get(name, tiny=True).workload["batch"])
    zoo_model = get(name, tiny=True, batch=batch)
    return zoo_model, torch.export.export(
        zoo_model.model, zoo_model.example_inputs, dynamic_shapes=dynamic_shapes(zoo_model)
    )


def op_counts(program: torch.export.ExportedProgram) -> collections.Counter:
    return collections.Counter(
        str(node.target) for node in program.graph.nodes if node.op == "call_function"
    )


def test_every_model_has_expected_layer_op_counts():
    assert sorted(EXPECTED_LAYER_OP_COUNTS) == names()


EXPORTED_IN_FAST_RUNS = sorted(set(EXPECTED_LAYER_OP_COUNTS) - {"resnet50"})  # tiny-resnet: same code


@pytest.mark.parametrize(
    "name", [*EXPORTED_IN_FAST_RUNS, pytest.param("resnet50", marks=pytest.mark.slow)]
)
def test_export_uses_known_ops_and_runs_at_other_sizes(name, require_weights):
    require_weights(name)
    zoo_model, program = export_tiny(name)
    counts = op_counts(program)
    if name not in LIBRARY_BUILT:
        assert set(counts) <= ALLOWED_OPS, sorted(set(counts) - ALLOWED_OPS)
    for op, expected in EXPECTED_LAYER_OP_COUNTS[name].items():
        assert counts[op] == expected, op
    workload = zoo_model.workload
    seq = workload["seq"] + 3 if workload["seq"] is not None else None
    resized = get(name, tiny=True, batch=workload["batch"] + 1, seq=seq)
    with torch.no_grad():
        exported_output = program.module()(*resized.example_inputs)
        eager_output = resized.model(*resized.example_inputs)
    assert exported_output.shape == eager_output.shape
    torch.testing.assert_close(exported_output, eager_output, atol=1e-5, rtol=1e-5)
