"""Block-sparse linear layers in TVM: a TVMScript BSR prim_func called with `relax.call_tir`.

y[M, N] = x[M, K] · Wᵀ with W [N, K] kept in R x C blocks (R along N, C along K), row-compressed
over the N/R block rows:

    data    [nnz, C, R]   each kept block, transposed (so the R outputs of one input are
                          contiguous: the inner loop is a vector FMA over R)
    indices [nnz] int64   the K block of each kept block
    indptr  [N/R + 1]     block row b holds blocks indptr[b] .. indptr[b+1]-1

The schedule is written into the function: block rows run in parallel (one thread each); rows of
x go ROW_TILE at a time over the block row's kept blocks into a ROW_TILE x R accumulator tile,
each block's C products summed in one expression per accumulator update (see `bsr_source`).
Work is nnz·R·C·M multiply-adds, the density of the dense product. M is symbolic.
"""
from __future__ import annotations

import numpy as np
import torch

from sparsecc.backends.torch.bsr import pack_blocks
from sparsecc.patterns import Block



def pack(weight: torch.Tensor, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(data [nnz, cols, rows] fp32, indices [nnz] int64, indptr [N/rows + 1] int64) of the
    nonzero blocks: the GPU runtime's BSR layout (`pack_blocks`), as numpy arrays."""
    w = pack_blocks(weight.detach().float(), rows, cols)
    return (w.blocks.cpu().numpy(), w.col_idx.cpu().numpy().astype(np.int64),
            w.row_ptr.cpu().numpy().astype(np.int64))


ROW_TILE = 4        # rows of x per step: each loaded weight vector feeds 4 FMAs


def bsr_source(n: int, k: int, rows: int, cols: int, nnz: int, dtype: str = "float32") -> str:
    """The kernel as TVMScript text. The `cols` products of one block are written out as one
    sum per accumulator update, so the accumulator (which TVM 0.27 places in a workspace buffer
    inside a parallel loop, out of LLVM's registers) is stored once per block, not per input."""
    nb, rt = n // rows, ROW_TILE
    zero = f"T.{dtype}(0)"

    def terms(row: str) -> str:
        return " + ".join(f"data[p, {kk}, j] * x[{row}, col + {kk}]" for kk in range(cols))

    tile = "\n".join(
        f"                for j in T.vectorized(T.int64({rows})):\n"
        f"                    acc[{r}, j] = acc[{r}, j] + ({terms(f'i0 * {rt} + {r}')})"
        for r in range(rt))
    return f"""
@T.prim_func(private=True)
def bsr_linear(x_h: T.handle, data: T.Buffer(({nnz}, {cols}, {rows}), "{dtype}"),
               indices: T.Buffer(({nnz},), "int64"), indptr: T.Buffer(({nb + 1},), "int64"),
               y_h: T.handle):
    T.func_attr({{"tir.noalias": True}})
    m = T.int64()
    x = T.match_buffer(x_h, (m, {k}), "{dtype}")
    y = T.match_buffer(y_h, (m, {n}), "{dtype}")
    for b in T.parallel(T.int64({nb})):
        for i0 in range(m // {rt}):
            acc = T.alloc_buffer(({rt}, {rows}), "{dtype}", scope="local")
            for r in T.unroll(T.int64({rt})):
                for j in T.vectorized(T.int64({rows})):
                    acc[r, j] = {zero}
            for p in range(indptr[b], indptr[b + 1]):
                col = indices[p] * {cols}
{tile}
            for r in T.unroll(T.int64({rt})):
                for j in T.vectorized(T.int64({rows})):
                    y[i0 * {rt} + r, b * {rows} + j] = acc[r, j]
        for i in range(m - m % {rt}, m):
            acc1 = T.alloc_buffer(({rows},), "{dtype}", scope="local")
            for j in T.vectorized(T.int64({rows})):
                acc1[j] = {zero}
            for p in range(indptr[b], indptr[b + 1]):
                col = indices[p] * {cols}
                for j in T.vectorized(T.int64({rows})):
                    acc1[j] = acc1[j] + ({terms("i")})
            for j in T.vectorized(T.int64({rows})):
                y[i, b * {rows} + j] = acc1[j]
"""


def bsr_prim_func(n: int, k: int, rows: int, cols: int, nnz: int, dtype: str = "float32"):
    import tvm
    return tvm.script.from_source(bsr_source(n, k, rows, cols, nnz, dtype))


def bsr_linear_call(b, node, x, shape: list, weight: torch.Tensor, pattern: Block):
    """Emit y = x · Wᵀ for the builder `b` (x [..., K]) through call_tir; returns y [..., N]."""
    relax = b.relax
    n, k = weight.shape
    data, indices, indptr = pack(weight, pattern.rows, pattern.cols)
    dtype = x.ty.dtype
    if dtype != "float32":
        data = data.astype(dtype)
    func = bsr_prim_func(n, k, pattern.rows, pattern.cols, len(indices), dtype)
    gv = b.bb.add_func(func, f"bsr_{node.outputs[0]}")
    m = 1
    for d in shape[:-1]:
        m = m * d
    x2 = b.emit(relax.op.reshape(x, [m, k]))
    y2 = b.emit(relax.call_tir(gv, [x2, relax.const(data), relax.const(indices, "int64"),
                                    relax.const(indptr, "int64")],
                               relax.TensorType([m, n], dtype)))
    return b.emit(relax.op.reshape(y2, shape[:-1] + [n]))
