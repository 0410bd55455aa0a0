"""The `sparsecc` command line.

    sparsecc compile MODEL --target h100 --out DIR [--backend onnx|torch|tvm] [--budget E]
                     [--batch B] [--seq S] [--patterns LIST] [--plan FILE] [--force]
    sparsecc ir MODEL            print the captured IR
    sparsecc report DIR          print the per-layer table of a compile's report.json

MODEL is a zoo name (`sparsecc models` lists them) or `path/file.py:factory`. Bad input
prints one line `sparsecc: error: ...` and exits with code 2 (`--debug` shows the traceback).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import traceback

from .errors import ConfigError, SparseccError


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} is not positive")
    return v


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sparsecc", description=__doc__.split("\n\n")[0])
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True)

    def model_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("model", help="zoo name or path/file.py:factory")
        sp.add_argument("--batch", type=_positive_int,
                        help="workload batch: with --seq S the GEMMs see BATCH*S rows; alone, "
                             "BATCH rows (seq 1). Default: the model's own workload")
        sp.add_argument("--seq", type=_positive_int, help="workload sequence length")
        sp.add_argument("--tiny", action="store_true", help="the zoo model's small config")
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)

    c = sub.add_parser("compile", help="compile a model for a target")
    model_args(c)
    c.add_argument("--target", required=True, help="h100, a100, l4, tpu-v4, tpu-v5e, cpu-x86")
    c.add_argument("--out", required=True, help="output directory (must not exist)")
    c.add_argument("--backend", default="onnx", help="onnx (default), torch or tvm")
    c.add_argument("--budget", type=float, default=0.02,
                   help="total error budget: the sum of per-layer relative output errors")
    c.add_argument("--speedup", type=float,
                   help="instead of --budget: reach this predicted speedup at the least error")
    c.add_argument("--patterns", help="candidate patterns, e.g. '2:4,channel0.5,dense'")
    c.add_argument("--plan", help="a plan file {\"layers\": {name: pattern}} to apply")
    c.add_argument("--force", action="store_true", help="replace an existing --out directory")
    c.add_argument("--sparse-initializers", action="store_true",
                   help="ONNX: store masked weights as sparse initializers (smaller files; "
                        "ONNX Runtime densifies them at load)")
    c.add_argument("--dump-ir", metavar="DIR", help="write the IR after each pass into DIR")
    c.add_argument("--verify", action="store_true", help="verify the IR after every pass")

    i = sub.add_parser("ir", help="print the captured IR of a model")
    model_args(i)

    r = sub.add_parser("report", help="print the per-layer table of a compile")
    r.add_argument("dir", help="a compile output directory")
    r.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)

    m = sub.add_parser("models", help="list the zoo models")
    m.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    return p


def _cmd_compile(a: argparse.Namespace) -> int:
    from .api import compile as compile_model
    from .config import CompileConfig
    from .loader import load_model
    out = os.path.abspath(a.out)
    if os.path.exists(out) and not a.force:
        raise SparseccError(f"output directory {a.out} exists; pass --force to replace it")
    kw = {}
    if a.patterns:
        kw["patterns"] = tuple(p for p in a.patterns.split(",") if p.strip())
        if not kw["patterns"]:
            raise ConfigError("--patterns is empty")
    config = CompileConfig(target=a.target, backend=a.backend, budget=a.budget,
                           speedup=a.speedup, batch=a.batch,
                           seq=a.seq if a.seq or not a.batch else 1,
                           verify_each_pass=a.verify,
                           sparse_initializers=a.sparse_initializers, **kw)
    # the workload (--batch/--seq) is what the cost model plans for; the model is captured
    # on its own small example inputs, with dynamic dims
    loaded = load_model(a.model, tiny=a.tiny)
    result = compile_model(loaded.model, loaded.example_inputs, config,
                           dynamic_dims=loaded.dynamic_dims, name=loaded.name,
                           workload=loaded.workload, plan_file=a.plan, dump_ir=a.dump_ir,
                           calibration=loaded.calibration)
    path = result.save(out, force=a.force)
    sparse = sum(d.chosen != "dense" for d in result.plan.decisions)
    speed = result.report["predicted_speedup"]
    speed_text = f"{speed:.2f}x" if speed is not None else "unknown"
    print(f"compiled {loaded.name} for {config.target}: {sparse} of "
          f"{len(result.plan.decisions)} layers sparse, predicted speedup {speed_text} "
          f"(weight layers) -> {path}")
    return 0


def _cmd_ir(a: argparse.Namespace) -> int:
    from .capture import capture
    from .ir import print_graph
    from .loader import load_model
    from .ir import Graph
    loaded = load_model(a.model, batch=a.batch, seq=a.seq, tiny=a.tiny)
    if isinstance(loaded.model, Graph):   # an imported ONNX model is IR already
        sys.stdout.write(print_graph(loaded.model))
        return 0
    inputs = loaded.example_inputs
    args, kwargs = ((), dict(inputs)) if isinstance(inputs, dict) else (tuple(inputs), {})
    g = capture(loaded.model, args, kwargs, dynamic_dims=loaded.dynamic_dims, name=loaded.name)
    sys.stdout.write(print_graph(g))
    return 0


def _cmd_report(a: argparse.Namespace) -> int:
    from .report import SCHEMA_KEYS, format_table
    path = os.path.join(a.dir, "report.json")
    try:
        with open(path) as f:
            report = json.load(f)
    except FileNotFoundError:
        raise SparseccError(f"{a.dir} has no report.json (is it a compile output dir?)") from None
    except json.JSONDecodeError as e:
        raise SparseccError(f"{path} is not valid JSON: {e}") from None
    missing = [k for k in SCHEMA_KEYS if k not in report]
    if missing:
        raise SparseccError(f"{path} is not a sparsecc report: missing {missing}")
    sys.stdout.write(format_table(report))
    return 0


def _cmd_models(a: argparse.Namespace) -> int:
    from sparsecc import models
    for name in models.names():
        print(name)
    return 0


COMMANDS = {"compile": _cmd_compile, "ir": _cmd_ir, "report": _cmd_report,
            "models": _cmd_models}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    a = parser.parse_args(argv)
    debug = getattr(a, "debug", False)
    try:
        return COMMANDS[a.command](a)
    except SparseccError as e:
        if debug:
            traceback.print_exc()
        print(f"sparsecc: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("sparsecc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
