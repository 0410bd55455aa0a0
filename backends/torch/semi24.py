"""2:4 linear layers on cuSPARSELt: the weight compressed once, the algorithm chosen per M, cached.

y = x Wᵀ + b with W [N, K] 2:4 along K (two nonzeros in every four consecutive inputs).
cuSPARSELt multiplies the compressed operand on the left, C = W · xᵀ, in one of two layouts:

    "row":  _cslt_sparse_mm(W, xᵀ, transpose_result=True)  -> y [M, N] row-major
    "col":  _cslt_sparse_mm(W, xᵀ).t()                      -> y [M, N] column-major (a view of
                                                               C [N, M]; torch's default path)

On the H100 the fastest layout and algorithm change with M and shape (measured: at 4096x4096,
M=128 the best "row" id ran 16.2 µs against 51.3 for id 0; at M=4096 id 6 ran 133 µs and id 22
391). `Semi24Linear.tune(M)` times the "col" layout with the id cuSPARSELt's search picks and the
"row" layout with every algorithm id (see `candidates`), on random inputs, once per padded M, and
keeps the fastest; a "col" result that its consumer needs row-major is timed with the copy.
cuSPARSELt's dense operand needs M a multiple of 16 (it refuses M=1): M is zero-padded up to it.
Calls never set up plans (no search, no compression): that happened at lowering.

Tuned choices persist in the tuning cache (tuning.py), keyed by (N, K, dtype, bias, padded M,
row-major), so a second process reuses them without searching. On the H200 (cuSPARSELt 0.8,
torch 2.11) every call in the "row" layout costs ~230 ms of host time outside a graph against
~1 ms in "col" (docs/results/probes/cslt_host_cost.py), so warm-up calls (`warm=True`, results
discarded) run the "col" layout with algorithm 0: only the captured call pays the "row" set-up.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from .timing import graph_time_us
from .tuning import entry_key, tuning_cache

DTYPES = (torch.float16, torch.bfloat16)
# "row"-layout algorithm ids timed by `tune`: the ids that won at some shape or M in a sweep of
# every id (0..35) on the H100 (4096x4096, 14336x4096, 4096x14336, 1536x384, 256x512; M=16..4096).
# Each cuSPARSELt call outside a graph costs ~230 ms of host time there (plan set-up), so
# timing all 36 would take ~30 s per layer and M.
ROW_ALGS = (3, 4, 6, 15, 16, 18, 21, 22, 26)
ROWS = 16          # W's rows (N) and columns (K): multiples of 16 (cuSPARSELt fp16/bf16)
PAD_M = 16         # the dense operand's M is padded up to a multiple of this


_TUNED: dict[tuple, "Semi24Config"] = {}
KIND = "cusparselt-2:4"


def _check_entry(v) -> str | None:
    if v.get("layout") not in ("row", "col"):
        return f"layout {v.get('layout')!r} is not row or col"
    a = v.get("alg_id")
    if not isinstance(a, int) or isinstance(a, bool) or not 0 <= a < 64:
        return f"alg_id {a!r} is not an algorithm id"
    us = v.get("us")
    if not isinstance(us, (int, float)) or not us > 0:
        return f"us {us!r} is not a positive time"
    return None


class KernelUnavailable(Exception):
    """This kernel can't run this layer; the message is the reason (the layer runs dense)."""


def is_two_four(weight: torch.Tensor) -> bool:
    """Every group of 4 consecutive entries along the last dim has at most 2 nonzeros."""
    if weight.dim() != 2 or weight.shape[1] % 4:
        return False
    return bool(((weight.reshape(weight.shape[0], -1, 4) != 0).sum(-1) <= 2).all())


def check_semi24(weight: torch.Tensor) -> str | None:
    """Why `weight` [N, K] can't take the cuSPARSELt 2:4 path, or None if it can."""
    if not weight.is_cuda:
        return "cuSPARSELt needs a CUDA tensor"
    if weight.dtype not in DTYPES:
        return f"cuSPARSELt 2:4 here takes float16/bfloat16, not {weight.dtype}"
    if weight.dim() != 2:
        return f"weight has {weight.dim()} dims, not 2"
    n, k = weight.shape
    if n % ROWS or k % ROWS:
        return f"weight {n}x{k}: cuSPARSELt needs both dims multiples of {ROWS}"
    if not is_two_four(weight):
        return "weight is not 2:4 along its input dim"
    return None


@dataclasses.dataclass(frozen=True)
class Semi24Config:
    layout: str          # "row" | "col"
    alg_id: int
    us: float            # measured µs at tuning, copy included where the result must be row-major


class Semi24Linear:
    """A compressed 2:4 weight and its tuned (layout, algorithm) per padded M."""

    kernel = "cusparselt-2:4"

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        reason = check_semi24(weight)
        if reason:
            raise KernelUnavailable(reason)
        self.out_features, self.in_features = weight.shape
        self.dtype = weight.dtype
        self.packed = torch._cslt_compress(weight.contiguous())
        self.bias = None if bias is None else bias.to(weight.dtype).contiguous()
        self.configs: dict[tuple[int, bool], Semi24Config] = {}

    @classmethod
    def from_packed(cls, packed: torch.Tensor, out_features: int, in_features: int,
                    dtype: torch.dtype, bias: torch.Tensor | None = None) -> "Semi24Linear":
        """A layer over a weight `torch._cslt_compress` already packed (no compression)."""
        self = cls.__new__(cls)
        self.out_features, self.in_features, self.dtype = out_features, in_features, dtype
        self.packed = packed
        self.bias = None if bias is None else bias.to(dtype).contiguous()
        self.configs = {}
        return self

    @staticmethod
    def padded(m: int) -> int:
        return max(PAD_M, -(-m // PAD_M) * PAD_M)

    def _run(self, x2d: torch.Tensor, layout: str, alg_id: int, row_major: bool) -> torch.Tensor:
        m = x2d.shape[0]
        mp = self.padded(m)
        if mp != m:
            x2d = F.pad(x2d, (0, 0, 0, mp - m))
        if layout == "row":
            y = torch._cslt_sparse_mm(self.packed, x2d.t(), self.bias, transpose_result=True,
                                      alg_id=alg_id)
        else:
            y = torch._cslt_sparse_mm(self.packed, x2d.t(), self.bias, alg_id=alg_id).t()
        if mp != m:
            y = y[:m]
        return y.contiguous() if row_major else y

    def _search_col(self, x: torch.Tensor) -> tuple[int, int]:
        """cuSPARSELt's own search in the "col" layout: (alg_id, number of algorithm ids)."""
        search = getattr(getattr(torch._C, "_cusparselt", None), "mm_search", None)
        if search is not None:
            r = search(self.packed, x.t(), self.bias, None, None, False)
            return int(r[0]), int(r[3])
        return int(torch._cslt_sparse_mm_search(self.packed, x.t(), self.bias)), 0

    def candidates(self, m: int) -> list[tuple[str, int]]:
        """(layout, alg_id) pairs to time at M=m.

        "col": the id cuSPARSELt's search picks. "row": the ROW_ALGS ids below the search's
        algorithm count, timed by us: on the H100 (cuSPARSELt 0.8) the search itself fails in
        the "row" layout and leaves the context unusable, and an id past the count is an
        illegal instruction, so ids are never probed beyond what the search reports."""
        x = torch.randn(self.padded(m), self.in_features, device=self.packed.device,
                        dtype=self.dtype)
        try:
            alg, count = self._search_col(x)
        except RuntimeError:
            alg, count = 0, 0
        return [("col", alg)] + [("row", a) for a in ROW_ALGS if a < max(count, 1)] + \
            ([("row", 0)] if count <= min(ROW_ALGS) else [])

    def _keys(self, m: int, row_major: bool) -> tuple[tuple, tuple]:
        """(this layer's key, the key shared by every layer of this shape) at M=m."""
        key = (self.padded(m), row_major)
        return key, (self.out_features, self.in_features, self.dtype, self.bias is not None) + key

    def lookup(self, m: int, row_major: bool = True) -> Semi24Config | None:
        """The choice tuned before at M=m (in this layer, this process, or the disk cache)."""
        key, shared = self._keys(m, row_major)
        if key in self.configs:
            return self.configs[key]
        if shared in _TUNED:
            self.configs[key] = _TUNED[shared]
            return self.configs[key]
        stored = tuning_cache().get(KIND, entry_key(*shared), _check_entry)
        if stored is None:
            return None
        cfg = Semi24Config(stored["layout"], stored["alg_id"], float(stored["us"]))
        self.configs[key] = _TUNED[shared] = cfg
        return cfg

    def tune(self, m: int, row_major: bool = True) -> Semi24Config:
        """Time the candidates at M=m (CUDA-graph replays, fresh random inputs) and keep the best.

        Configs are cached per layer and, across layers, per (N, K, dtype, bias, padded M,
        row_major) in this process (the timing depends on the shape, not the values)."""
        cfg = self.lookup(m, row_major)
        if cfg is not None:
            return cfg
        key, shared = self._keys(m, row_major)
        disk = tuning_cache()
        # one input set: every candidate reads the same weight, and each "row" call costs
        # ~230 ms of host set-up when captured (see the module docstring)
        inputs = [(torch.randn(m, self.in_features, device=self.packed.device, dtype=self.dtype),)]
        best, errors = None, []
        for layout, alg in self.candidates(m):
            try:
                us = graph_time_us(lambda x, l=layout, a=alg: self._run(x, l, a, row_major),
                                   inputs, warmup=2, reps=5, warm=0)
            except RuntimeError as e:
                errors.append(f"{layout}/alg {alg}: {str(e).splitlines()[0][:160]}")
                continue
            if best is None or us < best.us:
                best = Semi24Config(layout, alg, us)
        if best is None:
            raise KernelUnavailable(f"no cuSPARSELt algorithm ran at M={m}: {'; '.join(errors)}")
        self.configs[key] = _TUNED[shared] = best
        disk.put(KIND, entry_key(*shared), dataclasses.asdict(best))
        return best

    def __call__(self, x: torch.Tensor, row_major: bool = True, warm: bool = False) -> torch.Tensor:
        """y = x Wᵀ + b for x [..., K]; tunes on the first call at a new M. `warm`: a warm-up
        call whose result is discarded — same values, run in the cheap-to-set-up "col" layout."""
        lead = x.shape[:-1]
        x2d = x.reshape(-1, self.in_features)
        if x2d.dtype != self.dtype:
            x2d = x2d.to(self.dtype)
        cfg = self.tune(x2d.shape[0], row_major)
        layout, alg = (("col", 0) if warm and cfg.layout == "row" else (cfg.layout, cfg.alg_id))
        y = self._run(x2d, layout, alg, row_major)
        return y.view(*lead, self.out_features)


def default_semi24(weight: torch.Tensor):
    """torch's own path (the baseline): `to_sparse_semi_structured` used through F.linear."""
    from torch.sparse import to_sparse_semi_structured
    return to_sparse_semi_structured(weight)
