#!/usr/bin/env bash
# Render a compile's report.json to HTML and screenshot it with headless Chromium.
#
#   docs/make_report_screenshot.sh REPORT_JSON [OUT_PNG] [--fixture]
#
# OUT_PNG defaults to docs/report-screenshot.png. The window is 1280 wide and HEIGHT tall
# (default 8000); the white space below the page's end is trimmed off (with Pillow, if installed).
# --fixture first fills every missing predicted_us / error / totals / frontier / measured with
# made-up but plausible numbers (a rendering fixture only, NOT a prediction); leave it off for a
# real report. Needs `sparsecc` importable (source the venv) and Debian's `chromium`.
set -euo pipefail

usage() { echo "usage: $0 REPORT_JSON [OUT_PNG] [--fixture]" >&2; exit 2; }
fixture=0
args=()
for a in "$@"; do
  case "$a" in
    --fixture) fixture=1 ;;
    -h|--help) usage ;;
    *) args+=("$a") ;;
  esac
done
[ "${#args[@]}" -ge 1 ] || usage
report=$(realpath "${args[0]}")
out=$(realpath -m "${args[1]:-$(dirname "$0")/report-screenshot.png}")
height=${HEIGHT:-8000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 - "$report" "$work/report.html" "$fixture" <<'EOF'
import json, math, random, sys

from sparsecc.report import render_html
from sparsecc.report_plots import density_of, family_of

src, dst, fixture = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
with open(src) as f:
    report = json.load(f)

if fixture:
    # Plausible numbers for a rendering fixture: a per-layer roofline-ish latency, family-specific
    # efficiency, a little noise. Real compiles fill these from the cost model.
    rng = random.Random(0)
    def latency(pattern, shape):  # 3 µs launch + weight traffic scaled by the pattern
        d = density_of(pattern, shape) or 1.0
        cost = {"dense": 1.0, "channel": d, "block": d / 0.8, "N:M": 0.62,
                "composite": 1.24 * d}.get(family_of(pattern), 1.0)
        return (3.0 + math.prod(shape) / 1500 * cost) * rng.uniform(0.95, 1.05)

    def error(pattern, shape):
        d = density_of(pattern, shape) or 1.0
        return 0.0 if d >= 1 else (1 - d) * rng.uniform(0.2, 0.9)

    for layer in report["layers"]:
        for c in layer["candidates"]:
            if c.get("reason"):
                continue
            if c.get("predicted_us") is None:
                c["predicted_us"] = latency(c["pattern"], layer["shape"])
            if c.get("error") is None:
                c["error"] = error(c["pattern"], layer["shape"])
    usable = [[c for c in l["candidates"] if c.get("predicted_us") is not None]
              for l in report["layers"]]

    def plan_point(pick, label, chosen=False):
        cs = [pick(l, cs) for l, cs in zip(report["layers"], usable)]
        return {"predicted_us": sum(c["predicted_us"] for c in cs),
                "error": sum(c["error"] for c in cs), "chosen": chosen, "label": label}

    by = lambda name: (lambda l, cs: next((c for c in cs if c["pattern"] == name), cs[-1]))
    patterns = sorted({c["pattern"] for cs in usable for c in cs})
    frontier = [plan_point(by(p), f"all {p}") for p in patterns]
    frontier += [plan_point(lambda l, cs: rng.choice(cs), f"mix {i}") for i in range(40)]
    frontier.append(plan_point(lambda l, cs: by(l["chosen"])(l, cs), "selected", True))
    report.setdefault("frontier", frontier)

    dense_us = sum(by("dense")(l, cs)["predicted_us"] for l, cs in zip(report["layers"], usable))
    pred_us = sum(by(l["chosen"])(l, cs)["predicted_us"] for l, cs in zip(report["layers"], usable))
    weights = sum(math.prod(l["shape"]) for l in report["layers"])
    kept = round(sum(math.prod(l["shape"]) * (density_of(l["chosen"], l["shape"]) or 1)
                     for l in report["layers"]))
    report.setdefault("totals", {"dense_us": dense_us, "predicted_us": pred_us,
                                 "weights": weights, "weights_kept": kept,
                                 "bytes_saved": 2 * (weights - kept)})
    report["predicted_speedup"] = dense_us / pred_us
    report.setdefault("measured", {
        l["name"]: {"dense_us": by("dense")(l, cs)["predicted_us"] * rng.uniform(0.9, 1.2),
                    "chosen_us": by(l["chosen"])(l, cs)["predicted_us"] * rng.uniform(0.9, 1.25)}
        for l, cs in zip(report["layers"], usable)})

with open(dst, "w") as f:
    f.write(render_html(report))
EOF

chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --hide-scrollbars --user-data-dir="$work/profile" --window-size="1280,$height" \
  --screenshot="$out" "file://$work/report.html" 2>"$work/chromium.log" \
  || { cat "$work/chromium.log" >&2; exit 1; }
python3 - "$out" <<'EOF' || true
import sys
try:
    from PIL import Image, ImageOps
except ImportError:
    sys.exit(0)
im = Image.open(sys.argv[1])
box = ImageOps.invert(im.convert("L")).getbbox()
if box and box[3] + 24 < im.height:
    im.crop((0, 0, im.width, box[3] + 24)).save(sys.argv[1])
EOF
echo "wrote $out"
