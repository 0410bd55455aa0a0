"""The report page, the terminal table and the progress bar."""
from __future__ import annotations

import copy
import io
import re
from html.parser import HTMLParser

import pytest

from sparsecc.plan import Candidate, Decision, Layer, Plan
from sparsecc.progress import progress
from sparsecc.report import build_report, format_table, render_html, sparsity
from sparsecc.report_plots import density_of, family_of, nice_ticks, pareto_front

VOID = {"meta", "br", "wbr", "col", "img", "hr", "input", "link"}


class _Checker(HTMLParser):
    """Balanced tags, plus the text and attributes seen."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.text: list[str] = []
        self.tags: list[str] = []
        self.attrs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [v for _, v in attrs if v]
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [v for _, v in attrs if v]

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def parse(page: str) -> _Checker:
    c = _Checker()
    c.feed(page)
    c.close()
    assert not c.errors, c.errors[:5]
    assert not c.stack, f"unclosed tags {c.stack}"
    return c


def _layer(name, shape, chosen, cands):
    return Decision(Layer(name, "linear", f"%{name}", f"{name}.weight", shape), chosen,
                    f"{chosen}: picked", tuple(Candidate(*c) for c in cands))


PLAN = Plan((
    _layer("layers.0.q_proj", (64, 64), "2:4",
           [("2:4", None, 0.12, None), ("channel0.5", None, 0.4, None), ("dense", None, 0.0, None)]),
    _layer("layers.0.up_proj", (176, 64), "channel0.5",
           [("2:4", None, 0.13, None), ("channel0.5", None, 0.3, None),
            ("dense", None, 0.0, None)]),
    _layer("<script>alert(1)</script>", (32, 64), "dense",
           [("2:4", None, None, "K=63 not divisible by 4"), ("dense", None, None, None)]),
))


class _Pass:
    name, seconds = "plan-layers", 0.0123


def bare_report():
    return build_report("tiny", "h100", {"batch": 2, "seq": 16, "mode": "prefill"}, PLAN,
                        [_Pass()], 1.0)


def filled_report():
    r = copy.deepcopy(bare_report())
    us = {"dense": 10.0, "2:4": 6.5, "channel0.5": 5.2}
    for layer in r["layers"]:
        for c in layer["candidates"]:
            if c["reason"] is None:
                c["predicted_us"] = us[c["pattern"]] * (1 + len(layer["name"]) / 100)
                c["error"] = 0.0 if c["pattern"] == "dense" else 0.2
    r["totals"] = {"dense_us": 33.0, "predicted_us": 24.0, "weights": 18432,
                   "weights_kept": 11264, "bytes_saved": 14336}
    r["frontier"] = [{"predicted_us": 33.0, "error": 0.0, "chosen": False, "label": "all dense"},
                     {"predicted_us": 24.0, "error": 0.1, "chosen": True, "label": "selected"},
                     {"predicted_us": 26.0, "error": 0.2, "chosen": False, "label": "mix"},
                     {"predicted_us": None, "error": 0.3, "chosen": False, "label": "broken"}]
    r["measured"] = {"layers.0.q_proj": {"dense_us": 11.0, "chosen_us": 7.0}}
    return r


def test_build_report_keeps_schema_and_adds_optional_keys():
    bare = bare_report()
    assert list(bare) == ["model", "target", "workload", "predicted_speedup", "passes", "layers"]
    assert {"name", "op", "shape", "chosen", "reason", "candidates"} <= set(bare["layers"][0])
    assert {"pattern", "predicted_us", "error", "reason"} <= set(bare["layers"][0]["candidates"][0])
    assert not {"totals", "frontier", "measured"} & set(bare)
    full = build_report("tiny", "h100", {}, PLAN, [], 1.2, totals={"weights": 10},
                        frontier=[{"predicted_us": 1.0, "error": 0.0, "chosen": True,
                                   "label": "x"}], measured={"a": {"dense_us": 1.0}})
    assert full["totals"] == {"weights": 10} and full["frontier"][0]["label"] == "x"
    assert full["measured"] == {"a": {"dense_us": 1.0}}


@pytest.mark.parametrize("make", [bare_report, filled_report])
def test_page_is_well_formed_self_contained_and_names_every_layer(make):
    report = make()
    page = render_html(report)
    checked = parse(page)
    text = "".join(checked.text)
    for layer in report["layers"]:
        assert layer["name"] in text
    assert not re.search(r"(?i)https?:|//[a-z]", page), "the page must fetch nothing"
    assert not ({"script", "link", "img", "iframe"} & set(checked.tags))
    assert not any(a.startswith(("http", "//")) for a in checked.attrs)


def test_page_escapes_names():
    page = render_html(bare_report())
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_page_without_numbers_says_so_and_draws_only_the_sparsity_map():
    page = render_html(bare_report())
    assert "No predictions in this report" in page
    assert "No frontier in this report" in page
    assert page.count("<svg") == 1 and 'aria-label="sparsity map' in page
    assert "–" in page   # None shown as a dash, not "None"
    assert "None" not in page


def test_page_with_numbers_draws_every_plot():
    report = filled_report()
    page = render_html(report)
    assert page.count("<svg") == 3
    for title in ("latency per layer", "model error vs predicted latency", "sparsity map"):
        assert f'aria-label="{title}' in page
    assert "No predictions" not in page
    assert "chosen, measured" in page and "chosen: selected" in page
    assert "14.0 KiB" in page and "38.9%" in page   # bytes saved; 1 - 11264/18432
    assert 'class="c chosen"' in page


def test_sparsity_exact_from_totals_else_estimated():
    frac, exact = sparsity(filled_report())
    assert exact and frac == pytest.approx(1 - 11264 / 18432)
    frac, exact = sparsity(bare_report())
    weights = 64 * 64 + 176 * 64 + 32 * 64
    assert not exact and frac == pytest.approx((64 * 64 * 0.5 + 176 * 64 * 0.5) / weights)


def test_patterns_families_and_densities():
    assert [family_of(p) for p in ("dense", "2:4", "block32x32@0.25", "channel0.5",
                                   "channel0.5+2:4", "bogus")] == \
        ["dense", "N:M", "block", "channel", "composite", "other"]
    assert density_of("channel0.5/64", (176, 64)) == pytest.approx(64 / 176)
    assert density_of("channel0.5+2:4", (64, 64)) == pytest.approx(0.25)
    assert density_of("bogus") is None


def test_nice_ticks_cover_the_range():
    for lo, hi in [(0, 7.3), (85.2, 119.9), (0, 0.46), (5, 5), (0, 2400)]:
        t = nice_ticks(lo, hi)
        assert t[0] <= lo and t[-1] >= hi and 2 <= len(t) <= 12
        assert all(b > a for a, b in zip(t, t[1:]))


def test_pareto_front_keeps_undominated_points_by_latency():
    pts = [{"predicted_us": u, "error": e} for u, e in [(10, 0.0), (5, 0.3), (6, 0.1), (7, 0.2)]]
    assert [(p["predicted_us"], p["error"]) for p in pareto_front(pts)] == \
        [(5, 0.3), (6, 0.1), (10, 0.0)]


def test_format_table_has_the_numbers_and_totals():
    out = format_table(filled_report())
    header = out.splitlines()[2]
    for col in ("dense µs", "chosen µs", "error"):
        assert col in header
    row = next(l for l in out.splitlines() if l.startswith("layers.0.q_proj"))
    assert "11.5" in row and "7.475" in row and "0.2" in row   # x (1 + 15/100)
    assert "totals: 18,432 weights, 11,264 kept; sparsity 38.9%" in out
    bare = format_table(bare_report())
    assert "error" in bare.splitlines()[2] and "–" in bare
    assert "(from the chosen patterns)" in bare


def test_progress_yields_everything_and_is_silent_off_a_tty(monkeypatch):
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    monkeypatch.delenv("SPARSECC_PROGRESS", raising=False)
    stream = io.StringIO()   # isatty() is False
    assert list(progress(range(7), label="x", stream=stream)) == list(range(7))
    assert list(progress(iter("abc"), stream=stream)) == ["a", "b", "c"]
    assert stream.getvalue() == ""


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_draws_on_a_tty_unless_disabled(monkeypatch):
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    monkeypatch.delenv("SPARSECC_PROGRESS", raising=False)
    tty = _Tty()
    assert list(progress([1, 2, 3], label="estimate-error", stream=tty, interval=0)) == [1, 2, 3]
    assert "estimate-error |" in tty.getvalue() and "3/3" in tty.getvalue()
    assert tty.getvalue().endswith("\r")   # the line is cleared at the end
    monkeypatch.setenv("SPARSECC_PROGRESS", "0")
    quiet = _Tty()
    assert list(progress(range(3), stream=quiet)) == [0, 1, 2]
    assert quiet.getvalue() == ""


def test_progress_is_silent_under_pytest():
    tty = _Tty()
    assert list(progress(range(3), stream=tty)) == [0, 1, 2]
    assert tty.getvalue() == ""
