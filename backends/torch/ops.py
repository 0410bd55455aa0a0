"""Our sparse kernels as torch operators, so a compiled module is plain torch to `torch.compile`.

    torch.ops.sparsecc.linear_2to4(x, values[], meta[], packed, bias) -> y [..., N]
    torch.ops.sparsecc.linear_bsr(x, blocks, row_ptr, col_idx, bias, in_features) -> y [..., N]

Each has a fake (meta) implementation, so `torch.compile(..., fullgraph=True)` traces through it
and inductor fuses what surrounds it, and an autograd formula for the input (the sparse weights
are frozen), so the dense parts around them can be fine-tuned.

2:4 weights travel in a portable compressed form (`compress_2to4`): `values` [N, K/2] (the two
kept entries of every four along K) and `meta` [N, K/4] uint8 (their positions, 2 bits each).
`linear_2to4` takes lists of them: the weights of sibling layers (q/k/v, gate/up) stacked
along N run as one GEMM, N the sum of theirs. On a CUDA device with fp16/bf16 and N, K
multiples of 16, `packed` holds the (stacked) weight in cuSPARSELt's own form (made by `pack_cusparselt` when the module moves there) and the op runs
cuSPARSELt with the tuned layout and algorithm (semi24.py); elsewhere `packed` is empty and the
op runs the reference: the weight expanded to dense and `F.linear`.

Block-sparse weights are BSR (bsr.py's layout: blocks [nnz, cols, rows], int32 row_ptr and
col_idx). On CUDA the op runs our Triton kernel; on the CPU torch's sparse BSR matmul.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

from .bsr import BsrLinear, BsrWeight
from .semi24 import KernelUnavailable, Semi24Config, Semi24Linear, check_semi24


# -- the portable 2:4 form ------------------------------------------------------------------
def compress_2to4(weight: Tensor) -> tuple[Tensor, Tensor]:
    """(values [N, K/2], meta [N, K/4] uint8) of a weight [N, K] with at most two nonzeros in
    every four consecutive entries along K (a group with fewer keeps zeros)."""
    n, k = weight.shape
    if k % 4:
        raise ValueError(f"weight {n}x{k}: K is not a multiple of 4")
    groups = weight.reshape(n, k // 4, 4)
    nonzero = groups != 0
    if nonzero.numel() and int(nonzero.sum(-1).max()) > 2:
        raise ValueError(f"weight {n}x{k} has more than two nonzeros in a group of four")
    # nonzeros first, then the lowest positions; the two chosen, in position order
    score = nonzero.to(torch.int16) * 8 - torch.arange(4, dtype=torch.int16,
                                                       device=weight.device)
    idx = score.topk(2, dim=-1).indices.sort(-1).values
    values = groups.gather(-1, idx).reshape(n, k // 2).contiguous()
    meta = (idx[..., 0] | (idx[..., 1] << 2)).to(torch.uint8).contiguous()
    return values, meta


def decompress_2to4(values: Tensor, meta: Tensor) -> Tensor:
    """The dense weight [N, K] of `compress_2to4`'s form."""
    n, half = values.shape
    groups = half // 2
    m = meta.to(torch.int64)
    idx = torch.stack([m & 3, (m >> 2) & 3], -1)
    dense = values.new_zeros(n, groups, 4).scatter_(-1, idx, values.reshape(n, groups, 2))
    return dense.reshape(n, groups * 4)


def pack_cusparselt(values: list[Tensor], meta: list[Tensor]) -> tuple[Tensor, str | None]:
    """cuSPARSELt's compressed form of the CUDA fp16/bf16 2:4 weights stacked along N, or
    (empty, the reason the reference runs instead)."""
    dense = torch.cat([decompress_2to4(v, m) for v, m in zip(values, meta)])
    why = check_semi24(dense)
    if why is not None:
        return values[0].new_empty(0), why
    return torch._cslt_compress(dense.contiguous()), None


# -- sparsecc::linear_2to4 --------------------------------------------------------------------
def _cslt_linear(x: Tensor, packed: Tensor, bias: Tensor | None, n: int, k: int) -> Tensor:
    layer = Semi24Linear.from_packed(packed, n, k, packed.dtype, bias)
    x2d = x.reshape(-1, k)
    if torch.cuda.is_current_stream_capturing():
        # inside a CUDA-graph capture nothing may be timed: the tuned choice if there is one
        cfg = layer.lookup(x2d.shape[0], True) or Semi24Config("col", 0, 0.0)
        y = layer._run(x2d, cfg.layout, cfg.alg_id, True)
    else:
        # eager: the tuned choice in its cheap-to-set-up layout (semi24.py's warm-up call)
        y = layer(x2d, row_major=True, warm=True).contiguous()
    return y.view(*x.shape[:-1], n)


@torch.library.custom_op("sparsecc::linear_2to4", mutates_args=())
def linear_2to4(x: Tensor, values: list[Tensor], meta: list[Tensor], packed: Tensor,
                bias: Tensor | None) -> Tensor:
    n, k = sum(v.shape[0] for v in values), values[0].shape[1] * 2
    if x.is_cuda and packed.numel() and x.dtype == values[0].dtype:
        return _cslt_linear(x, packed, bias, n, k)
    w = torch.cat([decompress_2to4(v, m) for v, m in zip(values, meta)]).to(x.dtype)
    return F.linear(x, w, None if bias is None else bias.to(x.dtype))


@linear_2to4.register_fake
def _(x, values, meta, packed, bias):
    return x.new_empty((*x.shape[:-1], sum(v.shape[0] for v in values)))


def _setup_2to4(ctx, inputs, output):
    _, values, meta, _, _ = inputs
    ctx.save_for_backward(*values, *meta)
    ctx.count = len(values)


def _backward_2to4(ctx, grad):
    saved = ctx.saved_tensors
    values, meta = saved[:ctx.count], saved[ctx.count:]
    w = torch.cat([decompress_2to4(v, m) for v, m in zip(values, meta)]).to(grad.dtype)
    return grad @ w, [None] * ctx.count, [None] * ctx.count, None, None


linear_2to4.register_autograd(_backward_2to4, setup_context=_setup_2to4)


# -- sparsecc::linear_bsr ---------------------------------------------------------------------
def _bsr_weight(blocks: Tensor, row_ptr: Tensor, col_idx: Tensor, in_features: int) -> BsrWeight:
    _, cols, rows = blocks.shape
    return BsrWeight(blocks, row_ptr, col_idx, ((row_ptr.numel() - 1) * rows, in_features),
                     rows, cols)


@torch.library.custom_op("sparsecc::linear_bsr", mutates_args=())
def linear_bsr(x: Tensor, blocks: Tensor, row_ptr: Tensor, col_idx: Tensor,
               bias: Tensor | None, in_features: int) -> Tensor:
    w = _bsr_weight(blocks, row_ptr, col_idx, in_features)
    n = w.shape[0]
    if x.is_cuda:
        try:
            y = BsrLinear.from_packed(w, bias)(x.to(blocks.dtype))
            return y.to(x.dtype)
        except KernelUnavailable:
            pass
    if x.device.type == "cpu" and x.dtype == blocks.dtype:
        with warnings.catch_warnings():       # "Sparse BSR tensor support is in beta state"
            warnings.simplefilter("ignore", UserWarning)
            sparse = torch.sparse_bsr_tensor(row_ptr.to(torch.int64), col_idx.to(torch.int64),
                                             blocks.transpose(1, 2), size=w.shape)
            x2d = x.reshape(-1, in_features)
            y = (sparse @ x2d.t()).t()
        if bias is not None:
            y = y + bias.to(y.dtype)
        return y.reshape(*x.shape[:-1], n).contiguous()
    return F.linear(x, w.to_dense().to(x.dtype), None if bias is None else bias.to(x.dtype))


@linear_bsr.register_fake
def _(x, blocks, row_ptr, col_idx, bias, in_features):
    return x.new_empty((*x.shape[:-1], (row_ptr.shape[0] - 1) * blocks.shape[2]))


def _setup_bsr(ctx, inputs, output):
    _, blocks, row_ptr, col_idx, _, in_features = inputs
    ctx.save_for_backward(blocks, row_ptr, col_idx)
    ctx.in_features = in_features


def _backward_bsr(ctx, grad):
    blocks, row_ptr, col_idx = ctx.saved_tensors
    w = _bsr_weight(blocks, row_ptr, col_idx, ctx.in_features).to_dense().to(grad.dtype)
    return grad @ w, None, None, None, None, None


linear_bsr.register_autograd(_backward_bsr, setup_context=_setup_bsr)
