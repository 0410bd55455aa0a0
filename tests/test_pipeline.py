import dataclasses
import os
from typing import ClassVar

import pytest

from sparsecc.errors import PipelineError, VerifyError
from sparsecc.ir import Node, Value, parse
from sparsecc.pipeline import Pass, PassResult, Pipeline
from sparsecc.passes.eliminate_noops import EliminateNoops

TEXT = """\
graph g(%x: f32[batch, 4]) {
  %d: f32[batch, 4] = dropout(%x) {p=0.1, train=False}
  %c: f32[batch, 4] = clone(%d)
  %r: f32[batch, 4] = relu(%c)
  %unused: f32[batch, 4] = neg(%r)
  %t: f32[batch, 4] = to.dtype(%r) {dtype=f32}
  %h: f16[batch, 4] = to.dtype(%t) {dtype=f16}
  return %h
}
"""

EXPECTED = """\
graph g(%x: f32[batch, 4]) {
  %r: f32[batch, 4] = relu(%x)
  %h: f16[batch, 4] = to.dtype(%r) {dtype=f16}
  return %h
}
"""


@dataclasses.dataclass(frozen=True)
class Provide(Pass):
    name: ClassVar[str] = "provide"
    provides: ClassVar[tuple[str, ...]] = ("facts",)

    def run(self, graph, ctx):
        g = graph.copy()
        g.analyses["facts"] = 1
        return PassResult(g, False)


@dataclasses.dataclass(frozen=True)
class Need(Pass):
    name: ClassVar[str] = "need"
    requires: ClassVar[tuple[str, ...]] = ("facts",)

    def run(self, graph, ctx):
        return PassResult(graph, False, {"saw": graph.analyses["facts"]})


@dataclasses.dataclass(frozen=True)
class Breaks(Pass):
    name: ClassVar[str] = "breaks"

    def run(self, graph, ctx):
        g = graph.copy()
        g.add_node(Node("relu", ("nope",), ("z",)), [Value("z", (2,), "f32")])
        return PassResult(g, True)


@dataclasses.dataclass(frozen=True)
class Crashes(Pass):
    name: ClassVar[str] = "crashes"

    def run(self, graph, ctx):
        raise ZeroDivisionError("boom")


def test_eliminate_noops_golden():
    before = parse(TEXT)
    p = Pipeline([EliminateNoops()], verify_each=True)
    after = p.run(before)
    assert after == parse(EXPECTED)
    assert before == parse(TEXT), "the pass changed its input graph"
    assert p.records[0].report["removed"] == {"dropout": 1, "clone": 1, "to.dtype": 1}


def test_order_is_checked_before_running():
    with pytest.raises(PipelineError, match="pass 0 need requires \\['facts'\\]"):
        Pipeline([Need(), Provide()]).run(parse(EXPECTED))
    p = Pipeline([Provide(), Need()])
    p.run(parse(EXPECTED))
    assert [r.name for r in p.records] == ["provide", "need"]
    assert p.records[1].report == {"saw": 1}
    assert all(r.seconds >= 0 for r in p.records)


def test_verify_after_each_pass_names_the_pass():
    with pytest.raises(PipelineError, match="after pass breaks: .*reads %nope"):
        Pipeline([Breaks()], verify_each=True).run(parse(EXPECTED))


def test_crash_names_the_pass():
    with pytest.raises(PipelineError, match="pass crashes failed: ZeroDivisionError: boom"):
        Pipeline([Crashes()]).run(parse(EXPECTED))


def test_dump_ir_writes_each_pass(tmp_path):
    Pipeline([EliminateNoops(), Provide()], dump_dir=tmp_path).run(parse(TEXT))
    files = sorted(os.listdir(tmp_path))
    assert files == ["000_input.ir", "001_eliminate-noops.ir", "002_provide.ir"]
    assert parse((tmp_path / "001_eliminate-noops.ir").read_text()) == parse(EXPECTED)
