"""ONNX constants, identities and control flow.

  Constant                 a `Const` (an IR parameter only once a tensor op reads it)
  Identity, Dropout        the input itself (training-mode Dropout is refused: it is random)
  If(cond)                 cond known at import time (a constant, or a comparison of sizes the
                           input sizes decide): the branch taken is imported in place; a
                           condition computed from tensor data is refused
Loops and recurrent layers are refused with the reason (`onnx_ops` lists them).
"""
from __future__ import annotations

import numpy as np
import onnx

from .onnx_importer import (HANDLERS, Const, Entry, Importer, Missing, Sizes, attrs, handler,
                            unsupported)


@handler("Identity", "Dropout", imports_as={"Identity": "the input itself",
                                            "Dropout": "the input itself (inference)"},
         attributes="seed ratio")
def identity(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    if node.op_type == "Dropout":
        train = imp.const(2)
        if train is not None and bool(train.reshape(-1)[0]) or imp.input(2) is not None \
                and train is None:
            raise imp.fail("training-mode dropout is random")
        return [imp.input(0), Missing("the mask of a Dropout")]
    return [imp.input(0)]


@handler("Constant", imports_as="folded: a constant (a parameter when a tensor op reads it)")
def constant(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    a = attrs(node)
    if "value" in a:
        return [imp.new_const(onnx.numpy_helper.to_array(a["value"]))]
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in a:
            return [imp.new_const(np.array(a[key], dtype))]
    raise imp.fail(f"constant of kind {sorted(a)} is not supported")


def _condition(imp: Importer, cond: Entry) -> bool:
    if isinstance(cond, Const) and cond.array.size == 1:
        return bool(cond.array.reshape(-1)[0])
    if isinstance(cond, Sizes) and len(cond.items) == 1 and isinstance(cond.items[0], bool):
        return cond.items[0]
    why = imp.unfolded.get(cond) if isinstance(cond, str) else None
    raise imp.fail("its condition comes from tensor data" + (f" ({why})" if why else "") +
                   "; sparsecc imports an If whose condition is known at import time")


@handler("If", imports_as="the branch taken, inlined (a condition known at import time)",
         attributes="then_branch else_branch")
def if_(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    a = attrs(node)
    branch: onnx.GraphProto = a["then_branch" if _condition(imp, imp.input(0)) else "else_branch"]
    for inner in branch.node:
        if inner.domain not in ("", "ai.onnx") or inner.op_type not in HANDLERS:
            raise unsupported(imp.label, inner)
    for t in branch.initializer:
        imp.env[t.name] = Const(onnx.numpy_helper.to_array(t), t.name)
    outer = imp.node
    imp.run_nodes(branch.node)
    imp.node = outer
    return [imp.entry(o.name) for o in branch.output]
