"""The `sparsecc` command line.

    sparsecc [-q | -v] [--version] COMMAND ...
    sparsecc compile MODEL --target h100 --out DIR [PLAN OPTIONS] [--batch B] [--seq S]
                     [--tiny] [--force] [--dump-ir DIR] [--verify]
    sparsecc ir MODEL            print the captured IR
    sparsecc report DIR          print the per-layer table of a compile's report.json
    sparsecc bench MODEL --target h100 --batch 1,16,4096 [--seq S] [PLAN OPTIONS] [--out JSON]
                                 with CUDA: dense PyTorch vs compiled on the GPU, end to end
                                 and per layer, predicted next to measured
    sparsecc bench MODEL --target cpu --batch 1,8 [--device cpu] [--backend onnx|torch|tvm]
                                 without CUDA (or --device cpu): eager dense PyTorch vs the
                                 artifact on the backend (ONNX Runtime, torch, TVM) on the CPU
    sparsecc bench MODEL --target h200 --batch 1,16 --generate N [--out JSON]
                                 greedy generation of N tokens with a static KV cache: tokens/s
                                 of dense and compiled (+ torch.compile), the compiled tokens
                                 checked against the masked dense model's (CPU: eager, f32)
    sparsecc calibrate [--target auto] [--out FILE]
                                 measure the cost-model table on this GPU (or CPU); stored in
                                 the user's cache, where later compiles on this machine find it
    sparsecc eval MODEL [PLAN OPTIONS] [--out JSON]
                                 accuracy of the dense and the compiled model on the model's
                                 evaluation task (minilm, mnist-cnn), next to the predicted
                                 speedup

PLAN OPTIONS mean the same in compile, bench and eval: --backend, --budget E | --speedup S,
--min-gain G, --patterns LIST, --plan FILE, --importance, --dtype, --mode, --no-reconstruct; an
option left out takes `CompileConfig`'s default.

MODEL is a zoo name (`sparsecc models` lists them) or `path/file.py:factory`. Progress goes to
stderr for every phase past ~2 s (a bar at a terminal; in a log a line every 10 s); -q prints
only the final line (and errors), -v adds a line per phase with its time; the last line of
compile, eval and bench ends with the elapsed time. Bad input prints one line
`sparsecc: error: ...` and exits with code 2 (`--debug` shows the traceback).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import traceback

from . import progress
from .config import IMPORTANCE, MODES, WARN_ERROR, CompileConfig
from .errors import ConfigError, SparseccError


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} is not positive")
    return v


def version() -> str:
    """The installed package's version (its metadata), else the source tree's."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed
    try:
        return installed("sparsecc")
    except PackageNotFoundError:
        from . import __version__
        return __version__


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line (`sparsecc: error: ...`) and exit code 2."""

    def error(self, message: str):
        command = self.prog.removeprefix("sparsecc").strip()
        self.exit(2, f"sparsecc: error: {command + ': ' if command else ''}{message} "
                     f"(see {self.prog} --help)\n")


def _default(field: str):
    """CompileConfig's default for `field`: what an option left out means."""
    return CompileConfig.__dataclass_fields__[field].default


def _common(sp: argparse.ArgumentParser, top: bool = False) -> None:
    """-q, -v and --debug, before or after the command (`sparsecc -q compile ...` or
    `sparsecc compile ... -q`)."""
    keep = {} if top else {"default": argparse.SUPPRESS}
    sp.add_argument("-q", "--quiet", action="store_true", **keep,
                    help="no progress: only the final line and errors")
    sp.add_argument("-v", "--verbose", action="store_true", **keep,
                    help="also a line per phase (capture, each pass, lowering) with its time")
    sp.add_argument("--debug", action="store_true", **keep, help="show tracebacks on errors")


def _plan_args(sp: argparse.ArgumentParser, dtype_help: str | None = None) -> None:
    """The plan and accuracy options, the same in compile, bench and eval; left out, each is
    CompileConfig's default (None here, so that giving both --budget and --speedup is refused
    rather than a default budget silently kept)."""
    sp.add_argument("--backend", default=None,
                    help="torch, onnx or tvm (default: torch for GPU targets, onnx otherwise); "
                         "only patterns the backend runs on a kernel of theirs are planned")
    goal = sp.add_mutually_exclusive_group()
    goal.add_argument("--budget", type=float, default=None,
                      help=f"error budget: the sum of per-layer relative output errors "
                           f"(default {_default('budget')})")
    goal.add_argument("--speedup", type=float, default=None,
                      help="instead of --budget: reach this predicted speedup at the least "
                           "error (a plan measured past a relative output error of "
                           f"{WARN_ERROR:g} warns)")
    goal.add_argument("--max-error", type=float, default=None,
                      help="instead of --budget: the fastest plan whose outputs, measured end "
                           "to end on the calibration inputs, are within this relative error "
                           "of the model's (e.g. 0.05)")
    sp.add_argument("--min-gain", type=float, default=None,
                    help=f"keep the selected plan only if the whole model is predicted at least "
                         f"this much faster (default {_default('min_gain')}); else stay dense")
    sp.add_argument("--patterns", help="candidate patterns, e.g. '2:4,channel0.5,dense' "
                                       f"(default {','.join(_default('patterns'))})")
    sp.add_argument("--plan", help="a plan file {\"layers\": {name: pattern}} to apply; the "
                                   "other layers are selected")
    sp.add_argument("--importance", default=None,
                    help=f"how weights are ranked for masks: {', '.join(IMPORTANCE)} "
                         f"(default {_default('importance')})")
    sp.add_argument("--dtype", default=None,
                    help=dtype_help or f"the dtype the cost model plans for: f16, bf16 or f32 "
                                       f"(default {_default('dtype')})")
    sp.add_argument("--mode", default=None,
                    help=f"the workload's kind: {', '.join(MODES)} (default: the model's own)")
    sp.add_argument("--no-reconstruct", action="store_true",
                    help="keep the masked weights as they are (no least-squares refit)")


def _config(a: argparse.Namespace, **fixed) -> CompileConfig:
    """The CompileConfig the plan options ask for: options not given keep its defaults."""
    kw = {"backend": a.backend, "budget": a.budget, "speedup": a.speedup,
          "max_error": getattr(a, "max_error", None),
          "min_gain": a.min_gain, "importance": a.importance, "dtype": a.dtype,
          "mode": a.mode, **_patterns_kw(a.patterns)}
    kw = {k: v for k, v in kw.items() if v is not None}
    if a.no_reconstruct:
        kw["reconstruct"] = False
    return CompileConfig(**{**kw, **fixed})


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="sparsecc", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=f"sparsecc {version()}")
    _common(p, top=True)
    sub = p.add_subparsers(dest="command", required=True)

    def model_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("model", help="zoo name or path/file.py:factory")
        sp.add_argument("--batch", type=_positive_int,
                        help="workload batch: with --seq S the GEMMs see BATCH*S rows; alone, "
                             "BATCH rows (seq 1). Default: the model's own workload")
        sp.add_argument("--seq", type=_positive_int, help="workload sequence length")
        sp.add_argument("--tiny", action="store_true", help="the zoo model's small config")
        _common(sp)

    c = sub.add_parser("compile", help="compile a model for a target")
    model_args(c)
    c.add_argument("--target", required=True,
                   help="h200, h100, a100, l4, tpu-v4, tpu-v5e, cpu-x86, or auto (this machine's "
                        "GPU, else its CPU)")
    c.add_argument("--out", required=True, help="output directory (must not exist)")
    _plan_args(c)
    c.add_argument("--force", action="store_true", help="replace an existing --out directory")
    c.add_argument("--dump-ir", metavar="DIR", help="write the IR after each pass into DIR")
    c.add_argument("--verify", action="store_true", help="verify the IR after every pass")

    i = sub.add_parser("ir", help="print the captured IR of a model")
    model_args(i)

    r = sub.add_parser("report", help="print the per-layer table of a compile")
    r.add_argument("dir", help="a compile output directory")
    _common(r)

    b = sub.add_parser("bench", help="time dense vs compiled: on the GPU (CUDA), else the CPU")
    b.add_argument("model", help="zoo name or path/file.py:factory")
    b.add_argument("--target", required=True,
                   help="the target to compile for (h100, ...; cpu or auto on the CPU)")
    b.add_argument("--batch", required=True,
                   help="comma-separated batch sizes; each is compiled and timed")
    b.add_argument("--seq", type=_positive_int,
                   help="sequence length (default 1: decode-shaped rows = batch)")
    b.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"),
                   help="where to time: auto (default: the GPU if torch sees one, else the "
                        "CPU), cuda, or cpu")
    _plan_args(b, dtype_help="the dtype planned for and timed: f16 (default) or bf16 on the "
                             "GPU; the CPU runs f32")
    b.add_argument("--reps", type=_positive_int, default=30, help="timed runs per model")
    b.add_argument("--no-layers", action="store_true", help="skip the per-layer timings (GPU)")
    b.add_argument("--unfused", action="store_true",
                   help="also time the artifact with its sibling layers (q/k/v, gate/up) as "
                        "separate GEMMs, to show what running them as one is worth (GPU)")
    b.add_argument("--tiny", action="store_true", help="the zoo model's small config")
    b.add_argument("--out", help="write the results JSON here")
    b.add_argument("--report-dir", help="write each workload's compile output (report.html "
                                        "with measured times) under this directory")
    b.add_argument("--generate", type=_positive_int, metavar="N",
                   help="instead: greedy generation of N new tokens with a static KV cache "
                        "(a decoder LM: an HF ...ForCausalLM or tinyllama-1.1b-shape), tokens/s "
                        "of eager and torch.compile dense vs compiled (+ torch.compile) after "
                        "checking the compiled tokens against the masked dense model's; "
                        "without CUDA it runs eagerly on the CPU in f32")
    _common(b)

    cal = sub.add_parser("calibrate", help="measure the cost-model table on this GPU or CPU")
    cal.add_argument("--target", default="auto",
                     help="auto (default: this machine's target) or its name; a named target "
                          "must be the device this is")
    cal.add_argument("--out", help="the table to write (JSON lines); default: the user's cache "
                                   "(tables/TARGET.jsonl), which later compiles read")
    cal.add_argument("--quick", action="store_true", help="a few points (smoke test)")
    cal.add_argument("--max-seconds", type=float, default=290.0,
                     help="stop measuring after this long and write what was measured "
                          "(default 290)")
    _common(cal)

    e = sub.add_parser("eval", help="accuracy of dense vs compiled on the model's task")
    e.add_argument("model", help="minilm or mnist-cnn (the models with an evaluation task)")
    e.add_argument("--target", default="h100", help="the target to compile for (default h100)")
    _plan_args(e)
    e.add_argument("--out", help="write the results JSON here")
    e.add_argument("--report-dir", help="write the compile output (report.html with the "
                                        "measured accuracy) here")
    _common(e)

    m = sub.add_parser("models", help="list the zoo models")
    _common(m)
    return p


def _say(text: str) -> None:
    """An informational line on stdout (the target, per-workload results); not with -q."""
    if progress.level() > progress.QUIET:
        progress.write(text)


def _final(a: argparse.Namespace, text: str) -> None:
    """The command's last line, with the time since it started."""
    progress.write(f"{text} ({progress.seconds(time.monotonic() - a.started)})")


def _cmd_compile(a: argparse.Namespace) -> int:
    from .api import compile as compile_model
    from .loader import load_model
    from .outdir import check_out, check_writable_dir
    inputs = _input_files(a.model, a.plan)
    out = check_out(a.out, a.force, inputs)         # before any long work
    if a.dump_ir:
        check_writable_dir(a.dump_ir, "--dump-ir")
    config = _config(a, target=a.target, batch=a.batch,
                     seq=a.seq if a.seq or not a.batch else 1, verify_each_pass=a.verify)
    # the workload (--batch/--seq) is what the cost model plans for; the model is captured
    # on its own small example inputs, with dynamic dims
    _say(target_line(config.target))
    with progress.phase(f"load {a.model}"):
        loaded = load_model(a.model, tiny=a.tiny)
    result = compile_model(loaded.model, loaded.example_inputs, config,
                           dynamic_dims=loaded.dynamic_dims, name=loaded.name,
                           workload=loaded.workload, plan_file=a.plan, dump_ir=a.dump_ir,
                           calibration=loaded.calibration)
    path = result.save(out, force=a.force, inputs=inputs)
    sparse = sum(d.chosen != "dense" for d in result.plan.decisions)
    speed = result.report["predicted_speedup"]
    speed_text = f"{speed:.2f}x" if speed is not None else "unknown"
    whole = (result.report.get("whole_model") or {}).get("speedup")
    whole_text = f", {whole:.2f}x whole model" if whole is not None else ""
    accuracy = result.report.get("output_error") or {}
    err = accuracy.get("relative_error")
    err_text = (f", measured output error {err:.3g} on {accuracy['on']}" if err is not None
                else "")
    if accuracy.get("warning"):
        print(f"warning: {accuracy['warning']}", file=sys.stderr)
    if not sparse and not getattr(a, "quiet", False):
        for line in _nearest_plans(result.report):
            print(line, flush=True)
    _final(a, f"compiled {loaded.name} for {config.target} ({config.backend}): {sparse} of "
              f"{len(result.plan.decisions)} layers sparse, predicted speedup {speed_text} "
              f"(weight layers){whole_text}{err_text} -> {path}")
    return 0


def _nearest_plans(report: dict) -> list[str]:
    """When nothing was chosen: what would give a plan. The measured trials of --max-error
    where there are any, else the selector's frontier (its per-layer error estimates)."""
    trials = [t for t in (report.get("output_error") or {}).get("search") or []
              if t["sparse_layers"]]
    if trials:
        parts = [f"error {t['measured_error']:.3g} -> {t['predicted_speedup']:.2f}x "
                 f"({t['sparse_layers']} layers)" for t in trials[:3]]
        return [f"no plan within the error is worth it; measured: {'; '.join(parts)}"]
    points = [p for p in report.get("frontier") or [] if not p.get("chosen")]
    dense = next((p["predicted_us"] for p in points if p["error"] == 0), None)
    faster = sorted((p for p in points if dense and p["predicted_us"] < dense * 0.98),
                    key=lambda p: p["error"])[:3]
    if not faster:
        return ["no candidate pattern is predicted faster than dense for these layers on this "
                "target and workload (a larger --batch/--seq, or another target, may differ)"]
    parts = [f"--budget {p['error']:.3g} would give {dense / p['predicted_us']:.2f}x"
             for p in faster]
    return ["nothing chosen; the selector's frontier (weight layers, before the whole-model "
            f"check of --min-gain): {'; '.join(parts)}"]


def _input_files(model: str, *others: str | None) -> list[str]:
    """The files a run reads (a model file, an ONNX file with its data, a plan file)."""
    files = [f for f in others if f]
    path = model.rpartition(":")[0] if ":" in model and ".py:" in model else model
    if os.path.exists(path):
        files.append(path)
        if path.endswith(".onnx"):
            files.append(os.path.dirname(os.path.abspath(path)))
    return files


def _cmd_ir(a: argparse.Namespace) -> int:
    from .capture import capture
    from .ir import print_graph
    from .loader import load_model
    from .ir import Graph
    with progress.phase(f"load {a.model}"):
        loaded = load_model(a.model, batch=a.batch, seq=a.seq, tiny=a.tiny)
    if isinstance(loaded.model, Graph):   # an imported ONNX model is IR already
        sys.stdout.write(print_graph(loaded.model))
        return 0
    inputs = loaded.example_inputs
    args, kwargs = ((), dict(inputs)) if isinstance(inputs, dict) else (tuple(inputs), {})
    with progress.phase("capture"):
        g = capture(loaded.model, args, kwargs, dynamic_dims=loaded.dynamic_dims,
                    name=loaded.name)
    sys.stdout.write(print_graph(g))
    return 0


def _cmd_report(a: argparse.Namespace) -> int:
    from .report import SCHEMA_KEYS, format_table
    from .cache import load_json_file
    path = os.path.join(a.dir, "report.json")
    if not os.path.isfile(path):
        raise SparseccError(f"{a.dir} has no report.json (is it a compile output dir?)")
    report = load_json_file(path, "report")
    if not isinstance(report, dict):
        raise SparseccError(f"{path} is not a sparsecc report: not a JSON object")
    missing = [k for k in SCHEMA_KEYS if k not in report]
    if missing:
        raise SparseccError(f"{path} is not a sparsecc report: missing {missing}")
    sys.stdout.write(format_table(report))
    return 0


def _patterns_kw(text: str | None) -> dict:
    if text is None:
        return {}
    patterns = tuple(p.strip() for p in text.split(",") if p.strip())
    if not patterns:
        raise ConfigError("--patterns is empty")
    return {"patterns": patterns}


def _bench_device(a: argparse.Namespace, target) -> str:
    """Where `bench` times: the GPU when torch sees one and the target is a GPU's; the CPU for
    a CPU target, with --device cpu, or (for a CPU target) without CUDA."""
    import torch
    from .benchmarks import cpu, gpu
    if a.device == "cuda":
        gpu.require_cuda("sparsecc bench --device cuda")
        return "cuda"
    if a.device == "cpu" or target.kind == "cpu":
        cpu.require_cpu_target(target)
        return "cpu"
    if not torch.cuda.is_available():
        raise SparseccError(f"sparsecc bench --target {target.name} needs a CUDA GPU; torch "
                            f"{torch.__version__} sees none (to time on this CPU: --target cpu "
                            f"or auto)")
    return "cuda"


def _cmd_bench(a: argparse.Namespace) -> int:
    from .benchmarks import gpu
    from .targets import get_target
    batches = gpu.parse_batches(a.batch)
    if a.generate is not None:
        return _cmd_bench_generate(a, batches)
    target = get_target(a.target)
    if _bench_device(a, target) == "cpu":
        return _cmd_bench_cpu(a, batches, target)
    from .benchmarks import write_json
    from .loader import load_model
    if a.backend not in (None, "torch"):
        raise ConfigError(f"the GPU bench times the torch artifact; --backend {a.backend} is "
                          f"timed on the CPU (--device cpu --target cpu)")
    dtype_name = a.dtype or "f16"
    dtype = gpu.dtype_of(dtype_name)
    _say(target_line(a.target))
    with progress.phase(f"load {a.model}"):
        loaded = load_model(a.model, tiny=a.tiny)
    seq = a.seq or 1
    cases = []
    for batch in batches:
        config = _config(a, target=a.target, backend="torch", batch=batch, seq=seq,
                         dtype=dtype_name)
        case, result = gpu.bench_case(loaded, config, batch, seq, plan_file=a.plan,
                                      dtype=dtype, warmup=5, reps=a.reps,
                                      layers=not a.no_layers, unfused=a.unfused, log=_say)
        cases.append(case)
        if a.report_dir:
            result.report["measured"] = {
                l["name"]: {"dense_us": l["measured_dense_us"], "chosen_us": l["measured_us"]}
                for l in case.get("layers", ())}
            if case.get("e2e"):
                result.report["measured_e2e"] = case["e2e"]
            result.save(os.path.join(a.report_dir, f"b{batch}_s{seq}"), force=True)
    _say(gpu.summary_table(cases).rstrip("\n"))
    if a.out:
        env = gpu.environment()
        write_json({"environment": env, "model": loaded.name, "target": target.name,
                    "dtype": dtype_name, "plan_file": a.plan, "budget": config.budget,
                    "cases": cases, "summary": gpu.summarize(cases)}, a.out)
    bad = [c for c in cases if not c["correctness"]["ok"]]
    if bad:
        raise SparseccError(f"compiled output differs from masked dense at batch "
                            f"{', '.join(str(c['batch']) for c in bad)} (see the JSON)")
    speeds = ", ".join(f"batch {c['batch']}: {c['e2e']['speedup']:.2f}x" for c in cases)
    _final(a, f"bench {loaded.name} for {target.name} on the GPU (torch): {speeds} (compiled vs "
              f"eager dense)")
    return 0


def _cmd_bench_cpu(a: argparse.Namespace, batches: list[int], target) -> int:
    from .benchmarks import cpu, gpu, write_json
    from .loader import load_model
    for flag, given in (("--unfused", a.unfused), ("--dtype", a.dtype not in (None, "f32"))):
        if given:
            raise ConfigError(f"{flag} does not apply on the CPU (the CPU bench times the "
                              f"artifact as compiled, in f32)")
    _say(target_line(target.name))
    busy = cpu.busy_note()
    if busy:
        _say(busy)
    with progress.phase(f"load {a.model}"):
        loaded = load_model(a.model, tiny=a.tiny)
    seq = a.seq or 1
    cases = []
    for batch in batches:
        config = _config(a, target=target.name, batch=batch, seq=seq, dtype="f32")
        report_dir = (os.path.join(a.report_dir, f"b{batch}_s{seq}") if a.report_dir
                      else None)
        cases.append(cpu.bench_case(loaded, config, batch, seq, plan_file=a.plan, reps=a.reps,
                                    report_dir=report_dir, log=_say))
    _say(cpu.summary_table(cases).rstrip("\n"))
    if a.out:
        write_json({"environment": cpu.environment(), "model": loaded.name,
                    "target": target.name, "backend": config.backend, "device": "cpu",
                    "dtype": "f32", "plan_file": a.plan, "budget": config.budget,
                    "cases": cases, "summary": gpu.summarize(cases)}, a.out)
    bad = [c for c in cases if not c["correctness"]["ok"]]
    if bad:
        raise SparseccError(f"the {config.backend} artifact differs from masked dense at batch "
                            f"{', '.join(str(c['batch']) for c in bad)}"
                            f"{' (see the JSON)' if a.out else ''}")
    _final(a, cpu.final_line(loaded.name, target.name, cases))
    return 0


def _cmd_bench_generate(a: argparse.Namespace, batches: list[int]) -> int:
    from .benchmarks import generate, gpu
    from .loader import load_model
    gpu.dtype_of(a.dtype or "f16")
    for flag, given, why in (
            ("--seq", a.seq, "one token per step; the cache holds the prompt and the new tokens"),
            ("--unfused", a.unfused, "the generation bench times the artifact as compiled"),
            ("--no-layers", a.no_layers, "the generation bench has no per-layer timings"),
            ("--backend", a.backend not in (None, "torch"), "it runs the torch artifact"),
            ("--device cpu", a.device == "cpu", "it runs on the GPU when there is one, else "
                                                "on the CPU by itself")):
        if given:
            raise ConfigError(f"{flag} does not apply with --generate ({why})")
    _say(target_line(a.target))
    with progress.phase(f"load {a.model}"):
        loaded = load_model(a.model, tiny=a.tiny)
    plan = {k: v for k, v in _config(a, target=a.target, backend="torch").to_dict().items()
            if k in ("budget", "speedup", "min_gain", "patterns", "importance", "mode",
                     "reconstruct")}
    return generate.run(loaded, target=a.target, batches=batches, new_tokens=a.generate,
                        dtype_name=a.dtype or "f16", plan_file=a.plan, plan=plan,
                        reps=a.reps, out=a.out, report_dir=a.report_dir, log=_say,
                        final=lambda text: _final(a, text))


def _cmd_eval(a: argparse.Namespace) -> int:
    from .models.evaluate import compile_task, task
    config = _config(a, target=a.target)
    with progress.phase(f"prepare the {a.model} task"):
        t = task(a.model)
    dense = t.score_model(t.model)
    result = compile_task(t, config, plan_file=a.plan)
    compiled = t.score_graph(result.ir)
    speed = result.report.get("predicted_speedup")
    accuracy = {"metric": t.metric, "dense": dense, "compiled": compiled}
    result.report["accuracy"] = accuracy
    if a.report_dir:
        result.save(a.report_dir, force=True)
    if a.out:
        from .benchmarks import write_json
        write_json({"model": t.name, "config": config.to_dict(), "plan_file": a.plan,
                    "accuracy": accuracy, "predicted_speedup": speed,
                    "layers": {d.layer.name: d.chosen for d in result.plan.decisions}}, a.out)
    _final(a, f"{t.name}: {t.metric}: dense {dense:.4f}, compiled {compiled:.4f} "
              f"({compiled - dense:+.4f}); predicted {config.target} speedup "
              f"{'unknown' if speed is None else f'{speed:.2f}x'}")
    return 0


def _cmd_calibrate(a: argparse.Namespace) -> int:
    from .benchmarks import calibrate
    if not a.max_seconds > 0:
        raise ConfigError(f"--max-seconds must be positive, got {a.max_seconds}")
    done = calibrate.run(a.target, a.out, quick=a.quick, max_seconds=a.max_seconds, log=_say)
    _final(a, f"calibrated {done['target']} on the {'GPU' if done['device'] == 'cuda' else 'CPU'}"
              f": {done['rows']} rows -> {done['path']}")
    return 0


def target_line(name: str) -> str:
    """What the CLI says first: the target, how it was found, and whether its cost table was
    measured (the report's `target_info`, in one line)."""
    from .api import target_info
    from .targets import get_target
    target = get_target(name)
    info = target_info(target)
    costs = info["cost_table"]
    head = info["detected"] or f"target {target.name}: {target.description}"
    if costs["measured"]:
        tail = (f"cost table measured on {costs['measured_on'] or 'an unnamed device'}"
                f"{' ' + costs['date'][:10] if costs.get('date') else ''} "
                f"({costs['origin']}: {costs['table']})")
    else:
        tail = "cost table: not measured (uncalibrated: analytic model; `sparsecc calibrate " \
               "--target auto` on the device measures one)"
    return f"{head}; {tail}"


def _cmd_models(a: argparse.Namespace) -> int:
    from sparsecc import models
    for name in models.names():
        print(name)
    return 0


COMMANDS = {"compile": _cmd_compile, "ir": _cmd_ir, "report": _cmd_report,
            "bench": _cmd_bench, "calibrate": _cmd_calibrate, "eval": _cmd_eval,
            "models": _cmd_models}


def _one_line_warnings() -> None:
    """sparsecc's own warnings as `sparsecc: warning: ...` on stderr, one line each."""
    import warnings
    from .cache import SparseccWarning
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, SparseccWarning):
            print(f"sparsecc: warning: {message}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)
    warnings.showwarning = show


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    a = parser.parse_args(argv)
    a.started = time.monotonic()
    debug = getattr(a, "debug", False)
    quiet, verbose = getattr(a, "quiet", False), getattr(a, "verbose", False)
    if quiet and verbose:
        parser.error("-q/--quiet and -v/--verbose exclude each other")
    _one_line_warnings()
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # ours show; not HF's too
    level = progress.level()
    progress.set_level(progress.QUIET if quiet else progress.VERBOSE if verbose
                       else progress.NORMAL)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main_thread else None
    if main_thread and previous == signal.SIG_DFL:   # a kill runs the clean-up Ctrl-C runs
        signal.signal(signal.SIGTERM, _terminate)
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
    finally:
        progress.set_level(level)
        if main_thread and previous == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _terminate(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
