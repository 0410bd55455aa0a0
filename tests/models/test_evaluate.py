"""Evaluation tasks and `sparsecc eval` (mnist-cnn in CI; minilm's task is slow-marked)."""
import json
import re

import pytest
import torch

from sparsecc.cli import main
from sparsecc.models.evaluate import nearest_neighbour_accuracy, task


def test_nearest_neighbour_accuracy_leaves_each_item_out():
    e = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.6, 0.8]])
    assert nearest_neighbour_accuracy(e, ["a", "a", "b", "b", "a"]) == pytest.approx(4 / 5)
    assert nearest_neighbour_accuracy(e, ["a", "b", "a", "b", "a"]) == 0.0


def test_mnist_task_trains_a_real_classifier():
    t = task("mnist-cnn")
    acc = t.score_model(t.model)
    assert 0.85 < acc <= 1.0
    assert sum(b[0].shape[0] for b in t.batches) == 1000


def test_cli_eval_reports_dense_and_compiled_accuracy(tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["eval", "mnist-cnn", "--budget", "0.05", "--out", str(out),
                 "--report-dir", str(tmp_path / "rep")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("mnist-cnn: held-out digit accuracy: dense 0.")
    assert re.search(r"x \((\d+(\.\d)? s|\d+ min \d+ s)\)$", line)     # elapsed, last
    doc = json.loads(out.read_text())
    acc = doc["accuracy"]
    assert acc["dense"] > 0.85 and abs(acc["compiled"] - acc["dense"]) < 0.1
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["accuracy"] == acc
    assert "measured accuracy" in (tmp_path / "rep" / "report.html").read_text()


def test_cli_eval_without_a_task_is_one_clear_error(capsys):
    assert main(["eval", "resnet50"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sparsecc: error: no evaluation task for model 'resnet50'")
    assert len(err.splitlines()) == 1


@pytest.mark.slow
def test_minilm_task_dense_accuracy(require_weights):
    require_weights("minilm")
    t = task("minilm")
    assert len(t.batches) == 13
    assert t.score_model(t.model) == pytest.approx(0.5, abs=0.02)
