"""Estimate each candidate pattern's error: the relative change of the layer's output.

For a layer Y = W X^T with calibration inputs X (rows of the layer's input) and a masked
weight W' = W * M, with dW = W - W' and H = X^T X:

    err = ||dW X^T||_F^2 / ||W X^T||_F^2 = tr(dW H dW^T) / tr(W H W^T)      (float64)

Without calibration data (no H) it falls back to ||dW||_F^2 / ||W||_F^2, which is exact when
the inputs are isotropic (H proportional to I). A 1-D `gram` is read as diag(H): conv layers
only collect per-input-channel squared norms n, so their error assumes uncorrelated input
channels, sum(dW^2 * n) / sum(W^2 * n) with n broadcast over the kernel positions.

`EstimateError` fills `Candidate.error` for N:M, block, channel+N:M and dense (0.0) candidates
of every plan decision, with masks from the "importance" scores when present (else |W|).

A channel candidate removes channels of a whole coupled group (when "channel_groups" is
known), so its error is measured where the removal shows: at the group's consumer layers,
whose input columns for the removed channels go to zero,

    err = sum_c tr(dW_c H_c dW_c^T) / sum_c tr(W_c H_c W_c^T)   over consumers c,

with dW_c = W_c restricted to the removed columns. The channels removed are the ones
`choose_removals` picks, so the error is the error of what would be applied.

Cost: tr(dW H dW^T) is O(out * in^2). Weights with more than MAX_ROWS output rows are
estimated from MAX_ROWS evenly spaced rows (each row adds its own term to both traces), and
wide products run in float32 with float64 sums: on a 4096 x 14336 layer, seconds.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, ClassVar

import torch

from sparsecc.errors import ConfigError
from sparsecc.ir import Graph
from sparsecc.patterns import Block, Channel, Composite, Dense, NM, parse_pattern
from sparsecc.pipeline import Pass, PassContext, PassResult
from sparsecc.progress import progress
from sparsecc.plan import Decision, Layer, Plan

from .apply_masks import apply_mask
from .group_channels import ChannelGroup
from .score_importance import LayerStats, layer_weight, per_input, stream_layer_stats
from .shrink_channels import channel_scores, choose_removals


MAX_ROWS = 512   # rows of a weight used to estimate its error terms when it has more


def relative_output_error(weight: torch.Tensor, masked_weight: torch.Tensor,
                          gram: torch.Tensor | None = None) -> float:
    """tr(dW H dW^T) / tr(W H W^T) in float64 (see the module docstring); weights in the
    layer's layout [out, in, *kernel]; `gram` [in, in], or its diagonal, or None."""
    num, den = output_error_terms(weight, masked_weight, gram)
    if den <= 0.0:
        return 0.0 if num <= 0.0 else float("inf")
    return num / den


def output_error_terms(weight: torch.Tensor, masked_weight: torch.Tensor,
                       gram: torch.Tensor | None = None, inputs: torch.Tensor | None = None
                       ) -> tuple[float, float]:
    """(tr(dW H dW^T), tr(W H W^T)): the numerator and denominator of the relative error.
    With `inputs` X (rows of the layer input) instead of H: (||dW X^T||^2, ||W X^T||^2)."""
    weight, masked_weight = weight.detach(), masked_weight.detach()
    if weight.shape[0] > MAX_ROWS and (inputs is not None
                                       or (gram is not None and gram.dim() == 2)):
        # Each output row contributes its own term to both traces: estimate them from
        # evenly spaced rows (deterministic), so a 14336-wide layer costs seconds, not minutes.
        rows = torch.linspace(0, weight.shape[0] - 1, MAX_ROWS).round().long()
        weight, masked_weight = weight[rows], masked_weight[rows]
    w = weight.to(torch.float64)
    dw = w - masked_weight.to(torch.float64)
    if inputs is not None:
        x = inputs.float()
        num = (dw.reshape(dw.shape[0], -1).float() @ x.T).double().pow(2).sum()
        den = (w.reshape(w.shape[0], -1).float() @ x.T).double().pow(2).sum()
    elif gram is None:
        num, den = dw.pow(2).sum(), w.pow(2).sum()
    elif gram.dim() == 1:
        scale = per_input(gram, w)
        num, den = (dw.pow(2) * scale).sum(), (w.pow(2) * scale).sum()
    else:
        h = gram.detach().to(torch.float64)
        w2, dw2 = w.reshape(w.shape[0], -1), dw.reshape(dw.shape[0], -1)
        if h.shape != (w2.shape[1], w2.shape[1]):
            raise ValueError(f"gram of shape {tuple(h.shape)} for a weight of shape "
                             f"{tuple(w.shape)}")
        if h.shape[0] >= 1024:  # float32 products for wide layers; sums stay float64
            h32, dw32, w32 = h.float(), dw2.float(), w2.float()
            num = ((dw32 @ h32).double() * dw2).sum()
            den = ((w32 @ h32).double() * w2).sum()
        else:
            num, den = ((dw2 @ h) * dw2).sum(), ((w2 @ h) * w2).sum()
    return float(num), float(den)


def _measured(p: Any) -> bool:
    return isinstance(p, (Dense, NM, Block, Composite))


def _needs_error(d: Decision) -> bool:
    for c in d.candidates:
        try:
            if _measured(parse_pattern(c.pattern)):
                return True
        except ConfigError:
            continue
    return False


RECON_ROWS = 128        # rows refit to estimate a candidate's error after reconstruction
RECON_FLOPS = 2e10      # past this, the estimate stays the masked error


def reconstructed_error(w: torch.Tensor, masked: torch.Tensor, gram: torch.Tensor
                        ) -> float | None:
    """The relative output error after `passes/reconstruct.py` refits `masked` (estimated on
    RECON_ROWS evenly spaced rows), or None where that costs more than RECON_FLOPS."""
    from .reconstruct import exact_flops, reconstruct_weight
    if w.shape[0] > RECON_ROWS:
        rows = torch.linspace(0, w.shape[0] - 1, RECON_ROWS).round().long()
        w, masked = w[rows], masked[rows]
    mask = masked != 0
    if exact_flops(mask) > RECON_FLOPS:
        return None
    fit, _ = reconstruct_weight(w, mask, gram, "exact")
    num, den = output_error_terms(w, fit, gram)
    return num / den if den > 0 else 0.0


def candidate_errors(graph: Graph, decision: Decision, stats: LayerStats | None,
                     scores: torch.Tensor | None, reconstruct: bool = False) -> Decision:
    """`decision` with the error of each N:M / block / composite / dense candidate filled in;
    with `reconstruct`, a linear layer's N:M / block errors are those after reconstruction."""
    layer = decision.layer
    w = layer_weight(graph, layer)
    if scores is not None and tuple(scores.shape) != tuple(w.shape):
        scores = None
    gram = inputs = None
    if stats is not None:
        inputs = stats.inputs
        gram = stats.gram if stats.gram is not None else stats.sq_norm
    shape = tuple(int(s) for s in w.shape)
    # H for the post-reconstruction errors, once per layer (only when they are asked for)
    full = stats.full_gram() if reconstruct and stats is not None and layer.op == "linear" \
        else None
    out = []
    for c in decision.candidates:
        try:
            p = parse_pattern(c.pattern)
        except ConfigError as e:
            out.append(dataclasses.replace(c, reason=c.reason or str(e)))
            continue
        if isinstance(p, Dense):
            out.append(dataclasses.replace(c, error=0.0))
        elif _measured(p):
            why = p.check(shape, layer.op)
            if why:
                out.append(dataclasses.replace(c, reason=c.reason or why))
            else:
                masked = apply_mask(w, p.mask(w, scores))
                err = None
                if full is not None and not isinstance(p, Composite):
                    err = reconstructed_error(w, masked, full)
                if err is None:
                    num, den = output_error_terms(w, masked, gram, inputs)
                    err = num / den if den > 0 else 0.0
                out.append(dataclasses.replace(c, error=err))
        else:
            out.append(c)
    return dataclasses.replace(decision, candidates=tuple(out))


def _with_stats(graph: Graph, calibration: Any, layers: list[Layer],
                max_bytes: int) -> Iterable[tuple[Layer, LayerStats | None]]:
    if not calibration:
        return ((layer, None) for layer in layers)
    return stream_layer_stats(graph, calibration, layers, max_bytes)


class _ChannelRequests:
    """Channel candidates to measure: (group, pattern) -> channels removed and error terms."""

    def __init__(self, graph: Graph, plan: Plan, groups: list[ChannelGroup]) -> None:
        self.graph = graph
        self.groups = groups
        self.removed: dict[tuple[int, str], torch.Tensor] = {}
        self.terms: dict[tuple[int, str], list[float]] = {}
        self.unprunable: dict[str, str] = {}
        self.group_of: dict[str, int] = {}
        self.scores: dict[int, torch.Tensor] = {}
        for gi, grp in enumerate(groups):
            for name in grp.producers:
                self.group_of.setdefault(name, gi)
        for d in plan.decisions:
            for c in d.candidates:
                p = _parse(c.pattern)
                if not isinstance(p, Channel) or d.layer.name not in self.group_of:
                    continue
                gi = self.group_of[d.layer.name]
                grp = groups[gi]
                if not grp.prunable:
                    self.unprunable[d.layer.name] = f"channels can't be removed: {grp.reason}"
                    continue
                key = (gi, str(p))
                if key not in self.removed:
                    if gi not in self.scores:
                        self.scores[gi] = channel_scores(graph, grp)
                    self.removed[key] = choose_removals(graph, grp, p, self.scores[gi])
                    self.terms[key] = [0.0, 0.0]

    def consumers(self) -> set[str]:
        return {name for gi, _ in self.removed for name in self.groups[gi].consumers}

    def add(self, layer: Layer, stats: LayerStats | None) -> None:
        """Accumulate this consumer layer's share of every request it takes part in."""
        w = None
        for (gi, pattern), removed in self.removed.items():
            grp = self.groups[gi]
            if layer.name not in grp.consumers:
                continue
            w = layer_weight(self.graph, layer) if w is None else w
            drop = grp.positions(layer.weight, _in_axis(layer), removed)
            kept_part = w.clone()
            kept_part.index_fill_(1, drop, 0)  # masked = removed columns zeroed
            gram = None if stats is None else (
                stats.gram if stats.gram is not None else stats.sq_norm)
            num, den = output_error_terms(w, kept_part, gram,
                                          None if stats is None else stats.inputs)
            self.terms[(gi, pattern)][0] += num
            self.terms[(gi, pattern)][1] += den

    def update(self, d: Decision) -> Decision:
        out = []
        for c in d.candidates:
            p = _parse(c.pattern)
            if isinstance(p, Channel) and d.layer.name in self.unprunable:
                c = dataclasses.replace(c, reason=c.reason or self.unprunable[d.layer.name])
            elif isinstance(p, Channel) and d.layer.name in self.group_of:
                num, den = self.terms.get((self.group_of[d.layer.name], str(p)), (0.0, 0.0))
                c = dataclasses.replace(c, error=num / den if den > 0 else 0.0)
            out.append(c)
        return dataclasses.replace(d, candidates=tuple(out))


def _parse(text: str) -> Any:
    try:
        return parse_pattern(text)
    except ConfigError:
        return None


def _in_axis(layer: Layer) -> int:
    """The axis of the weight *parameter* that holds input features."""
    return 0 if layer.op in ("mm", "matmul", "addmm") else 1


@dataclasses.dataclass(frozen=True)
class EstimateError(Pass):
    """Fills the plan's candidate errors; `max_bytes` bounds the Gram matrices held at once."""
    name: ClassVar[str] = "estimate-error"
    requires: ClassVar[tuple[str, ...]] = ("plan",)
    max_bytes: int = 1 << 30

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        plan: Plan = graph.analyses["plan"]
        importance: dict[str, torch.Tensor] = graph.analyses.get("importance") or {}
        channels = _ChannelRequests(graph, plan, graph.analyses.get("channel_groups") or [])
        todo = [d for d in plan.decisions if _needs_error(d)]
        by_name = {d.layer.name: d for d in todo}
        needed = channels.consumers()
        layers = [d.layer for d in todo] + [d.layer for d in plan.decisions
                                            if d.layer.name in needed
                                            and d.layer.name not in by_name]
        updated: dict[str, Decision] = {}
        reconstruct = bool(ctx.calibration and getattr(ctx.config, "reconstruct", False))
        stream = _with_stats(graph, ctx.calibration, layers, self.max_bytes)
        for layer, stats in progress(stream, total=len(layers), label="estimate-error",
                                      unit="layers"):
            if layer.name in by_name:
                updated[layer.name] = candidate_errors(graph, by_name[layer.name], stats,
                                                       importance.get(layer.name), reconstruct)
            if layer.name in needed:
                channels.add(layer, stats)
        g = graph.copy()
        g.analyses["plan"] = Plan(tuple(channels.update(updated.get(d.layer.name, d))
                                        for d in plan.decisions))
        source = ("calibration Gram matrices" if ctx.calibration
                  else "weights only (assumes isotropic inputs)")
        return PassResult(g, False, {"layers": len(updated), "source": source,
                                     "after_reconstruction": reconstruct})
