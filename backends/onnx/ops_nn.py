"""ONNX lowerings of layers: matmuls, convolutions, norms, embedding, attention, pooling, dropout.

  linear(x, W, b)      = x·Wᵀ + b                  (MatMul with a Transpose of W; ORT folds it)
  addmm(s, A, B; β, α) = β·s + α·(A·B)             (β = 0 ignores s, as torch does)
  conv, "same"         pads dilation·(k − 1) in total, the odd element at the end, as torch
  batch/layer norm     BatchNormalization (inference) / LayerNormalization, missing affine = 1, 0
  rms_norm(x, w, ε)    = x · 1/√(mean(x², last dims) + ε) · w, ε = finfo(dtype).eps when absent
  group_norm           (x − μ_g) · 1/√(σ²_g + ε) over [N, G, −1], then the per-channel affine
  sdpa(q, k, v, m)     = softmax(q·kᵀ·scale + bias)·v, scale = 1/√E by default; bias is −inf where
                       a bool mask is False or (is_causal) above the diagonal, else the float mask;
                       enable_gqa repeats each kv head Hq/Hkv times (repeat_interleave on dim −3)
  adaptive pooling     static bins [⌊i·L/n⌋, ⌈(i+1)·L/n⌉) per axis (mean and max are separable);
                       output 1 is GlobalAveragePool, which also works for dynamic spatial sizes
Training-mode dropout (random) and SDPA dropout are refused, never dropped silently.
"""
from __future__ import annotations

import math

import torch

from sparsecc.ir import Node, torch_dtype

from .export import ONNX_DTYPES, Builder, lowering


@lowering("linear")
def linear(b: Builder, node: Node) -> list[str]:
    x, w, bias = (b.input(node, i) for i in range(3))
    if b.rank(node.inputs[1]) == 2:
        w = b.op("Transpose", w, perm=[1, 0])
    y = b.op("MatMul", x, w)
    return [b.op("Add", y, bias) if bias else y]


@lowering("mm", "bmm", "matmul")
def matmul(b: Builder, node: Node) -> list[str]:
    dt = b.out_dtype(node)
    return [b.op("MatMul", b.input(node, 0, dt), b.input(node, 1, dt))]


@lowering("addmm", "baddbmm")
def addmm(b: Builder, node: Node) -> list[str]:
    dt = b.out_dtype(node)
    beta, alpha = node.attrs.get("beta", 1), node.attrs.get("alpha", 1)
    y = b.op("MatMul", b.input(node, 1, dt), b.input(node, 2, dt))
    if alpha != 1:
        y = b.op("Mul", y, b.scalar(alpha, dt))
    if beta == 0:
        return [y]
    s = b.input(node, 0, dt)
    return [b.op("Add", y, s if beta == 1 else b.op("Mul", s, b.scalar(beta, dt)))]


# -- convolution --------------------------------------------------------------------------
def _n(v: int | tuple | list, n: int) -> list[int]:
    v = list(v) if isinstance(v, (tuple, list)) else [v]
    return v * n if len(v) == 1 else v


def _batched(b: Builder, node: Node, x: str, spatial: int, fn) -> str:
    """Run `fn` on x with a batch axis (torch accepts unbatched [C, *spatial] inputs)."""
    if b.rank(node.inputs[0]) == spatial + 2:
        return fn(x)
    zero = b.const([0], "i64")
    return b.op("Squeeze", fn(b.op("Unsqueeze", x, zero)), zero)


@lowering("conv1d", "conv2d", "conv1d.padding", "conv2d.padding", "convolution")
def conv(b: Builder, node: Node) -> list[str]:
    a = node.attrs
    kernel = b.value(node.inputs[1]).shape[2:]
    n = len(kernel)
    if not all(isinstance(k, int) for k in kernel):
        raise b.fail(node, f"kernel size {kernel} is not static")
    stride, dilation = _n(a.get("stride", 1), n), _n(a.get("dilation", 1), n)
    padding = a.get("padding", 0)
    if padding == "valid":
        padding = 0
    if padding == "same":
        total = [d * (k - 1) for d, k in zip(dilation, kernel)]
        pads = [t // 2 for t in total] + [t - t // 2 for t in total]
    else:
        pads = _n(padding, n) * 2
    attrs = dict(kernel_shape=list(kernel), strides=stride, dilations=dilation, pads=pads,
                 group=a.get("groups", 1))
    x, w, bias = (b.input(node, i) for i in range(3))
    kind = "Conv"
    if a.get("transposed", False):
        kind, attrs["output_padding"] = "ConvTranspose", _n(a.get("output_padding", 0), n)
    return [_batched(b, node, x, n, lambda x: b.op(kind, x, w, bias, **attrs))]


# -- norms --------------------------------------------------------------------------------
def _channel_const(b: Builder, node: Node, value: float) -> str:
    c = b.value(node.inputs[0]).shape[1]
    if not isinstance(c, int):
        raise b.fail(node, f"channel count {c} is not static")
    return b.const([value] * c, b.out_dtype(node))


@lowering("batch_norm", "_native_batch_norm_legit_no_training")
def batch_norm(b: Builder, node: Node) -> list[str | None]:
    a = node.attrs
    x, w, bias, mean, var = (b.input(node, i) for i in range(5))
    w = w or _channel_const(b, node, 1.0)
    bias = bias or _channel_const(b, node, 0.0)
    extra = [None] * (len(node.outputs) - 1)
    if not a.get("training", False):
        if mean is None or var is None:
            raise b.fail(node, "inference batch norm without running statistics")
        return [b.op("BatchNormalization", x, w, bias, mean, var, epsilon=a["eps"])] + extra
    # training mode: normalize with the batch's own (biased) statistics
    r = b.rank(node.inputs[0])
    axes = b.const([0] + list(range(2, r)), "i64")
    mu = b.op("ReduceMean", x, axes, keepdims=1)
    diff = b.op("Sub", x, mu)
    var_b = b.op("ReduceMean", b.op("Mul", diff, diff), axes, keepdims=1)
    return [_affine(b, node, _normalize(b, node, diff, var_b, a["eps"]), w, bias, r)] + extra


def _normalize(b: Builder, node: Node, diff: str, var: str, eps: float) -> str:
    dt = b.out_dtype(node)
    inv = b.op("Reciprocal", b.op("Sqrt", b.op("Add", var, b.const(eps, dt))))
    return b.op("Mul", diff, inv)


def _affine(b: Builder, node: Node, y: str, w: str | None, bias: str | None, rank: int) -> str:
    """y·w + bias with per-channel (axis 1) w and bias."""
    shape = b.const([-1] + [1] * (rank - 2), "i64")
    if w:
        y = b.op("Mul", y, b.op("Reshape", w, shape))
    if bias:
        y = b.op("Add", y, b.op("Reshape", bias, shape))
    return y


@lowering("layer_norm")
def layer_norm(b: Builder, node: Node) -> list[str]:
    shape = list(node.attrs["normalized_shape"])
    x, w, bias = (b.input(node, i) for i in range(3))
    if w is None:
        w = b.const(torch.ones(shape).tolist(), b.out_dtype(node))
    return [b.op("LayerNormalization", x, w, bias, axis=-len(shape),
                 epsilon=node.attrs.get("eps", 1e-5))]


@lowering("rms_norm")
def rms_norm(b: Builder, node: Node) -> list[str]:
    dt = b.out_dtype(node)
    x, w = b.input(node, 0), b.input(node, 1)
    n = len(node.attrs["normalized_shape"])
    eps = node.attrs.get("eps")
    eps = torch.finfo(torch_dtype(dt)).eps if eps is None else eps
    axes = b.const(list(range(-n, 0)), "i64")
    ms = b.op("ReduceMean", b.op("Mul", x, x), axes, keepdims=1)
    y = b.op("Mul", x, b.op("Reciprocal", b.op("Sqrt", b.op("Add", ms, b.const(eps, dt)))))
    return [b.op("Mul", y, w) if w else y]


@lowering("group_norm")
def group_norm(b: Builder, node: Node) -> list[str]:
    x, w, bias = (b.input(node, i) for i in range(3))
    groups = node.attrs["num_groups"]
    grouped = b.op("Concat", b.size(node.inputs[0], 0), b.const([groups, -1], "i64"), axis=0)
    xg = b.op("Reshape", x, grouped)
    axes = b.const([2], "i64")
    diff = b.op("Sub", xg, b.op("ReduceMean", xg, axes, keepdims=1))
    var = b.op("ReduceMean", b.op("Mul", diff, diff), axes, keepdims=1)
    y = _normalize(b, node, diff, var, node.attrs.get("eps", 1e-5))
    y = b.op("Reshape", y, b.shape(node.inputs[0]))
    return [_affine(b, node, y, w, bias, b.rank(node.inputs[0]))]


@lowering("embedding")
def embedding(b: Builder, node: Node) -> list[str]:
    return [b.op("Gather", b.input(node, 0), b.input(node, 1, "i64"), axis=0)]


@lowering("dropout", "feature_dropout", "native_dropout")
def dropout(b: Builder, node: Node) -> list[str]:
    if node.attrs.get("train") and node.attrs.get("p", 0) > 0:
        raise b.fail(node, "dropout in training mode is random; capture the model in eval mode")
    x = b.input(node, 0)
    if node.op != "native_dropout":
        return [x]
    return [x, b.op("Expand", b.const(True, "bool"), b.shape(node.inputs[0]))]


# -- attention ----------------------------------------------------------------------------
def _repeat_heads(b: Builder, name: str, repeats: int) -> str:
    """[..., H, S, E] -> [..., H·repeats, S, E], each head repeated in place."""
    r = b.rank(name)
    lead, tail = b.shape(name, 0, r - 2), b.shape(name, r - 2, r)
    x = b.op("Unsqueeze", name, b.const([r - 2], "i64"))
    x = b.op("Expand", x, b.op("Concat", lead, b.const([repeats], "i64"), tail, axis=0))
    heads = b.op("Mul", b.shape(name, r - 3, r - 2), b.const([repeats], "i64"))
    return b.op("Reshape", x, b.op("Concat", b.shape(name, 0, r - 3), heads, tail, axis=0))


@lowering("scaled_dot_product_attention")
def sdpa(b: Builder, node: Node) -> list[str]:
    a, dt = node.attrs, b.out_dtype(node)
    if a.get("dropout_p", 0.0) != 0.0:
        raise b.fail(node, f"dropout_p={a['dropout_p']} is random")
    q, k, v, mask = (b.input(node, i) for i in range(4))
    qv, kv = b.value(node.inputs[0]), b.value(node.inputs[1])
    if a.get("enable_gqa", False) and qv.shape[-3] != kv.shape[-3]:
        hq, hk = qv.shape[-3], kv.shape[-3]
        if not (isinstance(hq, int) and isinstance(hk, int)):
            raise b.fail(node, f"GQA with symbolic head counts {hq}, {hk}")
        k, v = _repeat_heads(b, k, hq // hk), _repeat_heads(b, v, hq // hk)
    r = kv.rank
    scores = b.op("MatMul", q, b.op("Transpose", k, perm=list(range(r - 2)) + [r - 1, r - 2]))
    scale, e = a.get("scale"), qv.shape[-1]
    if scale is None and not isinstance(e, int):
        s = b.op("Sqrt", b.op("Cast", b.size(node.inputs[0], -1), to=ONNX_DTYPES[dt]))
        scores = b.op("Div", scores, s)
    else:
        scores = b.op("Mul", scores, b.const(1 / math.sqrt(e) if scale is None else scale, dt))
    def masked(keep: str, scores: str) -> str:
        return b.op("Where", keep, scores, b.const(float("-inf"), dt))

    if a.get("is_causal", False):
        zero, one = b.const(0, "i64"), b.const(1, "i64")
        rows = b.op("Range", zero, b.op("Squeeze", b.size(node.inputs[0], -2)), one)
        cols = b.op("Range", zero, b.op("Squeeze", b.size(node.inputs[1], -2)), one)
        keep = b.op("LessOrEqual", cols, b.op("Unsqueeze", rows, b.const([1], "i64")))
        scores = masked(keep, scores)
    if mask is not None:
        if b.dtype(mask) == "bool":
            scores = masked(mask, scores)
        else:
            scores = b.op("Add", scores, b.cast(mask, dt))
    return [b.op("MatMul", b.op("Softmax", scores, axis=-1), v)]


# -- pooling ------------------------------------------------------------------------------
@lowering("max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d")
def pool(b: Builder, node: Node) -> list[str]:
    a = node.attrs
    n = 1 if node.op.endswith("1d") else 2
    kernel = _n(a["kernel_size"], n)
    stride = _n(a.get("stride") or kernel, n)
    attrs = dict(kernel_shape=kernel, strides=stride, pads=_n(a.get("padding", 0), n) * 2,
                 ceil_mode=int(a.get("ceil_mode", False)))
    if node.op.startswith("max"):
        kind, attrs["dilations"] = "MaxPool", _n(a.get("dilation", 1), n)
    else:
        kind, attrs["count_include_pad"] = "AveragePool", int(a.get("count_include_pad", True))
        if a.get("divisor_override") is not None:
            raise b.fail(node, "divisor_override")
    return [_batched(b, node, b.input(node, 0), n, lambda x: b.op(kind, x, **attrs))]


@lowering("adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool2d")
def adaptive_pool(b: Builder, node: Node) -> list[str | None]:
    x = node.inputs[0]
    n = 1 if node.op.endswith("1d") else 2
    spatial = b.value(x).shape[-n:]
    size = [d if s is None else s for s, d in zip(_n(node.attrs["output_size"], n), spatial)]
    is_max = "max" in node.op
    extra = [None] * (len(node.outputs) - 1)
    if not is_max and all(s == 1 for s in size):
        return [_batched(b, node, b.input(node, 0), n, lambda y: b.op("GlobalAveragePool", y))]
    if not all(isinstance(d, int) for d in spatial):
        raise b.fail(node, f"output size {size} of symbolic spatial size {list(spatial)}")
    y = b.input(node, 0)
    r = b.rank(x)
    for axis, (length, out) in enumerate(zip(spatial, size), start=r - n):
        bins = [((i * length) // out, -((-(i + 1) * length) // out)) for i in range(out)]
        if length % out == 0:  # equal, disjoint bins: one pooling op
            kernel = [1] * n
            kernel[axis - (r - n)] = length // out
            kind = "MaxPool" if is_max else "AveragePool"
            y = _batched(b, node, y, n, lambda t: b.op(kind, t, kernel_shape=kernel,
                                                        strides=kernel))
            continue
        parts = []
        for s, e in bins:
            piece = b.op("Slice", y, b.const([s], "i64"), b.const([e], "i64"),
                         b.const([axis], "i64"))
            parts.append(b.op("ReduceMax" if is_max else "ReduceMean", piece,
                              b.const([axis], "i64"), keepdims=1))
        y = b.op("Concat", *parts, axis=axis)
    return [y] + extra
