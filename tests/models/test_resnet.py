"""Tests of models/resnet.py: torchvision-compatible layout, inner-width scaling, eval-mode BN."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from sparsecc.models import get
from sparsecc.models.resnet import RESNET50, TINY_RESNET, ResNetConfig, build_resnet

TORCHVISION_RESNET50_PARAMETERS = 25_557_032


def conv_macs(model: torch.nn.Module, image_size: int) -> int:
    """Multiply-accumulates of every Conv2d and Linear for one image, measured with forward hooks."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        total += output[0].numel() * module.weight[0].numel()

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(1, 3, image_size, image_size))
    for hook in hooks:
        hook.remove()
    return total


def test_resnet50_has_torchvision_parameter_count_and_names():
    model = build_resnet(RESNET50)
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_RESNET50_PARAMETERS
    module_names = dict(model.named_modules())
    for name in ("conv1", "bn1", "maxpool", "layer1.0.conv1", "layer1.0.downsample.0",
                 "layer1.0.downsample.1", "layer2.3.conv2", "layer3.5.bn3", "layer4.2.conv3",
                 "avgpool", "fc"):
        assert name in module_names
    assert module_names["layer2.0.conv2"].stride == (2, 2)  # v1.5: stride on the 3x3
    assert module_names["layer2.0.conv1"].stride == (1, 1)
    assert "layer1.1.downsample" not in module_names


def test_halving_inner_widths_keeps_outputs_and_cuts_macs():
    halved = RESNET50.with_inner_width_scale(0.5)
    assert halved.inner_widths == (32, 64, 128, 256)
    assert halved.output_widths == RESNET50.output_widths
    full_model, halved_model = build_resnet(RESNET50), build_resnet(halved)
    block = halved_model.layer3[2]
    assert block.conv1.out_channels == 128 and block.conv2.out_channels == 128
    assert block.conv3.out_channels == 1024
    ratio = conv_macs(full_model, 64) / conv_macs(halved_model, 64)
    assert 2.0 < ratio < 2.5  # FACTS.md: 2.24x fewer MACs at 224x224


def test_config_validation():
    with pytest.raises(ValueError, match="one entry per stage"):
        ResNetConfig(blocks_per_stage=(1, 1), stage_widths=(8, 16, 32))
    with pytest.raises(ValueError, match="inner_widths"):
        dataclasses.replace(TINY_RESNET, inner_widths=(4, 4))


def test_batch_norm_is_not_an_identity_in_eval_mode():
    model = get("tiny-resnet").model
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 17
    for norm in norms:
        assert (norm.running_var > 0).all()
        assert not torch.allclose(norm.running_var, torch.ones_like(norm.running_var))
        assert not torch.allclose(norm.running_mean, torch.zeros_like(norm.running_mean))
        assert not torch.allclose(norm.weight, torch.ones_like(norm.weight))
        assert not torch.allclose(norm.bias, torch.zeros_like(norm.bias))
    x = torch.randn(2, 8, 5, 5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert not torch.allclose(norms[0](x), x, atol=1e-2)


def test_eval_outputs_do_not_depend_on_the_rest_of_the_batch():
    zoo_model = get("tiny-resnet", batch=4)
    images = zoo_model.example_inputs[0]
    with torch.no_grad():
        together = zoo_model.model(images)
        alone = zoo_model.model(images[2:3])
    torch.testing.assert_close(together[2:3], alone, atol=1e-5, rtol=1e-5)


def test_tiny_resnet50_keeps_resnet50_depth():
    model = get("resnet50", tiny=True).model
    assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    assert model.fc.out_features == 1000


@pytest.mark.slow
def test_full_resnet50_forward():
    zoo_model = get("resnet50")
    assert zoo_model.example_inputs[0].shape == (1, 3, 224, 224)
    with torch.no_grad():
        logits = zoo_model.model(*zoo_model.example_inputs)
    assert logits.shape == (1, 1000) and torch.isfinite(logits).all()
    assert logits.std() > 1e-3
