"""Block-sparse linear layers in TVM: a TVMScript BSR prim_func called with `relax.call_tir`.

y[M, N] = x[M, K] · Wᵀ with W [N, K] kept in R x C blocks (R along N, C along K), row-compressed
over the N/R block rows:

    data    [nnz, C, R]   each kept block, transposed (so the R outputs of one input are
                          contiguous: the inner loop is a vector FMA over R)
    indices [nnz] int64   the K block of each kept block
    indptr  [N/R + 1]     block row b holds blocks indptr[b] .. indptr[b+1]-1

The schedule is written into the function. Rows of x go `row_tile(R)` at a time (6 for R = 16),
the row tiles in parallel; when M is not a multiple of the tile the last tile overlaps the one
before it (those rows are computed twice, to the same values), and an M below one tile runs row
by row. A row tile is first copied into a packed buffer [K/C, tile, C] (one sequential pass over
its rows of x; the tile's inputs of one K block are then contiguous, and stay in L1 whatever the
stride of x), then every block row b sweeps its kept blocks into a tile x R accumulator held in
registers: per input kk, the R weights of data[p, kk] (2 AVX2 vectors for R = 16) times each
row's input, broadcast, one FMA per accumulator vector (12 independent FMA chains).
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


ACC_VECTORS = 12    # accumulator registers of a row tile: 12 of AVX2's 16 (the rest hold the
                    # weight vectors and the broadcast input)
LANES = 8           # fp32 lanes of an AVX2 register


def row_tile(rows: int) -> int:
    """Rows of x per register tile: as many as fill ACC_VECTORS with their `rows` outputs
    (6 for 16-row blocks: 6 x 2 accumulators)."""
    return max(1, ACC_VECTORS // -(-rows // LANES))


def bsr_source(n: int, k: int, rows: int, cols: int, nnz: int, dtype: str = "float32") -> str:
    """The kernel as TVMScript text (the schedule is in the module docstring). The accumulator
    tile and the packed rows of x are global-scope buffers: TVM 0.27 puts small ones on the
    stack (LLVM keeps the accumulators in registers), where a "local" one would be a
    TVMBackendAllocWorkspace buffer that every update loads and stores."""
    nb, kb, rt = n // rows, k // cols, row_tile(rows)
    zero = f"T.{dtype}(0)"
    return f"""
@T.prim_func(private=True)
def bsr_linear(x_h: T.handle, data: T.Buffer(({nnz}, {cols}, {rows}), "{dtype}"),
               indices: T.Buffer(({nnz},), "int64"), indptr: T.Buffer(({nb + 1},), "int64"),
               y_h: T.handle):
    T.func_attr({{"tir.noalias": True}})
    m = T.int64()
    x = T.match_buffer(x_h, (m, {k}), "{dtype}")
    y = T.match_buffer(y_h, (m, {n}), "{dtype}")
    if m >= {rt}:
        for t in T.parallel((m + {rt - 1}) // {rt}):
            acc = T.alloc_buffer(({rt}, {rows}), "{dtype}")
            xp = T.alloc_buffer(({kb}, {rt}, {cols}), "{dtype}")
            i0: T.let[T.int64] = T.min(t * {rt}, m - {rt})
            for c in range(T.int64({kb})):
                for r in T.unroll(T.int64({rt})):
                    for kk in T.vectorized(T.int64({cols})):
                        xp[c, r, kk] = x[i0 + r, c * {cols} + kk]
            for b in range(T.int64({nb})):
                for r in T.unroll(T.int64({rt})):
                    for j in T.vectorized(T.int64({rows})):
                        acc[r, j] = {zero}
                for p in range(indptr[b], indptr[b + 1]):
                    c: T.let[T.int64] = indices[p]
                    for kk in T.unroll(T.int64({cols})):
                        for r in T.unroll(T.int64({rt})):
                            for j in T.vectorized(T.int64({rows})):
                                acc[r, j] = acc[r, j] + data[p, kk, j] * xp[c, r, kk]
                for r in T.unroll(T.int64({rt})):
                    for j in T.vectorized(T.int64({rows})):
                        y[i0 + r, b * {rows} + j] = acc[r, j]
    else:
        for i in T.parallel(m):
            acc1 = T.alloc_buffer(({rows},), "{dtype}")
            for b in range(T.int64({nb})):
                for j in T.vectorized(T.int64({rows})):
                    acc1[j] = {zero}
                for p in range(indptr[b], indptr[b + 1]):
                    col: T.let[T.int64] = indices[p] * {cols}
                    for kk in T.unroll(T.int64({cols})):
                        for j in T.vectorized(T.int64({rows})):
                            acc1[j] = acc1[j] + data[p, kk, j] * x[i, col + kk]
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
