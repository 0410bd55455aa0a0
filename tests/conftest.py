"""Shared test helpers.

`require_weights` (a fixture: call it with a zoo model's name) skips the test, with the registry's
one-line reason, when that model's optional weights package is absent on this machine. Every test
that builds a zoo model that may need weights calls it first; a test parametrized over every zoo
model calls it with its own name, so only the cases that can't be built are skipped.
"""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="session")
def _own_cache_dir(tmp_path_factory):
    """Tests never read or write the user's cache (built targets, tables, tuning): one empty
    cache folder for the session; tests that need their own set SPARSECC_CACHE_DIR again."""
    old = os.environ.get("SPARSECC_CACHE_DIR")
    os.environ["SPARSECC_CACHE_DIR"] = str(tmp_path_factory.mktemp("sparsecc-cache"))
    yield
    if old is None:
        os.environ.pop("SPARSECC_CACHE_DIR", None)
    else:
        os.environ["SPARSECC_CACHE_DIR"] = old


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """max |out - ref| / max |ref| (0 when both are zero)."""
    out, ref = out.detach().double(), ref.detach().double()
    assert out.shape == ref.shape, f"shape {tuple(out.shape)} != {tuple(ref.shape)}"
    scale = ref.abs().max().item()
    diff = (out - ref).abs().max().item() if out.numel() else 0.0
    return diff / scale if scale else diff


def resize_dynamic(z, min_size: int = 1):
    """A zoo model's example inputs with each dynamic dim resized (batch + 1, others - 3, at
    least `min_size`) by repeating rows: inputs of sizes the capture never saw."""
    sizes, out = {}, []
    for name, x in zip(z.input_names, z.example_inputs):
        for axis, dim in z.dynamic_dims.get(name, {}).items():
            n = x.shape[axis]
            new = sizes.setdefault(dim, n + 1 if "batch" in dim else max(min_size, n - 3))
            x = x.index_select(axis, torch.arange(new) % n)
        out.append(x)
    return out


def skip_without_weights(name: str) -> None:
    """`pytest.skip(reason)` when zoo model `name` can't be built here for want of its weights
    package (`sparsecc.models.weights_missing`); nothing when it can."""
    from sparsecc.models import weights_missing
    reason = weights_missing(name)
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def require_weights():
    return skip_without_weights


@pytest.fixture
def other_sizes():
    return resize_dynamic


@pytest.fixture
def assert_close():
    def check(outs, refs, tol: float) -> None:
        outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
        refs = list(refs) if isinstance(refs, (list, tuple)) else [refs]
        assert len(outs) == len(refs), f"{len(outs)} outputs vs {len(refs)} references"
        for i, (o, r) in enumerate(zip(outs, refs)):
            if r.dtype in (torch.bool, torch.int64, torch.int32):
                assert torch.equal(o, r), f"output {i} differs"
            else:
                e = rel_err(o, r)
                assert e <= tol, f"output {i}: relative error {e:.3g} > {tol}"
    return check


def _import_torchvision():
    """torchvision for the model-family tests, or None when it is not there.

    The README's test command installs torchvision==0.28.0 with `--target .venv/torchvision`,
    outside site-packages: PyPI's wheel is a CUDA build, and next to the CPU torch its C
    extension (NMS, RoIAlign, ...) can't load, so `import torchvision` fails — and, installed
    in site-packages, it would break every process that imports transformers, which imports
    torchvision whenever it finds it. Only the tests put that folder on sys.path. The
    classification models use none of the C ops: when the extension can't load, an empty
    module stands in for `torchvision._meta_registrations` (which registers fake kernels for
    those ops). Runs when this conftest is imported, before any test imports transformers.
    """
    import importlib
    import importlib.util
    import sys
    import types
    folder = os.path.join(sys.prefix, "torchvision")
    if os.path.isdir(folder) and folder not in sys.path:
        sys.path.append(folder)
    if importlib.util.find_spec("torchvision") is None:
        return None
    try:
        return importlib.import_module("torchvision")
    except RuntimeError as e:               # "operator torchvision::nms does not exist"
        if "torchvision::" not in str(e):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]               # the half-imported package, imported again below
    sys.modules["torchvision._meta_registrations"] = types.ModuleType(
        "torchvision._meta_registrations")
    return importlib.import_module("torchvision")


_TORCHVISION = _import_torchvision()


@pytest.fixture(scope="session")
def torchvision():
    """The torchvision package; the test is skipped, naming the dev extra, without it."""
    if _TORCHVISION is None:
        pytest.skip("torchvision is not installed: pip install --no-deps --target "
                    ".venv/torchvision torchvision==0.28.0 (the README's test command)")
    return _TORCHVISION


# The zoo's HF-built decoder runs its zoo contracts (tests/models) and its generation tests
# always; in the cross-product tests over every zoo model it adds minutes of compiles to CI,
# and HF Llama is covered there by tests/test_model_families.py: those cases run under -m slow.
SLOW_ZOO_MODELS = ("tinyllama-1.1b-shape",)
ALWAYS_FOR_SLOW_ZOO = ("tests/models/", "tests/test_generate.py")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(f"[{m}" in item.nodeid or f"-{m}" in item.nodeid for m in SLOW_ZOO_MODELS) \
                and not any(p in item.nodeid for p in ALWAYS_FOR_SLOW_ZOO):
            item.add_marker(pytest.mark.slow)
