"""Every ONNX op the importer reads, matched against ONNX Runtime on small generated graphs.

One test per op (`test_op_matches_ort[Resize]`) runs that op's graphs: each is built with
onnx.helper over dynamic dims `b` and `s`, run by ORT, imported, run by the IR interpreter, and
compared: integers and bools exactly, floats to 1e-5 relative (max |diff| / max |ref|). Graphs
that compute shapes from `Shape` run at two sizes. Variants the importer refuses raise
`OnnxImportError` (a `CaptureError`) in one line naming the node. docs/onnx-ops.md is the table
of this file's ops; `SPARSECC_WRITE_DOCS=1 pytest -k docs_table` rewrites it.
"""
from __future__ import annotations

import dataclasses
import os
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from sparsecc.capture import import_onnx
from sparsecc.capture.onnx_importer import OnnxImportError
from sparsecc.capture.onnx_ops import HANDLERS, REFUSED
from sparsecc.errors import CaptureError
from sparsecc.ir import run, verify

F, F16, D = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE
I64, I32, I8, U8, B = (TensorProto.INT64, TensorProto.INT32, TensorProto.INT8, TensorProto.UINT8,
                       TensorProto.BOOL)
SMALL, OTHER = {"b": 2, "s": 3}, {"b": 3, "s": 5}
TOL = 1e-5
C = np.array
DOCS = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "onnx-ops.md")


@dataclasses.dataclass(frozen=True)
class Case:
    nodes: tuple
    inputs: tuple          # (name, elem type, shape, (lo, hi) or None)
    inits: dict
    opset: int
    outputs: tuple
    sizes: tuple


def n(op, ins, outs=("y",), **attrs):
    return helper.make_node(op, list(ins), list(outs), **attrs)


def i(name, elem, *shape, lo=None, hi=None):
    return (name, elem, list(shape), None if lo is None else (lo, hi))


X = i("x", F, "b", "s", 4)
CASES: dict[str, list[Case]] = {}


def case(op, nodes, inputs, inits=None, opset=18, outputs=None, shapes=False):
    nodes = tuple(nodes if isinstance(nodes, (list, tuple)) else [nodes])
    outs = tuple(outputs or [o for o in nodes[-1].output if o])
    CASES.setdefault(op, []).append(Case(nodes, tuple(inputs), dict(inits or {}), opset, outs,
                                         (SMALL, OTHER) if shapes else (SMALL,)))


def _seed(name: str) -> int:
    return sum(map(ord, name)) % 9973


def _randn(*shape):
    return np.random.default_rng(_seed(str(shape))).standard_normal(shape).astype(np.float32)


# -- elementwise ----------------------------------------------------------------------------
for op, lo, hi in [("Relu", None, None), ("Sigmoid", None, None), ("Tanh", None, None),
                   ("Erf", None, None), ("Neg", None, None), ("Exp", None, None),
                   ("Abs", None, None), ("Cos", None, None), ("Sin", None, None),
                   ("Tan", -1.2, 1.2), ("Atan", None, None), ("Sinh", None, None),
                   ("Cosh", None, None), ("Asinh", None, None), ("HardSwish", -4, 4),
                   ("Sign", None, None), ("Softplus", -30, 30), ("Mish", -10, 10),
                   ("Softsign", None, None), ("Floor", -3, 3), ("Ceil", -3, 3),
                   ("Sqrt", 0.1, 4), ("Log", 0.1, 4), ("Reciprocal", 0.5, 4),
                   ("Acosh", 1.1, 4), ("Asin", -0.9, 0.9), ("Acos", -0.9, 0.9),
                   ("Atanh", -0.9, 0.9), ("Swish", None, None), ("IsInf", None, None)]:
    case(op, n(op, ["x"]), [i("x", F, "b", "s", 4, lo=lo, hi=hi)], opset=24 if op == "Swish"
         else 18)
case("Round", [n("Mul", ["x", "c"], ["h"]), n("Round", ["h"])], [X], {"c": C(2.5, "f4")})
case("Round", [n("Cast", ["k"], ["f"], to=F), n("Mul", ["f", "half"], ["h"]), n("Round", ["h"])],
     [i("k", I64, "b", 9, lo=-9, hi=10)], {"half": C(0.5, "f4")})  # ties go to even
case("Neg", n("Neg", ["k"]), [i("k", I64, "b", 4)])
case("Abs", n("Abs", ["k"]), [i("k", I32, "b", 4)])
case("Sign", n("Sign", ["k"]), [i("k", I64, "b", 4)])
case("Not", n("Not", ["p"]), [i("p", B, "b", 4)])
case("BitwiseNot", n("BitwiseNot", ["k"]), [i("k", I32, "b", 4)])
case("IsNaN", [n("Log", ["x"], ["l"]), n("IsNaN", ["l"])], [X])
case("IsInf", [n("Reciprocal", ["x"], ["r"]), n("Floor", ["x"], ["f"]), n("Mul", ["f", "r"], ["m"]),
               n("Div", ["m", "zero"], ["d"]), n("IsInf", ["d"], detect_negative=0)],
     [X], {"zero": C(0.0, "f4")})
case("Celu", n("Celu", ["x"], alpha=0.7), [X])
case("Selu", n("Selu", ["x"], alpha=1.5, gamma=1.1), [X])
case("Selu", n("Selu", ["x"]), [X])
case("Elu", n("Elu", ["x"], alpha=0.5), [X])
case("LeakyRelu", n("LeakyRelu", ["x"], alpha=0.2), [X])
case("ThresholdedRelu", n("ThresholdedRelu", ["x"], alpha=0.3), [X])
case("HardSigmoid", n("HardSigmoid", ["x"]), [X])
case("HardSigmoid", n("HardSigmoid", ["x"], alpha=1 / 6, beta=0.5), [X])
case("Gelu", [n("Gelu", ["x"], ["a"]), n("Gelu", ["a"], approximate="tanh")], [X], opset=20)
case("PRelu", n("PRelu", ["x", "slope"]), [X], {"slope": _randn(4)})
case("Clip", n("Clip", ["x", "lo", "hi"]), [X], {"lo": C(-0.5, "f4"), "hi": C(0.7, "f4")})
case("Clip", n("Clip", ["x", "lo", "hi"]), [X, i("lo", F), i("hi", F)])
case("Clip", n("Clip", ["k", "", "hi"]), [i("k", I64, "b", 4)], {"hi": C(2)})

for op in ("Add", "Sub", "Mul", "Div"):
    case(op, n(op, ["x", "v"]), [X, i("v", F, 4)])                     # broadcast
    case(op, n(op, ["c", "x"]), [X], {"c": C(1.5, "f4")})              # scalar on the left
    case(op, n(op, ["k", "m"]), [i("k", I32, "b", 4, lo=-9, hi=10),
                                 i("m", I32, 1, 4, lo=1, hi=4)])       # ints; Div truncates
case("Div", n("Div", ["k", "m"]), [i("k", I64, "b", 4, lo=-9, hi=10), i("m", I64, 4, lo=-4, hi=-1)])
case("Add", [n("Cast", ["k"], ["h"], to=F16), n("Add", ["h", "half"], ["a"]),  # float16, exact
              n("Cast", ["a"], to=F)], [i("k", I32, "b", 4, lo=-99, hi=99)],
     {"half": C([0.5, -0.25, 1, 3], np.float16)})
case("Pow", n("Pow", ["x", "two"]), [X], {"two": C(2.0, "f4")})
case("Pow", n("Pow", ["p", "x"]), [X, i("p", F, "b", "s", 4, lo=0.5, hi=2)])
case("Pow", n("Pow", ["p", "e"]), [i("p", F, "b", 4, lo=0.5, hi=2), i("e", I64, 4, lo=-2, hi=3)])
case("Pow", n("Pow", ["two", "x"]), [X], {"two": C(2.0, "f4")})
case("Mod", [n("Mod", ["k", "m"], ["a"]), n("Mod", ["k", "m"], ["c"], fmod=1)],
     [i("k", I64, "b", 4, lo=-9, hi=10), i("m", I64, 4, lo=1, hi=4)], outputs=["a", "c"])
case("Mod", n("Mod", ["k", "m"]), [i("k", I32, "b", 4, lo=-9, hi=10), i("m", I32, 4, lo=-4, hi=-1)])
_DIV = C([np.inf, -np.inf, 2.5, -2.5, np.inf, -np.inf, 0.75, -0.75], "f4")
case("Mod", n("Mod", ["x", "d"], fmod=1), [i("x", F, "b", 8, lo=-5, hi=5)], {"d": _DIV})
case("Mod", n("Mod", ["x", "d"]), [i("x", F, "b", 8, lo=-5, hi=5)], {"d": _DIV}, opset=28)
for op in ("Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual"):
    case(op, n(op, ["x", "v"]), [i("x", F, "b", "s", 4, lo=-2, hi=2),
                                 i("v", F, "s", 1, lo=-2, hi=2)])
    case(op, n(op, ["k", "c"]), [i("k", I64, "b", 4, lo=-3, hi=3)], {"c": C(1)})
for op in ("And", "Or", "Xor"):
    case(op, n(op, ["p", "q"]), [i("p", B, "b", 4), i("q", B, 4)])
for op in ("BitwiseAnd", "BitwiseOr"):
    case(op, n(op, ["k", "m"]), [i("k", I32, "b", 4, lo=0, hi=64), i("m", I32, 4, lo=0, hi=64)])
for op in ("Max", "Min", "Sum", "Mean"):
    case(op, n(op, ["x", "v", "w"]), [X, i("v", F, 4), i("w", F, "s", 1)])  # every input counts
    case(op, n(op, ["x"]), [X])
case("Max", n("Max", ["x", "c", "v"]), [X, i("v", F, "b", "s", 4)], {"c": C(0.1, "f4")})
case("Min", n("Min", ["k", "m", "c"]), [i("k", I64, "b", 4), i("m", I64, 4)], {"c": C([1])})
case("Where", n("Where", ["p", "x", "v"]), [i("p", B, "s", 1), X, i("v", F, 4)])
case("Where", n("Where", ["p", "c", "k"]), [i("p", B, "b", 4), i("k", I64, 4)], {"c": C(7)})
case("Cast", [n("Cast", ["x"], ["a"], to=I64), n("Cast", ["x"], ["c"], to=B),
              n("Cast", ["c"], ["d"], to=F), n("Cast", ["k"], ["e"], to=F)],
     [i("x", F, "b", 4, lo=-3, hi=3), i("k", I32, "b", 4)], outputs=["a", "c", "d", "e"])
case("CastLike", n("CastLike", ["k", "x"]), [i("k", I64, "b", 4), X])

# -- reductions -----------------------------------------------------------------------------
for op in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
           "ReduceL2", "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp"):
    lo = 0.1 if op == "ReduceLogSum" else None
    x = i("x", F, "b", "s", 4, lo=lo, hi=2.0 if lo else None)
    case(op, [n(op, ["x", "a1"], ["p"], keepdims=0), n(op, ["x", "a2"], ["q"]),
              n(op, ["x"], ["r"])], [x], {"a1": C([-1]), "a2": C([0, 2])},
         outputs=["p", "q", "r"])
case("ReduceSum", n("ReduceSum", ["x", "none"], noop_with_empty_axes=1), [X],
     {"none": C([], np.int64)})
case("ReduceSum", n("ReduceSum", ["k", "a"], keepdims=0), [i("k", I64, "b", 4)], {"a": C([1])})
case("ArgMax", n("ArgMax", ["x"], axis=-1, keepdims=0), [X])
case("ArgMin", n("ArgMin", ["x"], axis=1), [X])
case("Softmax", n("Softmax", ["x"], axis=1), [X])
case("LogSoftmax", n("LogSoftmax", ["x"]), [X])
case("CumSum", n("CumSum", ["k", "a"]), [i("k", I64, "b", "s", 4)], {"a": C(-2)})

# -- quantization ---------------------------------------------------------------------------
case("QuantizeLinear", n("QuantizeLinear", ["x", "sc"]), [i("x", F, "b", "s", 4, lo=0, hi=4)],
     {"sc": C(0.02, "f4")})
case("QuantizeLinear", n("QuantizeLinear", ["x", "sc", "zp"], axis=-1), [X],
     {"sc": C([0.01, 0.02, 0.03, 0.05], "f4"), "zp": C([-3, 0, 5, 100], np.int8)})
case("DequantizeLinear", n("DequantizeLinear", ["q", "sc", "zp"], axis=1),
     [i("q", U8, "b", 4, lo=0, hi=256)], {"sc": C([0.1, 0.2, 0.3, 0.5], "f4"),
                                          "zp": C([0, 10, 128, 255], np.uint8)})
case("DequantizeLinear", [n("DequantizeLinear", ["w", "sc"], ["wf"]), n("MatMul", ["x", "wf"])],
     [X], {"w": np.arange(-12, 12, dtype=np.int8).reshape(4, 6), "sc": C(0.05, "f4")})
case("DequantizeLinear", [n("QuantizeLinear", ["x", "sc", "zp"], ["q"]),
                          n("DequantizeLinear", ["q", "sc", "zp"])],
     [X], {"sc": C(0.03, "f4"), "zp": C(-5, np.int8)})

# -- layers ---------------------------------------------------------------------------------
case("MatMul", n("MatMul", ["x", "w"]), [X], {"w": _randn(4, 3)})
case("MatMul", n("MatMul", ["x", "w"]), [X, i("w", F, "b", 4, 2)])
case("MatMul", n("MatMul", ["x", "v"]), [X, i("v", F, 4)])
case("Gemm", n("Gemm", ["a", "w", "c"], transA=1, transB=1, alpha=0.5, beta=2.0),
     [i("a", F, 4, "b"), i("c", F, "b", 1)], {"w": _randn(3, 4)})
case("Gemm", n("Gemm", ["a", "w", "c"]), [i("a", F, "b", 4), i("w", F, 4, 3)], {"c": _randn(3)})
for eq, shapes in [("bij,bjk->bik", [("b", 3, 4), ("b", 4, 2)]),
                   ("bhqd,bhkd->bhqk", [("b", 2, "s", 4), ("b", 2, 5, 4)]),
                   ("ij->ji", [("b", 4)]), ("bij->b", [("b", "s", 4)]),
                   ("i,j->ij", [(3,), ("s",)]),
                   ("...ij,...jk->...ik", [("b", 2, 3, 4), (1, 2, 4, 2)]),
                   ("ij,jk", [(3, 4), (4, "s")]), ("bsd,hd->bhs", [("b", "s", 4), (2, 4)]),
                   ("abc,cad->bd", [(2, "s", 4), (4, 2, 3)])]:
    case("Einsum", n("Einsum", [f"t{k}" for k in range(len(shapes))], equation=eq),
         [i(f"t{k}", F, *s) for k, s in enumerate(shapes)])
case("Einsum", n("Einsum", ["x", "w"], equation="bsd,dh->bsh"), [X], {"w": _randn(4, 3)})
case("Conv", n("Conv", ["img", "w", "bias"], pads=[0, 1, 2, 1], strides=[2, 1]),
     [i("img", F, "b", 3, 7, "s")], {"w": _randn(4, 3, 3, 2), "bias": _randn(4)})
case("Conv", n("Conv", ["sig", "w"], group=2, auto_pad="SAME_LOWER"),
     [i("sig", F, "b", 4, "s")], {"w": _randn(6, 2, 4)})
case("Conv", n("Conv", ["vol", "w"], pads=[1, 0, 0, 1, 0, 0]), [i("vol", F, "b", 2, 3, 4, 4)],
     {"w": _randn(3, 2, 2, 2, 2)})
case("ConvTranspose", n("ConvTranspose", ["img", "w"], strides=[2, 2], pads=[1, 1, 1, 1],
                        output_padding=[1, 0]), [i("img", F, "b", 2, 4, 5)],
     {"w": _randn(2, 3, 3, 3)})
case("MaxPool", n("MaxPool", ["img"], kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1]),
     [i("img", F, "b", 2, 7, 7)])
case("AveragePool", n("AveragePool", ["img"], kernel_shape=[3], pads=[1, 1],
                      count_include_pad=1), [i("img", F, "b", 2, "s")])
case("GlobalAveragePool", n("GlobalAveragePool", ["img"]), [i("img", F, "b", 2, 5, "s")])
case("GlobalMaxPool", n("GlobalMaxPool", ["img"]), [i("img", F, "b", 2, 5, "s")])
case("BatchNormalization", n("BatchNormalization", ["img", "g", "be", "mu", "var"],
                             epsilon=1e-3), [i("img", F, "b", 3, "s")],
     {"g": _randn(3), "be": _randn(3), "mu": _randn(3), "var": np.abs(_randn(3)) + 0.5})
case("LayerNormalization", n("LayerNormalization", ["x", "g", "be"], axis=-2),
     [i("x", F, "b", 3, 4)], {"g": _randn(3, 4), "be": _randn(4)})
case("InstanceNormalization", n("InstanceNormalization", ["img", "g", "be"], epsilon=1e-3),
     [i("img", F, "b", 3, "s", 4)], {"g": _randn(3), "be": _randn(3)})
case("GroupNormalization", n("GroupNormalization", ["img", "g", "be"], num_groups=2,
                             epsilon=1e-3), [i("img", F, "b", 4, "s")],
     {"g": _randn(4), "be": _randn(4)}, opset=21)
case("RMSNormalization", n("RMSNormalization", ["x", "g"]), [X], {"g": _randn(4)}, opset=23)
case("RMSNormalization", n("RMSNormalization", ["x", "g"], axis=1, epsilon=1e-3),
     [i("x", F, "b", 3, 4)], {"g": _randn(4)}, opset=23)


def _resize(mode, coord, scales=None, sizes=None, shape=("b", 2, 4, 5), **attrs):
    ins = ["img", "", "sc" if scales is not None else "", "sz" if sizes is not None else ""]
    inits = {k: v for k, v in (("sc", scales), ("sz", sizes)) if v is not None}
    case("Resize", n("Resize", ins, mode=mode,
                     coordinate_transformation_mode=coord, **attrs),
         [i("img", F, *shape)], inits, opset=19)


_resize("nearest", "asymmetric", scales=C([1, 1, 2, 3], "f4"), nearest_mode="floor")
_resize("nearest", "asymmetric", scales=C([1, 1, 0.5, 1.5], "f4"), nearest_mode="floor",
        shape=("b", 2, 6, "s"))
_resize("nearest", "half_pixel", scales=C([1, 1, 2, 2], "f4"), shape=("b", 2, "s", 3))
_resize("nearest", "asymmetric", sizes=C([2, 2, 9, 7]), nearest_mode="floor",
        shape=(2, 2, 4, 5))
_resize("nearest", "asymmetric", scales=C([1, 1, 2], "f4"), nearest_mode="floor",
        shape=("b", 3, "s"))
_resize("linear", "half_pixel", scales=C([1, 1, 2, 2], "f4"), shape=("b", 2, "s", 5))
_resize("linear", "half_pixel", scales=C([1, 1, 0.5, 0.75], "f4"), shape=("b", 2, 6, 8))
_resize("linear", "pytorch_half_pixel", scales=C([1, 1, 2, 2], "f4"))
_resize("linear", "align_corners", sizes=C([2, 2, 7, 3]), shape=(2, 2, 4, 5))
_resize("linear", "half_pixel", scales=C([1, 1, 3], "f4"), shape=("b", 2, "s"))
_resize("cubic", "half_pixel", scales=C([1, 1, 2, 2], "f4"))
_resize("cubic", "align_corners", scales=C([1, 1, 2, 1.5], "f4"), shape=("b", 2, 4, 4))
case("Resize", [n("Shape", ["img"], ["sh"]), n("Slice", ["sh", "z", "two"], ["nc"]),
                n("Concat", ["nc", "hw"], ["sz"], axis=0),
                n("Resize", ["img", "", "", "sz"], mode="linear")],
     [i("img", F, "b", 2, 4, 5)], {"z": C([0]), "two": C([2]), "hw": C([8, 10])},
     opset=19, shapes=True)


def _attention(q, k, v, *extra, opset=23, **attrs):
    names = ["q", "k", "v"] + [e[0] for e in extra]
    case("Attention", n("Attention", names, ["y"], **attrs),
         [i("q", F, *q), i("k", F, *k), i("v", F, *v)] + [i(*e) for e in extra], opset=opset)


_attention(("b", 4, "s", 8), ("b", 2, "s", 8), ("b", 2, "s", 8), is_causal=1)   # GQA
_attention(("b", 4, "s", 8), ("b", 4, 5, 8), ("b", 4, 5, 6), ("m", F, "s", 5), scale=0.2)
_attention(("b", "s", 16), ("b", 5, 8), ("b", 5, 8), ("m", B, "b", 1, "s", 5),
           q_num_heads=4, kv_num_heads=2)
case("Attention", n("Attention", ["q", "k", "v", "", "pk", "pv"], ["y", "pko", "pvo"],
                    is_causal=1),
     [i("q", F, "b", 4, "s", 8), i("k", F, "b", 2, "s", 8), i("v", F, "b", 2, "s", 8),
      i("pk", F, "b", 2, 3, 8), i("pv", F, "b", 2, 3, 8)], opset=23)
case("Attention", n("Attention", ["q", "k", "v", "m", "pk", "pv"], ["y", "pko", "pvo"],
                    is_causal=1),
     [i("q", F, "b", 2, 2, 8), i("k", F, "b", 2, 2, 8), i("v", F, "b", 2, 2, 8),
      i("m", F, 1, 1, 2, 9, lo=-1, hi=0), i("pk", F, "b", 2, 7, 8),
      i("pv", F, "b", 2, 7, 8)], opset=23)
case("Attention", n("Attention", ["q", "k", "v", "m", "pk", "pv"], ["y", "pko", "pvo"],
                    is_causal=1),
     [i("q", F, "b", 2, 1, 8), i("k", F, "b", 2, 1, 8), i("v", F, "b", 2, 1, 8),
      i("m", B, "b", 1, 1, 6), i("pk", F, "b", 2, 5, 8), i("pv", F, "b", 2, 5, 8)], opset=23)
_COS = np.cos(np.arange(32).reshape(8, 4) * 0.1).astype(np.float32)
_SIN = np.sin(np.arange(32).reshape(8, 4) * 0.1).astype(np.float32)
case("RotaryEmbedding", n("RotaryEmbedding", ["x", "cos", "sin", "pos"]),
     [i("x", F, "b", 2, "s", 8), i("pos", I64, "b", "s", lo=0, hi=8)],
     {"cos": _COS, "sin": _SIN}, opset=23)
case("RotaryEmbedding", n("RotaryEmbedding", ["x", "cos", "sin", "pos"], interleaved=1,
                          num_heads=2, rotary_embedding_dim=4),
     [i("x", F, "b", "s", 12), i("pos", I64, "b", "s", lo=0, hi=8)],
     {"cos": _COS[:, :2], "sin": _SIN[:, :2]}, opset=23)
case("RotaryEmbedding", n("RotaryEmbedding", ["x", "c", "sn"]),
     [i("x", F, "b", 2, "s", 8), i("c", F, "b", "s", 4), i("sn", F, "b", "s", 4)], opset=23)

# -- shapes ---------------------------------------------------------------------------------
# the exporter's `token_type_ids.expand(batch, seq)`: a [1, 16] buffer sliced to seq, expanded
# by Where(Equal(Reshape(Concat(Shape...)), -1), ConstantOfShape(Shape...), Reshape(...))
_EXPAND = [n("Shape", ["ids"], ["sh"]), n("Gather", ["sh", "zero"], ["bsz"]),
           n("Gather", ["sh", "one"], ["seq"]), n("Unsqueeze", ["seq", "z1"], ["seq1"]),
           n("Slice", ["buf", "z1", "seq1", "one1"], ["part"]),
           n("Unsqueeze", ["bsz", "z1"], ["b1"]), n("Concat", ["b1", "seq1"], ["cat"], axis=0),
           n("Reshape", ["cat", "m1"], ["want"]), n("Shape", ["want"], ["wsh"]),
           n("ConstantOfShape", ["wsh"], ["ones"], value=helper.make_tensor("v", I64, [1], [1])),
           n("Mul", ["ones", "m1s"], ["neg"]), n("Equal", ["want", "neg"], ["is_neg"]),
           n("Where", ["is_neg", "ones", "want"], ["size"]), n("Expand", ["part", "size"])]
_EXPAND_INITS = {"zero": C(0), "one": C(1), "z1": C([0]), "one1": C([1]), "m1": C([-1]),
                 "m1s": C(-1), "buf": np.arange(16, dtype=np.int64).reshape(1, 16) % 2}
case("Expand", _EXPAND, [i("ids", I64, "b", "s")], _EXPAND_INITS, shapes=True)
case("Expand", n("Expand", ["v", "s"]), [i("v", F, "b", 1, 4)], {"s": C([2, 1, 1, 1])})
case("Expand", [n("Shape", ["x"], ["sh"]), n("Expand", ["c", "sh"])], [X], {"c": C(1.5, "f4")},
     shapes=True)
case("Reshape", n("Reshape", ["x", "s"]), [X], {"s": C([0, 0, 2, 2])})
case("Reshape", [n("Shape", ["x"], ["sh"]), n("Gather", ["sh", "one"], ["seq"]),
                 n("Mul", ["seq", "four"], ["n"]), n("Div", ["n", "two"], ["h"]),
                 n("Sub", ["h", "one"], ["h1"]), n("Add", ["h1", "one"], ["h2"]),
                 n("Unsqueeze", ["h2", "z1"], ["u"]), n("Slice", ["sh", "z1", "one1"], ["lead"]),
                 n("Concat", ["lead", "u", "m1"], ["new"], axis=0), n("Reshape", ["x", "new"])],
     [X], {"one": C(1), "four": C(4), "two": C(2), "z1": C([0]), "one1": C([1]),
           "m1": C([-1])}, shapes=True)
case("Reshape", [n("Shape", ["x"], ["sh"]), n("Slice", ["sh", "one1", "big"], ["rest"]),
                 n("ReduceProd", ["rest"], ["flat"], keepdims=1),
                 n("Slice", ["sh", "z1", "one1"], ["lead"]),
                 n("Concat", ["lead", "flat"], ["new"], axis=0), n("Reshape", ["x", "new"])],
     [X], {"z1": C([0]), "one1": C([1]), "big": C([9])}, shapes=True)
case("Shape", [n("Shape", ["x"], ["a"], start=-2), n("Shape", ["x"], ["c"], end=1)], [X],
     outputs=["a", "c"], shapes=True)
case("Size", n("Size", ["x"]), [X], shapes=True)
case("ConstantOfShape", [n("Shape", ["x"], ["sh"]), n("Slice", ["sh", "z1", "two1"], ["bs"]),
                         n("ConstantOfShape", ["bs"], value=helper.make_tensor("v", F, [1],
                                                                               [0.5]))],
     [X], {"z1": C([0]), "two1": C([2])}, shapes=True)
case("Range", [n("Shape", ["x"], ["sh"]), n("Gather", ["sh", "one"], ["seq"]),
               n("Range", ["zero", "seq", "one"], ["pos"]), n("Cast", ["pos"], ["posf"], to=F),
               n("Unsqueeze", ["posf", "ax"], ["p2"]), n("Add", ["x", "p2"])],
     [X], {"zero": C(0), "one": C(1), "ax": C([1])}, shapes=True)
case("Range", n("Range", ["a", "lim", "d"]), [], {"a": C(1.0, "f4"), "lim": C(4.0, "f4"),
                                                   "d": C(0.5, "f4")})
case("Tile", [n("Shape", ["x"], ["sh"]), n("Slice", ["sh", "z1", "one1"], ["bt"]),
              n("Concat", ["bt", "ones"], ["rep"], axis=0), n("Tile", ["v", "rep"])],
     [X, i("v", F, 1, 2, 3)], {"z1": C([0]), "one1": C([1]), "ones": C([1, 2])}, shapes=True)
case("Tile", n("Tile", ["x", "r"]), [X], {"r": C([1, 2, 1])})
case("Slice", n("Slice", ["x", "st", "en", "ax", "sp"]), [i("x", F, "b", 6, 4)],
     {"st": C([1, 3]), "en": C([-1, 0]), "ax": C([-1, 1]), "sp": C([2, -1])})
case("Slice", [n("Shape", ["x"], ["sh"], start=1, end=2), n("Slice", ["tab", "z1", "sh", "z1"])],
     [X], {"tab": _randn(16, 3), "z1": C([0])}, shapes=True)
case("Slice", n("Slice", ["x", "st", "en", "ax", "sp"]), [X],
     {"st": C([-1]), "en": C([-100]), "ax": C([2]), "sp": C([-2])})
case("Slice", n("Slice", ["x", "st", "en", "ax", "sp"]), [X],  # torch.flip over a dynamic axis
     {"st": C([-1]), "en": C([-2**63]), "ax": C([1]), "sp": C([-1])}, shapes=True)
case("Flatten", [n("Flatten", ["x"], ["a"], axis=2), n("Flatten", ["x"], ["c"], axis=-3)], [X],
     outputs=["a", "c"])
case("Transpose", n("Transpose", ["x"], perm=[2, 0, 1]), [X])
case("Unsqueeze", n("Unsqueeze", ["x", "a"]), [X], {"a": C([0, -1])})
case("Squeeze", [n("Unsqueeze", ["x", "a"], ["u"]), n("Squeeze", ["u", "c"])], [X],
     {"a": C([1, -1]), "c": C([-1, 1])})
case("Concat", n("Concat", ["x", "v", "e"], axis=-1), [X, i("v", F, "b", "s", 2)],
     {"e": np.zeros((1, 1, 0), np.float32)}, shapes=True)
case("Split", n("Split", ["x", "sp"], ["a", "c"], axis=-1), [X], {"sp": C([1, 3])})
case("Split", n("Split", ["x"], ["a", "c", "d"], axis=1, num_outputs=3),
     [i("x", F, "b", 7, 2)])
case("Split", [n("Shape", ["x"], ["sh"]), n("Slice", ["sh", "one1", "two1"], ["s1"]),
               n("Sub", ["s1", "one1"], ["rest"]), n("Concat", ["one1", "rest"], ["sp"], axis=0),
               n("Split", ["x", "sp"], ["a", "c"], axis=1)],
     [X], {"one1": C([1]), "two1": C([2])}, shapes=True)
case("Pad", n("Pad", ["x", "p", "v"]), [X], {"p": C([0, 1, -1, 0, 2, 1]), "v": C(0.5, "f4")})
case("Pad", n("Pad", ["k", "p", "", "ax"]), [i("k", I64, "b", "s", 4)],
     {"p": C([1, 2]), "ax": C([-1])})
for mode in ("reflect", "edge", "wrap"):
    case("Pad", n("Pad", ["img", "p"], mode=mode), [i("img", F, "b", 2, 5, 4)],
         {"p": C([0, 0, 2, 1, 0, 0, 1, 3])}, opset=19)
for mode in ("reflect", "edge"):
    case("Pad", n("Pad", ["x", "p"], mode=mode), [X], {"p": C([0, 2, 1, 0, 1, 2])},
         shapes=True)
case("Trilu", [n("Trilu", ["x", "k"], ["a"]), n("Trilu", ["x"], ["c"], upper=0)],
     [i("x", F, "b", "s", 4)], {"k": C(1)}, outputs=["a", "c"], shapes=True)
case("Trilu", n("Trilu", ["m", "k"], upper=0), [i("m", I64, 3, 5)], {"k": C(-1)})
case("DepthToSpace", [n("DepthToSpace", ["img"], ["a"], blocksize=2),
                      n("DepthToSpace", ["img"], ["c"], blocksize=2, mode="CRD")],
     [i("img", F, "b", 8, "s", 3)], outputs=["a", "c"])
case("SpaceToDepth", n("SpaceToDepth", ["img"], blocksize=2), [i("img", F, "b", 3, 4, 6)])

# -- indexing -------------------------------------------------------------------------------
case("Gather", [n("Gather", ["x", "i0"], ["a"], axis=-1), n("Gather", ["x", "i1"], ["c"], axis=2),
                n("Gather", ["x", "idx"], ["d"], axis=1)],
     [X, i("idx", I64, 2, 3, lo=-3, hi=3)], {"i0": C(-1), "i1": C([0, -1, 2])},
     outputs=["a", "c", "d"])
case("Gather", n("Gather", ["tab", "ids"]), [i("ids", I64, "b", "s", lo=-10, hi=10)],
     {"tab": _randn(10, 4)})
case("Gather", n("Gather", ["x", "idx"], axis=1), [X, i("idx", I32, 2, lo=-3, hi=3)])
case("GatherND", n("GatherND", ["x", "idx"]), [X, i("idx", I64, 3, 2, lo=-2, hi=2)])
case("GatherElements", n("GatherElements", ["x", "idx"], axis=-2),
     [X, i("idx", I64, "b", 2, 4, lo=-3, hi=3)])
for red in ("none", "add", "mul", "max", "min"):
    case("ScatterElements", n("ScatterElements", ["x", "idx", "u"], axis=1, reduction=red),
         [i("x", F, "b", 5, 3), i("idx", I64, "b", 2, 3, lo=-5, hi=5),
          i("u", F, "b", 2, 3)])
case("ScatterElements", n("ScatterElements", ["k", "idx", "u"], axis=-1),
     [i("k", I64, 2, 4)], {"idx": C([[1, -1], [0, 2]]), "u": C([[5, 6], [7, 8]])})
case("ScatterND", n("ScatterND", ["x", "idx", "u"]), [X, i("u", F, 2, 4)],
     {"idx": C([[0, -1], [1, 0]])})
case("ScatterND", n("ScatterND", ["x", "idx", "u"], reduction="add"),
     [i("x", F, 4, "s"), i("u", F, 3, "s")], {"idx": C([[1], [-1], [1]])})
case("TopK", n("TopK", ["x", "k"], ["v", "ix"]), [X], {"k": C([2])})
case("TopK", n("TopK", ["x", "k"], ["v", "ix"], axis=1, largest=0), [i("x", F, "b", 5, 3)],
     {"k": C([3])})
case("TopK", [n("Shape", ["x"], ["sh"]), n("Slice", ["sh", "one1", "two1"], ["k"]),
              n("TopK", ["x", "k"], ["v", "ix"], axis=1)], [X],
     {"one1": C([1]), "two1": C([2])}, shapes=True)
case("OneHot", n("OneHot", ["ids", "d", "vals"], axis=1), [i("ids", I64, "b", "s", lo=-4, hi=4)],
     {"d": C(4), "vals": C([0.5, 2.0], "f4")})

# -- constants and control ------------------------------------------------------------------
_EMPTY = numpy_helper.from_array(np.zeros((0, 4), np.float32))
case("Constant", [n("Constant", [], ["e"], value=_EMPTY), n("Concat", ["x2", "e"], ["a"], axis=0),
                  n("Constant", [], ["c"], value_floats=[1.0, 2.0, 3.0, 4.0]),
                  n("Add", ["a", "c"], ["y"]), n("Identity", ["e"], ["z"])],
     [i("x2", F, "b", 4)], outputs=["y", "z"])
case("Identity", n("Identity", ["x"]), [X])
case("Dropout", n("Dropout", ["x", "r"], ["y", "mask"]), [X], {"r": C(0.3, "f4")},
     outputs=["y"])


def _branch(name, nodes, out):
    return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(out, F, None)])


_THEN = _branch("then", [n("Relu", ["x"], ["t"])], "t")
_ELSE = _branch("else", [n("Neg", ["x"], ["e1"]), n("Add", ["e1", "bias"], ["e2"])], "e2")
_ELSE.initializer.append(numpy_helper.from_array(C(1.0, "f4"), "bias"))
case("If", [n("Size", ["x"], ["sz"]), n("Less", ["sz", "zero"], ["cond"]),
            n("If", ["cond"], then_branch=_THEN, else_branch=_ELSE)],
     [X], {"zero": C(0)}, shapes=True)
case("If", n("If", ["cond"], then_branch=_THEN, else_branch=_ELSE), [X], {"cond": C(True)})


# -- running a case -------------------------------------------------------------------------
def _model(c: Case) -> onnx.ModelProto:
    graph = helper.make_graph(list(c.nodes), "ops",
                              [helper.make_tensor_value_info(nm, t, s) for nm, t, s, _ in c.inputs],
                              [onnx.ValueInfoProto(name=o) for o in c.outputs],
                              [numpy_helper.from_array(np.asarray(v), k)
                               for k, v in c.inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", c.opset)])
    model.ir_version = 10
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    for o in model.graph.output:  # a function op (GroupNormalization) inference leaves untyped
        if not o.type.tensor_type.elem_type:
            o.type.tensor_type.elem_type = c.inputs[0][1]
    unshaped = [o for o in model.graph.output if not o.type.tensor_type.HasField("shape")]
    if unshaped:  # outputs inference can't shape (Attention's present_key): rank from a run
        got = _session(model).run([o.name for o in unshaped], _feed(c, SMALL, 0))
        for o, a in zip(unshaped, got):
            o.type.tensor_type.shape.dim.extend([onnx.TensorShapeProto.Dimension()] * a.ndim)
    return model


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    """ORT without graph optimizations: fusions approximate (DequantizeLinear + MatMul runs as
    an integer matmul), the op-by-op result is the reference."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def _feed(c: Case, sizes: dict, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, elem, shape, bounds in c.inputs:
        dims = [sizes.get(d, d) for d in shape]
        if elem == B:
            out[name] = rng.random(dims) > 0.5
        elif elem in (F, F16, D):
            dtype = {F: np.float32, F16: np.float16, D: np.float64}[elem]
            a = rng.standard_normal(dims) if bounds is None else rng.uniform(*bounds, dims)
            out[name] = a.astype(dtype)
        else:
            dtype = {I64: np.int64, I32: np.int32, I8: np.int8, U8: np.uint8}[elem]
            lo, hi = bounds or (-5, 6)
            out[name] = rng.integers(lo, hi, dims).astype(dtype)
    return out


def check(c: Case) -> None:
    model = _model(c)
    session = _session(model)
    g = import_onnx(model)
    verify(g)
    for k, sizes in enumerate(c.sizes):
        feed = _feed(c, sizes, seed=k)
        want = session.run(list(c.outputs), feed)
        got = run(g, [torch.from_numpy(np.ascontiguousarray(v)) for v in feed.values()])
        assert len(got) == len(want)
        for o, w, name in zip(got, want, c.outputs):
            w = torch.from_numpy(np.asarray(w))
            assert o.dtype == w.dtype, f"{name}: {o.dtype} vs ORT {w.dtype}"
            assert tuple(o.shape) == tuple(w.shape), f"{name}: {tuple(o.shape)} vs {tuple(w.shape)}"
            if not w.dtype.is_floating_point:
                assert torch.equal(o, w), f"{name} differs at sizes {sizes}"
            elif w.numel():
                ok = torch.isnan(w) == torch.isnan(o)
                assert ok.all(), f"{name}: NaN where ORT has none (or the reverse)"
                same = w[~torch.isnan(w)].double(), o[~torch.isnan(w)].double()
                finite = torch.isfinite(same[0])
                assert torch.equal(same[0][~finite], same[1][~finite]), f"{name}: inf differs"
                ref, out = same[0][finite], same[1][finite]
                scale = ref.abs().max().item() if ref.numel() else 0.0
                err = (out - ref).abs().max().item() if ref.numel() else 0.0
                assert err <= TOL * max(scale, 1e-30), \
                    f"{name}: relative error {err / max(scale, 1e-30):.3g} at sizes {sizes}"


@pytest.mark.parametrize("op", sorted(CASES))
def test_op_matches_ort(op):
    for c in CASES[op]:
        check(c)


def test_every_handler_is_matched_against_ort():
    assert sorted(set(HANDLERS) - set(CASES)) == []
    assert sorted(set(CASES) - set(HANDLERS)) == []


# -- refused variants -----------------------------------------------------------------------
_SC = {"sc": C([1, 1, 2, 2], "f4")}
REFUSED_CASES = {
    "resize_antialias": (n("Resize", ["img", "", "sc"], mode="linear", antialias=1),
                         [i("img", F, "b", 2, 4, 4)], _SC, 19, "antialias=1"),
    "resize_nearest_round_asymmetric": (
        n("Resize", ["img", "", "sc"], coordinate_transformation_mode="asymmetric"),
        [i("img", F, "b", 2, 4, 4)], _SC, 19, "nearest with coordinate_transformation_mode"),
    "resize_nearest_half_pixel_downscale": (
        n("Resize", ["img", "", "sc"]), [i("img", F, "b", 2, 4, 4)],
        {"sc": C([1, 1, 0.5, 0.5], "f4")}, 19, "by whole upscale factors"),
    "resize_linear_asymmetric": (
        n("Resize", ["img", "", "sc"], mode="linear", coordinate_transformation_mode="asymmetric"),
        [i("img", F, "b", 2, 4, 4)], _SC, 19, "linear with coordinate_transformation_mode"),
    "resize_3d": (n("Resize", ["vol", "", "sc"]), [i("vol", F, 1, 2, 4, 4, 4)],
                  {"sc": C([1, 1, 2, 2, 2], "f4")}, 19, "3-D resize"),
    "resize_scale_over_symbolic": (n("Resize", ["img", "", "sc"], mode="linear"),
                                   [i("img", F, "b", 2, "s", 4)],
                                   {"sc": C([1, 1, 0.7, 1], "f4")}, 19, "float rounding"),
    "resize_scales_from_data": (n("Resize", ["img", "", "sc"], mode="linear"),
                                [i("img", F, "b", 2, 4, 4), i("sc", F, 4)], {}, 19,
                                "come from tensor data"),
    "einsum_diagonal": (n("Einsum", ["m"], equation="ii->i"), [i("m", F, 3, 3)], {}, 18,
                        "diagonal"),
    "einsum_three_operands": (n("Einsum", ["a", "c", "d"], equation="ij,jk,kl->il"),
                              [i("a", F, 2, 3), i("c", F, 3, 4), i("d", F, 4, 5)], {}, 18,
                              "3 operands"),
    "pad_wrap_symbolic": (n("Pad", ["x", "p"], mode="wrap"), [X], {"p": C([0, 1, 0, 0, 1, 0])},
                          19, "wrap padding over a symbolic size"),
    "pad_reflect_too_wide": (n("Pad", ["img", "p"], mode="reflect"), [i("img", F, 1, 3)],
                             {"p": C([0, 3, 0, 3])}, 18, "reflect pads 3, 3 over an axis of"),
    "slice_partial_backwards_symbolic": (n("Slice", ["x", "st", "en", "ax", "sp"]), [X],
                                         {"st": C([2]), "en": C([0]), "ax": C([1]),
                                          "sp": C([-1])}, 18, "whole axis reversed only"),
    "split_sizes_from_data": (n("Split", ["x", "sz"], ["a", "c"], axis=1),
                              [X, i("sz", I64, 2)], {}, 18, "come from tensor data"),
    "topk_k_from_data": (n("TopK", ["x", "k"], ["v", "ix"]), [X, i("k", I64, 1)], {}, 18,
                         "comes from tensor data"),
    "scatternd_mul": (n("ScatterND", ["x", "idx", "u"], reduction="mul"),
                      [X, i("u", F, 1, "s", 4)], {"idx": C([[0]])}, 18, "reduction='mul'"),
    "quantize_blocked": (n("QuantizeLinear", ["x", "sc", "zp"], axis=-1, block_size=2),
                         [i("x", F, 2, 4)], {"sc": np.ones((2, 2), np.float32),
                                             "zp": np.zeros((2, 2), np.int8)}, 21, "block_size"),
    "quantize_int16": (n("QuantizeLinear", ["x", "sc", "zp"]), [X],
                       {"sc": C(0.1, "f4"), "zp": C(0, np.int16)}, 21, "quantizing to i16"),
    "attention_softcap": (n("Attention", ["q", "k", "v"], softcap=30.0),
                          [i("q", F, 1, 2, 3, 8), i("k", F, 1, 2, 3, 8), i("v", F, 1, 2, 3, 8)],
                          {}, 23, "softcap"),
    "attention_qk_output": (n("Attention", ["q", "k", "v"], ["y", "", "", "qk"]),
                            [i("q", F, 1, 2, 3, 8), i("k", F, 1, 2, 3, 8),
                             i("v", F, 1, 2, 3, 8)], {}, 23, "qk_matmul output"),
    "if_on_tensor_data": (n("If", ["p"], then_branch=_THEN, else_branch=_ELSE),
                          [X, i("p", B)], {}, 18, "condition comes from tensor data"),
    "expand_by_undecided_sizes": (
        [n("Shape", ["x"], ["sh"]), n("Gather", ["sh", "one"], ["seq"]),
         n("Equal", ["seq", "four"], ["is4"]), n("Where", ["is4", "two", "seq"], ["n"]),
         n("Unsqueeze", ["n", "z1"], ["n1"]), n("Expand", ["c", "n1"])],
        [X], {"one": C(1), "four": C(4), "two": C(2), "z1": C([0]), "c": C(1.0, "f4")}, 18,
        r"Equal\(s, 4\) depends on the input sizes"),
    "cumsum_reverse": (n("CumSum", ["x", "a"], reverse=1), [X], {"a": C(1)}, 18, "reverse"),
    "argmax_last_index": (n("ArgMax", ["x"], select_last_index=1), [X], {}, 18,
                          "select_last_index"),
    "lstm": (n("LSTM", ["x", "w", "r"], ["y"], hidden_size=2), [i("x", F, "s", 1, 4)],
             {"w": _randn(1, 8, 4), "r": _randn(1, 8, 2)}, 18, "recurrent layers are not "
             "supported"),
}


@pytest.mark.parametrize("name", sorted(REFUSED_CASES))
def test_unsupported_variant_is_refused_in_one_line(name):
    nodes, inputs, inits, opset, why = REFUSED_CASES[name]
    nodes = nodes if isinstance(nodes, list) else [nodes]
    outs = tuple(o for o in nodes[-1].output if o)
    c = Case(tuple(nodes), tuple(inputs), inits, opset, outs, (SMALL,))
    graph = helper.make_graph(list(c.nodes), "ops",
                              [helper.make_tensor_value_info(nm, t, s) for nm, t, s, _ in c.inputs],
                              [helper.make_tensor_value_info(o, 0, None) for o in c.outputs],
                              [numpy_helper.from_array(np.asarray(v), k)
                               for k, v in c.inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", c.opset)])
    model.ir_version = 10
    model = onnx.shape_inference.infer_shapes(model)
    for o in model.graph.output:
        if not o.type.tensor_type.elem_type:
            o.type.tensor_type.elem_type = F
        if not o.type.tensor_type.HasField("shape"):
            o.type.tensor_type.shape.SetInParent()
    with pytest.raises(OnnxImportError) as info:
        import_onnx(model)
    msg = str(info.value)
    assert isinstance(info.value, CaptureError)
    assert "\n" not in msg and re.search(why, msg), msg
    assert f"node '{nodes[-1].output[0]}'" in msg or "node '" in msg, msg


# -- the docs table -------------------------------------------------------------------------
def _opsets(op: str) -> str:
    versions = sorted({s.since_version for s in onnx.defs.get_all_schemas_with_history()
                       if s.name == op and s.domain == ""})
    first = max([v for v in versions if v <= 13] or versions[:1])
    return ", ".join(str(v) for v in versions if v >= first)


def render_table() -> str:
    rows = ["| ONNX op | opset versions read | imports as | matched against ORT |",
            "|---|---|---|---|"]
    for op in sorted(HANDLERS):
        k = len(CASES.get(op, []))
        test = f"`test_op_matches_ort[{op}]` ({k} graph{'s' if k > 1 else ''})"
        rows.append(f"| {op} | {_opsets(op)} | {HANDLERS[op].imports_as} | {test} |")
    refused = [f"| {op} | {why} |" for op, why in sorted(REFUSED.items())]
    variants = [f"| `test_unsupported_variant_is_refused_in_one_line[{k}]` |"
                for k in sorted(REFUSED_CASES)]
    return "\n".join([
        "# ONNX ops the importer reads",
        "",
        "Generated from the importer's handler registry (`sparsecc.capture.onnx_importer."
        "HANDLERS`) and `tests/capture/test_onnx_ops_ort.py`; rewrite it with "
        "`SPARSECC_WRITE_DOCS=1 python -m pytest tests/capture/test_onnx_ops_ort.py -k "
        "docs_table`.",
        "",
        f"{len(HANDLERS)} ops imported, {sum(op in CASES for op in HANDLERS)} matched against "
        f"ONNX Runtime {ort.__version__} (graph optimizations off) on generated graphs with "
        "dynamic dims: integers exact, floats to 1e-5 relative. Opsets 13 and newer are read; "
        "the versions column lists the op's schema versions from opset 13 on (the ONNX checker "
        "refuses deprecated ones). Variants outside what a row says are refused in one line "
        "naming the node. Elementwise ops, Gather, Concat, Slice, Squeeze, Unsqueeze, Reshape "
        "and reductions on constants fold at import; on sizes computed from `Shape` they fold "
        "to symbolic sizes (`sym.*` nodes) that Reshape, Expand, Tile, Slice, Range, "
        "ConstantOfShape, Split and TopK read as attributes.",
        "",
        *rows,
        "",
        "## Refused on purpose",
        "",
        "| ONNX op | reason |",
        "|---|---|",
        *refused,
        "",
        "## Refused variants, each tested",
        "",
        "| test |",
        "|---|",
        *variants,
        "",
    ])


def test_docs_table_is_current():
    text = render_table()
    if os.environ.get("SPARSECC_WRITE_DOCS"):
        with open(DOCS, "w") as f:
            f.write(text)
    with open(DOCS) as f:
        assert f.read() == text, "docs/onnx-ops.md is stale: rerun with SPARSECC_WRITE_DOCS=1"
