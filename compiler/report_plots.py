"""Inline SVG charts for the compile report page: no scripts, no external files, no plotting library.

Each chart is a function `report -> str | None`: an <svg> element, or None when the report holds
no data for it (the page then says so). Charts draw in a fixed `WIDTH`-wide viewBox that the page
scales to its width. Values that are None are skipped, never drawn as zero.

    latency_bars(report)   per layer, predicted µs of the "dense" candidate and of the chosen
                           one, and measured µs from report["measured"] when present
    frontier_plot(report)  report["frontier"]: model error vs predicted µs of candidate plans;
                           the Pareto front is the step line f(t) = min error over plans with
                           latency <= t; the chosen plan is ringed
    sparsity_map(report)   one row per layer: bar length = density (fraction of weights kept),
                           colour = the chosen pattern's family
"""
from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import ConfigError
from .patterns import Channel, Composite, parse_pattern

WIDTH = 1180
FAMILY_COLORS = {"dense": "#9aa0a6", "N:M": "#1f77b4", "block": "#e8710a",
                 "channel": "#2e9e44", "composite": "#8e44ad", "other": "#795548"}
_KIND_FAMILY = {"dense": "dense", "nm": "N:M", "block": "block", "channel": "channel",
                "composite": "composite"}
_CHAR_W = 6.6   # average width of a 12px system-ui character, for layout only


def family_of(pattern: Any) -> str:
    """The family of a pattern string: dense, N:M, block, channel, composite (or other)."""
    try:
        return _KIND_FAMILY.get(parse_pattern(pattern).kind, "other")
    except ConfigError:
        return "other"


def density_of(pattern: Any, shape: Sequence[int] | None = None) -> float | None:
    """Fraction of the layer's weights `pattern` keeps (exact channel counts when `shape` is
    given), or None for a pattern that doesn't parse."""
    try:
        p = parse_pattern(pattern)
    except ConfigError:
        return None
    if shape and isinstance(p, (Channel, Composite)):
        ch = p if isinstance(p, Channel) else p.channel
        kept = ch.kept_channels(int(shape[0])) / int(shape[0])
        return kept if isinstance(p, Channel) else kept * p.nm.density
    return p.density


def nice_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """Round tick values (steps of 1, 2, 2.5 or 5 x 10^k) whose first is <= lo and last >= hi."""
    if not hi > lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / count
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))
    first = math.floor(lo / step + 1e-9)
    ticks = []
    i = first
    while True:
        t = round(i * step, 12)
        ticks.append(t)
        if t >= hi - step * 1e-9:
            return ticks
        i += 1


def num(v: float) -> str:
    """A short number for ticks and labels: 3 significant digits, no trailing zeros."""
    if v == 0:
        return "0"
    if abs(v) >= 999.5:      # never "1e+03"
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _e(s: Any) -> str:
    return html.escape(str(s), quote=True)


def _text(x: float, y: float, s: Any, anchor: str = "start", size: int = 12,
          fill: str = "#1d2329", weight: str = "normal", extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" '
            f'fill="{fill}" font-weight="{weight}"{extra}>{_e(s)}</text>')


def _clip(name: str, chars: int) -> str:
    """Keep the informative tail of a long layer name: 'layers.11.mlp.up_proj' -> '…mlp.up_proj'."""
    return name if len(name) <= chars else "…" + name[-(chars - 1):]


def _label_width(names: Sequence[str]) -> tuple[float, int]:
    chars = min(40, max([len(n) for n in names] + [8]))
    return 16 + chars * _CHAR_W, chars


def _legend(items: Sequence[tuple[str, str, str]], x: float, y: float) -> str:
    """items: (label, colour, shape) with shape 'box', 'dot', 'ring', 'line' or 'dash'."""
    out = []
    for label, color, shape in items:
        if shape == "box":
            out.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="12" height="12" rx="2" '
                       f'fill="{color}"/>')
        elif shape == "dot":
            out.append(f'<circle cx="{x + 6:.1f}" cy="{y - 3:.1f}" r="4.5" fill="{color}"/>')
        elif shape == "ring":
            out.append(f'<circle cx="{x + 6:.1f}" cy="{y - 3:.1f}" r="6" fill="none" '
                       f'stroke="{color}" stroke-width="2.5"/>')
        else:
            dash = ' stroke-dasharray="5 4"' if shape == "dash" else ""
            out.append(f'<line x1="{x:.1f}" y1="{y - 3:.1f}" x2="{x + 16:.1f}" y2="{y - 3:.1f}" '
                       f'stroke="{color}" stroke-width="2"{dash}/>')
        out.append(_text(x + 20, y + 1, label))
        x += 20 + len(label) * _CHAR_W + 22
    return "".join(out)


def _svg(height: float, body: Sequence[str], title: str) -> str:
    return (f'<svg viewBox="0 0 {WIDTH} {height:.0f}" width="{WIDTH}" height="{height:.0f}" '
            f'role="img" aria-label="{_e(title)}"><title>{_e(title)}</title>'
            + "".join(body) + "</svg>")


def _x_axis(ticks: Sequence[float], sx, y_top: float, y_bottom: float, title: str,
            fmt=num) -> list[str]:
    out = []
    for t in ticks:
        x = sx(t)
        out.append(f'<line x1="{x:.1f}" y1="{y_top:.1f}" x2="{x:.1f}" y2="{y_bottom:.1f}" '
                   f'stroke="#e3e6ea"/>')
        out.append(_text(x, y_bottom + 16, fmt(t), "middle", 11, "#5f6b76"))
    mid = (sx(ticks[0]) + sx(ticks[-1])) / 2
    out.append(_text(mid, y_bottom + 36, title, "middle", 12, "#3c4650"))
    return out


def latency_bars(report: Mapping[str, Any]) -> str | None:
    """Horizontal grouped bars per layer: dense vs chosen, predicted (and measured) µs."""
    measured = report.get("measured") or {}
    rows = []
    for layer in report["layers"]:
        us = {c["pattern"]: c.get("predicted_us") for c in layer.get("candidates", ())}
        m = measured.get(layer["name"]) or {}
        # the layer's own prediction is for its final shape (channels removed upstream
        # shrink it too); a candidate's is for the layer alone
        chosen = layer.get("predicted_us")
        chosen = us.get(layer["chosen"]) if chosen is None else chosen
        vals = [us.get("dense"), chosen, m.get("dense_us"), m.get("chosen_us")]
        if any(v is not None for v in vals):
            rows.append((layer, vals))
    if not rows:
        return None
    series = [("dense, predicted", "#b9bfc6"), ("chosen, predicted", "#1f77b4")]
    if any(v[2] is not None or v[3] is not None for _, v in rows):
        series += [("dense, measured", "#5f6368"), ("chosen, measured", "#0b3d6e")]
    k = len(series)
    bar = 9 if len(rows) <= 40 else 5
    group = k * (bar + 1) + 10
    label_w, chars = _label_width([l["name"] for l, _ in rows])
    top, right = 40, 90
    plot_w = WIDTH - label_w - right
    ticks = nice_ticks(0, max(v for _, vals in rows for v in vals if v is not None))
    sx = lambda v: label_w + v / ticks[-1] * plot_w  # noqa: E731
    y_end = top + len(rows) * group
    body = [_legend([(name, color, "box") for name, color in series], label_w, 18)]
    body += [f'<rect x="0" y="{top + i * group:.1f}" width="{WIDTH}" height="{group}" '
             f'fill="#f6f7f9"/>' for i in range(0, len(rows), 2)]
    body += _x_axis(ticks, sx, top, y_end, "latency per layer, µs")
    for i, (layer, vals) in enumerate(rows):
        y0 = top + i * group + 5
        tip = (f"{layer['name']} ({layer['chosen']}): "
               + ", ".join(f"{name} {'–' if v is None else num(v) + ' µs'}"
                           for (name, _), v in zip(series, vals)))
        body.append(f"<g><title>{_e(tip)}</title>")
        body.append(_text(label_w - 8, y0 + k * (bar + 1) / 2 + 3, _clip(layer["name"], chars),
                          "end", 12))
        for j, ((_, color), v) in enumerate(zip(series, vals)):
            if v is not None:
                body.append(f'<rect x="{label_w:.1f}" y="{y0 + j * (bar + 1):.1f}" '
                            f'width="{max(sx(v) - label_w, 0.8):.1f}" height="{bar}" '
                            f'fill="{color}"/>')
        dense, chosen = vals[0], vals[1]
        if dense and chosen:
            end = sx(max(v for v in vals if v is not None))
            body.append(_text(end + 6, y0 + k * (bar + 1) / 2 + 3, f"{dense / chosen:.2f}×",
                              "start", 11, "#3c4650", extra=' font-variant-numeric="tabular-nums"'))
        body.append("</g>")
    body.append(f'<line x1="{label_w:.1f}" y1="{top}" x2="{label_w:.1f}" y2="{y_end:.1f}" '
                f'stroke="#5f6b76"/>')
    return _svg(y_end + 46, body, "latency per layer: dense vs chosen")


def pareto_front(points: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The points no other point beats on both latency and error, by increasing latency."""
    front, best = [], math.inf
    for p in sorted(points, key=lambda p: (p["predicted_us"], p["error"])):
        if p["error"] < best:
            front.append(p)
            best = p["error"]
    return front


def frontier_plot(report: Mapping[str, Any]) -> str | None:
    """Error vs predicted model latency of candidate plans, the Pareto front, the chosen plan."""
    pts = [p for p in report.get("frontier") or ()
           if p.get("predicted_us") is not None and p.get("error") is not None]
    if not pts:
        return None
    dense_us = (report.get("totals") or {}).get("dense_us")
    xs = [p["predicted_us"] for p in pts] + ([dense_us] if dense_us is not None else [])
    span = (max(xs) - min(xs)) or abs(max(xs)) or 1.0
    xt = nice_ticks(max(0.0, min(xs) - 0.04 * span), max(xs) + 0.04 * span)
    yt = nice_ticks(0.0, max(p["error"] for p in pts) * 1.05, 5)
    left, right, top, height = 86, 40, 44, 420
    bottom = height - 56
    sx = lambda v: left + (v - xt[0]) / (xt[-1] - xt[0]) * (WIDTH - left - right)  # noqa: E731
    sy = lambda v: bottom - (v - yt[0]) / (yt[-1] - yt[0]) * (bottom - top)  # noqa: E731
    front = pareto_front(pts)
    chosen = [p for p in pts if p.get("chosen")]
    legend = [("candidate plan", "#9aa0a6", "dot"), ("Pareto front", "#1f77b4", "line"),
              ("chosen plan", "#d93025", "ring")]
    if dense_us is not None:
        legend.append(("dense model", "#5f6b76", "dash"))
    body = [_legend(legend, left, 18)]
    body += _x_axis(xt, sx, top, bottom, "predicted model latency, µs")
    for t in yt:
        body.append(f'<line x1="{left}" y1="{sy(t):.1f}" x2="{WIDTH - right}" y2="{sy(t):.1f}" '
                    f'stroke="#e3e6ea"/>')
        body.append(_text(left - 8, sy(t) + 4, num(t), "end", 11, "#5f6b76"))
    body.append(_text(20, (top + bottom) / 2, "predicted error", "middle", 12, "#3c4650",
                      extra=f' transform="rotate(-90 20 {(top + bottom) / 2:.1f})"'))
    body.append(f'<path d="M{left} {top}V{bottom}H{WIDTH - right}" fill="none" '
                f'stroke="#5f6b76"/>')
    if dense_us is not None:
        body.append(f'<line x1="{sx(dense_us):.1f}" y1="{top}" x2="{sx(dense_us):.1f}" '
                    f'y2="{bottom}" stroke="#5f6b76" stroke-width="1.5" stroke-dasharray="5 4"/>')
        body.append(_text(sx(dense_us) - 4, top + 12, f"dense {num(dense_us)} µs", "end", 11,
                          "#5f6b76"))
    path = f"M{sx(front[0]['predicted_us']):.1f} {sy(front[0]['error']):.1f}"
    for p in front[1:]:
        path += f"H{sx(p['predicted_us']):.1f}V{sy(p['error']):.1f}"
    path += f"H{WIDTH - right}"
    body.append(f'<path d="{path}" fill="none" stroke="#1f77b4" stroke-width="2"/>')
    on_front = {id(p) for p in front}
    for p in pts:
        tip = f"{p.get('label', '')}: {num(p['predicted_us'])} µs, error {num(p['error'])}"
        r, color = (4.5, "#1f77b4") if id(p) in on_front else (3.5, "#9aa0a6")
        body.append(f'<circle cx="{sx(p["predicted_us"]):.1f}" cy="{sy(p["error"]):.1f}" '
                    f'r="{r}" fill="{color}" fill-opacity="0.85"><title>{_e(tip)}</title>'
                    f'</circle>')
    if len(front) <= 8:
        for p in front:
            if not p.get("chosen") and p.get("label"):
                body.append(_text(sx(p["predicted_us"]) + 7, sy(p["error"]) - 7, p["label"],
                                  "start", 11, "#1f5f95"))
    for p in chosen:
        x, y = sx(p["predicted_us"]), sy(p["error"])
        label = str(p.get("label") or "plan")
        text = (f"{label if label.startswith('chosen') else 'chosen: ' + label} "
                f"({num(p['predicted_us'])} µs, error {num(p['error'])})")
        flip = x + 14 + len(text) * _CHAR_W > WIDTH - right
        body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="9" fill="none" stroke="#d93025" '
                    f'stroke-width="2.5"/>')
        body.append(_text(x - 14 if flip else x + 14, y - 12, text, "end" if flip else "start",
                          12, "#b3261e", "600"))
    return _svg(height, body, "model error vs predicted latency")


def sparsity_map(report: Mapping[str, Any]) -> str | None:
    """One row per layer: the fraction of weights kept, coloured by the pattern's family."""
    layers = report["layers"]
    if not layers:
        return None
    label_w, chars = _label_width([l["name"] for l in layers])
    top, row, bar = 40, 20, 13
    track_w = 560
    y_end = top + len(layers) * row
    ticks = [0.0, 0.25, 0.5, 0.75, 1.0]
    sx = lambda v: label_w + v * track_w  # noqa: E731
    families = {family_of(l["chosen"]) for l in layers}
    body = [_legend([(f, c, "box") for f, c in FAMILY_COLORS.items()
                     if f != "other" or f in families], label_w, 18)]
    body += _x_axis(ticks, sx, top, y_end, "density (fraction of the layer's weights kept)",
                    lambda t: f"{t:.0%}")
    for i, layer in enumerate(layers):
        y = top + i * row + (row - bar) / 2
        shape = layer.get("shape") or ()
        d = density_of(layer["chosen"], shape)
        fam = family_of(layer["chosen"])
        weights = math.prod(shape) if shape else None
        what = f"{layer['chosen']}  ·  " + ("density ?" if d is None else f"{d:.0%} kept")
        if weights and d is not None:
            what += f"  ·  {round(weights * d):,} of {weights:,} weights"
        body.append(f"<g><title>{_e(layer['name'])}: {_e(what)} ({_e(fam)})</title>")
        body.append(_text(label_w - 8, y + bar - 2, _clip(layer["name"], chars), "end", 12))
        body.append(f'<rect x="{label_w:.1f}" y="{y:.1f}" width="{track_w}" height="{bar}" '
                    f'fill="#eef0f2"/>')
        if d is not None:
            body.append(f'<rect x="{label_w:.1f}" y="{y:.1f}" width="{d * track_w:.1f}" '
                        f'height="{bar}" fill="{FAMILY_COLORS[fam]}"/>')
        body.append(_text(label_w + track_w + 12, y + bar - 2, what, "start", 12, "#3c4650"))
        body.append("</g>")
    return _svg(y_end + 46, body, "sparsity map: chosen pattern and density per layer")
