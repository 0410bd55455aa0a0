"""Selection: never slower than dense, within the budget, optimal for its items; and on the
Llama-3-8B layer (slow) the H100 plans follow the workload."""
import dataclasses

import pytest
import torch
import torch.nn as nn

import sparsecc
from sparsecc import models
from sparsecc.capture import capture
from sparsecc.cost.analytic import Prediction
from sparsecc.patterns import Channel, Composite, Dense, NM, Block, parse_pattern
from sparsecc.passes.estimate_error import EstimateError
from sparsecc.passes.group_channels import GroupChannels
from sparsecc.passes.plan_layers import PlanLayers
from sparsecc.passes.predict_latency import PredictLatency
from sparsecc.passes.select_patterns import SelectPatterns
from sparsecc.pipeline import PassContext, Pipeline
from sparsecc.targets import get_target


@dataclasses.dataclass
class FakeCost:
    """Time = out * in * rows / 1000 µs; 2:4 and blocks scale it by fixed factors."""
    nm_factor: float = 0.6
    block_factor: float = 0.8

    def predict(self, shape, op, pattern, rows, dtype="f16"):
        p = parse_pattern(pattern)
        out, inp = shape[0], shape[1]
        if isinstance(p, (Channel, Composite)):
            ch = p if isinstance(p, Channel) else p.channel
            out = ch.kept_channels(out)
        base = out * inp * rows / 1000
        if isinstance(p, (NM, Composite)):
            base *= self.nm_factor
        if isinstance(p, Block):
            base *= self.block_factor
        return Prediction(base, "analytic")


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.Linear(32, 64)
        self.down = nn.Linear(64, 32)
        self.head = nn.Linear(32, 8)

    def forward(self, x):
        return self.head(self.down(torch.relu(self.up(x))) + x)


def select(config, cost=None):
    torch.manual_seed(0)   # the same weights in every call
    model = Mlp().eval()
    g = capture(model, [torch.randn(4, 32)], dynamic_dims={"x": {0: "batch"}})
    g.analyses["workload"] = {"batch": 64, "seq": None, "mode": "prefill"}
    ctx = PassContext(config=config, target=get_target(config.target),
                      cost_model=cost or FakeCost())
    p = Pipeline([PlanLayers(), GroupChannels(), EstimateError(), PredictLatency(),
                  SelectPatterns()])
    out = p.run(g, ctx)
    return out.analyses["plan"], p.records[-1].report


def errors_of(plan):
    total = 0.0
    for d in plan.decisions:
        c = d.candidate(d.chosen)
        if c is not None and c.error is not None:
            total += c.error
    return total


def test_zero_budget_is_all_dense():
    torch.manual_seed(0)
    plan, _ = select(sparsecc.CompileConfig(patterns=("2:4", "channel0.5"), budget=0.0))
    assert all(d.chosen == "dense" for d in plan.decisions)


def test_unlimited_budget_takes_the_fastest_and_never_a_slower_pattern():
    torch.manual_seed(0)
    plan, _ = select(sparsecc.CompileConfig(patterns=("2:4", "block16x16@0.5"), budget=100),
                     FakeCost(nm_factor=0.6, block_factor=1.3))
    chosen = {d.layer.name: d.chosen for d in plan.decisions}
    assert chosen == {"up": "2:4", "down": "2:4", "head": "2:4"}
    for d in plan.decisions:
        assert "block16x16@0.5 predicted 0.77x" not in d.reason or d.chosen != "block16x16@0.5"
    plan, _ = select(sparsecc.CompileConfig(patterns=("2:4",), budget=100),
                     FakeCost(nm_factor=1.2))
    assert all(d.chosen == "dense" and "not faster" in d.reason for d in plan.decisions)


def test_budget_is_respected_and_used_well():
    torch.manual_seed(0)
    loose, _ = select(sparsecc.CompileConfig(patterns=("2:4", "channel0.5"), budget=100))
    errs = sorted(c.error for d in loose.decisions for c in d.candidates
                  if c.pattern == "2:4" and c.error is not None)
    budget = errs[0] * 1.01   # room for exactly one 2:4 layer
    plan, _ = select(sparsecc.CompileConfig(patterns=("2:4",), budget=budget))
    assert errors_of(plan) <= budget
    sparse = [d for d in plan.decisions if d.chosen != "dense"]
    assert len(sparse) == 1
    # the one it took saves the most time among those that fit
    assert sparse[0].layer.name in ("up", "down")


def test_channel_group_choice_covers_producers_and_consumers():
    torch.manual_seed(0)
    plan, report = select(sparsecc.CompileConfig(patterns=("channel0.5",), budget=100))
    chosen = {d.layer.name: d.chosen for d in plan.decisions}
    assert chosen["up"] == "channel0.5"             # producer of the 64-wide group
    assert "inputs shrink" in plan["down"].reason    # its consumer
    assert chosen["head"] == "dense"                 # the residual stream is a graph output


def test_speedup_mode_reaches_the_target_at_least_error():
    torch.manual_seed(0)
    plan, _ = select(sparsecc.CompileConfig(patterns=("2:4", "channel0.5"), speedup=1.2))
    dense = sum(d.candidate("dense").predicted_us for d in plan.decisions)
    chosen = sum(d.predicted_us for d in plan.decisions)
    assert dense / chosen >= 1.2 * 0.99
    with pytest.raises(sparsecc.ConfigError, match="no plan reaches"):
        select(sparsecc.CompileConfig(patterns=("2:4",), speedup=50))


def test_forced_layers_are_kept_even_past_the_budget():
    torch.manual_seed(0)
    plan, report = select(sparsecc.CompileConfig(patterns=("2:4",), budget=0.0,
                                                 overrides={"down": "2:4"}))
    assert plan["down"].chosen == "2:4" and plan["down"].forced
    assert plan["up"].chosen == "dense" and report["fixed_error"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("target, batch, check", [
    ("h100", 4096, "mlp-sparse"), ("h100", 16, "no-nm"), ("tpu-v5e", 4096, "no-nm"),
    ("tpu-v5e", 16, "no-nm")])
def test_llama3_layer_plans_follow_the_workload(target, batch, check):
    z = models.get("llama3-8b-layer")
    config = sparsecc.CompileConfig(target=target, budget=1.0, batch=batch, seq=1)
    result = sparsecc.compile(z.model, z.example_inputs, config, dynamic_dims=z.dynamic_dims)
    chosen = {d.layer.name: d.chosen for d in result.plan.decisions}
    if check == "mlp-sparse":
        for name in ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"):
            assert "2:4" in chosen[name] or "channel" in chosen[name], chosen
    else:
        assert not any(":" in c for c in chosen.values()), chosen


def test_a_plan_whose_whole_model_gain_is_inside_the_noise_is_not_applied():
    # tiny-resnet at batch 1 on the H200 table: the best plan within budget saves ~0.5% of
    # the whole model (measured there: 0.98-1.00x against torch.compile); below min_gain
    # every selected layer stays dense and says why, forced layers excepted
    import sparsecc
    from sparsecc import models
    z = models.get("tiny-resnet", tiny=True)

    def plan(**kw):
        cfg = sparsecc.CompileConfig(target="h200", budget=1, batch=1, **kw)
        return sparsecc.compile(z.model, z.example_inputs, cfg, dynamic_dims=z.dynamic_dims,
                                workload=z.workload, calibration=z.calibration)
    free = plan(min_gain=0.0)
    assert any(d.chosen != "dense" for d in free.plan.decisions)
    assert free.report["whole_model"]["speedup"] < 1.02
    guarded = plan()
    assert all(d.chosen == "dense" and "min_gain" in d.reason for d in guarded.plan.decisions)
    assert guarded.report["whole_model"]["speedup"] == 1.0
    forced = plan(overrides={"layer1.0.conv1": "channel0.5"})
    assert forced.plan["layer1.0.conv1"].chosen == "channel0.5"
