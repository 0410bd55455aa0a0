"""Reconstruction: refit kept weights to the calibration inputs; never worse than the mask."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

import sparsecc
from sparsecc import models
from sparsecc.config import CompileConfig
from sparsecc.errors import ConfigError
from sparsecc.passes.estimate_error import relative_output_error
from sparsecc.passes.reconstruct import reconstruct_weight, row_errors, solver_for
from sparsecc.patterns import parse_pattern


def _problem(seed, n, k, rows, correlated):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g)
    x = torch.randn(rows, k, generator=g)
    if correlated:
        x = x @ (torch.eye(k) + torch.randn(k, k, generator=g) / k ** 0.5)
    return w, (x.double().T @ x.double())


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**16), st.sampled_from([8, 16, 32]), st.sampled_from([16, 32, 64]),
       st.sampled_from([4, 64, 512]), st.booleans(),
       st.sampled_from(["2:4", "1:4", "block8x8@0.5", "block4x16@0.25"]),
       st.sampled_from(["exact", "obs"]))
def test_reconstruction_never_raises_the_error_proxy(seed, n, k, rows, correlated, pattern,
                                                     method):
    """Per row and in total, under the undamped H, whatever the solver; fewer rows than inputs
    (a singular H) included. Zeros stay where the mask put them."""
    w, h = _problem(seed, n, k, rows, correlated)
    mask = parse_pattern(pattern).mask(w, None).bool()
    fit, _ = reconstruct_weight(w, mask, h, method)
    assert not bool((fit[~mask] != 0).any())
    assert bool((row_errors(w, fit, h) <= row_errors(w, w * mask, h) + 1e-9).all())
    assert relative_output_error(w, fit, h) <= relative_output_error(w, w * mask, h) + 1e-12


@pytest.mark.parametrize("pattern", ["2:4", "block16x16@0.25"])
def test_exact_least_squares_is_optimal_for_each_row(pattern):
    """Against a direct solve of each row's normal equations (no damping, well-conditioned H)."""
    w, h = _problem(1, 32, 64, 4096, True)
    mask = parse_pattern(pattern).mask(w, None).bool()
    import sparsecc.passes.reconstruct as rc
    damp, rc.DAMP = rc.DAMP, 0.0
    try:
        fit, solver = reconstruct_weight(w, mask, h, "exact")
    finally:
        rc.DAMP = damp
    assert solver == "exact"
    for i in range(w.shape[0]):
        s = mask[i].nonzero().flatten()
        want = torch.linalg.solve(h[s][:, s], h[s] @ w[i].double())
        assert torch.allclose(fit[i, s].double(), want, rtol=1e-3, atol=1e-4)


def test_reconstruction_cuts_the_error_a_lot_on_correlated_inputs():
    w, h = _problem(2, 64, 128, 2048, True)
    mask = parse_pattern("2:4").mask(w, None).bool()
    for method in ("exact", "obs"):
        fit, _ = reconstruct_weight(w, mask, h, method)
        assert relative_output_error(w, fit, h) < 0.95 * relative_output_error(w, w * mask, h)


def test_solver_choice_follows_the_cost():
    small = parse_pattern("2:4").mask(torch.randn(16, 64), None).bool()
    assert solver_for(small) == "exact"
    big = torch.ones(4096, 14336, dtype=torch.bool)
    assert solver_for(big) == "obs"


def _compile(overrides, **kw):
    z = models.get("tiny-llama", tiny=True)
    config = CompileConfig(target="h100", overrides=overrides, **kw)
    return z, sparsecc.compile(z.model, z.example_inputs, config, dynamic_dims=z.dynamic_dims,
                               name="tiny-llama", calibration=z.calibration)


def test_the_pass_refits_every_sparse_linear_and_keeps_the_pattern():
    from sparsecc.backends.torch.semi24 import is_two_four
    z, plain = _compile({".*": "2:4"}, reconstruct=False)
    _, refit = _compile({".*": "2:4"})
    rec = refit.ir.analyses["reconstruction"]
    sparse = [n for n in refit.ir.nodes if n.attrs.get("sparsity") == "2:4"]
    assert sparse and len(rec) == len(sparse)
    for node in sparse:
        w = refit.ir.params[node.inputs[1]]
        assert is_two_four(w)
        assert torch.equal(w != 0, plain.ir.params[node.inputs[1]] != 0)   # same mask
    assert all(r["proxy_reconstructed"] <= r["proxy_masked"] + 1e-12 for r in rec.values())
    assert any("reconstructed" in d.reason for d in refit.plan.decisions)
    # and it changes the output towards the dense model's
    from sparsecc.ir import run
    x = z.calibration[0]
    with torch.no_grad():
        dense = z.model(*x)
    err = lambda r: float((run(r.ir, x)[0] - dense).norm() / dense.norm())  # noqa: E731
    assert err(refit) < err(plain)
    # the user's model is untouched
    assert not any(getattr(m, "weight", None) is not None and bool((m.weight == 0).any())
                   for m in z.model.modules() if isinstance(m, torch.nn.Linear))


def test_selection_errors_are_those_after_reconstruction():
    _, plain = _compile({}, reconstruct=False, budget=1.0)
    _, refit = _compile({}, budget=1.0)

    def errs(r):
        return {(d.layer.name, c.pattern): c.error for d in r.plan.decisions
                for c in d.candidates if c.pattern == "2:4" and c.error is not None}
    a, b = errs(plain), errs(refit)
    assert a and set(a) == set(b)
    assert all(b[k] <= a[k] + 1e-12 for k in a) and any(b[k] < a[k] for k in a)


def test_without_calibration_the_pass_says_so():
    z = models.get("tiny-llama", tiny=True)
    r = sparsecc.compile(z.model, z.example_inputs,
                         CompileConfig(target="h100", overrides={".*": "2:4"}),
                         dynamic_dims=z.dynamic_dims, name="tiny-llama")
    assert "reconstruct" in [p["name"] for p in r.report["passes"]]
    assert not r.ir.analyses.get("reconstruction")          # nothing refit: no inputs seen


def test_config_checks_importance_and_reconstruct():
    with pytest.raises(ConfigError, match="unknown importance 'random'"):
        CompileConfig(importance="random")
    with pytest.raises(ConfigError, match="reconstruct must be true or false"):
        CompileConfig(reconstruct="yes")


def test_channel_pruned_consumers_are_refit_by_least_squares():
    from sparsecc.ir import run
    overrides = {r".*mlp.*": "channel0.5", ".*": "dense"}
    z, plain = _compile(overrides, reconstruct=False)
    _, refit = _compile(overrides)
    rec = refit.ir.analyses["reconstruction"]
    downs = [n for n in rec if n.endswith("down_proj")]
    assert downs and all(rec[n]["solver"] == "consumer least squares" for n in downs)
    assert all(rec[n]["proxy_reconstructed"] <= rec[n]["proxy_masked"] for n in downs)
    for n in downs:     # same (shrunk) shapes, other values
        w = next(d.layer.weight for d in refit.plan.decisions if d.layer.name == n)
        assert refit.ir.params[w].shape == plain.ir.params[w].shape
    x = z.calibration[1]
    with torch.no_grad():
        dense = z.model(*x)
    err = lambda r: float((run(r.ir, x)[0] - dense).norm() / dense.norm())  # noqa: E731
    assert err(refit) < 0.5 * err(plain)
