import pytest
import torch
import torch.nn as nn

from sparsecc.capture import capture
from sparsecc.errors import CaptureError, UnsupportedOpError


class Sorts(nn.Module):
    def forward(self, x):
        y = x * 2
        return torch.sort(y, dim=-1).values  # the op the IR does not have


class Branches(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.export can't trace it
            return x * 2
        return x


class FixedSeq(nn.Module):
    def __init__(self):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(8, 4))

    def forward(self, x):
        return x + self.pos  # forces seq == 8


class Dropper(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.fc(x))


def test_unsupported_op_names_op_node_and_source_line():
    with pytest.raises(UnsupportedOpError) as info:
        capture(Sorts(), [torch.randn(2, 5)])
    e = info.value
    assert e.op == "sort" and e.node == "sort"
    assert e.source is not None and "test_capture_errors.py" in e.source
    assert "torch.sort(y, dim=-1)" in e.source
    assert str(e).startswith("unsupported op sort (node sort)")


def test_untraceable_model_is_a_capture_error():
    with pytest.raises(CaptureError, match="torch.export could not trace Branches"):
        capture(Branches(), [torch.randn(3)])


def test_specialized_dynamic_dim_is_reported():
    with pytest.raises(CaptureError, match="specialized|could not trace"):
        capture(FixedSeq(), [torch.randn(2, 8, 4)], dynamic_dims={"x": {0: "batch", 1: "seq"}})


def test_unknown_dynamic_input_is_reported():
    with pytest.raises(CaptureError, match=r"inputs \['y'\]"):
        capture(Sorts(), [torch.randn(2, 5)], dynamic_dims={"y": {0: "batch"}})


def test_training_model_is_captured_in_eval_and_left_untouched():
    m = Dropper()
    assert m.training
    g = capture(m, [torch.randn(2, 4)])
    assert m.training, "capture switched the user's model to eval"
    drops = [n for n in g.nodes if "dropout" in n.op]
    assert all(n.attrs.get("train") is False for n in drops)
    assert g.params["fc.weight"].data_ptr() != m.fc.weight.data_ptr()


def test_eval_model_weights_are_held_by_reference():
    m = Dropper().eval()
    g = capture(m, [torch.randn(2, 4)])
    assert g.params["fc.weight"].data_ptr() == m.fc.weight.data_ptr()


def test_not_a_module():
    with pytest.raises(CaptureError, match="expected a torch.nn.Module"):
        capture(lambda x: x, [torch.randn(2)])
