"""The user API: `sparsecc.compile(model, example_inputs, config) -> CompileResult`.

compile = capture (torch.export -> IR) -> passes (clean up, find layers, plan) -> lower to the
configured backend. The result holds the IR, the plan, the report and the lowered artifact,
and `save(out_dir)` writes plan.json, report.json, report.html and the artifact atomically.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .capture import capture
from .backend import Artifact, get_backend
from .config import CompileConfig
from .errors import ConfigError
from .ir import Graph
from .outdir import write_out
from .pipeline import PassContext, Pipeline
from .plan import Plan
from .progress import phase
from .report import build_report, render_html
from .targets import get_target


@dataclasses.dataclass
class CompileResult:
    ir: Graph
    plan: Plan
    report: dict[str, Any]
    artifact: Artifact
    config: CompileConfig

    def onnx_session(self, device: str = "auto"):
        """An ONNX Runtime session over the lowered model: the CUDA provider when `device` is
        "cuda", or "auto" and onnxruntime-gpu (the `gpu` extra) is installed; else CPU."""
        if self.config.backend != "onnx":
            raise ConfigError(f"onnx_session() needs backend 'onnx', not {self.config.backend!r}")
        return self.artifact.session(device)

    @property
    def module(self) -> torch.nn.Module:
        """The torch backend's compiled module (`backend="torch"`)."""
        if self.config.backend != "torch":
            raise ConfigError(f"module needs backend 'torch', not {self.config.backend!r}")
        return self.artifact.module

    def save(self, out_dir: str | os.PathLike, *, force: bool = False,
             inputs: Sequence[str] = ()) -> str:
        """Write the outputs to `out_dir` whole, via a temp dir (never half a dir). An existing
        `out_dir` is replaced only with `force`, and only if it is a previous sparsecc output
        holding none of `inputs` (outdir.py)."""
        with phase(f"write {os.fspath(out_dir)}"):
            return write_out(os.fspath(out_dir), self._write, force, inputs)

    def _write(self, d: str) -> None:
        with open(os.path.join(d, "plan.json"), "w") as f:
            f.write(self.plan.to_json())
        with open(os.path.join(d, "report.json"), "w") as f:
            json.dump(self.report, f, indent=2)
            f.write("\n")
        with open(os.path.join(d, "report.html"), "w") as f:
            f.write(render_html(self.report))
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(self.config.to_dict(), f, indent=2)
            f.write("\n")
        self.artifact.save(d)


def default_passes(forced: Mapping[str, str] | None = None,
                   config: CompileConfig | None = None) -> list:
    """clean up -> plan -> importance -> group channels -> errors -> select -> remove channels
    -> N:M/block masks -> reconstruct the sparse layers' kept weights -> price the final plan
    on the final shapes -> predict the whole model."""
    from sparsecc.passes.apply_masks import ApplyMasks
    from sparsecc.passes.eliminate_noops import EliminateNoops
    from sparsecc.passes.estimate_error import EstimateError
    from sparsecc.passes.group_channels import GroupChannels
    from sparsecc.passes.plan_layers import PlanLayers
    from sparsecc.passes.shrink_channels import ShrinkChannels
    from sparsecc.passes.predict_latency import PredictLatency
    from sparsecc.passes.predict_model import PredictModel
    from sparsecc.passes.price_plan import PricePlan
    from sparsecc.passes.select_patterns import SelectPatterns
    from sparsecc.passes.reconstruct import Reconstruct
    from sparsecc.passes.score_importance import ScoreImportance
    config = config or CompileConfig()
    passes = [EliminateNoops(), PlanLayers(forced=tuple((forced or {}).items())),
              ScoreImportance(config.importance), GroupChannels(), EstimateError(),
              PredictLatency(), SelectPatterns(), ShrinkChannels(), ApplyMasks()]
    return passes + ([Reconstruct()] if config.reconstruct else []) + [PricePlan(),
                                                                       PredictModel()]


def lower(graph: Graph, config: CompileConfig, target: Any = None) -> Artifact:
    """The planned graph as the configured backend's artifact."""
    return get_backend(config.backend).lower(graph, config, target or get_target(config.target))


def load(directory: str | os.PathLike, device: str = "cpu") -> Any:
    """What `CompileResult.save` wrote in `directory`, ready to run on `device`: backend torch,
    the compiled module (files checked against their manifest, no pickle, no new tuning); onnx,
    an ONNX Runtime session over model.onnx; tvm, model.so in the Relax VM (CPU). Each is
    called with torch tensors and returns torch tensors."""
    path = os.fspath(directory)
    config_path = os.path.join(path, "config.json")
    backend = "torch"
    if os.path.isfile(config_path):
        from .cache import load_json_file
        cfg = load_json_file(config_path, "compile config")
        backend = cfg.get("backend", "torch") if isinstance(cfg, dict) else "torch"
    artifact = get_backend(backend).load(path, device)
    return artifact.module if hasattr(artifact, "module") else artifact


_BYTES = {"f16": 2, "bf16": 2, "f32": 4}


def plan_totals(before: Graph, after: Graph, plan: Plan, dtype: str) -> dict[str, Any]:
    """Predicted time of the weight layers (dense and planned) and the weights kept."""
    dense = [d.candidate("dense").predicted_us if d.candidate("dense") else None
             for d in plan.decisions]
    chosen = [d.predicted_us for d in plan.decisions]
    known = [(a, b) for a, b in zip(dense, chosen) if a is not None and b is not None]
    dense = {d.layer.weight for d in plan.decisions if d.chosen == "dense"}
    weights = {d.layer.weight for d in plan.decisions}
    total = sum(before.params[w].numel() for w in weights if w in before.params)
    # a dense layer keeps every entry it still has (its inputs may have shrunk); a sparse
    # one keeps its non-zeros
    kept = sum(after.params[w].numel() if w in dense else int((after.params[w] != 0).sum())
               for w in weights if w in after.params)
    out: dict[str, Any] = {"weights": total, "weights_kept": kept,
                           "bytes_saved": (total - kept) * _BYTES.get(dtype, 4)}
    if known:
        out["dense_us"] = sum(a for a, _ in known)
        out["predicted_us"] = sum(b for _, b in known)
        out["layers_predicted"] = f"{len(known)} of {len(plan.decisions)} weight layers"
    return out


def artifact_info(backend: str, artifact: Artifact) -> dict[str, Any]:
    """What the written artifact runs each layer with, read from the artifact itself."""
    return {"backend": backend, "layers": {k: {**v, "weight_shape": list(v["weight_shape"])
                                               if v.get("weight_shape") else None}
                                           for k, v in artifact.kernels().items()}}


def target_info(target) -> dict[str, Any]:
    """What the report says of the target: its description, whether `--target auto` found it
    (and on what device), and whether its cost table was measured."""
    from .cost import default_cost_model, describe_costs
    from .targets.detect import detection
    found = detection()
    return {"name": target.name, "description": target.description,
            "detected": found.describe() if found is not None and found.target.name == target.name
            else None,
            "cost_table": describe_costs(default_cost_model(target))}


def _example_dims(graph: Graph, example_inputs: Sequence[Any] | Mapping[str, Any]
                  ) -> dict[str, int]:
    """Sizes of the symbolic input dims in the example inputs: the workload's fallback."""
    values = [example_inputs.get(n) for n in graph.inputs] if isinstance(example_inputs, Mapping) \
        else list(example_inputs)
    dims: dict[str, int] = {}
    for name, t in zip(graph.inputs, values):
        for d, size in zip(graph.values[name].shape, getattr(t, "shape", ())):
            if isinstance(d, str) and d.isidentifier():
                dims.setdefault(d, int(size))
    return dims


def _workload(config: CompileConfig, model_workload: Mapping[str, Any] | None
              ) -> dict[str, Any]:
    """The workload the plan is for: the config's, else the model's own."""
    wl = dict(model_workload or {})
    return {"batch": config.batch or wl.get("batch"), "seq": config.seq or wl.get("seq"),
            "mode": config.mode or wl.get("kind")}


def compile(model: torch.nn.Module | Graph, example_inputs: Sequence[Any] | Mapping[str, Any] = (),
            config: CompileConfig | None = None, *,
            dynamic_dims: Mapping[str, Mapping[int, str]] | None = None,
            name: str | None = None, workload: Mapping[str, Any] | None = None,
            plan_file: str | None = None, dump_ir: str | None = None,
            calibration: Sequence[Any] = ()) -> CompileResult:
    """Compile `model` for `config.target`. The model is never modified.

    `example_inputs` are forward()'s positional arguments (a sequence) or keyword arguments
    (a mapping). `dynamic_dims` names dims that may vary: `{"x": {0: "batch"}}`.
    `calibration` is a few batches of positional inputs; error estimates use their input
    statistics (without them, errors assume isotropic inputs).
    """
    config = config or CompileConfig()
    target = get_target(config.target)
    if isinstance(model, Graph):
        graph = model
    else:
        args, kwargs = ((), dict(example_inputs)) if isinstance(example_inputs, Mapping) \
            else (tuple(example_inputs), {})
        with phase("capture"):
            graph = capture(model, args, kwargs, dynamic_dims=dynamic_dims,
                            name=name or type(model).__name__)
    from .ir.verify import check_operand_dtypes
    check_operand_dtypes(graph)
    forced: dict[str, str] = {}
    if plan_file is not None:
        from .plan import find_layers, load_plan_file
        forced = load_plan_file(plan_file, find_layers(graph))
    graph = graph.copy()
    graph.analyses["workload"] = _workload(config, workload)
    graph.analyses["example_dims"] = _example_dims(graph, example_inputs)
    before = graph
    passes = default_passes(forced, config)
    ctx = PassContext(config=config, target=target, calibration=tuple(calibration))
    batches = _error_batches(before, calibration, example_inputs)
    search = None
    if config.max_error is not None and not config.speedup:
        graph, records, search = _plan_for_error(graph, passes, ctx, batches, dump_ir)
    else:
        pipeline = Pipeline(passes, verify_each=config.verify_each_pass, dump_dir=dump_ir)
        graph = pipeline.run(graph, ctx)
        records = pipeline.records
    plan = graph.analyses["plan"]
    from .errors import PipelineError, VerifyError
    from .ir.verify import verify
    from .plan import audit
    audit(before, graph, plan)
    try:    # the planned graph must be sound before it becomes an artifact
        verify(graph)
    except VerifyError as e:
        raise PipelineError(f"the planned graph does not verify, so nothing was written: "
                            f"{e}") from None
    with phase(f"lower ({config.backend})"):
        artifact = lower(graph, config, target)
    totals = plan_totals(before, graph, plan, config.dtype)
    speedup = (totals["dense_us"] / totals["predicted_us"]
               if totals.get("predicted_us") else None)
    with phase("measure error"):
        accuracy = _accuracy(before, graph, batches, calibration, config, search)
    report = build_report(name or graph.name, target.name, graph.analyses["workload"], plan,
                          records, predicted_speedup=speedup, totals=totals,
                          frontier=graph.analyses.get("frontier"),
                          target_info=target_info(target),
                          whole_model=graph.analyses.get("model_prediction"),
                          artifact=artifact_info(config.backend, artifact))
    report["output_error"] = accuracy
    return CompileResult(graph, plan, report, artifact, config)


ERROR_BATCHES = 4      # calibration batches the end-to-end error is measured on, at most


def _error_batches(graph: Graph, calibration: Sequence[Any],
                   example_inputs: Sequence[Any] | Mapping[str, Any]) -> list[Any]:
    if calibration:
        return list(calibration)[:ERROR_BATCHES]
    if isinstance(example_inputs, Mapping):
        return [tuple(example_inputs[n] for n in graph.inputs)]
    return [tuple(example_inputs)] if example_inputs else []


def _plan_for_error(graph: Graph, passes: list, ctx: PassContext, batches: list[Any],
                    dump_ir: str | None):
    """`config.max_error`: the analyses once, then selection on (SelectPatterns and after)
    for the proxy budgets `sparsecc.accuracy.search_budget` tries."""
    from sparsecc.passes.select_patterns import SelectPatterns

    from .accuracy import end_to_end_error, search_budget
    from .errors import ConfigError
    config = ctx.config
    if not batches:
        raise ConfigError("max_error needs calibration or example inputs to measure the "
                          "output error on")
    split = next(i for i, p in enumerate(passes) if isinstance(p, SelectPatterns))
    head = Pipeline(passes[:split], verify_each=config.verify_each_pass, dump_dir=dump_ir)
    analysed = head.run(graph, ctx)
    tails: dict[int, list] = {}

    def plan_with(budget: float) -> Graph:
        tail = Pipeline(passes[split:], verify_each=config.verify_each_pass)
        g = tail.run(analysed, dataclasses.replace(ctx, config=config.replace(budget=budget)))
        tails[id(g)] = tail.records
        return g

    def speedup_of(g: Graph) -> float | None:
        plan = g.analyses["plan"]
        dense = sum((d.candidate("dense").predicted_us or 0) for d in plan.decisions
                    if d.candidate("dense"))
        chosen = sum(d.predicted_us or 0 for d in plan.decisions)
        return dense / chosen if chosen else None

    with phase("search the error budget"):
        final, trials = search_budget(
            plan_with, lambda g: end_to_end_error(graph, g, batches)["relative_error"],
            speedup_of, config.max_error)
    search = [{"proxy_budget": t.proxy_budget, "measured_error": t.error,
               "predicted_speedup": t.speedup, "sparse_layers": t.sparse_layers}
              for t in trials]
    return final, head.records + tails[id(final)], search


def _accuracy(before: Graph, after: Graph, batches: list[Any], calibration: Sequence[Any],
              config: CompileConfig, search: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The compiled model's measured end-to-end error, and what it was held to."""
    from .accuracy import end_to_end_error
    from .config import WARN_ERROR
    out: dict[str, Any] = {"on": "calibration inputs" if calibration else "example inputs"}
    if not batches:
        return {**out, "relative_error": None, "why": "no inputs to measure on"}
    out.update(end_to_end_error(before, after, batches))
    if config.max_error is not None and not config.speedup:
        out["max_error"] = config.max_error
        out["search"] = search
    elif config.speedup:
        limit = config.max_error if config.max_error is not None else WARN_ERROR
        if out["relative_error"] > limit:
            out["warning"] = (f"the plan for {config.speedup}x measures a relative output "
                              f"error of {out['relative_error']:.3g}, over {limit:g}")
    else:
        out["proxy_budget"] = config.budget
    return out
