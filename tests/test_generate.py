"""Generation with a static KV cache (models/generation.py, benchmarks/generate.py): the decoder
step equals the HF model's own logits and greedy tokens; the compiled step (dense, 2:4, channel
plans) generates the masked dense model's tokens; its cache update runs in place; and
`sparsecc bench --generate` runs on the CPU and writes its JSON."""
from __future__ import annotations

import json

import pytest
import torch
import transformers

import sparsecc
from sparsecc.backends.torch.artifact import SparseModule, dense_module, inplace_updates
from sparsecc.benchmarks.generate import state_caches
from sparsecc.cli import main
from sparsecc.ir import run
from sparsecc.models.generation import (EagerStepper, cache_names, decoder_step, generate,
                                        step_dynamic_dims, step_inputs)

V, MAX_LEN = 96, 32
SIZES = dict(vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
FAMILIES = {"llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
            "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM),
            "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM)}
PLANS = {"dense": {".*": "dense"}, "2:4": {".*": "2:4"}, "channel": {r".*mlp\..*": "channel0.5"},
         "heads": {r".*self_attn\..*": "channel0.5"}}


def _hf(family: str = "llama", attn: str = "sdpa") -> torch.nn.Module:
    config_cls, model_cls = FAMILIES[family]
    torch.manual_seed(0)
    return model_cls(config_cls(**SIZES, attn_implementation=attn)).eval()


def _prompt(batch: int = 2, length: int = 5) -> torch.Tensor:
    return torch.randint(0, V, (batch, length), generator=torch.Generator().manual_seed(1))


def _compile(hf, plan: str = "dense", batch: int = 2, reconstruct: bool = False):
    step = decoder_step(hf)
    gen = torch.Generator().manual_seed(2)
    cfg = sparsecc.CompileConfig(target="h200", backend="torch", dtype="f32",
                                 reconstruct=reconstruct, overrides=PLANS[plan])
    return sparsecc.compile(step, step_inputs(step, batch, MAX_LEN, gen, position=0), cfg,
                            dynamic_dims=step_dynamic_dims(step), name="step",
                            calibration=[step_inputs(step, 8, MAX_LEN, gen, filled=True)
                                         for _ in range(2)])


def _tokens(module, step, prompt, new_tokens=8, graph=None):
    caches = step.new_caches(prompt.shape[0], MAX_LEN) if graph is None \
        else state_caches(graph, prompt.shape[0])
    return generate(EagerStepper(module, caches), prompt, new_tokens).tokens


@pytest.mark.parametrize("family, attn", [("llama", "sdpa"), ("llama", "eager"),
                                          ("mistral", "sdpa"), ("qwen2", "sdpa")])
@pytest.mark.parametrize("inplace", [False, True])
def test_step_with_cache_equals_the_models_logits_and_greedy_tokens(family, attn, inplace):
    hf, prompt = _hf(family, attn), _prompt()
    step = decoder_step(hf, inplace=inplace)
    caches = step.new_caches(2, MAX_LEN)
    with torch.no_grad():
        full = hf(prompt).logits
        for p in range(prompt.shape[1]):      # one token per step == the full sequence at once
            out = step(prompt[:, p:p + 1], torch.tensor([p]), *caches)
            torch.testing.assert_close(out[0][:, 0], full[:, p], atol=1e-5, rtol=1e-5)
            assert all((o is c) == inplace for o, c in zip(out[1:], caches))
            caches = out[1:]
        want = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=8,
                           do_sample=False, pad_token_id=0)[:, prompt.shape[1]:]
    assert torch.equal(_tokens(step, step, prompt), want)
    assert [n for n in step_dynamic_dims(step)][1:] == list(cache_names(2))


@pytest.mark.parametrize("plan", sorted(PLANS))
def test_compiled_step_generates_the_masked_dense_models_tokens(plan):
    hf, prompt = _hf(), _prompt(batch=3)        # compiled at batch 2, run at batch 3
    r = _compile(hf, plan)
    chosen = {d.chosen for d in r.plan.decisions}
    assert chosen == {"dense"} if plan == "dense" else chosen != {"dense"}
    step = decoder_step(hf)
    masked = _tokens(dense_module(r.ir), step, prompt, graph=r.ir)
    assert torch.equal(_tokens(r.module, step, prompt, graph=r.ir), masked)
    interpreted = _tokens(lambda *a: run(r.ir, a), step, prompt, graph=r.ir)  # the IR, functionally
    assert torch.equal(interpreted, masked)
    kv_heads = {c.shape[1] for c in state_caches(r.ir, 1)}
    assert kv_heads == ({SIZES["num_key_value_heads"] // 2} if plan == "heads"
                        else {SIZES["num_key_value_heads"]})
    if plan == "heads":     # the same tokens as the HF model with those heads' weights zeroed
        zeroed = _zero_removed_heads(hf, r.ir)
        assert torch.equal(_tokens(decoder_step(zeroed, inplace=True), step, prompt), masked)
    if plan == "dense":
        assert torch.equal(masked, _tokens(decoder_step(hf, inplace=True), step, prompt))
    if plan == "2:4":
        assert r.module.sparse and all(s.pattern == "2:4" for s in r.module.sparse.values())


def test_a_step_without_some_kv_heads_reconstructs_on_its_smaller_cache():
    """Reconstruct runs the shrunk step on calibration caches cut to its kept heads, refits
    o_proj, and the result still generates what its masked dense graph generates."""
    hf, prompt = _hf(), _prompt(batch=3)
    r = _compile(hf, "heads", reconstruct=True)
    refit = r.ir.analyses["reconstruction"]
    assert any(name.endswith("o_proj") for name in refit)
    step = decoder_step(hf)
    masked = _tokens(dense_module(r.ir), step, prompt, graph=r.ir)
    assert torch.equal(_tokens(r.module, step, prompt, graph=r.ir), masked)


def _zero_removed_heads(hf, ir):
    """A copy of `hf` whose removed KV heads (and their query heads) are zeroed: q/k/v rows
    and o_proj columns of the heads the compiled graph no longer has."""
    import copy
    model = copy.deepcopy(hf)
    d = SIZES["hidden_size"] // SIZES["num_attention_heads"]
    rep = SIZES["num_attention_heads"] // SIZES["num_key_value_heads"]
    for i, layer in enumerate(model.model.layers):
        k = ir.params[f"model.model.layers.{i}.self_attn.k_proj.weight"]
        full = layer.self_attn.k_proj.weight
        kept = [h for h in range(SIZES["num_key_value_heads"])
                if any(torch.equal(full[h * d:(h + 1) * d], k[j * d:(j + 1) * d])
                       for j in range(k.shape[0] // d))]
        with torch.no_grad():
            for h in set(range(SIZES["num_key_value_heads"])) - set(kept):
                for proj in (layer.self_attn.k_proj, layer.self_attn.v_proj):
                    proj.weight[h * d:(h + 1) * d] = 0
                q = slice(h * rep * d, (h + 1) * rep * d)
                layer.self_attn.q_proj.weight[q] = 0
                layer.self_attn.o_proj.weight[:, q] = 0
    return model


def test_the_compiled_cache_update_runs_in_place():
    r = _compile(_hf())
    updates = [n for n in r.ir.nodes if n.op == "index_copy"]
    assert len(updates) == 4 and inplace_updates(r.ir) == {n.outputs[0] for n in updates}
    for module in (r.module, dense_module(r.ir)):
        step = decoder_step(_hf())
        ids, pos, *caches = step_inputs(step, 2, MAX_LEN, torch.Generator(), position=7)
        before = [c.clone() for c in caches]
        with torch.no_grad():
            out = module(ids, pos, *caches)
        for o, c, b in zip(out[1:], caches, before):
            assert o.data_ptr() == c.data_ptr()                 # no new cache tensor
            assert c[:, :, 7].abs().sum() > 0 and torch.equal(c[:, :, :7], b[:, :, :7])
        calls = [n.target for n in module.gm.graph.nodes if n.op == "call_function"]
        assert calls.count(torch.ops.aten.index_copy_.default) == 4
        assert torch.ops.aten.index_copy.default not in calls


class _ReadsTheCacheToo(torch.nn.Module):
    def forward(self, x, cache, pos):
        return cache.index_copy(1, pos, x), cache.sum(dim=1)


class _UpdateNotReturned(torch.nn.Module):
    def forward(self, x, cache, pos):
        return cache.index_copy(1, pos, x).sum(dim=1)


@pytest.mark.parametrize("model", [_ReadsTheCacheToo(), _UpdateNotReturned()])
def test_an_update_whose_old_state_is_still_read_stays_functional(model):
    x, cache, pos = torch.ones(2, 1, 4), torch.zeros(2, 6, 4), torch.tensor([3])
    r = sparsecc.compile(model, (x, cache, pos),
                         sparsecc.CompileConfig(target="h200", backend="torch", dtype="f32"))
    assert inplace_updates(r.ir) == frozenset()
    got = r.module(x, cache, pos)
    assert torch.equal(cache, torch.zeros(2, 6, 4))          # the caller's tensor is untouched
    want = model(x, torch.zeros(2, 6, 4), pos)
    for a, b in zip(got if isinstance(got, tuple) else (got,),
                    want if isinstance(want, tuple) else (want,)):
        torch.testing.assert_close(a, b)
    assert isinstance(r.module, SparseModule)


def test_cli_bench_generate_runs_on_the_cpu_and_writes_json(tmp_path, capsys):
    out = tmp_path / "gen.json"
    assert main(["bench", "tinyllama-1.1b-shape", "--tiny", "--target", "h200", "--batch", "2",
                 "--generate", "3", "--reps", "1", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["mode"] == "generate" and doc["new_tokens"] == 3 and "torch" in doc["environment"]
    assert [c["batch"] for c in doc["cases"]] == [2]
    for case in doc["cases"]:      # f32 on the CPU: identical; on a GPU, within rounding
        assert case["correctness"]["ok"]
        assert case["correctness"]["tokens_identical"] or doc["device"] == "cuda"
        assert case["cache_in_place"] is True
        assert set(case["tokens_per_s"]) >= {"dense", "compiled"}
        assert all(v > 0 for v in case["tokens_per_s"].values())
        assert case["tokens_match_masked_dense"]["compiled"] == 1.0
    lines = capsys.readouterr().out.splitlines()
    assert any("batch 2: 3 tokens" in ln and "tokens/s dense" in ln for ln in lines)
    assert lines[-1].startswith("generate tinyllama-1.1b-shape (")


BENCH = ["bench", "tinyllama-1.1b-shape", "--tiny", "--target", "h200", "--batch", "1"]


def test_cli_bench_generate_refuses_bad_options_in_one_line(capsys):
    assert main(BENCH + ["--generate", "2", "--seq", "8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--seq does not apply with --generate" in err[0]
    with pytest.raises(SystemExit) as e:
        main(BENCH + ["--generate", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "0 is not positive" in err[0]


def test_generate_refuses_a_model_that_is_not_a_language_model(capsys):
    rc = main(["bench", "mnist-cnn", "--tiny", "--target", "h200", "--batch", "1",
               "--generate", "2"])
    assert rc == 2 and "--generate needs a decoder language model" in capsys.readouterr().err


def test_zoo_tinyllama_is_the_hf_models_forward():
    z = sparsecc.models.get("tinyllama-1.1b-shape", tiny=True)
    hf = z.model.model
    assert isinstance(hf, transformers.LlamaForCausalLM) and not hf.training
    with torch.no_grad():
        assert torch.equal(z.model(*z.example_inputs), hf(*z.example_inputs).logits)
    assert z.example_inputs[0].shape == (1, 16) and z.workload["kind"] == "prefill"


@pytest.mark.slow
def test_zoo_tinyllama_full_has_tinyllamas_shape():
    hf = sparsecc.models.get("tinyllama-1.1b-shape").model.model
    c = hf.config
    assert (c.num_hidden_layers, c.hidden_size, c.intermediate_size, c.num_attention_heads,
            c.num_key_value_heads, c.vocab_size) == (22, 2048, 5632, 32, 4, 32000)
    assert 1.09e9 < sum(p.numel() for p in hf.parameters()) < 1.11e9
