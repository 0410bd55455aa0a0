"""Load the model a command names: a zoo name, `path/file.py:factory`, or `path/model.onnx`.

A factory is called with no arguments and returns either an object with `model` and
`example_inputs` (and optionally `dynamic_dims`, `input_names`, `workload`) like the zoo's
`ZooModel`, or a tuple `(model, example_inputs)` or `(model, example_inputs, dynamic_dims)`.
An ONNX file is imported into an IR graph (`LoadedModel.model` is then a `Graph`, which
`sparsecc.compile` takes as is); its example inputs are random tensors of the input shapes with
each symbolic dim set to a small size (batch 2, seq 16, others 4).

A zoo model whose optional weights package is absent (`sparsecc.models.weights_missing(name)`)
raises `sparsecc.models.WeightsUnavailable`, a `ModelNotFoundError` naming the pip package, before
anything is built: the CLI prints that one line and exits 2.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
from collections.abc import Mapping
from typing import Any

import torch

from .errors import ConfigError, ModelNotFoundError
from .ir import Graph


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    name: str
    model: torch.nn.Module | Graph
    example_inputs: tuple[Any, ...] | Mapping[str, Any]
    dynamic_dims: Mapping[str, Mapping[int, str]]
    workload: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    calibration: tuple = ()


def _from_zoo(name: str, batch: int | None, seq: int | None, tiny: bool) -> LoadedModel:
    from sparsecc import models
    try:
        z = models.get(name, tiny=tiny, batch=batch, seq=seq)   # WeightsUnavailable: no build
    except models.UnknownModelError as e:
        raise ModelNotFoundError(str(e).strip("'\"")) from None
    return LoadedModel(name, z.model, tuple(z.example_inputs), dict(z.dynamic_dims),
                       dict(z.workload), tuple(z.calibration))


def _from_file(spec: str) -> LoadedModel:
    path, _, factory = spec.rpartition(":")
    if not os.path.isfile(path):
        raise ModelNotFoundError(f"model file {path} does not exist")
    if not factory.isidentifier():
        raise ModelNotFoundError(f"{spec}: {factory!r} is not a function name")
    mod_name = f"_sparsecc_user_{abs(hash(os.path.abspath(path)))}"
    module_spec = importlib.util.spec_from_file_location(mod_name, path)
    if module_spec is None or module_spec.loader is None:
        raise ModelNotFoundError(f"model file {path} can't be imported as Python")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[mod_name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:
        raise ModelNotFoundError(f"model file {path} failed to import: "
                                 f"{type(e).__name__}: {e}") from e
    fn = getattr(module, factory, None)
    if fn is None or not callable(fn):
        raise ModelNotFoundError(f"model file {path} does not define a function {factory!r}")
    try:
        made = fn()
    except Exception as e:
        raise ModelNotFoundError(f"{spec} raised {type(e).__name__}: {e}") from e
    label = f"{os.path.basename(path)}:{factory}"
    if hasattr(made, "model") and hasattr(made, "example_inputs"):
        return LoadedModel(label, made.model, made.example_inputs,
                           dict(getattr(made, "dynamic_dims", {}) or {}),
                           dict(getattr(made, "workload", {}) or {}),
                           tuple(getattr(made, "calibration", ()) or ()))
    if isinstance(made, tuple) and len(made) in (2, 3) and isinstance(made[0], torch.nn.Module):
        inputs = made[1]
        if isinstance(inputs, torch.Tensor):
            inputs = (inputs,)
        dyn = dict(made[2]) if len(made) == 3 else {}
        return LoadedModel(label, made[0], inputs, dyn)
    raise ModelNotFoundError(f"{spec} returned {type(made).__name__}; a factory returns "
                             f"(model, example_inputs[, dynamic_dims]) or an object with "
                             f".model and .example_inputs")


# Sizes of symbolic dims in the example inputs of an imported ONNX model, by name.
ONNX_DIM_SIZES = {"batch": 2, "seq": 16}
ONNX_OTHER_DIM_SIZE = 4


def onnx_dim_size(symbol: str) -> int:
    lower = symbol.lower()
    return next((v for k, v in ONNX_DIM_SIZES.items() if k in lower), ONNX_OTHER_DIM_SIZE)


MAX_EXAMPLE_BYTES = 2_000_000_000


def example_inputs_for(graph: Graph, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random inputs of `graph`'s input types: floats N(0, 1), ints and bools 0 or 1."""
    from .ir import torch_dtype
    from .ir.symbolic import evaluate
    gen = torch.Generator().manual_seed(seed)
    env = {s: onnx_dim_size(s) for s in graph.symbols()}
    out = []
    for name in graph.inputs:
        v = graph.values[name]
        shape = [evaluate(d, env) for d in v.shape]
        dtype = torch_dtype(v.dtype)
        numel = 1
        for d in shape:
            numel *= max(int(d), 0)
        if numel * dtype.itemsize > MAX_EXAMPLE_BYTES:
            raise ConfigError(f"input %{name} is declared {list(v.shape)}: an example input of "
                              f"that size ({numel * dtype.itemsize / 1e9:,.1f} GB) is over the "
                              f"{MAX_EXAMPLE_BYTES / 1e9:g} GB sparsecc makes; declare a "
                              f"symbolic dim (dim_param) for the batch or sequence axis")
        if dtype.is_floating_point:
            out.append(torch.randn(shape, generator=gen).to(dtype))
        else:
            out.append(torch.randint(0, 2, shape, generator=gen).to(dtype))
    return tuple(out)


def _from_onnx(path: str) -> LoadedModel:
    from .capture import import_onnx
    if not os.path.isfile(path):
        raise ModelNotFoundError(f"model file {path} does not exist")
    graph = import_onnx(path)
    symbols = graph.symbols()
    workload = {"kind": "prefill" if "seq" in symbols else "vision",
                "batch": ONNX_DIM_SIZES["batch"],
                "seq": ONNX_DIM_SIZES["seq"] if "seq" in symbols else None}
    return LoadedModel(os.path.basename(path), graph, example_inputs_for(graph), {}, workload)


def load_model(spec: str, *, batch: int | None = None, seq: int | None = None,
               tiny: bool = False) -> LoadedModel:
    if spec.endswith(".onnx"):
        return _from_onnx(spec)
    if ":" in spec and spec.rpartition(":")[0].endswith(".py"):
        return _from_file(spec)
    if spec.endswith(".py"):
        raise ModelNotFoundError(f"{spec}: name the factory function too, as {spec}:factory")
    return _from_zoo(spec, batch, seq, tiny)
