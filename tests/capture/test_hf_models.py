"""Hugging Face models as their library builds them (tiny random configs), with dynamic batch
and seq: captured as loaded (the KV cache object is turned off), compiled with forced plans for
the torch and ONNX backends, and every artifact runs and equals the IR; the dense IR equals the
model."""
import numpy as np
import pytest
import torch

import sparsecc
from sparsecc.ir import run

transformers = pytest.importorskip("transformers")

V = 128


def _llama(tied):
    cfg = transformers.LlamaConfig(vocab_size=V, hidden_size=64, intermediate_size=128,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, max_position_embeddings=64,
                                   tie_word_embeddings=tied)
    return transformers.LlamaForCausalLM(cfg)


def _gpt2():
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=V, n_embd=64, n_layer=2, n_head=4, n_positions=64, bos_token_id=0,
        eos_token_id=0))


def _bert():
    return transformers.BertModel(transformers.BertConfig(
        vocab_size=V, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=64))


MODELS = {"llama-gqa": lambda: _llama(False), "llama-tied": lambda: _llama(True),
          "gpt2": _gpt2, "bert": _bert}
PLANS = {"dense": {}, "channel": {".*(mlp|intermediate|fc).*": "channel0.5"},
         "2:4": {".*": "2:4"}}


def _first(out):
    if isinstance(out, (tuple, list)):
        return out[0]
    return getattr(out, "logits", None) if hasattr(out, "logits") else \
        getattr(out, "last_hidden_state", out)


FAST = {("llama-gqa", "dense", "torch"), ("llama-gqa", "channel", "torch"),
        ("llama-gqa", "2:4", "torch"), ("llama-tied", "2:4", "torch"),
        ("gpt2", "dense", "onnx"), ("bert", "channel", "onnx")}
CASES = [pytest.param(n, p, b, marks=() if (n, p, b) in FAST else pytest.mark.slow)
         for n in sorted(MODELS) for p in sorted(PLANS) for b in ("torch", "onnx")]


@pytest.mark.parametrize("name, plan, backend", CASES)
def test_hf_model_compiles_as_loaded_and_runs(name, plan, backend):
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    ids = torch.randint(0, V, (2, 8))
    cfg = sparsecc.CompileConfig(target="h100", backend=backend, dtype="f32",
                                 reconstruct=False, overrides=PLANS[plan])
    r = sparsecc.compile(model, (ids,), cfg, dynamic_dims={"input_ids": {0: "batch", 1: "seq"}},
                         name=name)
    other = torch.randint(0, V, (3, 6))              # another batch and seq
    ref = run(r.ir, (other,))[0]
    if backend == "torch":
        with torch.no_grad():
            out = _first(r.module(other))
    else:
        out = torch.from_numpy(r.onnx_session("cpu").run(None, {r.ir.inputs[0]:
                                                               other.numpy()})[0])
    np.testing.assert_allclose(out.numpy(), ref.numpy(), atol=1e-4, rtol=1e-4)
    if plan == "dense" or all(d.chosen == "dense" for d in r.plan.decisions):
        with torch.no_grad():
            want = _first(model(other))
        np.testing.assert_allclose(ref.numpy(), want.numpy(), atol=1e-4, rtol=1e-4)
    # a weight shared by several readers (the tied LM head) is never patterned
    from sparsecc.plan import param_readers
    shared = set(param_readers(r.ir))
    assert all(d.chosen == "dense" for d in r.plan.decisions if d.layer.weight in shared)
    assert (name in ("llama-tied", "gpt2")) == bool(shared)   # GPT-2 ties its head too
