"""The torch artifact: the planned IR as a real `nn.Module` that `torch.compile` can trace.

`SparseModule(graph, tensors)` generates an FX graph from the IR, one call per node: ATen ops
for every dense node, and our operators (ops.py) for the sparse layers —
`sparsecc::linear_2to4` for a linear layer annotated `sparsity="2:4"`,
`sparsecc::linear_bsr` for `blockRxC@d`. Sibling linear layers — same input, both dense or
both 2:4, like q/k/v and gate/up — run as one GEMM over their weights stacked along N, its
output split after (the members' weights are views into the stacked one). So `torch.compile(module, fullgraph=True)` traces
it without graph breaks, inductor fuses the ops between the sparse GEMMs, and
`mode="reduce-overhead"` replays it in CUDA graphs.

A functional update of a state passed in and out — a KV cache written with
`index_copy(cache, dim, positions, new)` — runs in place (`index_copy_`, the output aliasing the
input) when its result is a graph output and the state input is read by nothing else
(`inplace_updates`): a decode step then writes its new rows, not a copy of the whole cache.
The caller's input tensor is that output after the call.

Floating dtype attributes (`to(dtype=f32)`) and device arguments follow the module (read from
a scalar buffer at run time), so `.half()` and `.to("cuda")` behave as on any module; moving a
module to a CUDA device packs its 2:4 weights for cuSPARSELt.

Saved (`save_artifact`): `model.ir` (the planned graph as IR text), `weights.safetensors`
(dense weights as they are; 2:4 weights as `NAME.values`/`NAME.meta`; block-sparse ones as
`NAME.blocks`/`NAME.row_ptr`/`NAME.col_idx`) and `manifest.json` (format, every file's size
and SHA-256). `load_artifact(dir, device)` checks the manifest first, then rebuilds the module:
no pickle, nothing evaluated, and no tuning when the tuning cache holds the choices.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import operator
import os
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.fx as fx

from sparsecc.backend import Artifact, Backend
from sparsecc.errors import SparseccError
from sparsecc.ir import Graph, ops
from sparsecc.ir.graph import DType, Ref
from sparsecc.ir.state import state_pairs
from sparsecc.patterns import NM, Block, parse_pattern
from sparsecc.plan import find_layers, layer_of, sibling_groups

from . import ops as sparse_ops   # registers torch.ops.sparsecc.*

FORMAT = "sparsecc-torch/1"
MANIFEST = "manifest.json"
FILES = ("model.ir", "weights.safetensors")
FLOAT_NAMES = frozenset({"f16", "bf16", "f32", "f64"})


class ArtifactError(SparseccError):
    """A saved artifact that can't be loaded; the message names the file."""


@dataclasses.dataclass(frozen=True)
class SparseLayer:
    layer: str            # the layer name (as in the plan)
    weight: str           # the IR parameter
    pattern: str          # "2:4" | "block64x64@0.25"
    kind: str             # "nm" | "block"


def sparse_layers(graph: Graph) -> dict[str, SparseLayer]:
    """The linear nodes our operators run, by node output: annotated 2:4 or block, and with
    a weight that obeys it (checked when the weights are packed)."""
    out: dict[str, SparseLayer] = {}
    names = {l.node: l.name for l in find_layers(graph)}
    for node in graph.nodes:
        annotation = node.attrs.get("sparsity")
        if not annotation or node.op != "linear" or layer_of(graph, node) is None:
            continue
        p = parse_pattern(annotation)
        if isinstance(p, NM) and (p.n, p.m) == (2, 4):
            out[node.outputs[0]] = SparseLayer(names[node.outputs[0]], node.inputs[1], str(p), "nm")
        elif isinstance(p, Block):
            out[node.outputs[0]] = SparseLayer(names[node.outputs[0]], node.inputs[1], str(p),
                                               "block")
    return out


def pack_tensors(graph: Graph) -> dict[str, torch.Tensor]:
    """The tensors an artifact stores, by name: the dense parameters as they are, and each
    sparse weight in its compressed form (see the module docstring)."""
    from .bsr import pack_blocks
    sparse = {s.weight: s for s in sparse_layers(graph).values()}
    store: dict[str, torch.Tensor] = {}
    for name, t in graph.params.items():
        s = sparse.get(name)
        if s is None:
            store[name] = t.detach().contiguous()
            continue
        try:
            if s.kind == "nm":
                store[f"{name}.values"], store[f"{name}.meta"] = sparse_ops.compress_2to4(t)
            else:
                p = parse_pattern(s.pattern)
                w = pack_blocks(t.detach(), p.rows, p.cols)
                store[f"{name}.blocks"] = w.blocks
                store[f"{name}.row_ptr"], store[f"{name}.col_idx"] = w.row_ptr, w.col_idx
        except ValueError as e:
            raise SparseccError(f"layer {s.layer}: its weight {name} can't be stored as "
                                f"{s.pattern}: {e}") from None
    return store


# Functional updates that may run in place on their first input: op -> in-place overload.
INPLACE_UPDATES = {"index_copy": torch.ops.aten.index_copy_.default}
SHAPE_READERS = frozenset({"sym_size.int"})      # read a tensor's sizes, never its values


def inplace_updates(graph: Graph) -> frozenset[str]:
    """Outputs of the update nodes (`INPLACE_UPDATES`) that run in place: the node's result is
    a graph output, and its first input is a graph input whose values no other node reads
    (its sizes may be read) and that is not itself an output (so no one sees it change)."""
    readers: dict[str, int] = {}
    for node in graph.nodes:
        if node.op in SHAPE_READERS:
            continue
        for name in node.inputs:
            if name:
                readers[name] = readers.get(name, 0) + 1
        for v in node.attrs.values():
            if isinstance(v, Ref):
                readers[v.name] = readers.get(v.name, 0) + 1
    return frozenset(out for out, state in state_pairs(graph).items()
                     if readers.get(state) == 1 and any(
                         n.op in INPLACE_UPDATES and n.outputs[0] == out for n in graph.nodes))


def _attr(name: str, used: set[str]) -> str:
    base = re.sub(r"\W", "_", name)
    base = base if base and not base[0].isdigit() else f"_{base}"
    out, i = base, 1
    while out in used:
        out, i = f"{base}_{i}", i + 1
    used.add(out)
    return out


@dataclasses.dataclass(frozen=True)
class Unit:
    """Linear layers that run as one GEMM: one layer, or siblings (same input, same pattern)
    whose weights are stacked along N — q/k/v, gate/up — and whose output is split after."""
    outputs: tuple[str, ...]        # the member nodes' outputs, in graph order
    weights: tuple[str, ...]
    biases: tuple[str, ...]         # empty when the members have no bias
    sizes: tuple[int, ...]          # each member's N
    kind: str                       # "dense" | "nm"
    slot: str                       # the gm attribute of the stacked weight (dense) or packed form (nm)
    bias_slot: str | None           # the gm attribute of the stacked bias


class SparseModule(torch.nn.Module):
    """A planned IR graph as a module: `self.gm` is the generated FX GraphModule.

    Sibling linear layers (`sparsecc.plan.sibling_groups`: same input, dense or 2:4) run as
    one GEMM on their stacked weights unless `fuse_siblings=False`; the members' own weights
    are views into the stacked one, so nothing is held twice, and they are saved one by one."""

    def __init__(self, graph: Graph, tensors: Mapping[str, torch.Tensor],
                 fuse_siblings: bool = True) -> None:
        super().__init__()
        self.ir = graph
        self.sparse = sparse_layers(graph)
        root = torch.nn.Module()
        used: set[str] = set()
        self._slots: dict[str, str] = {}      # stored tensor name -> attribute of gm
        for name, t in tensors.items():
            slot = self._slots[name] = _attr(name, used)
            if t.is_floating_point():
                root.register_parameter(slot, torch.nn.Parameter(t, requires_grad=False))
            else:
                root.register_buffer(slot, t)
        floats = [t for t in tensors.values() if t.is_floating_point()]
        root.register_buffer("_like", torch.zeros((), dtype=floats[0].dtype if floats
                                                  else torch.float32))
        self.units = self._units(graph, tensors, fuse_siblings, used)
        for u in self.units:
            if u.kind == "nm" or len(u.outputs) > 1:
                root.register_buffer(u.slot, torch.empty(0, dtype=root._like.dtype))
            if u.bias_slot:
                root.register_buffer(u.bias_slot, torch.empty(0, dtype=root._like.dtype))
        self.gm = fx.GraphModule(root, self._fx_graph(graph, tensors))
        self.packing: dict[str, str] = {}     # 2:4 weight -> why the reference runs, if so
        self._repack()

    def _units(self, graph: Graph, tensors: Mapping[str, torch.Tensor], fuse: bool,
               used: set[str]) -> list[Unit]:
        """Sibling groups (when fusing) and every other 2:4 layer, each a Unit."""
        nodes = {n.outputs[0]: n for n in graph.nodes if n.outputs}
        groups = [g for g in sibling_groups(graph)
                  if all(n.outputs[0] in self.sparse or n.inputs[1] in tensors for n in g)
                  ] if fuse else []
        grouped = {n.outputs[0] for g in groups for n in g}
        singles = [(nodes[o],) for o, s in self.sparse.items()
                   if s.kind == "nm" and o not in grouped]
        units = []
        for members in [*groups, *singles]:
            outs = tuple(n.outputs[0] for n in members)
            kind = "nm" if outs[0] in self.sparse else "dense"
            biases = tuple(n.inputs[2] for n in members if len(n.inputs) > 2 and n.inputs[2])
            tag = "+".join(n.inputs[1] for n in members)
            units.append(Unit(outs, tuple(n.inputs[1] for n in members), biases,
                              tuple(int(graph.values[n.inputs[1]].shape[0]) for n in members),
                              kind, _attr(f"{tag}.packed" if kind == "nm" else tag, used),
                              _attr(f"{tag}.bias", used) if len(members) > 1 and biases
                              else None))
        return units
    # -- the generated graph --------------------------------------------------------------
    def _fx_graph(self, graph: Graph, tensors: Mapping[str, torch.Tensor]) -> fx.Graph:
        g = fx.Graph()
        env: dict[str, Any] = {}
        used: set[str] = set()
        inputs = [g.placeholder(_attr(n, used)) for n in graph.inputs]
        like = g.get_attr("_like")
        dtype = g.call_function(getattr, (like, "dtype"))
        device = g.call_function(getattr, (like, "device"))
        for name, node in zip(graph.inputs, inputs):
            v = graph.values[name]
            env[name] = (g.call_method("to", (node, dtype)) if v.dtype in FLOAT_NAMES
                         else node)
        attrs_cache: dict[str, fx.Node] = {}

        def tensor(name: str) -> fx.Node:
            if name not in attrs_cache:
                attrs_cache[name] = g.get_attr(self._slots[name])
            return attrs_cache[name]

        for p in graph.param_names:
            if p in self._slots:
                env[p] = tensor(p)

        def value(v: Any) -> Any:
            if isinstance(v, Ref):
                return env[v.name]
            if isinstance(v, DType) and v.name in FLOAT_NAMES:
                return dtype
            if isinstance(v, tuple):
                return tuple(value(x) for x in v)
            return v

        unit_of = {o: u for u in self.units for o in u.outputs}
        in_place = inplace_updates(graph)
        for node in graph.nodes:
            if node.op in ops.SCALAR_OPS:
                env[node.outputs[0]] = g.call_function(
                    ops.SCALAR_OPS[node.op], (value(node.attrs["a"]), value(node.attrs["b"])))
                continue
            unit = unit_of.get(node.outputs[0]) if node.outputs else None
            if unit is not None:
                if node.outputs[0] == unit.outputs[0]:
                    self._emit_unit(g, unit, env[node.inputs[0]], env, tensor)
                continue
            s = self.sparse.get(node.outputs[0])
            x = env[node.inputs[0]] if node.inputs and node.inputs[0] else None
            bias = (env[node.inputs[2]] if len(node.inputs) > 2 and node.inputs[2] is not None
                    else None)
            if s is not None:
                w = s.weight
                out = g.call_function(torch.ops.sparsecc.linear_bsr.default,
                                      (x, tensor(f"{w}.blocks"), tensor(f"{w}.row_ptr"),
                                       tensor(f"{w}.col_idx"), bias,
                                       int(graph.values[w].shape[1])))
                out.meta["sparsecc_layers"] = (s.layer,)
            else:
                ins = [None if i is None else env[i] for i in node.inputs]
                attrs = {k: value(v) for k, v in node.attrs.items() if k != "sparsity"}
                target, args, kwargs = ops.bind(node.op, ins, attrs, device)
                if node.outputs[0] in in_place:
                    target = INPLACE_UPDATES[node.op]
                out = g.call_function(target, tuple(args), kwargs)
            if ops.returns_many(node.op) if s is None else False:
                for i, name in enumerate(node.outputs):
                    env[name] = g.call_function(operator.getitem, (out, i))
            else:
                env[node.outputs[0]] = out
        outs = [env[o] for o in graph.outputs]
        g.output(outs[0] if len(outs) == 1 else tuple(outs))
        g.lint()
        return g

    def _emit_unit(self, g: fx.Graph, unit: Unit, x: fx.Node, env: dict[str, Any],
                   tensor) -> None:
        """One GEMM for the unit's layers, its output split back into theirs."""
        if unit.bias_slot:
            bias = g.get_attr(unit.bias_slot)
        else:
            bias = env[unit.biases[0]] if unit.biases else None
        if unit.kind == "nm":
            out = g.call_function(torch.ops.sparsecc.linear_2to4.default,
                                  (x, [tensor(f"{w}.values") for w in unit.weights],
                                   [tensor(f"{w}.meta") for w in unit.weights],
                                   g.get_attr(unit.slot), bias))
            out.meta["sparsecc_layers"] = tuple(self.sparse[o].layer for o in unit.outputs)
        else:
            out = g.call_function(torch.ops.aten.linear.default,
                                  (x, g.get_attr(unit.slot), bias))
        if len(unit.outputs) == 1:
            env[unit.outputs[0]] = out
            return
        parts = g.call_function(torch.ops.aten.split_with_sizes.default,
                                (out, list(unit.sizes), -1))
        for i, o in enumerate(unit.outputs):
            env[o] = g.call_function(operator.getitem, (parts, i))

    # -- device placement -----------------------------------------------------------------
    def _apply(self, fn, recurse=True):
        if hasattr(self, "gm"):
            # the stacked tensors are rebuilt from the members after the move, not moved
            for u in self.units:
                for slot in (u.slot, u.bias_slot):
                    if slot:
                        self.gm.register_buffer(slot, torch.empty(0))
        super()._apply(fn, recurse)
        if hasattr(self, "gm"):
            self._repack()
        return self

    def _stack(self, names: tuple[str, ...], slot: str) -> None:
        """gm.<slot> = the members' tensors stacked along dim 0; the members become views."""
        parts = [getattr(self.gm, self._slots[n]).detach() for n in names]
        stacked = torch.cat(parts)
        self.gm.register_buffer(slot, stacked)
        start = 0
        for n, p in zip(names, parts):
            view = stacked[start:start + p.shape[0]]
            self.gm.register_parameter(self._slots[n],
                                       torch.nn.Parameter(view, requires_grad=False))
            start += p.shape[0]

    def _repack(self) -> None:
        """Stack the weights of fused dense units and the biases of fused units; make
        cuSPARSELt's packed form of each 2:4 unit on a CUDA device (else empty)."""
        self.packing = {}
        for u in self.units:
            if u.bias_slot:
                self._stack(u.biases, u.bias_slot)
            if u.kind == "dense":
                self._stack(u.weights, u.slot)
                continue
            values = [getattr(self.gm, self._slots[f"{w}.values"]).detach() for w in u.weights]
            meta = [getattr(self.gm, self._slots[f"{w}.meta"]) for w in u.weights]
            if values[0].is_cuda:
                packed, why = sparse_ops.pack_cusparselt(values, meta)
            else:
                packed, why = values[0].new_empty(0), f"{values[0].device.type}: no 2:4 kernel"
            self.gm.register_buffer(u.slot, packed)
            if why:
                for w in u.weights:
                    self.packing[w] = why

    # -- running and describing -----------------------------------------------------------
    def forward(self, *args: Any) -> Any:
        if len(args) != len(self.ir.inputs):
            raise TypeError(f"expected {len(self.ir.inputs)} inputs {self.ir.inputs}, "
                            f"got {len(args)}")
        return self.gm(*args)

    @property
    def device(self) -> torch.device:
        return self.gm._like.device

    def tensors(self) -> dict[str, torch.Tensor]:
        """The stored tensors by name (what `save_artifact` writes)."""
        return {name: getattr(self.gm, slot).detach() for name, slot in self._slots.items()}

    def op_calls(self) -> dict[str, str]:
        """Layer -> the operator the generated graph calls for it (sparse layers only)."""
        return {layer: f"{n.target.namespace}::{n.target._opname}"
                for n in self.gm.graph.nodes for layer in n.meta.get("sparsecc_layers", ())}

    def fused(self) -> list[list[str]]:
        """The layers that run as one GEMM, group by group (sibling fusion)."""
        names = {l.node: l.name for l in find_layers(self.ir)}
        return [[names[o] for o in u.outputs] for u in self.units if len(u.outputs) > 1]

    def kernel_table(self) -> list[dict[str, Any]]:
        """What runs each sparse layer on the module's current device."""
        cuda = self.device.type == "cuda"
        rows = []
        for s in self.sparse.values():
            if s.kind == "nm":
                why = self.packing.get(s.weight)
                kernel = "cusparselt-2:4" if why is None else f"reference (dense): {why}"
            else:
                kernel = ("triton-bsr" if cuda else "torch sparse BSR" if
                          self.device.type == "cpu" else "reference (dense)")
            rows.append({"layer": s.layer, "pattern": s.pattern, "kernel": kernel})
        return rows


def dense_module(graph: Graph) -> SparseModule:
    """The planned graph with every layer on ATen (its masks and channel removal kept): what
    the artifact must equal, and the bench's "masked dense"."""
    g = graph.copy()
    g.nodes = [dataclasses.replace(n, attrs={k: v for k, v in n.attrs.items() if k != "sparsity"})
               for n in g.nodes]
    return SparseModule(g, {k: v.detach() for k, v in graph.params.items()})


# -- saving and loading -------------------------------------------------------------------
def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def save_artifact(module: SparseModule, directory: str) -> list[str]:
    from safetensors.torch import save_file
    from sparsecc.ir import print_graph
    with open(os.path.join(directory, "model.ir"), "w") as f:
        f.write(print_graph(module.ir))
    # members of a fused unit are views into one stacked tensor: each is saved on its own
    tensors = {k: v.to("cpu").contiguous() for k, v in module.tensors().items()}
    tensors = {k: v.clone() if v._base is not None else v for k, v in tensors.items()}
    save_file(tensors, os.path.join(directory, "weights.safetensors"),
              metadata={"format": FORMAT})
    manifest = {"format": FORMAT, "files": {
        name: {"bytes": os.path.getsize(os.path.join(directory, name)),
               "sha256": _sha256(os.path.join(directory, name))} for name in FILES}}
    with open(os.path.join(directory, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    return [*FILES, MANIFEST]


def _check_files(directory: str) -> None:
    from sparsecc.cache import load_json_file
    path = os.path.join(directory, MANIFEST)
    if not os.path.isfile(path):
        raise ArtifactError(f"{path}: missing (is {directory} a sparsecc torch artifact?)")
    try:
        manifest = load_json_file(path, "artifact manifest", max_bytes=1 << 20)
    except SparseccError as e:
        raise ArtifactError(str(e)) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        fmt = manifest.get("format") if isinstance(manifest, dict) else None
        raise ArtifactError(f"{path}: format {fmt!r} is not {FORMAT!r}")
    files = manifest.get("files")
    for name in FILES:
        entry = files.get(name) if isinstance(files, dict) else None
        file = os.path.join(directory, name)
        if not isinstance(entry, dict):
            raise ArtifactError(f"{path}: lists no {name}")
        if not os.path.isfile(file):
            raise ArtifactError(f"{file}: missing")
        if os.path.getsize(file) != entry.get("bytes"):
            raise ArtifactError(f"{file}: {os.path.getsize(file)} bytes, the manifest says "
                                f"{entry.get('bytes')} (truncated or replaced)")
        if _sha256(file) != entry.get("sha256"):
            raise ArtifactError(f"{file}: its SHA-256 does not match the manifest (modified)")


def load_artifact(directory: str, device: str | torch.device = "cpu") -> SparseModule:
    """The module saved in `directory`, on `device`. Every file is checked against the
    manifest before anything is parsed."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from sparsecc.ir import parse
    _check_files(directory)
    ir_path = os.path.join(directory, "model.ir")
    try:
        with open(ir_path) as f:
            graph = parse(f.read())
    except (SparseccError, UnicodeDecodeError, RecursionError) as e:
        raise ArtifactError(f"{ir_path}: {e}") from None
    weights = os.path.join(directory, "weights.safetensors")
    try:
        tensors = load_file(weights)
    except (SafetensorError, OSError, ValueError) as e:
        raise ArtifactError(f"{weights}: {e}") from None
    expected = _expected_tensors(graph)
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise ArtifactError(f"{weights}: tensors do not match model.ir (missing "
                            f"{missing[:3]}, unexpected {extra[:3]})")
    for name, shape in expected.items():
        if shape is not None and tuple(tensors[name].shape) != shape:
            raise ArtifactError(f"{weights}: {name} is {tuple(tensors[name].shape)}, model.ir "
                                f"says {shape}")
    try:
        module = SparseModule(graph, tensors)
    except (SparseccError, ValueError, KeyError, RuntimeError) as e:
        raise ArtifactError(f"{directory}: can't rebuild the module: {e}") from None
    return module.to(device)


def _expected_tensors(graph: Graph) -> dict[str, tuple[int, ...] | None]:
    """The tensor names (and shapes, where fixed) an artifact of `graph` stores."""
    sparse = {s.weight: s for s in sparse_layers(graph).values()}
    out: dict[str, tuple[int, ...] | None] = {}
    for p in graph.param_names:
        shape = tuple(graph.values[p].shape)
        s = sparse.get(p)
        if s is None:
            out[p] = shape
        elif s.kind == "nm":
            out[f"{p}.values"] = (shape[0], shape[1] // 2)
            out[f"{p}.meta"] = (shape[0], shape[1] // 4)
        else:
            out.update({f"{p}.blocks": None, f"{p}.row_ptr": None, f"{p}.col_idx": None})
    return out


class TorchArtifact(Artifact):
    backend: ClassVar[str] = "torch"

    def __init__(self, module: SparseModule) -> None:
        self.module = module

    def save(self, directory: str) -> list[str]:
        return save_artifact(self.module, directory)

    def kernels(self) -> dict[str, dict[str, Any]]:
        calls = self.module.op_calls()
        sparse = {s.layer: s for s in self.module.sparse.values()}
        out = {}
        for layer in find_layers(self.module.ir):
            s = sparse.get(layer.name)
            out[layer.name] = {"family": s.kind if s else "dense",
                               "kernel": calls.get(layer.name, "aten"),
                               "weight_shape": tuple(self.module.ir.values[layer.weight].shape)}
        return out


class TorchBackend(Backend):
    name: ClassVar[str] = "torch"
    title: ClassVar[str] = "PyTorch"
    kernel_ops: ClassVar[dict] = {"channel": None, "nm": frozenset({"linear"}),
                                  "block": frozenset({"linear"})}
    fuses_siblings: ClassVar[tuple[str, ...]] = ("dense", "2:4")

    def check(self, pattern: Any, op: str, target: Any) -> str | None:
        # our operators run real kernels on CUDA (cuSPARSELt, Triton) and the CPU (torch's
        # sparse BSR matmul); on any other device they would run their dense reference
        p = parse_pattern(pattern)
        kinds = {p.kind} if p.kind != "composite" else {"channel", "nm"}
        if kinds & {"nm", "block"} and getattr(target, "kind", None) not in ("gpu", "cpu"):
            return (f"{self.title} on {target.name} has no {sorted(kinds - {'channel'})[0]} "
                    f"kernel of sparsecc's (its operators run on CUDA and the CPU)")
        return super().check(pattern, op, target)

    def lower(self, graph: Graph, config: Any, target: Any) -> TorchArtifact:
        from sparsecc.ir.graph import torch_dtype
        tensors = pack_tensors(graph)
        dtype = torch_dtype(config.dtype)
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
        return TorchArtifact(SparseModule(graph, tensors))

    def load(self, directory: str, device: str = "cpu") -> TorchArtifact:
        return TorchArtifact(load_artifact(directory, device))
