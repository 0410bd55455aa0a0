"""ONNX Resize as ATen upsampling (the forms `torch.onnx.export` writes for `F.interpolate`).

Resize maps output position x' of an axis to the input position x and interpolates there:
  asymmetric          x = x' / scale
  half_pixel          x = (x' + 0.5) / scale − 0.5    (pytorch_half_pixel: 0 when the output is 1)
  align_corners       x = x' · (in − 1) / (out − 1)
ATen's upsampling computes the same: nearest is asymmetric + floor, linear and cubic are half_pixel
(align_corners=False) or align_corners; it uses 1/scale when a scale is given, in/out otherwise,
as ONNX does for its scales and sizes forms. Imported as:
  mode=nearest   asymmetric + floor; or half_pixel + round_prefer_* when every scale is a whole
                 number ≥ 1 (no position falls on a tie, so rounding equals floor)
                 → upsample_nearest2d
  mode=linear    half_pixel, pytorch_half_pixel (outputs of size 1 only from inputs of size 1),
                 align_corners → upsample_bilinear2d
  mode=cubic     the same coordinate modes, cubic_coeff_a = −0.75, exclude_outside = 0
                 → upsample_bicubic2d
A 1-D resize runs as 2-D over a unit height. Output sizes are floor(in · scale) in float32, as ONNX
Runtime computes them; over a symbolic size the scale must be a short binary fraction (2, 0.5, 1.5)
so the size is exact. Everything else (antialias, tf_crop_and_resize, 3-D) is refused.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import onnx

from ..ir.graph import Ref
from .onnx_importer import Const, Entry, Importer, attrs, axis, handler

_OPS = {"nearest": "upsample_nearest2d", "linear": "upsample_bilinear2d",
        "cubic": "upsample_bicubic2d"}


def _scaled(imp: Importer, n: int | Ref, s: float) -> int | Ref:
    if isinstance(n, int):
        return int(np.floor(np.float32(n) * np.float32(s)))
    f = Fraction(s)
    if f.denominator > 1024:
        raise imp.fail(f"scale {s:g} over a symbolic size: the output size would depend on "
                       f"float rounding")
    return imp.sym("floordiv", imp.sym("mul", n, f.numerator), f.denominator)


def _plan(imp: Importer, x: str, node: onnx.NodeProto
          ) -> tuple[list[int | Ref], list[float] | None]:
    """The output sizes of every axis, and the scales when the node gives scales."""
    a = attrs(node)
    r = imp.rank(x)
    axes = [axis(v, r) for v in a.get("axes", range(r))]
    dims = imp.dims(x)
    scales_e, sizes_e = imp.input(2), imp.input(3)
    scales_e = None if isinstance(scales_e, Const) and scales_e.array.size == 0 else scales_e
    sizes_e = None if isinstance(sizes_e, Const) and sizes_e.array.size == 0 else sizes_e
    out = list(dims)
    if scales_e is not None:
        if not isinstance(scales_e, Const):
            raise imp.fail(f"its scales '{node.input[2]}' come from tensor data")
        given = [float(v) for v in scales_e.array.astype(np.float32).reshape(-1)]
        if len(given) != len(axes):
            raise imp.fail(f"{len(given)} scales for {len(axes)} axes")
        scales = [1.0] * r
        for ax, s in zip(axes, given):
            scales[ax], out[ax] = s, _scaled(imp, dims[ax], s)
        if scales[0] != 1.0 or scales[1] != 1.0:
            raise imp.fail(f"scales {given} resize the batch or channel axis")
        return out, scales
    if sizes_e is None:
        raise imp.fail("neither scales nor sizes are given")
    items = imp.sizes(sizes_e)
    if items is None:
        raise imp.fail(f"its sizes '{node.input[3]}' come from tensor data")
    for ax, n in zip(axes, items):
        out[ax] = n
    if out[:2] != dims[:2]:
        raise imp.fail("the sizes resize the batch or channel axis")
    return out, None


def _whole_upscale(dims: list, out: list, scales: list[float] | None) -> bool:
    """Every spatial axis grows by a whole factor (known at import time)."""
    if scales is not None:
        return all(s >= 1 and float(s).is_integer() for s in scales[2:])
    return all(isinstance(i, int) and isinstance(o, int) and i and o % i == 0
               for i, o in zip(dims[2:], out[2:]))


def _never_one(dims: list, out: list, scales: list[float] | None) -> bool:
    """No spatial output of size 1 reads an input bigger than 1 (pytorch_half_pixel's case)."""
    if scales is not None:
        return all(s >= 1 for s in scales[2:]) or all(
            isinstance(o, int) and o > 1 for o in out[2:])
    return all(isinstance(o, int) and o > 1 for o in out[2:])


@handler("Resize", imports_as="upsample_nearest2d / upsample_bilinear2d / upsample_bicubic2d "
         "(1-D over a unit height)", attributes="antialias axes coordinate_transformation_mode "
         "cubic_coeff_a exclude_outside extrapolation_value keep_aspect_ratio_policy mode "
         "nearest_mode")
def resize(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    a = attrs(node)
    mode = a.get("mode", "nearest")
    coord = a.get("coordinate_transformation_mode", "half_pixel")
    if a.get("antialias", 0):
        raise imp.fail("antialias=1 is not supported")
    if a.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise imp.fail(f"keep_aspect_ratio_policy={a['keep_aspect_ratio_policy']!r}")
    if mode not in _OPS:
        raise imp.fail(f"mode={mode!r}")
    x = imp.tensor(imp.input(0))
    r = imp.rank(x)
    if r not in (3, 4):
        raise imp.fail(f"a {r - 2}-D resize: sparsecc reads 1-D and 2-D")
    out, scales = _plan(imp, x, node)
    dims = imp.dims(x)
    at: dict = {}
    if mode == "nearest":
        nearest = a.get("nearest_mode", "round_prefer_floor")
        exact = coord == "asymmetric" and nearest == "floor"
        whole = coord in ("half_pixel", "pytorch_half_pixel") and nearest in (
            "round_prefer_floor", "round_prefer_ceil") and _whole_upscale(dims, out, scales)
        if not (exact or whole):
            raise imp.fail(f"nearest with coordinate_transformation_mode={coord!r}, "
                           f"nearest_mode={nearest!r}: sparsecc reads asymmetric + floor, or "
                           f"half_pixel + round_prefer_* by whole upscale factors")
    else:
        if mode == "cubic" and (a.get("cubic_coeff_a", -0.75) != -0.75
                                or a.get("exclude_outside", 0)):
            raise imp.fail("cubic with cubic_coeff_a != -0.75 or exclude_outside=1")
        if coord == "pytorch_half_pixel" and not _never_one(dims, out, scales):
            raise imp.fail("pytorch_half_pixel where an output axis may have size 1")
        if coord not in ("half_pixel", "pytorch_half_pixel", "align_corners"):
            raise imp.fail(f"{mode} with coordinate_transformation_mode={coord!r}")
        at["align_corners"] = coord == "align_corners"
    if r == 3:  # a unit height: the 2-D op over [N, C, 1, W]
        x = imp.emit("unsqueeze", [x], {"dim": 2})
        out = out[:2] + [1] + out[2:]
        scales = None if scales is None else scales[:2] + [1.0] + scales[2:]
    at["output_size"] = tuple(out[2:])
    if scales is not None:
        at["scales_h"], at["scales_w"] = scales[2], scales[3]
    y = imp.emit(_OPS[mode], [x], at, name=imp.out() if r == 4 else None)
    return [y if r == 4 else imp.emit("squeeze.dim", [y], {"dim": 2}, imp.out())]
