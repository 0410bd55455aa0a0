"""The compile report: report.json (schema below), report.html, and a terminal table.

    {"model", "target", "workload": {"batch", "seq", "mode"}, "predicted_speedup",
     "passes": [{"name", "seconds"}],
     "layers": [{"name", "op", "shape", "chosen", "reason", "predicted_us",
                 "candidates": [{"pattern", "predicted_us", "error", "reason"}]}],
     optional:
     "totals": {"dense_us", "predicted_us", "weights", "weights_kept", "bytes_saved"},
     "frontier": [{"predicted_us", "error", "chosen", "label"}],     candidate whole-model plans
     "measured": {layer name: {"dense_us", "chosen_us"}}}

A layer's "predicted_us" is its chosen pattern on its final shape (PricePlan), and so is its
chosen candidate's; the dense candidate's is the original shape's. Totals, the table, the
charts and the frontier's chosen point all use these figures.
Any number may be None (not predicted / not measured). Sparsity is 1 - weights_kept / weights;
without totals the page estimates it from each layer's chosen pattern alone, sum(n_i d_i) / sum(n_i)
over layers of n_i weights and density d_i (channels removed from a consumer's input are missed).
"""
from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping
from typing import Any

from .plan import Plan
from .report_plots import (FAMILY_COLORS, density_of, family_of, frontier_plot, latency_bars,
                           sparsity_map)

SCHEMA_KEYS = ("model", "target", "workload", "predicted_speedup", "passes", "layers")
DASH = "–"


def build_report(model: str, target: str, workload: Mapping[str, Any], plan: Plan,
                 passes: Iterable[Any], predicted_speedup: float | None, *,
                 totals: Mapping[str, Any] | None = None, frontier: list | None = None,
                 measured: Mapping[str, Any] | None = None,
                 target_info: Mapping[str, Any] | None = None,
                 whole_model: Mapping[str, Any] | None = None,
                 artifact: Mapping[str, Any] | None = None) -> dict[str, Any]:
    report = {
        "model": model,
        "target": target,
        "workload": dict(workload),
        "predicted_speedup": predicted_speedup,
        "passes": [{"name": p.name, "seconds": round(p.seconds, 6)} for p in passes],
        "layers": [{k: v for k, v in d.to_dict().items() if k not in ("node", "weight")}
                   for d in plan.decisions],
    }
    if target_info is not None:
        report["target_info"] = dict(target_info)
    if totals is not None:
        report["totals"] = dict(totals)
    if frontier is not None:   # the chosen plan at the header's figure, not the selector's
        chosen_us = (totals or {}).get("predicted_us")
        report["frontier"] = [{**p, "predicted_us": chosen_us}
                              if p.get("chosen") and chosen_us is not None else dict(p)
                              for p in frontier]
    if measured is not None:
        report["measured"] = {name: dict(m) for name, m in measured.items()}
    if whole_model is not None:
        report["whole_model"] = dict(whole_model)
    if artifact is not None:
        report["artifact"] = dict(artifact)
    return report


def target_summary(info: Mapping[str, Any]) -> str:
    """One line: how the target was chosen and whether its cost table was measured."""
    costs = info.get("cost_table") or {}
    how = info.get("detected") or f"target {info.get('name')}"
    if costs.get("measured"):
        what = f"cost table measured on {costs.get('measured_on') or 'an unnamed device'}"
    else:
        what = "uncalibrated (analytic cost model)"
    return f"{how}; {what}"


def _fmt(v: Any) -> str:
    if v is None:
        return DASH
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _candidate(layer: Mapping[str, Any], pattern: str) -> Mapping[str, Any]:
    return next((c for c in layer.get("candidates", ()) if c["pattern"] == pattern), {})


def _chosen_us(layer: Mapping[str, Any]) -> float | None:
    """The layer's figure on its final shape; a report without one (hand-made, older) falls
    back to its chosen candidate's."""
    us = layer.get("predicted_us")
    return _candidate(layer, layer["chosen"]).get("predicted_us") if us is None else us


def has_predictions(report: Mapping[str, Any]) -> bool:
    return any(c.get("predicted_us") is not None
               for layer in report["layers"] for c in layer.get("candidates", ()))


def sparsity(report: Mapping[str, Any]) -> tuple[float | None, bool]:
    """(fraction of weights removed, exact?) from totals, else estimated from the patterns."""
    t = report.get("totals") or {}
    if t.get("weights") and t.get("weights_kept") is not None:
        return 1.0 - t["weights_kept"] / t["weights"], True
    n = kept = 0.0
    for layer in report["layers"]:
        d = density_of(layer["chosen"], layer.get("shape"))
        if d is None or not layer.get("shape"):
            return None, False
        n += math.prod(layer["shape"])
        kept += math.prod(layer["shape"]) * d
    return (1.0 - kept / n if n else None), False


def _bytes(n: float | None) -> str:
    if n is None:
        return DASH
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return DASH


def _workload(report: Mapping[str, Any], sep: str = "=") -> str:
    wl = report.get("workload") or {}
    return ", ".join(str(v) if isinstance(v, str) and sep != "=" else f"{k}{sep}{v}"
                     for k, v in wl.items() if v is not None)


def _speedup(report: Mapping[str, Any]) -> str:
    s = report.get("predicted_speedup")
    return DASH if s is None else f"{s:.2f}×"


def format_table(report: Mapping[str, Any], width: int = 60) -> str:
    """The per-layer table for the terminal, with predicted µs and error when the report has them."""
    head = (f"model {report['model']} on {report['target']}  workload {_workload(report)}  "
            f"predicted speedup {_speedup(report)}")
    acc = report.get("accuracy")
    if acc:
        head += f"  accuracy {acc['compiled']:.4f} (dense {acc['dense']:.4f})"
    info = report.get("target_info")
    if info:
        head += f"\n{target_summary(info)}"
    numbers = any(c.get("predicted_us") is not None or c.get("error") is not None
                  for layer in report["layers"] for c in layer.get("candidates", ()))
    cols = ["layer", "op", "shape", "chosen"] + (["dense µs", "chosen µs", "error"] if numbers
                                                 else [])
    rows = [cols]
    for layer in report["layers"]:
        row = [layer["name"], layer["op"], "x".join(map(str, layer["shape"])), layer["chosen"]]
        if numbers:
            chosen = _candidate(layer, layer["chosen"])
            row += [_fmt(_candidate(layer, "dense").get("predicted_us")),
                    _fmt(_chosen_us(layer)), _fmt(chosen.get("error"))]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    reasons = ["reason"] + [layer["reason"] if len(layer["reason"]) <= width
                            else layer["reason"][:width - 1] + "…" for layer in report["layers"]]
    lines = [head, ""]
    for i, (r, reason) in enumerate(zip(rows, reasons)):
        cells = [c.rjust(w) if j >= 4 else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(cells) + "  " + reason)
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 6)
    lines.append("")
    lines.append(_totals_line(report))
    lines.append(f"{len(report['layers'])} layers; passes: " +
                 ", ".join(f"{p['name']} {p['seconds'] * 1e3:.1f} ms" for p in report["passes"]))
    return "\n".join(lines) + "\n"


def _totals_line(report: Mapping[str, Any]) -> str:
    frac, exact = sparsity(report)
    t = report.get("totals") or {}
    parts = []
    if t.get("weights") is not None:
        kept = t.get("weights_kept")
        parts.append(f"{t['weights']:,} weights" + ("" if kept is None else f", {kept:,} kept"))
    if frac is not None:
        parts.append(f"sparsity {frac:.1%}" + ("" if exact else " (from the chosen patterns)"))
    if t.get("bytes_saved") is not None:
        parts.append(f"{_bytes(t['bytes_saved'])} saved")
    if t.get("dense_us") is not None or t.get("predicted_us") is not None:
        parts.append(f"weight layers: dense {_fmt(t.get('dense_us'))} µs -> predicted "
                     f"{_fmt(t.get('predicted_us'))} µs")
    w = report.get("whole_model")
    if w and w["planned"].get("total_us") is None:
        parts.append(f"whole model: not predicted ({(w['planned'].get('unpredicted') or ['?'])[0]})")
    elif w:
        parts.append(f"whole model: dense {_fmt(w['dense']['total_us'])} µs -> predicted "
                     f"{_fmt(w['planned']['total_us'])} µs ({_ratio(w.get('speedup'))}; "
                     f"fused {_ratio(w.get('fused_speedup'))})")
    return "totals: " + ("; ".join(parts) if parts else DASH)


def _ratio(v: Any) -> str:
    return DASH if v is None else f"{v:.2f}x"


# ---------------------------------------------------------------- HTML page

_CSS = """
:root{--fg:#1d2329;--muted:#5f6b76;--line:#dde1e6;--bg2:#f6f7f9;--hi:#e3effa}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg)}
main{max-width:1240px;margin:0 auto;padding:20px 24px 48px}
h1{font-size:24px;margin:0}
h2{font-size:18px;margin:28px 0 8px;padding-bottom:4px;border-bottom:1px solid var(--line)}
.sub,.muted{color:var(--muted)}
nav{margin:6px 0 0;font-size:13px} nav a{margin-right:14px;color:#1f5f95}
.cards{display:flex;flex-wrap:wrap;gap:8px;margin:14px 0 4px}
.card{border:1px solid var(--line);border-radius:8px;padding:8px 12px;background:var(--bg2);
min-width:112px;flex:1 1 auto}
.card .k{font-size:11px;color:var(--muted);text-transform:uppercase;letter-spacing:.05em}
.card .v{font-size:19px;font-weight:600;font-variant-numeric:tabular-nums}
.card .n{font-size:12px;color:var(--muted)}
.note{background:#fff8e1;border:1px solid #f0d48a;border-radius:6px;padding:8px 12px;margin:12px 0}
.empty{color:var(--muted);font-style:italic}
.plot{overflow-x:auto} .plot svg{display:block;width:100%;height:auto;font-family:inherit}
table{border-collapse:collapse;font-size:13px}
table.layers{width:100%}
table.layers th,table.layers td{padding:3px 8px;text-align:left;vertical-align:top}
table.layers thead th{background:var(--bg2);border-bottom:1px solid #c8cdd3;white-space:nowrap}
tbody.layer{border-top:1px solid var(--line)}
tbody.layer tr:first-child td{padding-top:7px} tbody.layer tr:last-child td{padding-bottom:7px}
.name{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.pill{display:inline-block;padding:0 8px;border-radius:10px;color:#fff;font-weight:600;
font-size:12px;white-space:nowrap}
td.c{white-space:nowrap} td.c.why{white-space:normal}
td.chosen{background:var(--hi);font-weight:600}
.why{color:var(--muted);font-size:12px} td.reason{font-size:12px}
table.kv td{padding:3px 12px 3px 0;border-bottom:1px solid var(--line)}
"""


def _card(key: str, value: str, note: str = "") -> str:
    e = html.escape
    return (f'<div class="card"><div class="k">{e(key)}</div><div class="v">{e(value)}</div>'
            + (f'<div class="n">{e(note)}</div>' if note else "") + "</div>")


def _header(report: Mapping[str, Any]) -> str:
    e = html.escape
    t = report.get("totals") or {}
    frac, exact = sparsity(report)
    sparse = sum(1 for layer in report["layers"] if layer["chosen"] != "dense")
    info = report.get("target_info")
    cards = [_card("target", str(report["target"]), target_summary(info) if info else ""),
             _card("workload", _workload(report, " ") or DASH),
             _card("predicted speedup", _speedup(report))]
    acc = report.get("accuracy")
    if acc:      # measured by `sparsecc eval`, next to the predicted speedup
        cards.append(_card("measured accuracy", f"{acc['compiled']:.4f}",
                           f"dense {acc['dense']:.4f}; {acc['metric']}"))
    if t.get("dense_us") is not None or t.get("predicted_us") is not None:
        cards.append(_card("predicted latency", f"{_fmt_us(t.get('predicted_us'))} µs",
                           f"dense {_fmt_us(t.get('dense_us'))} µs"))
    cards.append(_card("sparsity", DASH if frac is None else f"{frac:.1%}",
                       "of weights removed" if exact else "estimated from the patterns"))
    if t.get("bytes_saved") is not None:
        cards.append(_card("weight bytes saved", _bytes(t["bytes_saved"])))
    cards.append(_card("layers", str(len(report["layers"])), f"{sparse} made sparse"))
    note = "" if has_predictions(report) else (
        '<p class="note">No predictions in this report: every candidate\'s predicted µs is '
        'empty, so the latency chart is left out and the table shows – for latency.</p>')
    return (f"<header><h1>sparsecc compile report: {e(str(report['model']))}</h1>"
            f'<nav><a href="#latency">latency</a><a href="#frontier">frontier</a>'
            f'<a href="#sparsity">sparsity map</a><a href="#layers">layers</a>'
            f'<a href="#totals">totals</a><a href="#passes">passes</a></nav>'
            f'<div class="cards">{"".join(cards)}</div>{note}</header>')


def _plot(anchor: str, title: str, blurb: str, svg: str | None, empty: str) -> str:
    body = f'<div class="plot">{svg}</div>' if svg else f'<p class="empty">{html.escape(empty)}</p>'
    return (f'<section id="{anchor}"><h2>{html.escape(title)}</h2>'
            f'<p class="muted">{html.escape(blurb)}</p>{body}</section>')


def _pill(pattern: str) -> str:
    color = FAMILY_COLORS[family_of(pattern)]
    return f'<span class="pill" style="background:{color}">{html.escape(str(pattern))}</span>'


def _layer_rows(layer: Mapping[str, Any]) -> str:
    """One <tbody> per layer: a row per candidate, the layer's own cells spanning them."""
    e = html.escape
    shape = layer.get("shape") or ()
    d = density_of(layer["chosen"], shape)
    cands = list(layer.get("candidates", ())) or [{"pattern": DASH}]
    name = "<wbr>".join(e(part) for part in str(layer["name"]).split(".")).replace("<wbr>", ".<wbr>")
    span = f' rowspan="{len(cands)}"' if len(cands) > 1 else ""
    head = (f'<td{span} class="name">{name}</td><td{span}>{e(str(layer["op"]))}</td>'
            f'<td{span} class="num">{e("×".join(map(str, shape)))}</td>'
            f'<td{span} class="num">{f"{math.prod(shape):,}" if shape else DASH}</td>'
            f"<td{span}>{_pill(layer['chosen'])}</td>"
            f'<td{span} class="num">{DASH if d is None else f"{d:.0%}"}</td>'
            f'<td{span} class="num final">{_fmt_us(_chosen_us(layer))}</td>')
    rows = []
    for i, c in enumerate(cands):
        cls = "c chosen" if c["pattern"] == layer["chosen"] else "c"
        cells = (f'<td class="{cls}">{e(str(c["pattern"]))}</td>'
                 f'<td class="{cls} num">{_fmt_us(c.get("predicted_us"))}</td>'
                 f'<td class="{cls} num">{_fmt_err(c.get("error"))}</td>'
                 f'<td class="{cls} why">{e(c.get("reason") or "")}</td>')
        tail = f'<td{span} class="reason">{e(layer["reason"])}</td>' if i == 0 else ""
        rows.append(f"<tr>{head if i == 0 else ''}{cells}{tail}</tr>")
    return f'<tbody class="layer">{"".join(rows)}</tbody>'


def _fmt_us(v: float | None) -> str:
    return DASH if v is None else f"{v:,.1f}" if v >= 100 else f"{v:.3g}"


def _fmt_err(v: float | None) -> str:
    return DASH if v is None else f"{v:.3g}"


def _totals(report: Mapping[str, Any]) -> str:
    e = html.escape
    t = report.get("totals") or {}
    frac, exact = sparsity(report)
    rows = []
    if t.get("weights") is not None:
        rows.append(("weights", f"{t['weights']:,}"))
    if t.get("weights_kept") is not None:
        rows.append(("weights kept (non-zero)", f"{t['weights_kept']:,}"))
    rows.append(("sparsity (weights removed or zero)",
                 DASH if frac is None else f"{frac:.2%}" + ("" if exact else
                                                            " (estimated from the patterns)")))
    if "bytes_saved" in t:
        rows.append(("weight bytes saved", _bytes(t["bytes_saved"])))
    if "dense_us" in t:
        rows.append(("dense latency, predicted", f"{_fmt_us(t['dense_us'])} µs"))
    if "predicted_us" in t:
        rows.append(("sparse latency, predicted", f"{_fmt_us(t['predicted_us'])} µs"))
    w = report.get("whole_model")
    if w and w["planned"].get("total_us") is None:
        rows.append(("whole model", "not predicted: " +
                     "; ".join(w["planned"].get("unpredicted") or [])))
    elif w:
        rows.append(("whole model (every node), dense, predicted",
                     f"{_fmt_us(w['dense']['total_us'])} µs"))
        rows.append(("whole model (every node), planned, predicted",
                     f"{_fmt_us(w['planned']['total_us'])} µs ({_ratio(w.get('speedup'))})"))
        rows.append(("whole model, elementwise chains fused (torch.compile), predicted",
                     f"{_fmt_us(w['dense']['fused_us'])} -> {_fmt_us(w['planned']['fused_us'])} "
                     f"µs ({_ratio(w.get('fused_speedup'))})"))
    known = {"weights", "weights_kept", "bytes_saved", "dense_us", "predicted_us"}
    rows += [(str(k).replace("_", " "), _fmt(v)) for k, v in t.items() if k not in known]
    note = "" if t else ('<p class="muted">This report has no totals; the sparsity is estimated '
                         "from each layer's chosen pattern alone.</p>")
    return ('<section id="totals"><h2>Totals</h2><table class="kv">'
            + "".join(f"<tr><td>{e(k)}</td><td class=num>{e(v)}</td></tr>" for k, v in rows)
            + f"</table>{note}</section>")


def _passes(report: Mapping[str, Any]) -> str:
    e = html.escape
    rows = "".join(f"<tr><td>{e(str(p['name']))}</td><td class=num>{p['seconds'] * 1e3:.1f} ms"
                   f"</td></tr>" for p in report["passes"])
    total = sum(p["seconds"] for p in report["passes"]) * 1e3
    return (f'<section id="passes"><h2>Passes</h2><table class="kv">{rows}'
            f"<tr><td><b>total</b></td><td class=num><b>{total:.1f} ms</b></td></tr>"
            "</table></section>")


def render_html(report: Mapping[str, Any]) -> str:
    """One self-contained page (inline CSS and SVG, nothing fetched): the header facts, the
    latency, frontier and sparsity charts, the per-layer table with candidates, the totals."""
    e = html.escape
    measured = " and measured" if report.get("measured") else ""
    plots = [
        _plot("latency", "Latency per layer",
              f"Predicted{measured} µs of each layer, dense vs the chosen pattern; the label is "
              "the predicted speedup dense / chosen.", latency_bars(report),
              "No predictions in this report."),
        _plot("frontier", "Error vs latency frontier",
              "The selector's best plan at a range of error budgets; the step line is the "
              "Pareto front (the lowest error reachable at each latency). A plan's latency is "
              "its weight layers, each predicted on its shape in that plan; the chosen plan is "
              "at the header's predicted latency, its final graph's.", frontier_plot(report),
              "No frontier in this report."),
        _plot("sparsity", "Sparsity map",
              "Per layer, the fraction of weights the chosen pattern keeps, coloured by pattern "
              "family.", sparsity_map(report), "No layers in this report."),
    ]
    rows = "".join(_layer_rows(layer) for layer in report["layers"])
    table = ('<section id="layers"><h2>Layers</h2><p class="muted">Every candidate pattern with '
             "its predicted latency and error; the chosen one is highlighted. Chosen µs is the "
             "chosen pattern on the layer's final shape; the dense candidate is the original "
             "shape.</p>"
             '<table class="layers"><colgroup><col style="width:15%">'
             '<col><col><col><col><col><col>'
             '<col style="width:8%"><col><col><col style="width:18%"><col style="width:24%">'
             '</colgroup><thead><tr><th>layer</th><th>op</th><th class="num">shape</th>'
             '<th class="num">weights</th><th>chosen</th><th class="num">density</th>'
             '<th class="num">chosen µs</th>'
             '<th>candidate</th><th class="num">pred. µs</th><th class="num">error</th>'
             f"<th>why not</th><th>reason</th></tr></thead>{rows}</table></section>")
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>sparsecc report: {e(str(report['model']))}</title><style>{_CSS}</style>"
            f"</head><body><main>{_header(report)}{''.join(plots)}{table}{_totals(report)}"
            f"{_passes(report)}</main></body></html>\n")

