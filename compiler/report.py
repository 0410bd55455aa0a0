"""The compile report: report.json (schema below), report.html, and a terminal table.

    {"model", "target", "workload": {"batch", "seq", "mode"}, "predicted_speedup",
     "passes": [{"name", "seconds"}],
     "layers": [{"name", "op", "shape", "chosen", "reason",
                 "candidates": [{"pattern", "predicted_us", "error", "reason"}]}]}
"""
from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping
from typing import Any

from .plan import Plan

SCHEMA_KEYS = ("model", "target", "workload", "predicted_speedup", "passes", "layers")


def build_report(model: str, target: str, workload: Mapping[str, Any], plan: Plan,
                 passes: Iterable[Any], predicted_speedup: float | None) -> dict[str, Any]:
    return {
        "model": model,
        "target": target,
        "workload": dict(workload),
        "predicted_speedup": predicted_speedup,
        "passes": [{"name": p.name, "seconds": round(p.seconds, 6)} for p in passes],
        "layers": [{k: v for k, v in d.to_dict().items() if k not in ("node", "weight")}
                   for d in plan.decisions],
    }


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def format_table(report: Mapping[str, Any], width: int = 60) -> str:
    """The per-layer table for the terminal."""
    wl = report.get("workload", {})
    head = (f"model {report['model']} on {report['target']}  workload "
            f"{', '.join(f'{k}={v}' for k, v in wl.items() if v is not None)}  "
            f"predicted speedup {_fmt(report.get('predicted_speedup'))}")
    rows = [("layer", "op", "shape", "chosen", "reason")]
    for layer in report["layers"]:
        reason = layer["reason"]
        if len(reason) > width:
            reason = reason[:width - 1] + "…"
        rows.append((layer["name"], layer["op"], "x".join(map(str, layer["shape"])),
                     layer["chosen"], reason))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [head, ""]
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 6)
    lines.append("")
    lines.append(f"{len(report['layers'])} layers; passes: " +
                 ", ".join(f"{p['name']} {p['seconds'] * 1e3:.1f} ms" for p in report["passes"]))
    return "\n".join(lines) + "\n"


def render_html(report: Mapping[str, Any]) -> str:
    """A self-contained page: the header facts and the per-layer table with candidates."""
    e = html.escape
    wl = report.get("workload", {})
    rows = []
    for layer in report["layers"]:
        cands = "<br>".join(
            f"{e(c['pattern'])}: {_fmt(c.get('predicted_us'))} µs, error {_fmt(c.get('error'))}"
            + (f" <span class=why>({e(c['reason'])})</span>" if c.get("reason") else "")
            for c in layer["candidates"])
        rows.append(f"<tr><td>{e(layer['name'])}</td><td>{e(layer['op'])}</td>"
                    f"<td>{e('×'.join(map(str, layer['shape'])))}</td>"
                    f"<td><b>{e(layer['chosen'])}</b></td><td>{e(layer['reason'])}</td>"
                    f"<td class=c>{cands}</td></tr>")
    passes = "".join(f"<li>{e(p['name'])}: {p['seconds'] * 1e3:.1f} ms</li>"
                     for p in report["passes"])
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>sparsecc report: {e(report['model'])}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}
table{{border-collapse:collapse;font-size:13px}} td,th{{border:1px solid #ccc;padding:4px 8px;
vertical-align:top;text-align:left}} th{{background:#f0f0f0}} .c{{font-size:12px}}
.why{{color:#777}}
</style></head><body>
<h1>sparsecc report: {e(report['model'])}</h1>
<p>Target <b>{e(report['target'])}</b>; workload {e(json.dumps(dict(wl)))};
predicted speedup <b>{_fmt(report.get('predicted_speedup'))}</b>;
{len(report['layers'])} layers.</p>
<h2>Layers</h2>
<table><tr><th>layer</th><th>op</th><th>shape</th><th>chosen</th><th>reason</th>
<th>candidates</th></tr>
{''.join(rows)}
</table>
<h2>Passes</h2><ul>{passes}</ul>
</body></html>
"""
