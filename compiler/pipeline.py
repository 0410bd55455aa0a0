"""Passes and the pipeline that runs them.

A pass is a frozen dataclass (its parameters are its fields) with class-level `name`,
`requires` and `provides` (names of analyses in `graph.analyses`), and one method
`run(graph, ctx) -> PassResult`. Passes never print and never modify tensors in place.

`Pipeline` checks before running that every pass's requirements are provided by an earlier
pass (or present on the input graph), then runs each pass, timing it; optionally verifies the
graph after each pass and dumps its IR (`NNN_name.ir`). A failure names the pass.
Instruments (TVM's PassInstrument) wrap every pass: the default one shows it as a progress
phase (`sparsecc.progress`), so passes themselves never print.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar

from .errors import PipelineError, SparseccError
from .ir import Graph, print_graph, verify


@dataclasses.dataclass
class PassContext:
    """What passes may read besides the graph: the config, the target, calibration data."""
    config: Any = None
    target: Any = None
    calibration: Sequence[Any] = ()
    cost_model: Any = None    # None: the target's default (sparsecc.cost.default_cost_model)


@dataclasses.dataclass(frozen=True)
class PassResult:
    graph: Graph
    modified: bool
    report: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Pass:
    name: ClassVar[str] = "pass"
    requires: ClassVar[tuple[str, ...]] = ()
    provides: ClassVar[tuple[str, ...]] = ()

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        raise NotImplementedError(f"pass {self.name} does not implement run()")


@dataclasses.dataclass(frozen=True)
class PassRecord:
    name: str
    seconds: float
    modified: bool
    report: dict[str, Any]


class Instrument:
    """Runs around every pass: `around(p)` is a context manager entered before the pass and
    left after it (also when it raises). Instruments observe; they never change the graph."""

    @contextlib.contextmanager
    def around(self, p: Pass) -> Iterator[None]:
        yield


class ShowProgress(Instrument):
    """Each pass as a progress phase named after it (a bar, or log lines, once it runs past
    a couple of seconds; its time at -v)."""

    def around(self, p: Pass):
        from .progress import phase
        return phase(p.name)


class Pipeline:
    def __init__(self, passes: Iterable[Pass], *, verify_each: bool = False,
                 dump_dir: str | os.PathLike | None = None,
                 instruments: Sequence[Instrument] | None = None) -> None:
        self.passes = list(passes)
        self.verify_each = verify_each
        self.dump_dir = dump_dir
        self.instruments = list((ShowProgress(),) if instruments is None else instruments)
        self.records: list[PassRecord] = []

    def check_order(self, available: Iterable[str] = ()) -> None:
        have = set(available)
        for i, p in enumerate(self.passes):
            missing = [r for r in p.requires if r not in have]
            if missing:
                raise PipelineError(f"pass {i} {p.name} requires {missing}, which no earlier "
                                    f"pass provides")
            have.update(p.provides)

    def _dump(self, index: int, name: str, graph: Graph) -> None:
        if self.dump_dir is None:
            return
        os.makedirs(self.dump_dir, exist_ok=True)
        path = os.path.join(self.dump_dir, f"{index:03d}_{name}.ir")
        with open(path, "w") as f:
            f.write(print_graph(graph))

    def run(self, graph: Graph, ctx: PassContext | None = None) -> Graph:
        ctx = ctx or PassContext()
        self.check_order(graph.analyses)
        self.records = []
        self._dump(0, "input", graph)
        for i, p in enumerate(self.passes, start=1):
            start = time.perf_counter()
            try:
                with contextlib.ExitStack() as around:
                    for instrument in self.instruments:
                        around.enter_context(instrument.around(p))
                    result = p.run(graph, ctx)
            except SparseccError as e:
                e.args = (f"pass {p.name}: {e}",)
                raise
            except Exception as e:
                raise PipelineError(f"pass {p.name} failed: {type(e).__name__}: {e}") from e
            seconds = time.perf_counter() - start
            if not isinstance(result, PassResult):
                raise PipelineError(f"pass {p.name} returned {type(result).__name__}, "
                                    f"not a PassResult")
            graph = result.graph
            missing = [a for a in p.provides if a not in graph.analyses]
            if missing:
                raise PipelineError(f"pass {p.name} did not provide {missing}")
            if self.verify_each:
                try:
                    verify(graph)
                except SparseccError as e:
                    raise PipelineError(f"after pass {p.name}: {e}") from e
            self.records.append(PassRecord(p.name, seconds, result.modified, result.report))
            self._dump(i, p.name, graph)
        return graph
