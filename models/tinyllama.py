"""A TinyLlama-1.1B-shaped Hugging Face `LlamaForCausalLM` with random weights.

Registered as `tinyllama-1.1b-shape`: TinyLlama-1.1B's config (22 layers, hidden 2048,
intermediate 5632, 32 heads, 4 KV heads, head dim 64, vocab 32000, untied LM head, rope theta
10000, RMSNorm eps 1e-5) built by transformers itself, SDPA attention. Weights are seeded:
linear and embedding weights N(0, 0.02) (HF's `initializer_range`), RMSNorm weights
N(1, 0.1) as in the rest of the zoo. `tiny=True` gives 2 layers, hidden 64, intermediate 176,
4 heads, 2 KV heads, vocab 256.

As a zoo model it is the forward over token ids [batch, seq] (dynamic) -> logits, no KV cache,
random token ids as inputs. `sparsecc bench tinyllama-1.1b-shape --generate N` runs the inner
HF model as a decoder step with a static KV cache (`generation.decoder_step`).
"""
from __future__ import annotations

import torch

from .registry import NeedsPackage, ZooModel, register
from .seeding import construct_uninitialized, seeded_generator

CALIBRATION_BATCHES = 4
NEEDS = (NeedsPackage("transformers", "'transformers>=4.45'", "loader"),)

TINYLLAMA_1B = dict(vocab_size=32000, hidden_size=2048, intermediate_size=5632,
                    num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4,
                    max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=10000.0,
                    tie_word_embeddings=False)
TINYLLAMA_TINY = dict(TINYLLAMA_1B, vocab_size=256, hidden_size=64, intermediate_size=176,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=256)


@torch.no_grad()
def build_hf_llama(config_kwargs: dict, seed: int) -> torch.nn.Module:
    """`transformers.LlamaForCausalLM` of that config, seeded weights, eval mode, float32."""
    import transformers
    config = transformers.LlamaConfig(**config_kwargs, attn_implementation="sdpa")
    model = construct_uninitialized(lambda: transformers.LlamaForCausalLM(config))
    gen = seeded_generator(seed, "weights")
    for module in model.modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
            module.weight.normal_(0.0, 0.02, generator=gen)
        elif type(module).__name__.endswith("RMSNorm"):
            module.weight.normal_(1.0, 0.1, generator=gen)
    # the rotary tables are computed, not drawn: build them again on the CPU
    rotary = model.model.rotary_emb
    model.model.rotary_emb = type(rotary)(config=config)
    return model.eval()


class CausalLMLogits(torch.nn.Module):
    """An HF causal LM's forward over token ids [batch, seq] -> logits [batch, seq, vocab],
    without a KV cache (the zoo's prefill form; `decoder_step(self.model)` is the cached one)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, use_cache=False).logits


@register("tinyllama-1.1b-shape", needs=NEEDS)
def build_tinyllama_shape(*, tiny: bool, batch: int | None, seq: int | None,
                          seed: int) -> ZooModel:
    """Token ids [batch, seq] -> logits; default batch 1, seq 128 (tiny: 16)."""
    config = TINYLLAMA_TINY if tiny else TINYLLAMA_1B
    batch, seq = batch or 1, seq or (16 if tiny else 128)
    if seq > config["max_position_embeddings"]:
        raise ValueError(f"tinyllama-1.1b-shape: seq {seq} exceeds "
                         f"{config['max_position_embeddings']} positions")
    vocab = config["vocab_size"]
    inputs = seeded_generator(seed, "inputs")
    calibration = seeded_generator(seed, "calibration")
    return ZooModel(
        name="tinyllama-1.1b-shape",
        description=(f"HF LlamaForCausalLM shaped like TinyLlama-1.1B "
                     f"({config['num_hidden_layers']} layers, hidden {config['hidden_size']}, "
                     f"{config['num_attention_heads']} heads, {config['num_key_value_heads']} "
                     f"KV heads), random weights"),
        model=CausalLMLogits(build_hf_llama(config, seed)).eval(),
        example_inputs=(torch.randint(0, vocab, (batch, seq), generator=inputs),),
        input_names=("input_ids",),
        dynamic_dims={"input_ids": {0: "batch", 1: "seq"}},
        calibration=tuple((torch.randint(0, vocab, (batch, seq), generator=calibration),)
                          for _ in range(CALIBRATION_BATCHES)),
        workload={"kind": "prefill", "batch": batch, "seq": seq},
    )
