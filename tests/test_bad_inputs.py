"""Bad input, as a hostile or careless user gives it: every case exits 2 with one line naming
the file, layer or option and the reason, prints no traceback, leaves no --out and no stray
temporary directory, and the payload cases run nothing.

Each case is (name, argv builder, words the line must contain). Builders get a `Files` helper
that writes the inputs a case needs into the test's folder.
"""
import os
import sys
import textwrap

import onnx
import pytest
from onnx import TensorProto, helper

from sparsecc.cli import main

USER_MODELS = textwrap.dedent("""
    import torch
    import torch.nn as nn

    class Mlp(nn.Module):
        def __init__(self):
            super().__init__()
            self.up = nn.Linear(16, 32)
            self.down = nn.Linear(32, 16)

        def forward(self, x):
            return self.down(torch.relu(self.up(x)))

    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(64, 32)
            self.head = nn.Linear(32, 64, bias=False)
            self.head.weight = self.emb.weight

        def forward(self, ids):
            return self.head(torch.relu(self.emb(ids)))

    class IntLinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x):
            return self.fc(x.to(torch.float32)) if False else torch.nn.functional.linear(
                x, self.fc.weight.to(torch.int64))

    def mlp():
        return Mlp().eval(), (torch.randn(4, 16),)

    def tied():
        return Tied().eval(), (torch.randint(0, 64, (2, 5)),)

    def int_linear():
        return IntLinear().eval(), (torch.randint(0, 5, (2, 8)),)

    def wrong_arity():
        return Mlp().eval(), (torch.randn(4, 16), torch.randn(4, 16))

    def raises():
        raise RuntimeError("boom")
""")


class Files:
    def __init__(self, root):
        self.root = root

    def path(self, name):
        return str(self.root / name)

    def text(self, name, content):
        p = self.root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
        return str(p)

    def bytes(self, name, content):
        p = self.root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
        return str(p)

    def models(self):
        return self.text("user_models.py", USER_MODELS)

    def nested(self, name, depth=100_000):
        return self.text(name, "[" * depth + "]" * depth)

    def onnx(self, name, dims, payload_dim=None):
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                          [payload_dim or dims[0], *dims[1:]])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                          [payload_dim or dims[0], *dims[1:]])
        g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        p = self.root / name
        onnx.save(m, str(p))
        return str(p)

    def huge(self, name, size=70 << 20):
        p = self.root / name
        with open(p, "wb") as f:
            f.truncate(size)
        return str(p)

    def dir(self, name, with_file=None):
        d = self.root / name
        d.mkdir(parents=True, exist_ok=True)
        if with_file:
            (d / with_file).write_text("keep me\n")
        return str(d)


def compile_(model, *extra, out="out"):
    return lambda f: ["compile", model(f) if callable(model) else model, "--target", "h100",
                      "--tiny", *(["--out", f.path(out)] if out else []), *extra]


def mlp(f):
    return f"{f.models()}:mlp"


PAYLOAD = "__import__('os').system('touch PWNED')"

CASES = [
    # the model
    ("unknown zoo model", compile_("no-such-model"), ["no-such-model"]),
    ("py file without factory", lambda f: ["compile", f.models(), "--target", "h100", "--out",
                                            f.path("out")], ["factory"]),
    ("missing py file", compile_(lambda f: f.path("nope.py") + ":mlp"), ["nope.py"]),
    ("missing factory", compile_(lambda f: f.models() + ":nope"), ["nope"]),
    ("factory raises", compile_(lambda f: f.models() + ":raises"), ["boom"]),
    ("factory inputs of the wrong arity", compile_(lambda f: f.models() + ":wrong_arity"),
     ["wrong_arity"]),
    ("int64 input to a Linear", compile_(lambda f: f.models() + ":int_linear"), ["%x", "i64"]),
    ("missing onnx file", compile_(lambda f: f.path("nope.onnx")), ["nope.onnx"]),
    ("garbage onnx file", compile_(lambda f: f.bytes("bad.onnx", b"\x00\xffgarbage" * 10)),
     ["bad.onnx"]),
    ("empty onnx file", compile_(lambda f: f.bytes("empty.onnx", b"")), ["empty.onnx"]),
    ("onnx input of 128 TB", compile_(lambda f: f.onnx("big.onnx", [10 ** 12, 32])),
     ["%x", "GB"]),
    ("tied weight in a plan file", lambda f: [
        "compile", f.models() + ":tied", "--target", "h100", "--out", f.path("out"),
        "--plan", f.text("tied.json", '{"layers": {"head": "channel0.5"}}')],
     ["head", "shared"]),
    ("tied weight 2:4 in a plan file", lambda f: [
        "compile", f.models() + ":tied", "--target", "h100", "--out", f.path("out"),
        "--plan", f.text("tied24.json", '{"layers": {"head": "2:4"}}')],
     ["head", "shared"]),
    # numeric options
    ("budget nan", compile_(mlp, "--budget", "nan"), ["budget"]),
    ("budget inf", compile_(mlp, "--budget", "inf"), ["budget"]),
    ("budget negative", compile_(mlp, "--budget", "-1"), ["budget"]),
    ("budget not a number", compile_(mlp, "--budget", "lots"), ["--budget"]),
    ("speedup below 1", compile_(mlp, "--speedup", "0.5"), ["speedup"]),
    ("speedup nan", compile_(mlp, "--speedup", "nan"), ["speedup"]),
    ("speedup huge", compile_(mlp, "--speedup", "1e9"), ["speedup"]),
    ("batch zero", compile_(mlp, "--batch", "0"), ["batch"]),
    ("batch negative", compile_(mlp, "--batch", "-3"), ["batch"]),
    ("batch astronomical", compile_(mlp, "--batch", "1" + "0" * 30), ["batch"]),
    ("batch not an integer", compile_(mlp, "--batch", "2.5"), ["--batch"]),
    ("seq zero", compile_(mlp, "--batch", "1", "--seq", "0"), ["seq"]),
    ("min-gain negative", compile_(mlp, "--min-gain", "-1"), ["min_gain"]),
    ("min-gain nan", compile_(mlp, "--min-gain", "nan"), ["min_gain"]),
    # patterns, targets, backends
    ("patterns empty", compile_(mlp, "--patterns", ""), ["--patterns"]),
    ("patterns only commas", compile_(mlp, "--patterns", ",,"), ["--patterns"]),
    ("pattern unknown", compile_(mlp, "--patterns", "foo"), ["foo"]),
    ("pattern n > m", compile_(mlp, "--patterns", "3:2"), ["3:2"]),
    ("pattern zero block", compile_(mlp, "--patterns", "block0x0@0.5"), ["block0x0"]),
    ("channel ratio over 1", compile_(mlp, "--patterns", "channel1.5"), ["channel1.5"]),
    ("unknown target", lambda f: ["compile", mlp(f), "--target", "nosuch", "--out",
                                  f.path("out")], ["nosuch", "auto"]),
    ("unknown backend", compile_(mlp, "--backend", "tensorrt"), ["tensorrt"]),
    ("backend the target lacks", lambda f: ["compile", mlp(f), "--target", "tpu-v4",
                                            "--backend", "tvm", "--out", f.path("out")],
     ["tvm", "tpu-v4"]),
    # plan files
    ("plan file missing", compile_(mlp, "--plan", "/nonexistent/plan.json"), ["plan.json"]),
    ("plan file binary", lambda f: compile_(mlp, "--plan", f.bytes("b.json", b"\xff\xfe\x00"))(f),
     ["b.json", "not text"]),
    ("plan file not JSON", lambda f: compile_(mlp, "--plan", f.text("n.json", "{nope"))(f),
     ["n.json", "JSON"]),
    ("plan file nested deeply", lambda f: compile_(mlp, "--plan", f.nested("d.json"))(f),
     ["d.json", "nested"]),
    ("plan file a list", lambda f: compile_(mlp, "--plan", f.text("l.json", "[1, 2]"))(f),
     ["l.json", "layers"]),
    ("plan file unknown layer", lambda f: compile_(
        mlp, "--plan", f.text("u.json", '{"layers": {"nope": "2:4"}}'))(f), ["u.json", "nope"]),
    ("plan file bad pattern", lambda f: compile_(
        mlp, "--plan", f.text("p.json", '{"layers": {"up": "9:4"}}'))(f), ["p.json", "up"]),
    ("plan pattern the backend can't run", lambda f: compile_(
        mlp, "--backend", "onnx", "--plan", f.text("o.json", '{"layers": {"up": "2:4"}}'))(f),
     ["up", "ONNX Runtime"]),
    ("plan pattern that does not fit", lambda f: compile_(
        mlp, "--plan", f.text("k.json", '{"layers": {"up": "block64x64@0.5"}}'))(f),
     ["up", "block64x64"]),
    ("plan file is a folder", lambda f: compile_(mlp, "--plan", f.dir("pdir"))(f), ["pdir"]),
    ("plan file too big", lambda f: compile_(mlp, "--plan", f.huge("h.json"))(f),
     ["h.json", "limit"]),
    # --out and --dump-ir
    ("out is a file", lambda f: compile_(mlp, out=None)(f) + [
        "--out", f.text("afile", "x")], ["afile", "file"]),
    ("out below a file", lambda f: compile_(mlp, out=None)(f) + [
        "--out", f.text("f2", "x") + "/sub"], ["f2"]),
    ("out name too long", lambda f: compile_(mlp, out=None)(f) + [
        "--out", f.path("x" * 300)], ["too long"]),
    ("out exists without force", lambda f: compile_(mlp, out=None)(f) + [
        "--out", f.dir("existing")], ["existing", "--force"]),
    ("force onto the current directory", lambda f: compile_(mlp, out=None)(f) + [
        "--out", ".", "--force"], ["current directory"]),
    ("force onto the folder of the input", lambda f: compile_(mlp, out=None)(f) + [
        "--out", str(f.root), "--force"], ["input"]),
    ("force onto a non-sparsecc folder", lambda f: compile_(mlp, out=None)(f) + [
        "--out", f.dir("theirs", with_file="data.csv"), "--force"], ["not a sparsecc output"]),
    ("force onto a file", lambda f: compile_(mlp, out=None)(f) + [
        "--out", f.text("precious.txt", "x"), "--force"], ["precious.txt"]),
    ("dump-ir names a file", compile_(mlp, "--dump-ir", "/etc/hostname"), ["--dump-ir"]),
    ("dump-ir below a file", lambda f: compile_(mlp, "--dump-ir", f.text("f3", "x") + "/d")(f),
     ["--dump-ir", "f3"]),
    # other commands
    ("report without report.json", lambda f: ["report", f.dir("empty")], ["report.json"]),
    ("report binary", lambda f: ["report", f.dir("rb")] if f.bytes("rb/report.json",
                                                                     b"\xff\x00") else [],
     ["report.json", "not text"]),
    ("report nested deeply", lambda f: ["report", f.dir("rn")] if f.nested("rn/report.json")
     else [], ["report.json", "nested"]),
    ("report not an object", lambda f: ["report", f.dir("ro")] if f.text("ro/report.json",
                                                                         "[]") else [],
     ["report.json"]),
    ("report missing keys", lambda f: ["report", f.dir("rk")] if f.text("rk/report.json",
                                                                        "{}") else [],
     ["report.json", "missing"]),
    ("ir of a missing model", lambda f: ["ir", "no-such-model"], ["no-such-model"]),
    ("eval of a model without a task", lambda f: ["eval", "tiny-llama"], ["tiny-llama"]),
    ("calibrate a named target this machine is not", lambda f: [
        "calibrate", "--target", "tpu-v4", "--out", f.path("t.jsonl")], ["tpu-v4"]),
]


def _temps(folder):
    return [n for n in os.listdir(folder) if n.startswith(".sparsecc-")]


@pytest.mark.parametrize("name, argv, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(name, argv, words, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = Files(tmp_path)
    args = [str(a) for a in argv(files) if a is not None]
    before = set(os.listdir(tmp_path))
    try:
        code = main(args)
    except SystemExit as e:          # argparse
        code = e.code
    captured = capsys.readouterr()
    lines = [l for l in captured.err.strip().splitlines() if l.strip()]
    assert code == 2, (name, code, captured.err[-2000:])
    assert len(lines) == 1, (name, captured.err[-2000:])
    assert lines[0].startswith("sparsecc: error: "), lines[0]
    assert "Traceback" not in captured.err
    for w in words:
        assert w in lines[0], (name, w, lines[0])
    assert not (tmp_path / "out").exists()
    assert not _temps(tmp_path)
    assert not (tmp_path / "PWNED").exists()
    created = set(os.listdir(tmp_path)) - before
    assert not {c for c in created if c not in ("out",)} - {
        os.path.basename(a) for a in args}, created


@pytest.mark.parametrize("command", ["compile", "ir"])
def test_a_payload_in_an_onnx_dim_is_a_name_never_code(command, tmp_path, capsys, monkeypatch):
    # ONNX dim_params are free text; the importer keeps them as identifiers and never runs them
    monkeypatch.chdir(tmp_path)
    f = Files(tmp_path)
    model = f.onnx("p.onnx", [2, 4], payload_dim=PAYLOAD)
    argv = [command, model] + (["--target", "cpu-x86", "--out", f.path("o")]
                               if command == "compile" else [])
    assert main(argv) == 0
    assert not (tmp_path / "PWNED").exists()
    if command == "ir":
        assert "import___os_system_touch_PWNED" in capsys.readouterr().out


def test_there_are_at_least_sixty_cases():
    assert len(CASES) >= 60
