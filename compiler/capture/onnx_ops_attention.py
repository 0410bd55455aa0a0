"""The opset-23 attention ops as IR ops.

Attention(Q, K, V, mask?, past_key?, past_value?) is scaled_dot_product_attention:
  - 3-D inputs [B, S, H·D] are split into heads (q_num_heads, kv_num_heads) and merged back;
  - past_key/past_value are concatenated in front of K/V along the sequence (present_key/value);
  - fewer K/V heads than Q heads is GQA (enable_gqa: K/V head j serves Q heads j·g ... j·g+g−1);
  - is_causal without a cache and mask is SDPA's own (top-left) causal mask; with a past cache
    ONNX aligns it bottom-right, query i sees key j ≤ i + past_len: an explicit boolean mask,
    and'ed with a boolean mask or turned into −inf over a float one.
  softcap and the qk_matmul output are refused.
RotaryEmbedding(X, cos, sin, position_ids?) rotates the first rotary_embedding_dim features of
each head: (x1, x2) → (x1·cos − x2·sin, x1·sin + x2·cos), halves of the rotated part, or its
even/odd features when interleaved; cos/sin rows are picked by position_ids (index.Tensor).
"""
from __future__ import annotations

import numpy as np
import onnx

from ..ir.graph import DType, Ref
from .onnx_importer import Const, Entry, Importer, attrs, handler, np_dtype


def _heads(imp: Importer, x: str, heads: int) -> str:
    """[B, S, H·D] -> [B, H, S, D]."""
    b, s = imp.dim(x, 0), imp.dim(x, 1)
    y = imp.emit("reshape", [x], {"shape": (b, s, heads, -1)})
    return imp.emit("permute", [y], {"dims": (0, 2, 1, 3)})


def _causal_mask(imp: Importer, q_len: int | Ref, kv_len: int | Ref, past: int | Ref) -> str:
    """Boolean [q, kv]: key j is visible to query i when j <= i + past."""
    def arange(n: int | Ref) -> str:
        return imp.emit("arange.start_step", [], {"start": 0, "end": n, "step": 1,
                                                  "dtype": DType("i64")})
    rows = imp.emit("unsqueeze", [imp.emit("add.Scalar", [arange(q_len)], {"other": past})],
                    {"dim": 1})
    return imp.emit("le.Tensor", [arange(kv_len), rows])


@handler("Attention", imports_as="scaled_dot_product_attention (GQA, past cache, causal)",
         attributes="is_causal kv_num_heads q_num_heads qk_matmul_output_mode scale softcap "
         "softmax_precision")
def attention(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    a = attrs(node)
    if a.get("softcap", 0.0):
        raise imp.fail("softcap is not supported")
    if len(node.output) > 3 and node.output[3]:
        raise imp.fail("the qk_matmul output is not supported")
    if len(node.input) > 6 and node.input[6]:
        raise imp.fail("nonpad_kv_seqlen is not supported")
    q, k, v = (imp.tensor(imp.input(i)) for i in range(3))
    mask, past_k, past_v = imp.input(3), imp.input(4), imp.input(5)
    three_d = imp.rank(q) == 3
    if three_d:
        hq, hkv = a.get("q_num_heads", 0), a.get("kv_num_heads", 0)
        if not (hq and hkv):
            raise imp.fail("3-D inputs need q_num_heads and kv_num_heads")
        q, k, v = _heads(imp, q, hq), _heads(imp, k, hkv), _heads(imp, v, hkv)
    elif imp.rank(q) != 4:
        raise imp.fail(f"rank-{imp.rank(q)} inputs")
    past_len: int | Ref = 0
    if (past_k is None) != (past_v is None):
        raise imp.fail("past_key and past_value come together")
    if past_k is not None:
        past_k = imp.tensor(past_k)
        past_len = imp.dim(past_k, 2)
        k = imp.emit("cat", [past_k, k], {"dim": 2}, name=_present(imp, node, 1))
        v = imp.emit("cat", [imp.tensor(past_v), v], {"dim": 2}, name=_present(imp, node, 2))
    hq, hkv = imp.shape(q)[1], imp.shape(k)[1]
    at: dict = {}
    if hq != hkv:
        if not (isinstance(hq, int) and isinstance(hkv, int) and hq % hkv == 0):
            raise imp.fail(f"{hq} query heads over {hkv} key/value heads")
        at["enable_gqa"] = True
    if "scale" in a:
        at["scale"] = float(a["scale"])
    m = imp.tensor(mask)
    if a.get("is_causal", 0):
        if m is None and past_k is None:
            at["is_causal"] = True
        else:
            causal = _causal_mask(imp, imp.dim(q, 2), imp.dim(k, 2), past_len)
            if m is None or imp.dtype(m) == "bool":
                m = causal if m is None else imp.emit("logical_and", [m, causal])
            else:
                ninf = imp.constant(np.full((), -np.inf, np_dtype(imp.dtype(m))), "ninf")
                m = imp.emit("where.self", [causal, m, ninf])
    y = imp.emit("scaled_dot_product_attention", [q, k, v, m], at,
                 name=None if three_d else imp.out())
    if three_d:
        y = imp.emit("permute", [y], {"dims": (0, 2, 1, 3)})
        y = imp.emit("reshape", [y], {"shape": (imp.dim(y, 0), imp.dim(y, 1), -1)}, imp.out())
    return [y, k, v]


def _present(imp: Importer, node: onnx.NodeProto, i: int) -> str | None:
    return imp.out(i) if len(node.output) > i and node.output[i] else None


@handler("RotaryEmbedding", imports_as="slice / mul / sub / add / cat (index.Tensor for "
         "position_ids)", attributes="interleaved num_heads rotary_embedding_dim")
def rotary_embedding(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    a = attrs(node)
    x = imp.tensor(imp.input(0))
    cos, sin, pos = imp.input(1), imp.input(2), imp.input(3)
    three_d = imp.rank(x) == 3
    if three_d:
        heads = a.get("num_heads", 0)
        if not heads:
            raise imp.fail("3-D input needs num_heads")
        x = imp.emit("reshape", [x], {"shape": (imp.dim(x, 0), imp.dim(x, 1), heads, -1)})
    elif imp.rank(x) != 4:
        raise imp.fail(f"rank-{imp.rank(x)} input")
    d = imp.shape(x)[3]
    rd = a.get("rotary_embedding_dim", 0) or d
    if not isinstance(rd, int) or rd % 2:
        raise imp.fail(f"rotary dim {rd} is not a static even size")
    tables = []
    for t in (cos, sin):
        t = imp.param(t) if isinstance(t, Const) else imp.tensor(t)
        if pos is not None:
            t = imp.emit("index.Tensor", [t, imp.tensor(pos, "i64")])
        tables.append(imp.emit("unsqueeze", [t], {"dim": 2 if three_d else 1}))
    c, s = tables

    def part(start: int, end: int, step: int = 1) -> str:
        at = {"dim": 3, "start": start, "end": end}
        if step != 1:
            at["step"] = step
        return imp.emit("slice.Tensor", [x], at)

    half = rd // 2
    x1, x2 = (part(0, rd, 2), part(1, rd, 2)) if a.get("interleaved", 0) else \
        (part(0, half), part(half, rd))
    real = imp.emit("sub.Tensor", [imp.emit("mul.Tensor", [x1, c]),
                                   imp.emit("mul.Tensor", [x2, s])])
    imag = imp.emit("add.Tensor", [imp.emit("mul.Tensor", [x1, s]),
                                   imp.emit("mul.Tensor", [x2, c])])
    if a.get("interleaved", 0):
        rot = imp.emit("stack", [real, imag], {"dim": -1})
        rot = imp.emit("flatten.using_ints", [rot], {"start_dim": 3})
    else:
        rot = imp.emit("cat", [real, imag], {"dim": -1})
    if rd != d:
        rot = imp.emit("cat", [rot, part(rd, d)], {"dim": -1}, None if three_d else imp.out())
    if three_d:
        rot = imp.emit("reshape", [rot], {"shape": (imp.dim(rot, 0), imp.dim(rot, 1), -1)},
                       imp.out())
    return [rot]
