"""Contract tests for every registered zoo model (tiny configs) and for the registry itself."""

from __future__ import annotations

import functools
import os
import subprocess
import sys

import pytest
import torch

from sparsecc.models import UnknownModelError, ZooModel, get, names, register
from sparsecc.models import registry

EXPECTED_OUTPUT_SHAPE = {
    "tiny-llama": lambda workload: (workload["batch"], workload["seq"], 256),
    "llama3-8b-layer": lambda workload: (workload["batch"], workload["seq"], 256),  # tiny hidden
    "minilm": lambda workload: (workload["batch"], 384),
    "mnist-cnn": lambda workload: (workload["batch"], 10),
    "resnet50": lambda workload: (workload["batch"], 1000),
    "tiny-resnet": lambda workload: (workload["batch"], 10),
    "tinyllama-1.1b-shape": lambda workload: (workload["batch"], workload["seq"], 256),
}
SEQUENCE_MODELS = {"tiny-llama", "llama3-8b-layer", "minilm", "tinyllama-1.1b-shape"}


@functools.cache
def tiny_model(name: str) -> ZooModel:
    """One shared tiny build per name for the read-only tests."""
    return get(name, tiny=True)


def run(zoo_model: ZooModel, inputs: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
    with torch.no_grad():
        return zoo_model.model(*(zoo_model.example_inputs if inputs is None else inputs))


def test_every_registered_model_has_an_expected_output_shape():
    assert names() == sorted(EXPECTED_OUTPUT_SHAPE)


@pytest.mark.parametrize("name", sorted(EXPECTED_OUTPUT_SHAPE))
def test_forward_gives_expected_shape_and_finite_values(name, require_weights):
    require_weights(name)
    zoo_model = tiny_model(name)
    output = run(zoo_model)
    assert tuple(output.shape) == EXPECTED_OUTPUT_SHAPE[name](zoo_model.workload)
    assert output.dtype == torch.float32
    assert torch.isfinite(output).all()
    assert output.abs().max() > 0


@pytest.mark.parametrize("name", sorted(EXPECTED_OUTPUT_SHAPE))
def test_model_is_eval_float32_on_cpu(name, require_weights):
    require_weights(name)
    zoo_model = tiny_model(name)
    assert zoo_model.name == name and zoo_model.description
    assert not any(module.training for module in zoo_model.model.modules())
    for tensor in (*zoo_model.model.parameters(), *zoo_model.model.buffers()):
        assert tensor.device.type == "cpu"
        assert tensor.dtype in (torch.float32, torch.int64)
        if tensor.is_floating_point():
            assert torch.isfinite(tensor).all()


@pytest.mark.parametrize("name", sorted(EXPECTED_OUTPUT_SHAPE))
def test_same_seed_gives_identical_model_and_inputs(name, require_weights):
    require_weights(name)
    first, second = get(name, tiny=True, seed=3), get(name, tiny=True, seed=3)
    for a, b in zip(first.example_inputs, second.example_inputs):
        assert torch.equal(a, b)
    first_state, second_state = first.model.state_dict(), second.model.state_dict()
    assert first_state.keys() == second_state.keys()
    assert all(torch.equal(first_state[key], second_state[key]) for key in first_state)
    assert torch.equal(run(first), run(second))


@pytest.mark.parametrize("name", sorted(EXPECTED_OUTPUT_SHAPE))
def test_other_seed_changes_inputs_and_global_rng_is_untouched(name, require_weights):
    require_weights(name)
    state = torch.get_rng_state()
    other = get(name, tiny=True, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    base = tiny_model(name)
    assert any(not torch.equal(a, b) for a, b in zip(base.example_inputs, other.example_inputs))


@pytest.mark.parametrize("name", sorted(EXPECTED_OUTPUT_SHAPE))
def test_calibration_batches_match_example_structure(name, require_weights):
    require_weights(name)
    zoo_model = tiny_model(name)
    assert len(zoo_model.calibration) >= 2
    for batch in zoo_model.calibration:
        assert len(batch) == len(zoo_model.example_inputs)
        for tensor, example in zip(batch, zoo_model.example_inputs):
            assert tensor.dtype == example.dtype
            assert tensor.shape == example.shape
        assert torch.isfinite(run(zoo_model, batch)).all()
    assert not torch.equal(zoo_model.calibration[0][0], zoo_model.calibration[1][0])


@pytest.mark.parametrize("name", sorted(EXPECTED_OUTPUT_SHAPE))
def test_inputs_names_dynamic_dims_and_workload_agree(name, require_weights):
    require_weights(name)
    zoo_model = tiny_model(name)
    assert len(zoo_model.input_names) == len(zoo_model.example_inputs)
    assert set(zoo_model.dynamic_dims) <= set(zoo_model.input_names)
    assert zoo_model.workload["kind"] in ("prefill", "decode", "vision")
    inputs = zoo_model.inputs_by_name
    for input_name, axes in zoo_model.dynamic_dims.items():
        for axis, dim_name in axes.items():
            assert dim_name in ("batch", "seq")
            assert inputs[input_name].shape[axis] == zoo_model.workload[dim_name]
    assert (zoo_model.workload["seq"] is not None) == (name in SEQUENCE_MODELS)


@pytest.mark.parametrize("name", sorted(EXPECTED_OUTPUT_SHAPE))
def test_batch_and_seq_overrides_change_input_shapes(name, require_weights):
    require_weights(name)
    base = tiny_model(name)
    seq = base.workload["seq"] + 5 if name in SEQUENCE_MODELS else None
    resized = get(name, tiny=True, batch=base.workload["batch"] + 1, seq=seq)
    assert resized.workload["batch"] == base.workload["batch"] + 1
    assert resized.workload["seq"] == seq
    inputs = resized.inputs_by_name
    for input_name, axes in resized.dynamic_dims.items():
        for axis, dim_name in axes.items():
            assert inputs[input_name].shape[axis] == resized.workload[dim_name]
    for batch in resized.calibration:
        assert [t.shape for t in batch] == [t.shape for t in resized.example_inputs]
    output = run(resized)
    assert tuple(output.shape) == EXPECTED_OUTPUT_SHAPE[name](resized.workload)


@pytest.mark.parametrize("name", sorted(set(EXPECTED_OUTPUT_SHAPE) - SEQUENCE_MODELS))
def test_seq_override_on_a_vision_model_is_refused(name, require_weights):
    require_weights(name)
    with pytest.raises(ValueError, match="no sequence axis"):
        get(name, tiny=True, seq=8)


def test_unknown_name_raises_with_known_names():
    with pytest.raises(UnknownModelError) as caught:
        get("nope")
    assert isinstance(caught.value, KeyError) and isinstance(caught.value, LookupError)
    assert str(caught.value) == f"unknown model 'nope'; known: {', '.join(names())}"
    assert caught.value.name == "nope" and caught.value.known_names == names()


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_non_positive_or_non_int_batch_is_refused(bad):
    with pytest.raises(ValueError, match="batch must be a positive int"):
        get("tiny-llama", batch=bad)


def test_register_adds_a_name_and_refuses_duplicates(monkeypatch):
    monkeypatch.setattr(registry, "_BUILDERS", dict(registry._BUILDERS))

    @register("identity-test")
    def build(*, tiny, batch, seq, seed):
        inputs = (torch.zeros(batch or 1, 3),)
        return ZooModel("identity-test", "identity", torch.nn.Identity(), inputs, ("x",),
                        {"x": {0: "batch"}}, (inputs,), {"kind": "vision", "batch": 1, "seq": None})

    assert "identity-test" in names() and names() == sorted(names())
    assert get("identity-test", batch=4).example_inputs[0].shape == (4, 3)
    with pytest.raises(ValueError, match="already registered"):
        register("identity-test")(build)


def test_zoo_model_validates_its_fields():
    inputs = (torch.zeros(2, 3),)
    with pytest.raises(ValueError, match="input names"):
        ZooModel("m", "d", torch.nn.Identity(), inputs, ("x", "y"), {}, (),
                 {"kind": "vision", "batch": 2, "seq": None})
    with pytest.raises(ValueError, match="outside rank"):
        ZooModel("m", "d", torch.nn.Identity(), inputs, ("x",), {"x": {2: "batch"}}, (),
                 {"kind": "vision", "batch": 2, "seq": None})
    with pytest.raises(ValueError, match="calibration batch 0"):
        ZooModel("m", "d", torch.nn.Identity(), inputs, ("x",), {}, ((inputs[0].long(),),),
                 {"kind": "vision", "batch": 2, "seq": None})
    with pytest.raises(ValueError, match="workload kind"):
        ZooModel("m", "d", torch.nn.Identity(), inputs, ("x",), {}, (),
                 {"kind": "training", "batch": 2, "seq": None})


def test_importing_the_package_does_not_import_transformers_or_mlxtend():
    code = (
        "import sys, sparsecc.models as zoo; "
        "assert zoo.names(); "
        "assert 'transformers' not in sys.modules and 'mlxtend' not in sys.modules"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
