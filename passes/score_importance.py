"""Importance of every weight, from the weights alone or from calibration data.

Scores have the layer's own weight layout (`Layer.shape`: linear [out, in], conv
[out, in/groups, *kernel]; the [in, out] weight of `mm`/`matmul`/`addmm` is transposed):

    magnitude   S = |W|
    wanda       S = |W| * sqrt(n)[None, :],  n_j = sum over calibration rows x of x_j^2
                (Sun et al. 2023; for conv, n is per input channel, broadcast over the kernel)
    taylor      S = |W * dL/dW|  (first-order Taylor / SNIP: the loss change when w -> 0)

Calibration statistics of a linear layer come from its input X, every leading position of it
flattened to rows [-1, in]: the Gram matrix H = X^T X (float64, [in, in]), the row count and
diag(H). `stream_layer_stats` runs the IR interpreter over the calibration batches with an
observer and accumulates H for only as many layers as fit in `max_bytes` per sweep, so memory
stays near one layer's H when the budget is small.
"""
from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Callable, Iterator, Sequence
from typing import Any, ClassVar

import torch

from sparsecc.errors import ConfigError
from sparsecc.ir import Graph, Interpreter, Node
from sparsecc.pipeline import Pass, PassContext, PassResult
from sparsecc.plan import WEIGHT_OPS, Layer, find_layers
from sparsecc.progress import progress

_TRANSPOSED = frozenset({"mm", "matmul", "addmm"})


# -- weights in the layer's own layout -----------------------------------------------------
def layer_weight(graph: Graph, layer: Layer) -> torch.Tensor:
    """The layer's weight as [out, in, *kernel] (a view of the graph's tensor, not a copy)."""
    w = graph.params[layer.weight]
    return w.t() if layer.op in _TRANSPOSED else w


def to_param_layout(layer: Layer, weight: torch.Tensor) -> torch.Tensor:
    """Inverse of `layer_weight`: a tensor in the layer's layout back to the parameter's."""
    return weight.t().contiguous() if layer.op in _TRANSPOSED else weight.contiguous()


def is_conv(layer: Layer) -> bool:
    return layer.op.startswith("conv")


# -- scorers -------------------------------------------------------------------------------
def magnitude(weight: torch.Tensor) -> torch.Tensor:
    return weight.detach().abs()


def per_input(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-input-feature `values` (float64) shaped to broadcast against `weight`
    [out, in, *kernel]. For a grouped conv, `values` may cover all groups * in/groups input
    channels: output rows of group g then see group g's slice."""
    n = values.detach().to(torch.float64)
    out, per = weight.shape[0], weight.shape[1]
    if n.numel() == per:
        scale = n.reshape(1, per)
    elif n.numel() % per == 0 and out % (n.numel() // per) == 0:
        groups = n.numel() // per
        scale = n.reshape(groups, per).repeat_interleave(out // groups, dim=0)
    else:
        raise ValueError(f"{n.numel()} input statistics for a weight of shape "
                         f"{tuple(weight.shape)}")
    return scale.reshape(*scale.shape, *([1] * (weight.dim() - 2)))


def wanda(weight: torch.Tensor, input_sq_norm: torch.Tensor) -> torch.Tensor:
    """|W| * sqrt(n) broadcast along the input dim (and over conv kernel positions)."""
    w = weight.detach()
    return (w.abs().double() * per_input(input_sq_norm, w).sqrt()).to(w.dtype)


def taylor(weight: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    return (weight.detach() * grad.detach()).abs()


# -- calibration statistics ----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class LayerStats:
    """Input statistics of one layer. `gram` = X^T X (float64 [in, in]) for linear layers and
    None for conv layers, whose `sq_norm` is per input channel (sum over batch and positions);
    for linear layers `sq_norm` = diag(gram). `rows` counts the rows (positions) seen."""
    gram: torch.Tensor | None
    rows: int
    sq_norm: torch.Tensor
    # For wide linear layers seen on fewer rows than inputs, the rows themselves (float32
    # [rows, in]) replace the Gram matrix: smaller, and ||dW X^T||^2 is cheaper than
    # tr(dW H dW^T). Then `gram` is None; errors read `inputs`.
    inputs: torch.Tensor | None = None

    def full_gram(self) -> torch.Tensor | None:
        """H = XᵀX (float64 [in, in]) of a linear layer, from the Gram or the kept rows."""
        if self.gram is not None:
            return self.gram
        if self.inputs is not None:
            x = self.inputs.double()
            return x.T @ x
        return None


def _stats_bytes(layer: Layer, with_gram: bool, rows: int | None = None) -> int:
    n = layer.in_features
    if with_gram and not is_conv(layer) and n >= WIDE and rows is not None and rows <= n:
        return 4 * rows * n + 8 * n   # the input rows are kept instead of XᵀX
    return 8 * (n * n + n if with_gram and not is_conv(layer) else n)


def plan_sweeps(layers: Sequence[Layer], max_bytes: int, with_gram: bool = True,
                rows: Mapping[str, int] | None = None) -> list[list[Layer]]:
    """Layers packed in order into sweeps whose statistics fit in `max_bytes` (at least one
    layer per sweep). `rows` (per layer, over all calibration batches) sizes kept inputs."""
    sweeps: list[list[Layer]] = []
    used = 0
    rows = rows or {}
    for layer in layers:
        need = _stats_bytes(layer, with_gram, rows.get(layer.name))
        if not sweeps or used + need > max_bytes:
            sweeps.append([])
            used = 0
        sweeps[-1].append(layer)
        used += need
    return sweeps


WIDE = 1024   # layers at least this wide keep their input rows instead of XᵀX when fewer


def _gram(x: torch.Tensor) -> torch.Tensor:
    """XᵀX of one batch: float32 products (fast) for wide layers, summed in float64."""
    if x.shape[1] >= WIDE:
        x32 = x.to(torch.float32)
        return (x32.T @ x32).to(torch.float64)
    return x.T @ x


class _Accumulator:
    def __init__(self, layer: Layer, with_gram: bool) -> None:
        self.layer, self.with_gram = layer, with_gram
        self.gram: torch.Tensor | None = None
        self.sq: torch.Tensor | None = None
        self.chunks: list[torch.Tensor] = []
        self.rows = 0

    def add(self, x: torch.Tensor, weight_rank: int) -> None:
        x = x.detach().to(torch.float64)
        if is_conv(self.layer):
            channel_dim = 1 if x.dim() == weight_rank else 0   # batched or not
            x = x.movedim(channel_dim, -1)
            x = x.reshape(-1, x.shape[-1])
            sq = (x * x).sum(dim=0)
            self.sq = sq if self.sq is None else self.sq + sq
        else:
            x = x.reshape(-1, x.shape[-1])
            if self.with_gram and x.shape[1] >= WIDE and self.gram is None \
                    and self.rows + x.shape[0] <= x.shape[1]:
                self.chunks.append(x.to(torch.float32))
            elif self.with_gram:
                if self.chunks:  # too many rows after all: fold the kept rows into H
                    self.gram = _gram(torch.cat(self.chunks).double())
                    self.chunks = []
                h = _gram(x)
                self.gram = h if self.gram is None else self.gram + h
            else:
                sq = (x * x).sum(dim=0)
                self.sq = sq if self.sq is None else self.sq + sq
        self.rows += x.shape[0]

    def result(self) -> LayerStats:
        if self.rows == 0:
            raise ConfigError(f"layer {self.layer.name} was not reached by any calibration batch")
        if self.chunks:
            x = torch.cat(self.chunks)
            return LayerStats(None, self.rows, x.double().pow(2).sum(0), inputs=x)
        sq = self.gram.diagonal().clone() if self.gram is not None else self.sq
        return LayerStats(self.gram, self.rows, sq)


def calibration_rows(graph: Graph, batches: Sequence[tuple], layers: Sequence[Layer]
                     ) -> dict[str, int]:
    """Rows each layer will see over the batches, from the batches' shapes (no model run)."""
    from .predict_latency import layer_rows
    total: dict[str, int] = {}
    for batch in batches:
        env: dict[str, int] = {}
        for name, t in zip(graph.inputs, batch):
            for d, size in zip(graph.values[name].shape, getattr(t, "shape", ())):
                if isinstance(d, str) and d.isidentifier():
                    env[d] = int(size)
        for layer in layers:
            try:
                total[layer.name] = total.get(layer.name, 0) + layer_rows(graph, layer, env)
            except Exception:   # a shape we can't evaluate: plan as if XᵀX were kept
                total.pop(layer.name, None)
    return total


def _batches(calibration: Sequence[Any]) -> list[tuple]:
    return [tuple(b) if isinstance(b, (tuple, list)) else (b,) for b in calibration]


def stream_layer_stats(graph: Graph, calibration: Sequence[Any], layers: Sequence[Layer],
                       max_bytes: int = 1 << 30, *, with_gram: bool = True
                       ) -> Iterator[tuple[Layer, LayerStats]]:
    """Yield (layer, stats) for every layer, sweeping the calibration batches once per group of
    layers whose statistics fit in `max_bytes`; each group is yielded when its sweep ends and
    then dropped. `with_gram=False` keeps only per-input-feature squared norms (enough for
    wanda) and then every layer's statistics are tiny."""
    batches = _batches(calibration)
    if not batches:
        raise ConfigError("no calibration batches to collect layer statistics from")
    interp = Interpreter(graph)
    for sweep in plan_sweeps(layers, max_bytes, with_gram, calibration_rows(graph, batches,
                                                                             layers)):
        accs: dict[str, list[_Accumulator]] = {}
        for layer in sweep:
            accs.setdefault(layer.node, []).append(_Accumulator(layer, with_gram))

        def observe(node: Node, inputs: list[Any], result: Any) -> None:
            mine = accs.get(node.outputs[0]) if node.outputs else None
            if not mine:
                return
            index = WEIGHT_OPS[node.op]
            x, w = inputs[index - 1], inputs[index]
            for acc in mine:
                acc.add(x, w.dim())

        for batch in batches:
            interp.run(batch, observe)
        for layer in sweep:
            acc = next(a for a in accs[layer.node] if a.layer is layer)
            yield layer, acc.result()


def _proxy_loss(outputs: list[Any]) -> torch.Tensor:
    terms = [0.5 * o.float().pow(2).mean() for o in outputs
             if isinstance(o, torch.Tensor) and o.is_floating_point()]
    if not terms:
        raise ConfigError("taylor scores need a floating-point graph output for the proxy loss")
    return torch.stack(terms).sum()


def taylor_scores(graph: Graph, calibration: Sequence[Any], layers: Sequence[Layer],
                  loss_fn: Callable[[list[torch.Tensor]], torch.Tensor] | None = None
                  ) -> dict[str, torch.Tensor]:
    """|W * g| per layer, g the gradient of the loss averaged over the calibration batches.

    The graph's weights are replaced by detached leaves that require grad (the graph's own
    tensors are untouched). Without `loss_fn(outputs) -> scalar`, the loss is a proxy with no
    labels: 0.5 * mean(y^2) summed over the float outputs y (how much each weight moves the
    output energy), not the task loss.
    """
    batches = _batches(calibration)
    if not batches:
        raise ConfigError("taylor scores need calibration batches")
    g = graph.copy()
    leaves: dict[str, torch.Tensor] = {}
    for layer in layers:
        if layer.weight not in leaves:
            w = graph.params[layer.weight]
            if not w.is_floating_point():
                raise ConfigError(f"layer {layer.name}: weight is {w.dtype}, not float")
            leaves[layer.weight] = w.detach().requires_grad_(True)
    g.params.update(leaves)
    interp = Interpreter(g)
    loss_of = loss_fn or _proxy_loss
    for batch in progress(batches, label="score-importance (taylor)", unit="batches"):
        loss = loss_of(interp.run(batch, grad=True)) / len(batches)
        loss.backward()
    scores = {}
    for layer in layers:
        leaf = leaves[layer.weight]
        grad = leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)
        w, gr = (leaf.detach().t(), grad.t()) if layer.op in _TRANSPOSED else (leaf.detach(), grad)
        scores[layer.name] = taylor(w, gr)
    return scores


# -- the pass ------------------------------------------------------------------------------
class Method(str, enum.Enum):
    MAGNITUDE = "magnitude"
    WANDA = "wanda"
    TAYLOR = "taylor"


@dataclasses.dataclass(frozen=True)
class ScoreImportance(Pass):
    """Provides "importance": {layer name: score tensor in the layer's layout}."""
    name: ClassVar[str] = "score-importance"
    provides: ClassVar[tuple[str, ...]] = ("importance",)
    method: Method = Method.MAGNITUDE

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "method", Method(self.method))
        except ValueError:
            raise ConfigError(f"importance method {self.method!r}: expected one of "
                              f"{', '.join(m.value for m in Method)}") from None

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        layers = graph.analyses.get("layers") or find_layers(graph)
        method, reason = self.method, None
        if method is not Method.MAGNITUDE and not ctx.calibration:
            method = Method.MAGNITUDE
            reason = f"no calibration data for {self.method.value}: used magnitude"
        if method is Method.WANDA:
            stream = stream_layer_stats(graph, ctx.calibration, layers, with_gram=False)
            scores = {layer.name: wanda(layer_weight(graph, layer), stats.sq_norm)
                      for layer, stats in progress(stream, total=len(layers),
                                                   label="score-importance", unit="layers")}
        elif method is Method.TAYLOR:
            scores = taylor_scores(graph, ctx.calibration, layers)
        else:
            scores = {layer.name: magnitude(layer_weight(graph, layer)) for layer in layers}
        g = graph.copy()
        g.analyses["importance"] = scores
        report: dict[str, Any] = {"method": method.value, "layers": len(scores)}
        if reason:
            report["reason"] = reason
        return PassResult(g, False, report)
