"""Llama-style decoder language models in plain torch.nn, with Hugging Face module names.

A decoder layer computes, for hidden states x of shape [batch, seq, hidden]:

    h = x + o_proj(attention(rope(q_proj(n)), rope(k_proj(n)), v_proj(n))),   n = RMSNorm(x)
    y = h + down_proj(silu(gate_proj(m)) * up_proj(m)),                       m = RMSNorm(h)

Attention is causal grouped-query attention: `heads` query heads share `kv_heads` key/value heads,
each KV head repeated to its `heads / kv_heads` query heads (unsqueeze/expand/reshape) before
`scaled_dot_product_attention(is_causal=True)`. Rotary position embedding (RoPE) rotates each
(i, i + head_dim/2) pair of a head by the angle p * theta^(-2i/head_dim) at position p, using cos/sin
tables precomputed up to `max_seq` (non-persistent buffers, sliced to the sequence length).

Registered models:
- `tiny-llama`: embedding -> 2 layers -> RMSNorm -> lm_head over a 256-symbol byte vocabulary; inputs
  are UTF-8 bytes of CPython's help topics. Random (seeded) weights.
- `llama3-8b-layer`: one decoder layer shaped like Llama-3-8B's (hidden 4096, ffn 14336, 32 heads,
  8 KV heads, head dim 128, rope theta 500000) on random hidden states. Random (seeded) weights.
Linear and embedding weights are N(0, 0.02); RMSNorm weights are N(1, 0.1) so that the norms are
not identities and numerical tests see their scale.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from .pydoc_text import pydoc_bytes
from .registry import ZooModel, register
from .seeding import construct_uninitialized, seeded_generator

CALIBRATION_BATCHES = 4


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    """Sizes of a Llama-style decoder; `head_dim` is hidden / heads."""

    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    layers: int
    vocab: int
    max_seq: int
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        for field in ("hidden", "ffn", "heads", "kv_heads", "layers", "vocab", "max_seq"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be positive")
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} is not divisible by heads {self.heads}")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads {self.heads} is not divisible by kv_heads {self.kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim {self.head_dim} must be even for rotary embedding")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def queries_per_kv_head(self) -> int:
        return self.heads // self.kv_heads


TINY_LLAMA = LlamaConfig(hidden=64, ffn=176, heads=4, kv_heads=2, layers=2, vocab=256, max_seq=128)
LLAMA3_8B = LlamaConfig(
    hidden=4096, ffn=14336, heads=32, kv_heads=8, layers=32, vocab=128256, max_seq=8192,
    rope_theta=500000.0,
)
LLAMA3_8B_TINY = LlamaConfig(
    hidden=256, ffn=896, heads=8, kv_heads=2, layers=1, vocab=128256, max_seq=256,
    rope_theta=500000.0,
)


class RotaryEmbedding(nn.Module):
    """Precomputed RoPE tables `cos`, `sin` of shape [max_seq, head_dim] (filled by `init_llama`)."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.head_dim = config.head_dim
        self.theta = config.rope_theta
        self.register_buffer("cos", torch.empty(config.max_seq, config.head_dim), persistent=False)
        self.register_buffer("sin", torch.empty(config.max_seq, config.head_dim), persistent=False)

    def fill_tables(self) -> None:
        exponents = torch.arange(0, self.head_dim, 2, dtype=torch.float64) / self.head_dim
        inverse_frequencies = self.theta ** -exponents
        positions = torch.arange(self.cos.shape[0], dtype=torch.float64)
        angles = torch.outer(positions, inverse_frequencies)
        angles = torch.cat((angles, angles), dim=-1)
        self.cos.copy_(angles.cos())
        self.sin.copy_(angles.sin())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Rotate x [batch, heads, seq, head_dim] by its positions 0..seq-1."""
        seq = x.shape[2]
        half = self.head_dim // 2
        rotated_half = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * self.cos[:seq] + rotated_half * self.sin[:seq]


def repeat_kv_heads(x: torch.Tensor, repeats: int) -> torch.Tensor:
    """[batch, kv_heads, seq, d] -> [batch, kv_heads * repeats, seq, d], each KV head repeated."""
    if repeats == 1:
        return x
    batch, kv_heads, seq, head_dim = x.shape
    expanded = x.unsqueeze(2).expand(batch, kv_heads, repeats, seq, head_dim)
    return expanded.reshape(batch, kv_heads * repeats, seq, head_dim)


class LlamaAttention(nn.Module):
    """Causal grouped-query self-attention with rotary position embedding."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.config = config
        kv_width = config.kv_heads * config.head_dim
        self.q_proj = nn.Linear(config.hidden, config.hidden, bias=False)
        self.k_proj = nn.Linear(config.hidden, kv_width, bias=False)
        self.v_proj = nn.Linear(config.hidden, kv_width, bias=False)
        self.o_proj = nn.Linear(config.hidden, config.hidden, bias=False)
        self.rotary_emb = RotaryEmbedding(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        config = self.config
        batch, seq, _ = x.shape
        q = self.q_proj(x).view(batch, seq, config.heads, config.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(batch, seq, config.kv_heads, config.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(batch, seq, config.kv_heads, config.head_dim).transpose(1, 2)
        q = self.rotary_emb(q)
        k = repeat_kv_heads(self.rotary_emb(k), config.queries_per_kv_head)
        v = repeat_kv_heads(v, config.queries_per_kv_head)
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        attended = attended.transpose(1, 2).reshape(batch, seq, config.hidden)
        return self.o_proj(attended)


class LlamaMLP(nn.Module):
    """SwiGLU feed-forward: down_proj(silu(gate_proj(x)) * up_proj(x))."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden, config.ffn, bias=False)
        self.up_proj = nn.Linear(config.hidden, config.ffn, bias=False)
        self.down_proj = nn.Linear(config.ffn, config.hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    """Pre-norm decoder layer: x + attention(RMSNorm(x)), then h + MLP(RMSNorm(h))."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.input_layernorm = nn.RMSNorm(config.hidden, eps=config.norm_eps)
        self.self_attn = LlamaAttention(config)
        self.post_attention_layernorm = nn.RMSNorm(config.hidden, eps=config.norm_eps)
        self.mlp = LlamaMLP(config)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = hidden_states + self.self_attn(self.input_layernorm(hidden_states))
        return hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))


class LlamaForCausalLM(nn.Module):
    """Token embedding -> decoder layers -> RMSNorm -> lm_head; logits [batch, seq, vocab]."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab, config.hidden)
        self.layers = nn.ModuleList(LlamaDecoderLayer(config) for _ in range(config.layers))
        self.norm = nn.RMSNorm(config.hidden, eps=config.norm_eps)
        self.lm_head = nn.Linear(config.hidden, config.vocab, bias=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden_states = self.embed_tokens(input_ids)
        for layer in self.layers:
            hidden_states = layer(hidden_states)
        return self.lm_head(self.norm(hidden_states))


@torch.no_grad()
def init_llama(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Set every parameter and buffer, in `named_modules` order; return the module in eval mode."""
    for submodule in module.modules():
        if isinstance(submodule, (nn.Linear, nn.Embedding)):
            submodule.weight.normal_(0.0, 0.02, generator=generator)
        elif isinstance(submodule, nn.RMSNorm):
            submodule.weight.normal_(1.0, 0.1, generator=generator)
        elif isinstance(submodule, RotaryEmbedding):
            submodule.fill_tables()
    return module.eval()


def build_llama_lm(config: LlamaConfig, seed: int = 0) -> LlamaForCausalLM:
    """A seeded `LlamaForCausalLM` in eval mode."""
    model = construct_uninitialized(lambda: LlamaForCausalLM(config))
    return init_llama(model, seeded_generator(seed, "weights"))


def build_llama_layer(config: LlamaConfig, seed: int = 0) -> LlamaDecoderLayer:
    """A seeded standalone `LlamaDecoderLayer` in eval mode."""
    layer = construct_uninitialized(lambda: LlamaDecoderLayer(config))
    return init_llama(layer, seeded_generator(seed, "weights"))


def byte_token_batch(generator: torch.Generator, batch: int, seq: int) -> torch.Tensor:
    """[batch, seq] int64 windows of UTF-8 bytes of CPython's help text at random offsets."""
    corpus = torch.frombuffer(bytearray(pydoc_bytes()), dtype=torch.uint8)
    starts = torch.randint(0, corpus.numel() - seq, (batch,), generator=generator)
    return torch.stack([corpus[start : start + seq] for start in starts.tolist()]).long()


def _check_seq(name: str, seq: int, config: LlamaConfig) -> None:
    if seq > config.max_seq:
        raise ValueError(f"{name}: seq {seq} exceeds max_seq {config.max_seq} of the rotary tables")


@register("tiny-llama")
def build_tiny_llama(*, tiny: bool, batch: int | None, seq: int | None, seed: int) -> ZooModel:
    """Byte-level tiny Llama (same config with or without `tiny`); default batch 2, seq 16."""
    config = TINY_LLAMA
    batch, seq = batch or 2, seq or 16
    _check_seq("tiny-llama", seq, config)
    inputs = seeded_generator(seed, "inputs")
    calibration = seeded_generator(seed, "calibration")
    return ZooModel(
        name="tiny-llama",
        description="Llama-style byte-level LM (vocab 256, hidden 64, 2 layers, GQA 4/2), random",
        model=build_llama_lm(config, seed),
        example_inputs=(byte_token_batch(inputs, batch, seq),),
        input_names=("input_ids",),
        dynamic_dims={"input_ids": {0: "batch", 1: "seq"}},
        calibration=tuple(
            (byte_token_batch(calibration, batch, seq),) for _ in range(CALIBRATION_BATCHES)
        ),
        workload={"kind": "prefill", "batch": batch, "seq": seq},
    )


@register("llama3-8b-layer")
def build_llama3_8b_layer(*, tiny: bool, batch: int | None, seq: int | None, seed: int) -> ZooModel:
    """One Llama-3-8B-shaped layer on N(0, 1) hidden states; default batch 1, seq 128 (tiny: 32).

    Prefill-shaped: there is no KV cache, so `seq=1` gives decode-sized GEMMs but attends to one token.
    """
    config = LLAMA3_8B_TINY if tiny else LLAMA3_8B
    batch, seq = batch or 1, seq or (32 if tiny else 128)
    _check_seq("llama3-8b-layer", seq, config)
    inputs = seeded_generator(seed, "inputs")
    calibration = seeded_generator(seed, "calibration")
    shape = (batch, seq, config.hidden)
    return ZooModel(
        name="llama3-8b-layer",
        description=(
            f"one Llama-3-8B-shaped decoder layer (hidden {config.hidden}, ffn {config.ffn}, "
            f"{config.heads} heads, {config.kv_heads} KV heads), random weights"
        ),
        model=build_llama_layer(config, seed),
        example_inputs=(torch.randn(shape, generator=inputs),),
        input_names=("hidden_states",),
        dynamic_dims={"hidden_states": {0: "batch", 1: "seq"}},
        calibration=tuple(
            (torch.randn(shape, generator=calibration),) for _ in range(CALIBRATION_BATCHES)
        ),
        workload={"kind": "prefill", "batch": batch, "seq": seq},
    )
