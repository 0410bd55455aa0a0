"""Block-sparse linear layers: our own Triton BSR kernel, y = x Wᵀ + b with W [N, K] in blocks.

The weight is cut into blocks of `rows` x `cols` (rows along N, the output features; cols along K,
the inputs) and only the nonzero blocks are kept, row-compressed over block rows of N:

    blocks   [nnz, cols, rows]   each kept block, transposed (Wᵀ tiles: K-major, N contiguous)
    row_ptr  [N/rows + 1] int32  block row r holds blocks row_ptr[r] .. row_ptr[r+1]-1
    col_idx  [nnz] int32         the K block of each kept block

One Triton program computes a BLOCK_M x rows tile of y: it walks the kept blocks of its block
row (UNROLL at a time: rows are padded with zero blocks to a multiple of it), loads the matching BLOCK_M x cols tile of x and accumulates x_tile · blockᵀ in fp32 on the
tensor cores, so it does nnz/(N/rows·K/cols) of the dense work: density d costs ~d of the FLOPs
and of the weight bytes (x is re-read once per block row, from L2 when it fits). Programs are
ordered in groups of GROUP_M row tiles (the matmul tutorial's swizzle) for L2 reuse of x.
BLOCK_M, warps and pipeline stages are autotuned per (power of two of M, N, K, nnz, block) with
`triton.autotune` over 8 configurations (tiles taller than M pruned), with short timing runs;
the chosen configuration is kept in the tuning cache (tuning.py), and a process that finds it
there launches the kernel with it directly, without autotuning.

Triton is imported when a kernel is first built, so the packing and the reference (used by the
CPU tests) need no GPU.
"""
from __future__ import annotations

import dataclasses
import functools

import torch
import torch.nn.functional as F

from .semi24 import KernelUnavailable
from .tuning import entry_key, tuning_cache

BLOCK_SIZES = (16, 32, 64, 128)     # supported block edges (tensor-core tiles need >= 16)
DTYPES = (torch.float16, torch.bfloat16, torch.float32)
UNROLL = 1      # kept blocks per inner step (2 measured slower on the H100: 340.7 vs 388.0 µs)


@dataclasses.dataclass(frozen=True)
class BsrWeight:
    blocks: torch.Tensor        # [nnz, cols, rows]
    row_ptr: torch.Tensor       # [N // rows + 1] int32
    col_idx: torch.Tensor       # [nnz] int32
    shape: tuple[int, int]      # (N, K)
    rows: int
    cols: int

    @property
    def nnz(self) -> int:
        return int(self.col_idx.numel())

    @property
    def density(self) -> float:
        n, k = self.shape
        return self.nnz / ((n // self.rows) * (k // self.cols))

    def to_dense(self) -> torch.Tensor:
        n, k = self.shape
        grid = torch.zeros(n // self.rows, k // self.cols, self.rows, self.cols,
                           dtype=self.blocks.dtype, device=self.blocks.device)
        counts = self.row_ptr[1:] - self.row_ptr[:-1]
        block_rows = torch.repeat_interleave(torch.arange(n // self.rows, device=counts.device),
                                             counts.long())
        grid.index_put_((block_rows, self.col_idx.long()), self.blocks.transpose(1, 2),
                        accumulate=True)                 # padding blocks are zero
        return grid.permute(0, 2, 1, 3).reshape(n, k)


def check_bsr(weight: torch.Tensor, rows: int, cols: int) -> str | None:
    """Why `weight` [N, K] can't take the BSR kernel with rows x cols blocks, or None."""
    if weight.dim() != 2:
        return f"weight has {weight.dim()} dims, not 2"
    if rows not in BLOCK_SIZES or cols not in BLOCK_SIZES:
        return f"block {rows}x{cols}: the BSR kernel takes edges {', '.join(map(str, BLOCK_SIZES))}"
    n, k = weight.shape
    if n % rows or k % cols:
        return f"weight {n}x{k} is not a whole number of {rows}x{cols} blocks"
    if weight.dtype not in DTYPES:
        return f"the BSR kernel takes float16/bfloat16/float32, not {weight.dtype}"
    return None


def pack_bsr(weight: torch.Tensor, rows: int, cols: int, pad_to: int = 1) -> BsrWeight:
    """Keep the blocks of `weight` that hold any nonzero; `pad_to` > 1 pads every block row
    with zero blocks (at K block 0) to a multiple of it, for a kernel that takes blocks in
    groups. Checked for this kernel (`check_bsr`); `pack_blocks` packs any whole blocks."""
    reason = check_bsr(weight, rows, cols)
    if reason:
        raise KernelUnavailable(reason)
    return pack_blocks(weight, rows, cols, pad_to)


def pack_blocks(weight: torch.Tensor, rows: int, cols: int, pad_to: int = 1) -> BsrWeight:
    """The BSR layout of `weight` [N, K] (N, K multiples of rows, cols), no kernel checks:
    shared by the Triton kernel here and the TVM backend's TIR kernel."""
    n, k = weight.shape
    if n % rows or k % cols:
        raise ValueError(f"weight {n}x{k} is not a whole number of {rows}x{cols} blocks")
    grid = weight.reshape(n // rows, rows, k // cols, cols).permute(0, 2, 1, 3)   # [R, C, r, c]
    keep = (grid != 0).any(-1).any(-1)                                            # [R, C]
    block_rows, block_cols = keep.nonzero(as_tuple=True)
    blocks = grid[block_rows, block_cols].transpose(1, 2).contiguous()           # [nnz, c, r]
    counts = keep.sum(1)
    if pad_to > 1:
        pads = (-counts) % pad_to
        if int(pads.sum()):
            order, pos = [], 0
            zero = len(block_cols)                 # index of the appended zero block
            for count, pad in zip(counts.tolist(), pads.tolist()):
                order += list(range(pos, pos + count)) + [zero] * pad
                pos += count
            blocks = torch.cat([blocks, blocks.new_zeros(1, cols, rows)])[order].contiguous()
            block_cols = torch.cat([block_cols, block_cols.new_zeros(1)])[order]
            counts = counts + pads
    row_ptr = torch.zeros(n // rows + 1, dtype=torch.int32, device=weight.device)
    row_ptr[1:] = counts.cumsum(0)
    return BsrWeight(blocks, row_ptr, block_cols.to(torch.int32).contiguous(), (n, k), rows, cols)


def bsr_linear_reference(x: torch.Tensor, w: BsrWeight,
                         bias: torch.Tensor | None = None) -> torch.Tensor:
    """The same product with torch ops (dense): what the kernel must compute."""
    return F.linear(x, w.to_dense().to(x.dtype), None if bias is None else bias.to(x.dtype))


def _quick_bench(triton) -> dict:
    """Autotune with short timing runs (the default spends ~2 s per shape)."""
    import inspect
    params = inspect.signature(triton.autotune).parameters
    if "do_bench" in params:
        def bench(fn, quantiles=None, **_):
            return triton.testing.do_bench(fn, warmup=5, rep=20, quantiles=quantiles)
        return {"do_bench": bench}
    if "warmup" in params:
        return {"warmup": 5, "rep": 20}
    return {}


@functools.cache
def _kernel():
    import triton
    import triton.language as tl

    configs = [triton.Config({"BLOCK_M": bm, "GROUP_M": 8}, num_warps=nw, num_stages=ns)
               for bm, nw in ((64, 4), (128, 4), (128, 8), (256, 8)) for ns in (3, 4)]

    def prune(configs, named_args, **_):
        # a tile taller than the rows of x only wastes work: keep the smallest that covers M
        m = named_args["M"]
        fit = [c for c in configs if c.kwargs["BLOCK_M"] <= max(64, m)]
        return fit or configs[:2]

    @triton.jit
    def bsr_linear(x_ptr, w_ptr, row_ptr, col_idx, b_ptr, y_ptr, M, N, K, NNZ, M_CLASS,
                   sxm, sxk, sym, syn, HAS_BIAS: tl.constexpr, BS_N: tl.constexpr,
                   BS_K: tl.constexpr, UNROLL: tl.constexpr, BLOCK_M: tl.constexpr,
                   GROUP_M: tl.constexpr):
        pid = tl.program_id(0)
        tiles_m = tl.cdiv(M, BLOCK_M)
        tiles_n = N // BS_N
        per_group = GROUP_M * tiles_n
        first_m = (pid // per_group) * GROUP_M
        group_m = tl.minimum(tiles_m - first_m, GROUP_M)
        pid_m = first_m + (pid % per_group) % group_m
        pid_n = (pid % per_group) // group_m

        start = tl.load(row_ptr + pid_n)
        end = tl.load(row_ptr + pid_n + 1)
        rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        rk = tl.arange(0, BS_K)
        rn = tl.arange(0, BS_N)
        in_m = rm < M
        acc = tl.zeros((BLOCK_M, BS_N), dtype=tl.float32)
        for i in range(start, end, UNROLL):       # rows hold a multiple of UNROLL blocks
            for j in tl.static_range(UNROLL):
                kb = tl.load(col_idx + i + j)
                a = tl.load(x_ptr + rm[:, None] * sxm + (kb * BS_K + rk)[None, :] * sxk,
                            mask=in_m[:, None], other=0.0)
                b = tl.load(w_ptr + (i + j) * (BS_K * BS_N) + rk[:, None] * BS_N + rn[None, :])
                acc = tl.dot(a, b, acc)
        if HAS_BIAS:
            acc += tl.load(b_ptr + pid_n * BS_N + rn).to(tl.float32)[None, :]
        tl.store(y_ptr + rm[:, None] * sym + (pid_n * BS_N + rn)[None, :] * syn,
                 acc.to(y_ptr.dtype.element_ty), mask=in_m[:, None])

    tuned = triton.autotune(configs=configs, key=["M_CLASS", "N", "K", "NNZ", "BS_N", "BS_K"],
                            prune_configs_by={"early_config_prune": prune},
                            **_quick_bench(triton))(bsr_linear)
    return triton, tuned, bsr_linear


KIND = "triton-bsr"
_CONFIG_KEYS = {"BLOCK_M": (16, 32, 64, 128, 256), "GROUP_M": (1, 2, 4, 8, 16),
                "num_warps": (1, 2, 4, 8, 16), "num_stages": (1, 2, 3, 4, 5, 6)}


def _check_entry(v) -> str | None:
    for key, allowed in _CONFIG_KEYS.items():
        if v.get(key) not in allowed:
            return f"{key} {v.get(key)!r} is not one of {allowed}"
    return None


def _config_of(tuned) -> dict | None:
    """The config the autotuner just used, as a cache entry."""
    cfg = getattr(tuned, "best_config", None)
    if cfg is None:
        return None
    entry = {"BLOCK_M": cfg.kwargs.get("BLOCK_M"), "GROUP_M": cfg.kwargs.get("GROUP_M"),
             "num_warps": cfg.num_warps, "num_stages": cfg.num_stages}
    return entry if _check_entry(entry) is None else None


class BsrLinear:
    """A packed block-sparse weight run by the Triton kernel."""

    def __init__(self, weight: torch.Tensor, rows: int, cols: int,
                 bias: torch.Tensor | None = None, unroll: int = UNROLL) -> None:
        if not weight.is_cuda:
            raise KernelUnavailable("the Triton BSR kernel needs a CUDA tensor")
        self.unroll = unroll
        self.packed = pack_bsr(weight, rows, cols, pad_to=unroll)
        self.kernel = f"triton-bsr{rows}x{cols}"
        self.out_features, self.in_features = weight.shape
        self.dtype = weight.dtype
        self.bias = None if bias is None else bias.to(weight.dtype).contiguous()
        self._configs: dict[int, dict] = {}      # M class -> launch config

    @classmethod
    def from_packed(cls, packed: BsrWeight, bias: torch.Tensor | None = None) -> "BsrLinear":
        """A layer over a weight already in BSR form (as `pack_bsr` makes it, no padding)."""
        if not packed.blocks.is_cuda:
            raise KernelUnavailable("the Triton BSR kernel needs a CUDA tensor")
        self = cls.__new__(cls)
        self.unroll, self.packed = 1, packed
        self.kernel = f"triton-bsr{packed.rows}x{packed.cols}"
        self.out_features, self.in_features = packed.shape
        self.dtype = packed.blocks.dtype
        self.bias = None if bias is None else bias.to(self.dtype).contiguous()
        self._configs = {}
        return self

    def _key(self, m_class: int) -> str:
        """The tuning cache's key of this layer's kernel at one M class."""
        w = self.packed
        return entry_key(*w.shape, w.nnz, w.rows, w.cols, m_class, self.dtype,
                         self.bias is not None, self.unroll)

    def __call__(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """y = x Wᵀ + b for x [..., K]; `out` (a [M, N] tensor of the weight's dtype, any
        strides) receives it instead of a new tensor."""
        lead = x.shape[:-1]
        x2d = x.reshape(-1, self.in_features)
        if x2d.dtype != self.dtype:
            x2d = x2d.to(self.dtype)
        m = x2d.shape[0]
        if out is None:
            y = torch.empty(m, self.out_features, device=x2d.device, dtype=self.dtype)
        elif out.shape != (m, self.out_features) or out.dtype != self.dtype:
            raise ValueError(f"out is {tuple(out.shape)} {out.dtype}; expected "
                             f"{(m, self.out_features)} {self.dtype}")
        else:
            y = out
        triton, tuned, raw = _kernel()
        w = self.packed
        n, k = w.shape
        bias = self.bias if self.bias is not None else w.blocks      # any pointer when unused
        m_class = 1 << max(0, (m - 1).bit_length())      # tuned once per power of two of M
        args = (x2d, w.blocks, w.row_ptr, w.col_idx, bias, y, m, n, k, w.nnz, m_class,
                x2d.stride(0), x2d.stride(1), y.stride(0), y.stride(1))
        consts = dict(HAS_BIAS=self.bias is not None, BS_N=w.rows, BS_K=w.cols, UNROLL=self.unroll)
        cfg = self._configs.get(m_class)
        if cfg is None:
            key = self._key(m_class)
            cfg = tuning_cache().get(KIND, key, _check_entry)
        if cfg is not None:                # tuned before, here or in an earlier process
            self._configs[m_class] = cfg
            grid = (triton.cdiv(m, cfg["BLOCK_M"]) * (n // w.rows),)
            raw[grid](*args, **consts, BLOCK_M=cfg["BLOCK_M"], GROUP_M=cfg["GROUP_M"],
                      num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
        else:
            tuned[lambda meta: (triton.cdiv(m, meta["BLOCK_M"]) * (n // w.rows),)](*args, **consts)
            entry = _config_of(tuned)
            if entry is not None:
                self._configs[m_class] = entry
                tuning_cache().put(KIND, key, entry)
        return y if out is not None else y.view(*lead, self.out_features)


def torch_bsr_dense_mm(weight: torch.Tensor, rows: int, cols: int):
    """torch's own Triton BSR matmul (the baseline): returns f(x) = (W_bsr @ xᵀ), [N, M]."""
    from torch.sparse._triton_ops import bsr_dense_mm
    w = weight.to_sparse_bsr((rows, cols))
    return lambda x: bsr_dense_mm(w, x.t())
