"""ResNet with bottleneck blocks (ResNet-50 v1.5 layout) in plain torch.nn, torchvision module names.

    stem:       conv7x7/2 -> BN -> ReLU -> maxpool3x3/2
    bottleneck: y = ReLU(BN(conv1x1(ReLU(BN(conv3x3/s(ReLU(BN(conv1x1(x))))))))  + shortcut(x))
                shortcut = BN(conv1x1/s(x)) where the shape changes, else x
    head:       adaptive average pool -> flatten -> fc

Stage i has `blocks_per_stage[i]` bottlenecks with output width `expansion * stage_widths[i]` and
inner width (the 1x1 -> 3x3 -> 1x1 interior) `inner_widths[i]`, which defaults to `stage_widths[i]`.
`ResNetConfig.with_inner_width_scale(0.5)` is the copy with every bottleneck's inner width halved
(about 2.2x fewer MACs for ResNet-50), the shape a channel-pruning plan produces.

Weights are random and seeded: convolutions kaiming-normal (fan_out, as torchvision), and every
BatchNorm gets random affine parameters and running statistics (mean N(0, 0.1), variance
U(0.5, 1.5)), so eval-mode BN is not an identity and folding it is numerically visible. The last BN of
each residual branch has weight U(0.1, 0.3) to keep activations of deep stacks in range.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from .registry import ZooModel, register, reject_seq
from .seeding import construct_uninitialized, seeded_generator

CALIBRATION_BATCHES = 4


@dataclasses.dataclass(frozen=True)
class ResNetConfig:
    """Depth and widths of a bottleneck ResNet; `inner_widths` None means equal to `stage_widths`."""

    blocks_per_stage: tuple[int, ...] = (3, 4, 6, 3)
    stem_width: int = 64
    stage_widths: tuple[int, ...] = (64, 128, 256, 512)
    inner_widths: tuple[int, ...] | None = None
    expansion: int = 4
    num_classes: int = 1000
    image_size: int = 224

    def __post_init__(self) -> None:
        if len(self.blocks_per_stage) != len(self.stage_widths):
            raise ValueError("blocks_per_stage and stage_widths must have one entry per stage")
        if self.inner_widths is not None and len(self.inner_widths) != len(self.stage_widths):
            raise ValueError("inner_widths must have one entry per stage")
        sizes = (*self.blocks_per_stage, *self.stage_widths, *self.resolved_inner_widths)
        if min(sizes) < 1 or min(self.stem_width, self.expansion, self.num_classes) < 1:
            raise ValueError("block counts, widths, expansion and num_classes must be positive")

    @property
    def resolved_inner_widths(self) -> tuple[int, ...]:
        return self.stage_widths if self.inner_widths is None else self.inner_widths

    @property
    def output_widths(self) -> tuple[int, ...]:
        return tuple(self.expansion * width for width in self.stage_widths)

    def with_inner_width_scale(self, scale: float) -> ResNetConfig:
        """This config with every bottleneck's inner width multiplied by `scale` (rounded, >= 1)."""
        scaled = tuple(max(1, round(width * scale)) for width in self.resolved_inner_widths)
        return dataclasses.replace(self, inner_widths=scaled)


RESNET50 = ResNetConfig()
RESNET50_TINY = ResNetConfig(stem_width=16, stage_widths=(16, 32, 64, 128), image_size=64)
TINY_RESNET = ResNetConfig(
    blocks_per_stage=(1, 1, 1, 1), stem_width=8, stage_widths=(8, 16, 32, 64), num_classes=10,
    image_size=32,
)


class Bottleneck(nn.Module):
    """conv1x1 -> BN -> ReLU -> conv3x3/stride -> BN -> ReLU -> conv1x1 -> BN, + shortcut, ReLU."""

    def __init__(self, in_width: int, inner_width: int, out_width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_width, inner_width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner_width)
        self.conv2 = nn.Conv2d(inner_width, inner_width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(inner_width)
        self.conv3 = nn.Conv2d(inner_width, out_width, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_width)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or in_width != out_width:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_width, out_width, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_width),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


class ResNet(nn.Module):
    """Bottleneck ResNet: stem, `layer1`..`layerN` stages, average pool and `fc` classifier."""

    def __init__(self, config: ResNetConfig) -> None:
        super().__init__()
        self.config = config
        self.conv1 = nn.Conv2d(3, config.stem_width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(config.stem_width)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_width = config.stem_width
        stages = zip(config.blocks_per_stage, config.resolved_inner_widths, config.output_widths)
        for index, (blocks, inner_width, out_width) in enumerate(stages):
            first_stride = 1 if index == 0 else 2
            stage = nn.Sequential(
                *(
                    Bottleneck(
                        in_width if block == 0 else out_width,
                        inner_width,
                        out_width,
                        first_stride if block == 0 else 1,
                    )
                    for block in range(blocks)
                )
            )
            self.add_module(f"layer{index + 1}", stage)
            in_width = out_width
        self.stage_count = len(config.blocks_per_stage)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_width, config.num_classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(image))))
        for index in range(self.stage_count):
            x = getattr(self, f"layer{index + 1}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


@torch.no_grad()
def init_resnet(model: ResNet, generator: torch.Generator) -> ResNet:
    """Set every parameter and buffer (in `named_modules` order) and return the model in eval mode."""
    residual_branch_norms = {id(m.bn3) for m in model.modules() if isinstance(m, Bottleneck)}
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(
                module.weight, mode="fan_out", nonlinearity="relu", generator=generator
            )
        elif isinstance(module, nn.BatchNorm2d):
            low, high = (0.1, 0.3) if id(module) in residual_branch_norms else (0.5, 1.5)
            module.weight.uniform_(low, high, generator=generator)
            module.bias.normal_(0.0, 0.1, generator=generator)
            module.running_mean.normal_(0.0, 0.1, generator=generator)
            module.running_var.uniform_(0.5, 1.5, generator=generator)
            module.num_batches_tracked.zero_()
        elif isinstance(module, nn.Linear):
            module.weight.normal_(0.0, 0.01, generator=generator)
            module.bias.normal_(0.0, 0.01, generator=generator)
    return model.eval()


def build_resnet(config: ResNetConfig, seed: int = 0) -> ResNet:
    """A seeded `ResNet` in eval mode; same seed and config give the same weights."""
    model = construct_uninitialized(lambda: ResNet(config))
    return init_resnet(model, seeded_generator(seed, "weights"))


def _vision_zoo_model(
    name: str, description: str, config: ResNetConfig, batch: int, seed: int
) -> ZooModel:
    """Random N(0, 1) images (standing in for normalized photographs) as inputs and calibration."""
    shape = (batch, 3, config.image_size, config.image_size)
    inputs = seeded_generator(seed, "inputs")
    calibration = seeded_generator(seed, "calibration")
    return ZooModel(
        name=name,
        description=description,
        model=build_resnet(config, seed),
        example_inputs=(torch.randn(shape, generator=inputs),),
        input_names=("image",),
        dynamic_dims={"image": {0: "batch"}},
        calibration=tuple(
            (torch.randn(shape, generator=calibration),) for _ in range(CALIBRATION_BATCHES)
        ),
        workload={"kind": "vision", "batch": batch, "seq": None},
    )


@register("resnet50")
def build_resnet50(*, tiny: bool, batch: int | None, seq: int | None, seed: int) -> ZooModel:
    """ResNet-50 at 224x224, 1000 classes, default batch 1; tiny: same depth, widths / 4, 64x64."""
    reject_seq("resnet50", seq)
    config = RESNET50_TINY if tiny else RESNET50
    description = "ResNet-50 (bottleneck [3, 4, 6, 3], 1000 classes), random weights"
    if tiny:
        description = "ResNet-50 depth with a quarter of the widths at 64x64, random weights"
    return _vision_zoo_model("resnet50", description, config, batch or 1, seed)


@register("tiny-resnet")
def build_tiny_resnet(*, tiny: bool, batch: int | None, seq: int | None, seed: int) -> ZooModel:
    """Bottleneck ResNet [1, 1, 1, 1], base width 8, 10 classes, 32x32, default batch 2."""
    reject_seq("tiny-resnet", seq)
    description = "bottleneck ResNet [1, 1, 1, 1], base width 8, 10 classes at 32x32, random weights"
    return _vision_zoo_model("tiny-resnet", description, TINY_RESNET, batch or 2, seed)
