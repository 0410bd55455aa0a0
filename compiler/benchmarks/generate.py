"""`sparsecc bench MODEL --generate N`: greedy generation with a static KV cache, in tokens/s.

For every batch size B:
  1. the model's decoder step (`sparsecc.models.generation`: token ids [B, 1], cache_position,
     caches k_0, v_0, ... [B, kv_heads, max_len, head_dim], max_len = prompt + N rounded up to
     16) is compiled (backend torch, batch axis dynamic, the rest static; the plan is for the
     decode workload of B rows); the artifact updates each cache in place. A plan that
     removes KV heads shrinks the caches too (they are state, `sparsecc.ir.state`): the
     compiled step and its masked dense graph take the caches the IR declares
     (`state_caches`), the user's model its own;
  2. correctness first: the masked dense model (the compiled IR with every layer on ATen)
     generates N tokens greedily after a random prompt of 16 tokens; the compiled model must
     produce the same tokens. Both are then run in lockstep on the masked dense tokens (teacher
     forcing) and every step's logits compared: a free-running difference whose logits agree
     within 1e-2 relative is a near-tie flipped by rounding (reported, `tokens_identical`
     false); logits further apart fail the case before any timing. In fp16 two runs of the
     same dense graph already differ by rounding (other GEMM algorithms), and a random-weight
     model has close top-2 logits, so over many tokens a flip can happen without any error;
     the lockstep check is what tells the two apart;
  3. tokens/s: eager dense (the user's model, its cache updated in place like HF's
     StaticCache), torch.compile dense (inductor, default mode), the compiled artifact and
     the artifact + torch.compile each generate N tokens, in turn, `reps` times; each step
     replays a CUDA graph over static buffers (token ids, position, the caches themselves:
     nothing is copied per step but the token and the position), the next token is the
     argmax on the GPU (no host sync inside the loop). Timed: the N decode steps (CUDA
     events), not the prompt's steps; tokens/s = B * N / median seconds.
Without CUDA the same runs on the CPU in float32, eagerly (no CUDA graphs, no torch.compile),
so the command and its checks can be tried anywhere.
"""
from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from sparsecc.backends.torch.artifact import dense_module
from sparsecc.backends.torch.timing import capture, relative_error
from sparsecc.errors import ConfigError, SparseccError
from sparsecc.models.generation import (DecoderStep, EagerStepper, decode, decoder_step, prefill,
                                        step_dynamic_dims, step_inputs)

CORRECT_TOL = 1e-2
PROMPT_LEN = 16
CALIBRATION = (4, 16)        # calibration steps, rows each
VARIANTS = ("dense", "torch_compile_dense", "compiled", "compiled_torch_compile")


def language_model(model: Any) -> torch.nn.Module:
    """The HF causal LM `model` is, or wraps as `.model` (a zoo model, a decoder step)."""
    for candidate in (model, getattr(model, "model", None)):
        if isinstance(candidate, torch.nn.Module) and hasattr(candidate, "config") \
                and getattr(candidate, "get_output_embeddings", lambda: None)() is not None:
            return candidate
    raise ConfigError(f"--generate needs a decoder language model (a Hugging Face "
                      f"...ForCausalLM, or a zoo model such as tinyllama-1.1b-shape); "
                      f"got {type(model).__name__}")


class GraphStepper:
    """One decode step in a CUDA graph over static buffers: token ids [B, 1], the position
    and the caches. A step copies the token and the position in and replays; caches the
    module updates in place stay where they are (`in_place`), others are copied back."""

    def __init__(self, module: Callable[..., Any], caches: Sequence[torch.Tensor],
                 batch: int) -> None:
        device = caches[0].device
        self.ids = torch.zeros(batch, 1, dtype=torch.long, device=device)
        self.pos = torch.zeros(1, dtype=torch.long, device=device)
        self.caches = list(caches)
        start = time.perf_counter()
        with torch.no_grad():
            self.graph, out = capture(lambda: module(self.ids, self.pos, *self.caches), warm=2)
        self.capture_s = time.perf_counter() - start
        self.logits = out[0]
        self.copy_back = [(o, c) for o, c in zip(out[1:], self.caches)
                          if o.data_ptr() != c.data_ptr()]
        self.in_place = not self.copy_back

    def __call__(self, ids: torch.Tensor, position: int) -> torch.Tensor:
        self.ids.copy_(ids, non_blocking=True)
        self.pos.fill_(position)
        self.graph.replay()
        for out, cache in self.copy_back:
            cache.copy_(out)
        return self.logits


def state_caches(graph, batch: int, *, dtype: torch.dtype = torch.float32,
                 device: str | torch.device = "cpu") -> tuple[torch.Tensor, ...]:
    """Zeroed caches of the sizes the compiled step declares (its inputs after the token ids
    and the position): a plan that removed KV heads takes caches with fewer heads."""
    from sparsecc.ir.symbolic import evaluate
    env = {"batch": batch}
    return tuple(torch.zeros([evaluate(d, env) if isinstance(d, str) else d
                              for d in graph.values[name].shape], dtype=dtype, device=device)
                 for name in graph.inputs[2:])


def _stepper(module, step: DecoderStep, batch: int, max_len: int, dtype: torch.dtype,
             device: str, graph=None):
    caches = (step.new_caches(batch, max_len, dtype=dtype, device=device) if graph is None
              else state_caches(graph, batch, dtype=dtype, device=device))
    if device == "cuda":
        return GraphStepper(module, caches, batch)
    return EagerStepper(module, caches)


def lockstep(ref, other, prompt: torch.Tensor, forced: torch.Tensor) -> dict[str, Any]:
    """Both steppers fed the same tokens (the prompt, then `forced`): the largest relative
    logit difference over the steps and where their argmaxes differ."""
    prefill(ref, prompt)
    prefill(other, prompt)
    start = prompt.shape[1] - 1
    token, worst, flips = prompt[:, start:], 0.0, []
    for i in range(forced.shape[1]):
        a = ref(token, start + i)[:, -1].float()
        b = other(token, start + i)[:, -1].float()
        worst = max(worst, relative_error(b, a))
        differ = (a.argmax(-1) != b.argmax(-1)).nonzero().flatten().tolist()
        flips += [[row, i] for row in differ]
        token = forced[:, i:i + 1]
    return {"max_step_rel_err": worst, "argmax_differs_at": flips[:20],
            "argmax_differences": len(flips)}


def _timed_decodes(steppers: dict[str, Any], prompt: torch.Tensor, new_tokens: int,
                   reps: int, cuda: bool) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Median seconds of N decode steps per stepper (after an untimed warm generation), the
    steppers taking turns; and each stepper's tokens from its last generation."""
    times: dict[str, list[float]] = {k: [] for k in steppers}
    tokens: dict[str, torch.Tensor] = {}
    for rep in range(reps + 1):
        for name, stepper in steppers.items():
            prefill(stepper, prompt)
            if cuda:
                torch.cuda.synchronize()
                start_ev = torch.cuda.Event(enable_timing=True)
                end_ev = torch.cuda.Event(enable_timing=True)
                start_ev.record()
            start = time.perf_counter()
            out = decode(stepper, prompt, new_tokens)
            if cuda:
                end_ev.record()
                end_ev.synchronize()
                elapsed = start_ev.elapsed_time(end_ev) / 1000.0
            else:
                elapsed = time.perf_counter() - start
            if rep:
                times[name].append(elapsed)
            tokens[name] = out.tokens
    return {k: statistics.median(v) for k, v in times.items()}, tokens


def _torch_compiled(module, step, batch, max_len, dtype, device, log, what, graph=None):
    """A CUDA-graph stepper over torch.compile(module), or (None, record) when it fails."""
    start = time.perf_counter()
    try:
        stepper = _stepper(torch.compile(module, dynamic=False), step, batch, max_len, dtype,
                           device, graph)
    except Exception as e:                 # noqa: BLE001 - the bench goes on without it
        log(f"  torch.compile {what} failed: {str(e).splitlines()[0][:160]}")
        return None, {"error": str(e).splitlines()[0][:300]}
    return stepper, {"mode": "default", "compile_and_capture_s":
                     round(time.perf_counter() - start, 1), "in_place": stepper.in_place}


def bench_case(hf_model: torch.nn.Module, name: str, config, batch: int, new_tokens: int, *,
               plan_file: str | None, dtype: torch.dtype, device: str, reps: int,
               log=print) -> tuple[dict[str, Any], Any]:
    """One batch size: compile the decoder step, check its tokens against the masked dense
    model's, then time the four generators (see the module docstring)."""
    from sparsecc.api import compile as compile_model
    cuda = device == "cuda"
    max_len = -(-(PROMPT_LEN + new_tokens) // 16) * 16
    step = decoder_step(hf_model)
    gen = torch.Generator().manual_seed(1000 + batch)
    vocab = hf_model.get_input_embeddings().weight.shape[0]
    prompt = torch.randint(0, vocab, (batch, PROMPT_LEN), generator=gen).to(device)
    start = time.perf_counter()
    with torch.no_grad():   # the model's own no_grad regions (HF's rotary) trace as plain ops
        result = compile_model(
            step, step_inputs(step, batch, max_len, gen, position=0), config,
            dynamic_dims=step_dynamic_dims(step), name=name, plan_file=plan_file,
            workload={"kind": "decode", "batch": batch, "seq": 1},
            calibration=[step_inputs(step, CALIBRATION[1], max_len, gen, filled=True)
                         for _ in range(CALIBRATION[0])])
    compile_s = time.perf_counter() - start
    sparse = sum(d.chosen != "dense" for d in result.plan.decisions)
    log(f"  batch {batch}: compiled in {compile_s:.0f} s, {sparse} of "
        f"{len(result.plan.decisions)} layers sparse")
    module = result.module.to(device=device, dtype=dtype)
    masked = dense_module(result.ir).to(device=device, dtype=dtype)

    def stepper_for(m, graph=result.ir):       # the compiled step's own cache sizes
        return _stepper(m, step, batch, max_len, dtype, device, graph)

    whole = result.report.get("whole_model") or {}
    case: dict[str, Any] = {
        "batch": batch, "new_tokens": new_tokens, "prompt_len": PROMPT_LEN, "max_len": max_len,
        "plan": {d.layer.name: d.chosen for d in result.plan.decisions},
        "predicted_speedup": result.report.get("predicted_speedup"),
        "predicted_whole_model_speedup": whole.get("speedup"),
        "predicted_whole_model_fused_speedup": whole.get("fused_speedup"),
        "kernels": module.kernel_table(), "fused_siblings": module.fused(),
        "cache_shape": {"dense": list(step.new_caches(1, max_len)[0].shape[1:]),
                        "compiled": list(state_caches(result.ir, 1)[0].shape[1:])},
        "compile_s": round(compile_s, 1)}
    # correctness: the masked dense model's tokens, the compiled model's, then both in lockstep
    ref = decode_after_prefill(stepper_for(masked), prompt, new_tokens)
    compiled = stepper_for(module)
    got = decode_after_prefill(compiled, prompt, new_tokens)
    case["cache_in_place"] = compiled.in_place
    check = lockstep(stepper_for(masked), compiled, prompt, ref)
    identical = bool(torch.equal(got, ref))
    ok = identical or check["max_step_rel_err"] <= CORRECT_TOL
    case["correctness"] = {"tokens_identical": identical, "ok": ok, "tolerance": CORRECT_TOL,
                           "first_difference": _first_difference(got, ref), **check}
    del masked
    if not ok:
        log(f"  batch {batch}: compiled tokens differ from masked dense and its logits are "
            f"{check['max_step_rel_err']:.2e} off (> {CORRECT_TOL}); not timed")
        return case, result
    if not identical:
        log(f"  batch {batch}: tokens differ from masked dense at "
            f"{case['correctness']['first_difference']} (a near-tie: logits within "
            f"{check['max_step_rel_err']:.1e})")
    dense_model = copy.deepcopy(hf_model).to(device=device, dtype=dtype).eval()
    dense_step = decoder_step(dense_model, inplace=True)
    steppers = {"dense": stepper_for(dense_step, None), "compiled": compiled}
    if cuda:
        peer, case["torch_compile_dense"] = _torch_compiled(
            dense_step, step, batch, max_len, dtype, device, log, "dense")
        both, case["torch_compile_compiled"] = _torch_compiled(
            module, step, batch, max_len, dtype, device, log, "compiled", result.ir)
        for key, s in (("torch_compile_dense", peer), ("compiled_torch_compile", both)):
            if s is not None:
                steppers[key] = s
    else:
        case["torch_compile"] = "skipped: no CUDA (eager on the CPU only)"
    steppers = {k: steppers[k] for k in VARIANTS if k in steppers}
    seconds, tokens = _timed_decodes(steppers, prompt, new_tokens, reps, cuda)
    tps = {k: batch * new_tokens / s for k, s in seconds.items()}
    case["decode_s"] = seconds
    case["tokens_per_s"] = tps
    case["tokens_match_masked_dense"] = {k: float((t == ref).float().mean())
                                         for k, t in tokens.items()}
    peer_tps = tps.get("torch_compile_dense")
    case["speedup"] = {
        "compiled_vs_dense": tps["compiled"] / tps["dense"],
        "compiled_vs_torch_compile_dense": tps["compiled"] / peer_tps if peer_tps else None,
        "compiled_torch_compile_vs_torch_compile_dense":
            tps["compiled_torch_compile"] / peer_tps
            if peer_tps and "compiled_torch_compile" in tps else None}
    log(summary_line(case))
    del steppers, dense_step, dense_model, module
    if cuda:
        torch.cuda.empty_cache()
    return case, result


def decode_after_prefill(stepper, prompt: torch.Tensor, new_tokens: int) -> torch.Tensor:
    prefill(stepper, prompt)
    return decode(stepper, prompt, new_tokens).tokens


def _first_difference(got: torch.Tensor, ref: torch.Tensor) -> list[int] | None:
    """[row, token] of the first position (earliest token, then row) where they differ."""
    diff = (got != ref).nonzero().tolist()
    return min(diff, key=lambda rc: (rc[1], rc[0])) if diff else None


def summary_line(case: dict[str, Any]) -> str:
    tps = case.get("tokens_per_s") or {}
    parts = ", ".join(f"{k.replace('_', ' ')} {v:.0f}" for k, v in tps.items())
    ratio = (case.get("speedup") or {}).get("compiled_torch_compile_vs_torch_compile_dense")
    same = "identical" if case["correctness"]["tokens_identical"] else "NOT identical"
    tail = f"; compiled + torch.compile {ratio:.2f}x torch.compile dense" if ratio else ""
    return (f"  batch {case['batch']}: {case['new_tokens']} tokens {same} to masked dense; "
            f"tokens/s {parts}{tail}")


def overall_line(name: str, device: str, dtype: str, new_tokens: int,
                 cases: list[dict[str, Any]]) -> str:
    """The run in one line: tokens checked, and compiled (+ torch.compile) against the peer."""
    same = all(c["correctness"]["tokens_identical"] for c in cases)
    parts = []
    for c in cases:
        sp = c.get("speedup") or {}
        ratio = sp.get("compiled_torch_compile_vs_torch_compile_dense") \
            or sp.get("compiled_vs_dense")
        peer = "torch.compile dense" if sp.get("compiled_torch_compile_vs_torch_compile_dense") \
            else "eager dense"
        parts.append(f"batch {c['batch']} " + (f"{ratio:.2f}x {peer}" if ratio else "not timed"))
    return (f"generate {name} ({device}, {dtype}, {new_tokens} tokens): tokens "
            f"{'identical to' if same else 'NOT all identical to'} masked dense; compiled"
            f"{' + torch.compile' if device == 'cuda' else ''}: {', '.join(parts)}")


def run(loaded, *, target: str, batches: Sequence[int], new_tokens: int, dtype_name: str,
        plan_file: str | None, plan: dict[str, Any], reps: int, out: str | None,
        report_dir: str | None, log=print, final=None) -> int:
    """The `sparsecc bench --generate` command: every batch, the JSON, one summary line
    (through `final`, default `log`). `plan`: CompileConfig keywords (budget, patterns, ...)."""
    import os

    from sparsecc.config import CompileConfig
    from sparsecc.targets import get_target

    from . import gpu, write_json
    if new_tokens < 1:
        raise ConfigError(f"--generate takes a positive number of tokens, got {new_tokens}")
    hf_model = language_model(loaded.model)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    run_dtype = dtype_name if cuda else "f32"
    if not cuda:
        log(f"no CUDA GPU: generating on the CPU in f32 (not {dtype_name}), eagerly")
    dtype = gpu.dtype_of(run_dtype) if cuda else torch.float32
    limit = getattr(hf_model.config, "max_position_embeddings", None)
    if limit and PROMPT_LEN + new_tokens > limit:
        raise ConfigError(f"--generate {new_tokens}: {PROMPT_LEN} prompt + {new_tokens} tokens "
                          f"exceed the model's {limit} positions")
    def document(cases: list[dict[str, Any]]) -> dict[str, Any]:
        return {"environment": gpu.environment(), "model": loaded.name,
                "target": get_target(target).name, "dtype": run_dtype,
                "requested_dtype": dtype_name, "device": device, "mode": "generate",
                "new_tokens": new_tokens, "prompt_len": PROMPT_LEN, "plan_file": plan_file,
                "budget": config.budget, "speedup_target": config.speedup,
                "reconstruct": config.reconstruct, "patterns": list(config.patterns),
                "reps": reps, "cases": cases}

    cases = []
    for batch in batches:
        config = CompileConfig(**{**plan, "target": target, "backend": "torch", "batch": batch,
                                  "seq": 1, "dtype": run_dtype})
        case, result = bench_case(hf_model, loaded.name, config, batch, new_tokens,
                                  plan_file=plan_file, dtype=dtype, device=device, reps=reps,
                                  log=log)
        cases.append(case)
        if out:     # after every case, so a run cut short keeps what finished
            write_json(document(cases), out)
        if report_dir:
            result.report["measured_generation"] = {
                k: case.get(k) for k in ("tokens_per_s", "speedup", "correctness")}
            result.save(os.path.join(report_dir, f"generate_b{batch}"), force=True)
    (final or log)(overall_line(loaded.name, device, run_dtype, new_tokens, cases))
    bad = [c for c in cases if not c["correctness"]["ok"]]
    if bad:
        raise SparseccError(f"compiled tokens differ from masked dense beyond rounding at "
                            f"batch {', '.join(str(c['batch']) for c in bad)} (see the JSON)")
    return 0
