"""Reconstruct: after masking, refit each sparse layer's surviving weights to its inputs.

For a layer with weight W [out, in], mask M (the pattern's kept weights) and calibration inputs
X (rows of the layer's input in the model whose earlier layers are already sparsified and
reconstructed), find Ŵ with Ŵ = 0 off the mask minimizing

    ||W Xᵀ - Ŵ Xᵀ||²_F = Σ_rows (w - ŵ) H (w - ŵ)ᵀ,      H = XᵀX.

Each output row is independent. Two solvers:

* exact per-row least squares: for a row with support S, ŵ_S = w H[:, S] H[S, S]⁻¹. Rows that
  share a support (a block pattern's block row) share one solve; 2:4 rows are solved in
  batches. Used when the solves are small enough (`EXACT_FLOPS`).
* Optimal Brain Surgeon with a fixed mask, as SparseGPT does: columns are visited in order; a
  pruned weight's value is pushed onto the not-yet-visited columns through the Cholesky factor
  of H⁻¹, with lazy updates in blocks of `BLOCK` columns. O(in³ + out·in²), for large layers.

H is damped by `DAMP`·mean(diag H) (inputs that never fire get 1) so it is invertible. Whatever the
solver, each row keeps the better of the refit and the plain masked row under the undamped H,
so reconstruction never raises the layer's error proxy tr(dW H dWᵀ) / tr(W H Wᵀ)
(`passes/estimate_error.py`). Layers are taken in graph order; layers that read the same input
(q, k, v) share one sweep over the calibration batches, so memory holds one input group's
statistics at a time. Linear layers only: conv layers are reported as not reconstructed.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch

from sparsecc.ir import Graph
from sparsecc.patterns import parse_pattern
from sparsecc.pipeline import Pass, PassContext, PassResult
from sparsecc.plan import Decision, Layer, Plan
from sparsecc.progress import progress

from .apply_masks import masked_part
from .estimate_error import relative_output_error
from .shrink_channels import shrunk_inputs
from .score_importance import layer_weight, stream_layer_stats, to_param_layout

DAMP = 0.01
BLOCK = 128                  # OBS lazy-update block (columns)
EXACT_FLOPS = 2e11           # above this, per-row least squares gives way to OBS
EXACT_CHUNK_BYTES = 1 << 28  # batched per-row systems held at once


def _damped(gram: torch.Tensor) -> torch.Tensor:
    h = gram.clone()
    diag = h.diagonal()
    dead = diag <= 0
    diag[dead] = 1.0
    diag += DAMP * float(diag[~dead].mean()) if bool((~dead).any()) else DAMP
    return h


def row_errors(weight: torch.Tensor, approx: torch.Tensor, gram: torch.Tensor) -> torch.Tensor:
    """Per row, (w - ŵ) H (w - ŵ)ᵀ in float64."""
    d = (weight - approx).double()
    return ((d @ gram) * d).sum(1)


def _exact(weight: torch.Tensor, mask: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(weight)
    supports, inverse = torch.unique(mask, dim=0, return_inverse=True)
    hw = weight @ h                               # [out, in]: row i is w_i H
    for s in range(supports.shape[0]):
        rows = (inverse == s).nonzero().flatten()
        cols = supports[s].nonzero().flatten()
        if cols.numel() == 0:
            continue
        a = h[cols][:, cols]
        out[rows[:, None], cols] = torch.linalg.solve(a, hw[rows][:, cols].T).T
    return out


def _exact_batched(weight: torch.Tensor, mask: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Rows with distinct supports of one size (N:M): batched solves in float32."""
    out = torch.zeros_like(weight)
    k = int(mask[0].sum())
    cols = mask.nonzero()[:, 1].view(weight.shape[0], k)          # each row's support, sorted
    hw = weight @ h
    h32 = h.float()           # damped, so float32 solves are accurate enough, and cheaper
    chunk = max(1, EXACT_CHUNK_BYTES // (4 * k * k))
    for r0 in range(0, weight.shape[0], chunk):
        c = cols[r0:r0 + chunk]                                   # [rows, k]
        a = h32[c[:, :, None], c[:, None, :]]                     # [rows, k, k]
        b = torch.gather(hw[r0:r0 + chunk], 1, c).float()         # [rows, k]
        x = torch.linalg.solve(a, b.unsqueeze(-1)).squeeze(-1)    # LU: faster than batched
                                                                  # Cholesky here (measured)
        out[r0:r0 + chunk].scatter_(1, c, x.double())
    return out


def _obs(weight: torch.Tensor, mask: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """SparseGPT's column sweep with the mask given."""
    w = weight.float()
    h = h.float()
    n = w.shape[1]
    hinv = torch.cholesky_inverse(torch.linalg.cholesky(h))
    u = torch.linalg.cholesky(hinv, upper=True)
    pruned = ~mask
    for i1 in range(0, n, BLOCK):
        i2 = min(i1 + BLOCK, n)
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        u1 = u[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = w1[:, i]
            q = torch.where(pruned[:, i1 + i], torch.zeros_like(col), col)
            e = (col - q) / u1[i, i]
            w1[:, i:] -= e[:, None] * u1[i, i:][None, :]
            w1[:, i] = q
            err1[:, i] = e
        w[:, i1:i2] = w1
        w[:, i2:] -= err1 @ u[i1:i2, i2:]
    return torch.where(mask, w, torch.zeros_like(w)).double()


def _supports(mask: torch.Tensor) -> int:
    return torch.unique(mask, dim=0).shape[0] if mask.numel() else 0


def exact_flops(mask: torch.Tensor, supports: int | None = None) -> float:
    """The cost of exact per-row least squares: a solve per distinct row support."""
    if not mask.numel():
        return 0.0
    supports = _supports(mask) if supports is None else supports
    return float(supports) * float(mask.sum(1).max()) ** 3 / 3


def solver_for(mask: torch.Tensor, supports: int | None = None) -> str:
    """"exact" when the per-row systems are small enough, else "obs"."""
    return "exact" if exact_flops(mask, supports) <= EXACT_FLOPS else "obs"


def reconstruct_weight(weight: torch.Tensor, mask: torch.Tensor, gram: torch.Tensor,
                       method: str = "auto") -> tuple[torch.Tensor, str]:
    """(Ŵ, solver): the refit weight [out, in] (zero off `mask`, weight's dtype) and the
    solver used. Never worse per row than `weight * mask` under `gram`."""
    mask = mask.bool()
    w = weight.detach().double()
    h = _damped(gram.double())
    supports = _supports(mask)
    method = solver_for(mask, supports) if method == "auto" else method
    if method == "exact":
        counts = mask.sum(1)
        same_size = bool((counts == counts[0]).all())
        many = supports > mask.shape[0] // 2
        fit = _exact_batched(w, mask, h) if same_size and many and int(counts[0]) > 0 \
            else _exact(w, mask, h)
    elif method == "obs":
        fit = _obs(w, mask, h)
    else:
        raise ValueError(f"reconstruct method {method!r}: expected auto, exact or obs")
    masked = w * mask
    g = gram.double()
    better = row_errors(w, fit, g) < row_errors(w, masked, g)
    out = torch.where(better[:, None], fit, masked)
    return out.to(weight.dtype), method


@dataclasses.dataclass(frozen=True)
class Reconstruct(Pass):
    """Refit the surviving weights of every N:M / block-sparse linear layer, and the kept input
    columns of dense linear layers whose producers lost channels (see the module docstring and
    `_refit_consumers`). Needs calibration batches; without them it changes nothing and says
    so."""
    name: ClassVar[str] = "reconstruct"
    requires: ClassVar[tuple[str, ...]] = ("plan", "dense_weights")
    method: str = "auto"

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        plan: Plan = graph.analyses["plan"]
        if not ctx.calibration:
            return PassResult(graph, False, {"skipped": "no calibration data"})
        sparse_nodes = {n.outputs[0] for n in graph.nodes if n.attrs.get("sparsity")}
        todo: list[Layer] = []
        skipped: dict[str, str] = {}
        for d in plan.decisions:
            if d.layer.node not in sparse_nodes or masked_part(parse_pattern(d.chosen)) is None:
                continue
            if d.layer.op != "linear":
                skipped[d.layer.name] = f"{d.layer.op}: only linear layers are reconstructed"
            else:
                todo.append(d.layer)
        g = graph.copy()
        dense_weights = graph.analyses.get("dense_weights", {})
        order = {n.outputs[0]: i for i, n in enumerate(g.nodes) if n.outputs}
        todo.sort(key=lambda layer: order[layer.node])
        by_input: dict[str, str] = {n.outputs[0]: n.inputs[0] for n in g.nodes
                                    if n.outputs and n.op == "linear"}
        groups: list[list[Layer]] = []
        for layer in todo:      # consecutive layers reading one input share a sweep
            if groups and by_input[groups[-1][0].node] == by_input[layer.node]:
                groups[-1].append(layer)
            else:
                groups.append([layer])
        done: dict[str, dict[str, Any]] = {}
        # the shrunk graph takes shrunk state (a KV cache with fewer heads)
        kept_pos = graph.analyses.get("kept_positions") or {}
        calibration = [shrunk_inputs(g, b, kept_pos) for b in ctx.calibration]
        for group in progress(groups, label="reconstruct", unit="layer groups"):
            for layer, stats in stream_layer_stats(g, calibration, group):
                masked = layer_weight(g, layer)
                dense = dense_weights.get(layer.weight, masked)
                h = stats.full_gram()
                fit, solver = reconstruct_weight(dense, masked != 0, h, self.method)
                g.params[layer.weight] = to_param_layout(layer, fit)
                done[layer.name] = {"solver": solver, "rows": stats.rows,
                                    "proxy_masked": relative_output_error(dense, masked, h),
                                    "proxy_reconstructed": relative_output_error(dense, fit, h)}
        refit = self._refit_consumers(graph, g, ctx, plan, order)
        done.update(refit)
        g.analyses["reconstruction"] = done
        g.analyses["plan"] = Plan(tuple(_note(d, done.get(d.layer.name), skipped.get(d.layer.name))
                                        for d in plan.decisions))
        return PassResult(g, bool(done), {"layers": done, "skipped": skipped})

    @staticmethod
    def _refit_consumers(graph: Graph, g: Graph, ctx: PassContext, plan: Plan,
                         order: dict[str, int]) -> dict[str, dict[str, Any]]:
        """Dense linear layers that lost input channels (their producers were channel-pruned):
        refit the kept columns so the layer's output, on the pruned model's inputs X_p, is
        closest to the unpruned layer's output on the unpruned model's inputs X:

            Ŵ = argmin ||W Xᵀ - Ŵ X_pᵀ||² = (W C) (X_pᵀX_p)⁻¹,   C = XᵀX_p,

        taken per row only where it beats the plain column removal."""
        from sparsecc.ir import Interpreter
        unshrunk: Graph | None = graph.analyses.get("unshrunk")
        kept_pos = graph.analyses.get("kept_positions") or {}
        if unshrunk is None:
            return {}
        nodes = {n.outputs[0]: n for n in g.nodes if n.outputs}
        todo = []
        for d in plan.decisions:
            layer = d.layer
            node = nodes.get(layer.node)
            if (layer.op != "linear" or node is None or node.attrs.get("sparsity")
                    or (layer.weight, 1) not in kept_pos or (layer.weight, 0) in kept_pos):
                continue
            todo.append((layer, kept_pos[(layer.weight, 1)]))
        todo.sort(key=lambda t: order[t[0].node])
        done: dict[str, dict[str, Any]] = {}
        batches = [tuple(b) if isinstance(b, (tuple, list)) else (b,) for b in ctx.calibration]
        for layer, keep in progress(todo, label="reconstruct (consumers)", unit="layers"):
            w_full = unshrunk.params[layer.weight].detach().double()
            w_keep = g.params[layer.weight].detach().double()
            stats = {"xx": 0, "xp": 0, "pp": 0}

            def capture(graph_: Graph, batch: tuple) -> torch.Tensor:
                seen: list[torch.Tensor] = []

                def observe(node, inputs, result) -> None:
                    if node.outputs and node.outputs[0] == layer.node:
                        seen.append(inputs[0].detach().double().reshape(-1, inputs[0].shape[-1]))
                Interpreter(graph_).run(batch, observe)
                return seen[0]

            for batch in batches:
                x, xp = capture(unshrunk, batch), capture(g, shrunk_inputs(g, batch, kept_pos))
                stats["xx"] = stats["xx"] + x.T @ x
                stats["xp"] = stats["xp"] + x.T @ xp
                stats["pp"] = stats["pp"] + xp.T @ xp
            wc = w_full @ stats["xp"]                              # [out, K']
            fit = torch.linalg.solve(_damped(stats["pp"]), wc.T).T
            base = ((w_full @ stats["xx"]) * w_full).sum(1)        # ||w X||² per row

            def err(w: torch.Tensor) -> torch.Tensor:
                return base - 2 * (wc * w).sum(1) + ((w @ stats["pp"]) * w).sum(1)
            e_fit, e_keep = err(fit), err(w_keep)
            out = torch.where((e_fit < e_keep)[:, None], fit, w_keep)
            g.params[layer.weight] = out.to(g.params[layer.weight].dtype)
            total = float(base.sum())
            done[layer.name] = {
                "solver": "consumer least squares", "rows": int(x.shape[0]) * len(batches),
                "kept_inputs": f"{len(keep)} of {w_full.shape[1]}",
                "proxy_masked": float(e_keep.sum()) / total if total > 0 else 0.0,
                "proxy_reconstructed": float(err(out).sum()) / total if total > 0 else 0.0}
        return done


def _note(d: Decision, done: dict[str, Any] | None, skipped: str | None) -> Decision:
    if done:
        return dataclasses.replace(d, reason=f"{d.reason}; reconstructed ({done['solver']}): "
                                             f"error proxy {done['proxy_masked']:.4f} -> "
                                             f"{done['proxy_reconstructed']:.4f}")
    if skipped:
        return dataclasses.replace(d, reason=f"{d.reason}; not reconstructed: {skipped}")
    return d
